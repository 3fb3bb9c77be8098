"""``tci-emulator`` command line: ``serve`` runs the development server in the foreground;
``transcript`` fetches a session's notebook from a running one."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Sequence

from . import __version__
from .config import Config, add_arguments, config_from
from .server import EmulatorServer

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:8787"  # where `tci-emulator serve` listens by default


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
    transcript = commands.add_parser(
        "transcript", help="Print a session's transcript (.ipynb) from a running server.",
        description="Fetch GET /_emulator/sessions/SESSION_ID/notebook and print the notebook.")
    transcript.add_argument("session_id", metavar="SESSION_ID")
    transcript.add_argument("--url", default=None,
                            help=f"The server's root URL (a trailing /v1 is ignored) [env "
                                 f"TCI_EMULATOR_URL; default {DEFAULT_URL}]")
    transcript.add_argument("--admin-token", default=None, metavar="TOKEN",
                            help="The server's --admin-token, if it has one "
                                 "[env TCI_EMULATOR_ADMIN_TOKEN]")
    transcript.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                            help="Write the notebook to FILE instead of standard output.")
    return parser


def _transcript(args: argparse.Namespace) -> int:
    """Fetch one session's notebook from a running server (urllib: no extra dependency)."""
    url = (args.url or os.environ.get("TCI_EMULATOR_URL") or DEFAULT_URL).rstrip("/")
    url = url[:-3] if url.endswith("/v1") else url
    token = args.admin_token or os.environ.get("TCI_EMULATOR_ADMIN_TOKEN")
    target = f"{url}/_emulator/sessions/{urllib.parse.quote(args.session_id, safe='')}/notebook"
    request = urllib.request.Request(
        target, headers={"Authorization": f"Bearer {token}"} if token else {})
    # A proxy configured for the outside world must not stand between us and a local server.
    handlers = ([urllib.request.ProxyHandler({})]
                if _is_loopback(urllib.parse.urlsplit(url).hostname or "") else [])
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=60) as response:
            body: bytes = response.read()
    except urllib.error.HTTPError as exc:
        print(f"tci-emulator: {target}: HTTP {exc.code}: {_error_message(exc.read())}",
              file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"tci-emulator: cannot fetch {target}: {exc}", file=sys.stderr)
        return 1
    if args.output is not None:
        args.output.write_bytes(body)
    else:
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
    return 0


def _error_message(body: bytes) -> str:
    """The message of a contract error body, else the body's start."""
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")


def _serve(config: Config) -> int:
    problem = check_exposure(config)
    if problem:
        print(f"tci-emulator: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    if config.log_format == "json":  # each access line is one JSON object, nothing around it
        access = logging.getLogger("tci_emulator.access")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.propagate = False
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
    except ValueError as exc:  # what only a start can check, e.g. the rules of --faults FILE
        print(f"tci-emulator: {exc}", file=sys.stderr)
        return 2
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
    if args.command == "transcript":
        return _transcript(args)
    try:
        config = config_from(args)
    except ValueError as exc:
        print(f"tci-emulator: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(config)
    return 2
