"""A real emulator server in a background thread, for the CLI, scripts and the pytest plugin.

Binds ``127.0.0.1`` and port 0 by default and reads the real port back from the socket (never
bind-close-rebind), serves with werkzeug's threaded server, and stops everything it started on
:meth:`EmulatorServer.stop`. Unexpected exceptions raised while serving are kept and re-raised by
:meth:`EmulatorServer.check` in the caller's thread, so the test that caused one fails with the
server-side traceback (the pattern of pytest-httpserver and moto's ``ThreadedMotoServer``).
"""

from __future__ import annotations

import json
import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import create_app
from .clock import Clock
from .config import Config
from .errors import (
    EmulatorError,
    HeadersTooLarge,
    HttpVersionNotSupported,
    MalformedHttpRequest,
    UriTooLong,
    render_error,
)
from .state import EmulatorState

__all__ = ["EmulatorServer", "ServerError"]

# What the standard library's HTTP parser refuses, by the status it would answer.
_PROTOCOL_ERRORS: dict[int, type[EmulatorError]] = {
    400: MalformedHttpRequest, 414: UriTooLong, 431: HeadersTooLarge, 505: HttpVersionNotSupported,
}


class ServerError(AssertionError):
    """The emulator raised unexpectedly while serving; carries the server-side traceback(s)."""


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's handler without its own request log (the app writes a concise one)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer what the HTTP layer refuses (431, 414, bad request line) with a JSON error body.

        The standard library would send an HTML page; the emulator never answers with HTML.
        """
        reason = message or self.responses.get(code, ("Bad request",))[0]
        self.log_error("code %d, message %s", code, reason)
        error = _PROTOCOL_ERRORS.get(code, MalformedHttpRequest)(f"{reason[:200]}.")
        status, body = render_error(error)  # not an API answer: never the SPEC's literal form
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class EmulatorServer:
    """An emulator app served over real HTTP on loopback from a daemon thread."""

    def __init__(self, config: Config | None = None, *, clock: Clock | None = None) -> None:
        self.config = config or Config(port=0)
        self._clock = clock
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._state: EmulatorState | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        """Build the app, bind the socket and start serving; returns ``self``."""
        if self._server is not None:
            return self
        app = create_app(self.config, clock=self._clock)
        self._state = app.extensions["tci_emulator"]
        try:
            self._server = make_server(self.config.host, self.config.port, app, threaded=True,
                                       request_handler=_QuietHandler)
        except BaseException:
            self._state.close()
            self._state = None
            raise
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="tci-emulator-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, then stop every kernel and remove every session directory."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._state is not None:
            self._state.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- where and what --------------------------------------------------------------------

    @property
    def state(self) -> EmulatorState:
        """The running emulator's state (clock, sessions, ledger, ...)."""
        if self._state is None:
            raise RuntimeError("the emulator is not started")
        return self._state

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:41234``."""
        host = self.config.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    @property
    def base_url(self) -> str:
        """What ``TOGETHER_BASE_URL`` should be: the root URL plus ``/v1``."""
        return self.url + "/v1"

    def check(self) -> None:
        """Raise :class:`ServerError` if the server hit an unexpected exception since last asked."""
        errors = self.state.take_errors()
        if errors:
            raise ServerError("the emulator raised while serving:\n" + "\n".join(errors))

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<{type(self).__name__} {where}>"

    def info(self) -> dict[str, Any]:
        """Where the server listens, for banners and logs."""
        return {"url": self.url, "base_url": self.base_url}
