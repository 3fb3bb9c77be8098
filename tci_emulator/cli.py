"""``tci-emulator`` command line: ``serve`` runs the development server in the foreground;
``wait`` blocks until a running one is ready (for CI scripts and other languages' test runners);
``transcript`` fetches a session's notebook from a running one; ``mcp`` serves MCP over
stdio."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from . import __version__
from .api_client import error_message, open_url, root_url
from .config import Config, add_arguments, config_from, non_default_settings
from .mcp.command import add_mcp_arguments
from .packages import EXTRA, missing_packages
from .server import EmulatorServer, check_exposure

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:8787"  # where `tci-emulator serve` listens by default
DEFAULT_WAIT_TIMEOUT = 120.0  # seconds; a first kernel start with preloads can take a while
_WAIT_POLL_S = 0.2
_log = logging.getLogger("tci_emulator.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tci-emulator",
                                     description="Local emulator of the Together Code Interpreter.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Run the emulator server in the foreground.")
    serve.add_argument("--ready-file", type=Path, default=None, metavar="PATH",
                       help="Write the server's URL to PATH once it is ready (removed at exit) "
                            "[env TCI_EMULATOR_READY_FILE]")
    add_arguments(serve)
    wait = commands.add_parser(
        "wait", help="Wait until a running server is ready (exit 0), or fail after --timeout.",
        description="Poll GET /_emulator/health until it says 'ready'. Exit 0 then; exit 1 on "
                    "timeout, printing what the server last said (or why it did not answer).")
    where = wait.add_mutually_exclusive_group()
    _add_url_argument(where)
    where.add_argument("--ready-file", type=Path, default=None, metavar="PATH",
                      help="Read the URL from the file that serve --ready-file writes (for a "
                           "server on --port 0), waiting for it to appear")
    wait.add_argument("--timeout", type=float, default=DEFAULT_WAIT_TIMEOUT, metavar="SECONDS",
                      help=f"Give up after SECONDS [default {DEFAULT_WAIT_TIMEOUT:g}]")
    transcript = commands.add_parser(
        "transcript", help="Print a session's transcript (.ipynb) from a running server.",
        description="Fetch GET /_emulator/sessions/SESSION_ID/notebook and print the notebook.")
    transcript.add_argument("session_id", metavar="SESSION_ID")
    _add_url_argument(transcript)
    transcript.add_argument("--admin-token", default=None, metavar="TOKEN",
                            help="The server's --admin-token, if it has one "
                                 "[env TCI_EMULATOR_ADMIN_TOKEN]")
    transcript.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                            help="Write the notebook to FILE instead of standard output.")
    mcp = commands.add_parser(
        "mcp", help="Serve MCP over stdio (for an agent's MCP client to launch).",
        description="An MCP server over stdio whose tools run code in TCI sessions: on an "
                    "emulator of its own (the settings below), or on a running one (--url).")
    add_mcp_arguments(mcp)
    add_arguments(mcp)
    return parser


def _add_url_argument(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    parser.add_argument("--url", default=None,
                        help=f"The server's root URL (a trailing /v1 is ignored) [env "
                             f"TCI_EMULATOR_URL; default {DEFAULT_URL}]")


def _server_url(args: argparse.Namespace) -> str:
    """The root URL of the server a tool talks to: --url, TCI_EMULATOR_URL, the default."""
    return root_url(str(args.url or os.environ.get("TCI_EMULATOR_URL") or DEFAULT_URL))


def _health_says(url: str) -> str | None:
    """``None`` when the server at ``url`` is ready, else what it said (or why it did not)."""
    try:
        with open_url(urllib.request.Request(url + "/_emulator/health"), timeout=10) as response:
            body = json.loads(response.read())
        status = str(body.get("status"))
        if status == "ready":
            return None
        reasons = "; ".join(map(str, body.get("reasons") or []))
        return f"{status} ({reasons})" if reasons else status
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {error_message(exc.read())}"
    except (urllib.error.URLError, OSError, ValueError, AttributeError) as exc:
        return f"not answering: {getattr(exc, 'reason', exc)}"


def _wait(args: argparse.Namespace) -> int:
    """Poll the server's health until ``ready``; 0 then, 1 with the last answer on timeout.

    With ``--ready-file`` the URL is read from the file ``serve --ready-file`` writes (for a
    server on ``--port 0``), and the file's absence is the answer until it appears."""
    deadline = time.monotonic() + args.timeout
    while True:
        url: str | None = _server_url(args)
        if args.ready_file is not None:  # read afresh each time: the server may be replaced
            text = args.ready_file.read_text().strip() if args.ready_file.is_file() else ""
            url = text.removesuffix("/v1") or None
        last = (_health_says(url) if url is not None else
                f"no URL in {args.ready_file} yet (serve writes it once ready; its log says "
                "why not)")
        if last is None:
            print(f"tci-emulator: {url} is ready", flush=True)
            return 0
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            print(f"tci-emulator: {url or 'the server'} not ready after {args.timeout:g} s: "
                  f"{last}", file=sys.stderr, flush=True)
            return 1
        time.sleep(min(_WAIT_POLL_S, remaining))  # pacing a poll of another process


def _transcript(args: argparse.Namespace) -> int:
    """Fetch one session's notebook from a running server."""
    url = _server_url(args)
    token = args.admin_token or os.environ.get("TCI_EMULATOR_ADMIN_TOKEN")
    target = f"{url}/_emulator/sessions/{urllib.parse.quote(args.session_id, safe='')}/notebook"
    request = urllib.request.Request(
        target, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with open_url(request, timeout=60) as response:
            body: bytes = response.read()
    except urllib.error.HTTPError as exc:
        print(f"tci-emulator: {target}: HTTP {exc.code}: {error_message(exc.read())}",
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


def _banner(server: EmulatorServer, config: Config) -> None:
    """What a user needs at start: where it listens, the two lines that point a client at it,
    and the settings that differ from the defaults (keys and tokens as fingerprints)."""
    print(f"tci-emulator {__version__} listening on {server.url}", flush=True)
    print(f"export TOGETHER_BASE_URL={server.base_url}", flush=True)
    if config.api_keys:
        print("# TOGETHER_API_KEY: one of the --api-key keys (the server accepts no other)",
              flush=True)
    else:
        print("export TOGETHER_API_KEY=any-non-empty-key  # each distinct key is its own tenant",
              flush=True)
    changed = non_default_settings(config)
    print("settings: " + (" ".join(changed) if changed else "all defaults"), flush=True)
    if config.admin:
        print(f"dashboard: {server.url}/_emulator/ui/", flush=True)
    if config.kernel_name == Config.kernel_name:  # a local kernel runs this interpreter
        missing = missing_packages()
        if missing:
            _log.warning("%d of the packages TCI has pre-installed are not installed here (%s): "
                         "sessions run, but importing them fails; install them with: "
                         "pip install 'tci-emulator[%s]'", len(missing), ", ".join(missing), EXTRA)


def _announce_ready(server: EmulatorServer, path: Path, stop: threading.Event) -> None:
    """Write the URL to ``path`` once the server is ready (atomically: a reader never sees a
    partial file)."""
    while not stop.is_set():
        if server.state.readiness.wait_ready(timeout=0.5):
            partial = path.with_name(path.name + ".partial")
            partial.write_text(server.url + "\n")
            partial.replace(path)
            return


def _serve(config: Config, ready_file: Path | None = None) -> int:
    problem = check_exposure(config)
    if problem:
        print(f"tci-emulator: {problem}", file=sys.stderr)
        return 2
    if ready_file is not None:
        ready_file.unlink(missing_ok=True)  # a previous run's: it must not say "ready" now
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
    except ValueError as exc:  # what only a start can check: --faults FILE, the --state-dir
        print(f"tci-emulator: {' '.join(str(exc).split())}", file=sys.stderr)  # one line
        return 2
    _banner(server, config)
    announcer = None
    if ready_file is not None:
        announcer = threading.Thread(target=_announce_ready, args=(server, ready_file, stop),
                                     name="tci-ready-file", daemon=True)
        announcer.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        if announcer is not None and ready_file is not None:
            announcer.join(timeout=5)
            ready_file.unlink(missing_ok=True)
        print("tci-emulator: stopping (kernels and session directories are removed)",
              file=sys.stderr, flush=True)
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tci-emulator`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "transcript":
        return _transcript(args)
    if args.command == "wait":
        return _wait(args)
    try:
        config = config_from(args)
    except ValueError as exc:
        print(f"tci-emulator: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        ready_file = args.ready_file or os.environ.get("TCI_EMULATOR_READY_FILE")
        if ready_file and not Path(ready_file).parent.is_dir():
            print(f"tci-emulator: --ready-file {ready_file}: its directory does not exist",
                  file=sys.stderr)
            return 2
        return _serve(config, Path(ready_file) if ready_file else None)
    if args.command == "mcp":
        from .mcp.command import run
        return run(args, config)
    return 2
