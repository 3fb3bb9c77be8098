"""A real emulator server in a background thread, for the CLI, scripts and the pytest plugin.

Binds ``127.0.0.1`` and port 0 by default and reads the real port back from the socket (never
bind-close-rebind), serves with the front door's production WSGI server (waitress, with
keep-alive, timeouts and a connection limit; see :mod:`tci_emulator.http.wsgi`) behind the Host
and Origin checks (:mod:`tci_emulator.http.guard`), and stops everything it started on
:meth:`EmulatorServer.stop`. Unexpected exceptions raised while serving are kept and re-raised by
:meth:`EmulatorServer.check` in the caller's thread, so the test that caused one fails with the
server-side traceback (the pattern of pytest-httpserver and moto's ``ThreadedMotoServer``).
"""

from __future__ import annotations

import threading
from typing import Any

from .api_client import is_loopback
from .app import create_app
from .clock import Clock
from .config import Config
from .http.guard import FrontDoor
from .http.wsgi import HttpServer
from .lifecycle import Lifecycle
from .state import EmulatorState

__all__ = ["EmulatorServer", "ServerError", "check_exposure"]


class ServerError(AssertionError):
    """The emulator raised unexpectedly while serving; carries the server-side traceback(s)."""


class EmulatorServer(Lifecycle[None]):
    """An emulator app served over real HTTP on loopback from a daemon thread; started and
    stopped as every :class:`~tci_emulator.lifecycle.Lifecycle` is."""

    def __init__(self, config: Config | None = None, *, clock: Clock | None = None) -> None:
        super().__init__()
        self.config = config or Config(port=0)
        self._clock = clock
        self._server: HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._state: EmulatorState | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def _start(self) -> None:
        """Build the app, bind the socket and start serving."""
        app = create_app(self.config, clock=self._clock)
        self._state = app.extensions["tci_emulator"]
        self._server = HttpServer(FrontDoor(app, self.config), self.config)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="tci-emulator-http", daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        """Stop accepting, stop every kernel and remove every session directory (held requests
        answer 503), let the requests in flight send their answers, then close every connection."""
        server, self._server = self._server, None
        try:
            if server is not None:
                server.stop_accepting()
            if self._state is not None:
                self._state.close()
        finally:
            if server is not None:
                server.close()
            if self._thread is not None:
                self._thread.join(timeout=10)
                self._thread = None
            if server is not None:
                server.release()

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
        return self._server.port

    @property
    def connections(self) -> int:
        """Client connections open right now (stalled and idle keep-alive ones included)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return self._server.connections

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


def check_exposure(config: Config) -> str | None:
    """Why this config must not start, or ``None``: remote binding needs consent and keys."""
    if is_loopback(config.host):
        return None
    if not config.allow_remote:
        return f"--host {config.host} is not a loopback address: add --allow-remote to bind it."
    if not config.api_keys:
        return "--allow-remote needs at least one --api-key, so strangers cannot run code."
    return None
