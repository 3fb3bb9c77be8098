"""The in-process emulator handle, for scripts, notebooks, other test runners and the plugin.

    with tci_emulator.Emulator(session_lifespan=60) as emu:
        client = emu.client()                      # an official `together` client
        client.code_interpreter.execute(code="print(1)", language="python")
        emu.clock.advance(61)                      # the session expires at once
        assert emu.usage()["total"]["sessions"] == 1

The pytest fixture ``tci_emulator`` hands out this same object (see ``pytest_plugin``); here it
serves code that runs without pytest. Starting costs a few milliseconds (kernels warm up in the
background); :meth:`Emulator.stop` does not return before every kernel it started has stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .clock import Clock
from .config import Config, config_from
from .faults import FaultSet
from .lifecycle import Lifecycle
from .server import EmulatorServer

__all__ = ["Emulator", "DEFAULT_TEST_KEY"]

DEFAULT_TEST_KEY = "tci-emulator-test-key"


class Emulator(Lifecycle[None]):
    """A running emulator on 127.0.0.1 and a free port, with its controls.

    Settings are :class:`~tci_emulator.config.Config` field names (``session_lifespan``,
    ``price_per_session``, ``budget_usd``, ``pool_size``, ``execution_timeout``, ...), or a whole
    ``config``. ``TCI_EMULATOR_*`` variables are not read: an in-process emulator is configured
    by its caller only. ``api_key`` is the key :meth:`client` and :meth:`env` hand out (the
    first of ``api_keys`` when those are restricted). Started and stopped as every
    :class:`~tci_emulator.lifecycle.Lifecycle` is: ``with``, or :meth:`start` and :meth:`stop`.
    """

    def __init__(self, config: Config | None = None, *, api_key: str | None = None,
                 **settings: Any) -> None:
        super().__init__()
        if config is not None and settings:
            raise TypeError("pass either a Config or settings, not both")
        unknown = sorted(set(settings) - set(Config.__dataclass_fields__))
        if unknown:
            raise TypeError(f"unknown emulator setting(s) {', '.join(unknown)}; settings are "
                            f"tci_emulator.Config fields: {', '.join(Config.__dataclass_fields__)}")
        if config is None:
            settings.setdefault("port", 0)
            settings.setdefault("access_log", False)
            config = config_from(None, {}, **settings)
        self.config = config
        self.api_key = api_key or (config.api_keys[0] if config.api_keys else DEFAULT_TEST_KEY)
        self.server = EmulatorServer(config)
        self._clients: list[Any] = []  # synchronous SDK clients made by client()

    # -- lifecycle -------------------------------------------------------------------------

    def _start(self) -> None:
        self.server.start()

    def _stop(self) -> None:
        """Close the clients :meth:`client` made, then stop the server and every kernel it
        started."""
        try:
            self.close_clients()
        finally:
            self.server.stop()

    # -- where -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Root URL (control plane lives under ``/_emulator``)."""
        return self.server.url

    @property
    def base_url(self) -> str:
        """``TOGETHER_BASE_URL`` for this emulator (ends in ``/v1``)."""
        return self.server.base_url

    @property
    def mcp_url(self) -> str:
        """Where MCP clients reach this emulator over streamable HTTP (``/mcp``)."""
        return self.url + "/mcp"

    def env(self) -> dict[str, str]:
        """The variables that point an SDK at this emulator."""
        return {"TOGETHER_BASE_URL": self.base_url, "TOGETHER_API_KEY": self.api_key}

    # -- controls --------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The emulator's clock: ``advance(seconds)``, ``set(datetime)``, ``freeze()``,
        ``now()``."""
        return self.server.state.clock

    @property
    def faults(self) -> FaultSet:
        """Fault rules: ``add(rule or [rules])``, ``rules()``, ``journal()``, ``remove(id)``,
        ``clear()`` (the operations of ``/_emulator/faults``; rule format in
        :mod:`tci_emulator.faults`)."""
        return self.server.state.faults

    def usage(self, *, sessions: bool = False) -> dict[str, Any]:
        """The body of ``GET /_emulator/usage`` (``sessions=True`` adds one row per session)."""
        return self.server.state.ledger.usage(include_sessions=sessions)

    def sessions(self) -> list[dict[str, Any]]:
        """Live sessions of every key, as the listing shows them plus the key fingerprint."""
        return [{**s.listing(), "key_fingerprint": s.key_fp}
                for s in self.server.state.sessions.all_live()]

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The request journal, newest last (the body of ``GET /_emulator/requests``): method,
        path, status, session, key fingerprint, duration, fault, and the SDK that sent it."""
        return self.server.state.journal.entries(limit)

    def notebook(self, session_id: str) -> Any:
        """The transcript of a session as an ``nbformat`` v4 notebook, or ``None`` if unknown."""
        return self.server.state.transcripts.notebook(session_id)

    def save_transcripts(self, directory: str | Path) -> list[Path]:
        """Write the transcript of every session since the last reset to ``directory`` as
        ``<session id>.ipynb`` (the ones still held in memory); returns the paths written."""
        return self.server.state.transcripts.save_all(Path(directory))

    def reset(self) -> None:
        """End every session, clear usage, clock, fault rules, transcripts and the journal."""
        self.server.state.reset()

    def check(self) -> None:
        """Raise :class:`~tci_emulator.ServerError` with the server-side traceback(s) if the
        emulator hit an unexpected exception while serving since the last check or reset."""
        __tracebackhide__ = True  # pytest: show the server's traceback, not this frame
        self.server.check()

    # -- clients ---------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> Any:
        """An official ``together.Together`` client bound to this emulator.

        ``kwargs`` go to the constructor (``max_retries``, ``timeout``, ...). Raises
        :class:`ImportError` naming the package to install when ``together`` is missing, or
        when the installed one no longer has ``code_interpreter`` (3.0 removed it).
        """
        client = self._sdk_client("Together", kwargs)
        self._clients.append(client)
        return client

    def close_clients(self) -> None:
        """Close the clients :meth:`client` made: the server keeps connections alive, and an
        SDK client left open holds one (a ``ResourceWarning`` when it is collected). The pytest
        plugin calls this after each test; closing a closed client does nothing."""
        clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def async_client(self, **kwargs: Any) -> Any:
        """An official ``together.AsyncTogether`` client bound to this emulator (see
        :meth:`client`)."""
        return self._sdk_client("AsyncTogether", kwargs)

    def _sdk_client(self, class_name: str, kwargs: dict[str, Any]) -> Any:
        hint = ("Emulator.client() needs the official Together SDK with code_interpreter: "
                "pip install 'together>=2,<3'")
        try:
            import together  # type: ignore[import-not-found]
        except ImportError:
            raise ImportError(f"{hint} (together is not installed).", name="together") from None
        client = getattr(together, class_name)(
            **{"base_url": self.base_url, "api_key": self.api_key, **kwargs})
        if not hasattr(client, "code_interpreter"):
            version = getattr(together, "__version__", "?")
            raise ImportError(f"{hint} (together {version} is installed).", name="together")
        return client

    def __repr__(self) -> str:
        return f"<Emulator {self.server!r}>"

