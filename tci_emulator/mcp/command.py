"""``tci-emulator mcp``: an MCP server over stdio, for an agent's MCP client to launch.

By default it runs an emulator of its own in this process, with the settings ``serve`` takes
(flags and ``TCI_EMULATOR_*`` variables), on a free loopback port unless ``--port`` says
otherwise; the tools call it over HTTP like any client. With ``--url`` it drives an emulator
that is already running instead, so that server's dashboard and journal show what the agent
did; the emulator's settings are then that server's, and only ``--api-key`` (the key to call
with) and ``--admin-token`` (to read usage and transcripts) apply here.

The MCP SDK's stdio transport moves the process's standard output away from the wire while it
serves, and the in-process emulator is started only then (in the server's lifespan), so neither
a kernel nor anything a session starts can write into the protocol stream.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from decimal import Decimal, InvalidOperation

from ..api_client import ApiClient, ApiFailure, root_url
from ..config import ENV_PREFIX, Config

__all__ = ["run", "DEFAULT_MCP_KEY", "add_mcp_arguments"]

DEFAULT_MCP_KEY = "tci-emulator-mcp"  # the tenant of an agent that names no key
# With --url these settings are the caller's own; every other one belongs to the running server.
_CALLER_SETTINGS = ("api_keys", "admin_token")


def add_mcp_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mcp`` besides the emulator's settings."""
    parser.add_argument(
        "--url", default=None, metavar="URL",
        help="Drive the emulator running at URL (e.g. http://127.0.0.1:8787) instead of "
             "starting one; the key is the first --api-key, else TOGETHER_API_KEY, else "
             f"'{DEFAULT_MCP_KEY}'.")


def _key(config: Config, environ: dict[str, str] | os._Environ[str]) -> str:
    if config.api_keys:
        return config.api_keys[0]
    return environ.get("TOGETHER_API_KEY") or DEFAULT_MCP_KEY


def _remote_pricing(url: str, admin_token: str | None) -> tuple[Decimal | None, str | None]:
    """The running emulator's price per session, from its control plane, or why not."""
    probe = ApiClient(url, "", "tci-emulator-mcp", admin_token=admin_token, timeout=10)
    try:
        price = probe.control("/_emulator/usage").get("price_per_session_usd")
        return Decimal(str(price)), None
    except (ApiFailure, AttributeError, InvalidOperation) as exc:
        return None, str(exc)


def run(args: argparse.Namespace, config: Config) -> int:
    """Serve MCP over stdio until the client closes it; returns the exit code."""
    try:
        from .server import Endpoint, Pricing, build_server
    except ImportError as exc:
        print(f"tci-emulator: 'mcp' needs the MCP SDK ({exc}): pip install 'tci-emulator[mcp]'",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    # SIGTERM unwinds like Ctrl-C, so the in-process emulator stops its kernels on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    failed: list[int] = []  # the exit code of a start that failed
    if args.url:
        foreign = [f"--{name.replace('_', '-')}" for name in Config.__dataclass_fields__
                   if name not in _CALLER_SETTINGS and getattr(args, name, None) is not None]
        if foreign:
            print(f"tci-emulator: with --url the running emulator's own settings apply; "
                  f"drop {', '.join(foreign)}.", file=sys.stderr)
            return 2
        url = root_url(args.url)
        price, why = _remote_pricing(url, config.admin_token)
        if why:
            logging.getLogger("tci_emulator.mcp").warning(
                "cannot read the price per session from %s (%s); tools will say $0.03", url, why)
        server = build_server(Endpoint(url, config.admin_token), Pricing(price),
                              default_key=_key(config, os.environ))
    else:
        from ..server import EmulatorServer, check_exposure
        if args.port is None and not os.environ.get(ENV_PREFIX + "PORT"):
            config = dataclasses.replace(config, port=0)  # never collide with a `serve`
        problem = check_exposure(config)
        if problem:
            print(f"tci-emulator: {problem}", file=sys.stderr)
            return 2
        emulator = EmulatorServer(config)
        endpoint = Endpoint(None, config.admin_token)

        def start() -> None:
            try:
                emulator.start()
            except (OSError, ValueError) as exc:  # a port in use, the rules of --faults FILE
                print(f"tci-emulator: cannot start the emulator: {exc}", file=sys.stderr)
                failed.append(1 if isinstance(exc, OSError) else 2)
                raise
            endpoint.url = emulator.url
            print(f"tci-emulator: MCP over stdio; the emulator serves {emulator.url}",
                  file=sys.stderr, flush=True)

        server = build_server(endpoint, Pricing(config.price_per_session, config.session_lifespan),
                              default_key=_key(config, {}), start=start, stop=emulator.stop)
    try:
        server.run("stdio")
    except KeyboardInterrupt:
        pass
    except BaseException:
        if failed:  # already said why, in one line
            return failed[0]
        raise
    return 0
