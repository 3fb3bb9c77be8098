"""``tci-emulator`` command line: ``serve`` runs the development server in the foreground."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Sequence

from . import __version__
from .config import Config, add_arguments, config_from
from .server import EmulatorServer

__all__ = ["main"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(config: Config) -> str | None:
    """Why this config must not start, or ``None``: remote binding needs consent and keys."""
    if _is_loopback(config.host):
        return None
    if not config.allow_remote:
        return f"--host {config.host} is not a loopback address: add --allow-remote to bind it."
    if not config.api_keys:
        return "--allow-remote needs at least one --api-key, so strangers cannot run code."
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tci-emulator",
                                     description="Local emulator of the Together Code Interpreter.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Run the emulator server in the foreground.")
    add_arguments(serve)
    return parser


def _serve(config: Config) -> int:
    problem = check_exposure(config)
    if problem:
        print(f"tci-emulator: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = EmulatorServer(config)
    try:
        server.start()
    except OSError as exc:
        print(f"tci-emulator: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    print(f"tci-emulator {__version__} listening on {server.url}", flush=True)
    print(f"export TOGETHER_BASE_URL={server.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        print("tci-emulator: stopping (kernels and session directories are removed)",
              file=sys.stderr, flush=True)
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tci-emulator`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        config = config_from(args)
    except ValueError as exc:
        print(f"tci-emulator: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(config)
    return 2
