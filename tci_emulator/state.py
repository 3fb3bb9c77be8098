"""Everything one emulator holds, built from a config and torn down as one.

One :class:`EmulatorState` per app (never module-level), so several emulators can live in one
process, each with its own clock, kernels, ledger and faults.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from .clock import Clock, format_timestamp
from .config import Config
from .epoch import Epoch
from .faults import FaultSet
from .journal import RequestJournal
from .kernels.errors import PreloadError
from .kernels.launchers import launcher_for
from .kernels.pool import KernelPool
from .kernels.sandbox import resolve as resolve_sandbox
from .kernels.spawn import runs_locally
from .ledger import Ledger, StateDirError
from .readiness import Readiness
from .sessions import Limits, SessionRegistry
from .transcripts import TranscriptStore

__all__ = ["EmulatorState"]


class EmulatorState:
    """The clock, kernels, sessions and ledger of one emulator, with reset and close."""

    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        # Rules first: a bad --faults file stops the start before any kernel is started.
        self.faults = FaultSet(self.clock)
        if config.faults:
            self.faults.load(config.faults)
        # The sandbox next: --sandbox namespaces where it cannot work stops the start too.
        self.sandbox = resolve_sandbox(config.sandbox, config.session_network,
                                       local_kernels=(config.kernel_gateway is None
                                                      and runs_locally(config.kernel_name)))
        self.server_errors: list[str] = []
        self._errors_lock = threading.Lock()
        ledger_path = None
        if config.state_dir is not None:
            try:
                config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise StateDirError(f"--state-dir {config.state_dir} cannot be created: "
                                    f"{exc.strerror}.") from None
            ledger_path = config.state_dir / "ledger.sqlite3"
        self.ledger = Ledger(config.price_per_session, budget_usd=config.budget_usd,
                             path=ledger_path)
        try:
            # Rows left open by a previous run: their kernels died with that server.
            self.ledger.close_open_sessions(self.clock.now(), "server_stopped")
            self.launcher, self.launcher_fallback = launcher_for(config, self.clock,
                                                                 self.sandbox)
        except BaseException:
            self.ledger.close()  # a start that fails here (a gateway that cannot be reached)
            raise
        # Components report what keeps new sessions from being served here (health, `wait`).
        self.readiness = Readiness()
        if config.pool_size == 0:
            self.readiness.mark_started()  # nothing is started ahead, so nothing to wait for
        self.pool = KernelPool(self.launcher, config.pool_size, on_error=self.record_error,
                               on_start=self._kernel_started)
        # Transcripts of ended sessions are written to the state directory, if there is one.
        self.transcripts = TranscriptStore(config.state_dir, on_error=self.record_error)
        self.journal = RequestJournal()
        self.epoch = Epoch()  # moved on by every reset; requests note the one they arrived in
        self.sessions = SessionRegistry(
            clock=self.clock, pool=self.pool, ledger=self.ledger,
            limits=Limits(
                lifespan=timedelta(seconds=config.session_lifespan),
                execution_timeout=config.execution_timeout,
                interrupt_grace=config.interrupt_grace,
                max_output_bytes=config.max_output_bytes,
                max_sessions=config.max_sessions,
                max_sessions_per_key=config.max_sessions_per_key,
            ), transcripts=self.transcripts, epoch=self.epoch)
        self.clock.subscribe(self.sessions.reap)
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_forever, name="tci-reaper", daemon=True)
        self._reaper.start()
        self._closed = False
        self._on_close: list[Callable[[], None]] = []

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` first thing on :meth:`close` (the ``/mcp`` event loop stops there,
        before the kernels its calls were using)."""
        self._on_close.append(callback)

    def _reap_forever(self) -> None:
        # Event.wait paces the sweep in real time; expiry itself is decided by the clock.
        while not self._stop.wait(self.config.reap_interval):
            try:
                self.sessions.reap()
            except Exception as exc:  # noqa: BLE001 - keep reaping; report the failure
                self.record_error(exc)

    def _kernel_started(self, error: BaseException | None) -> None:
        """Readiness follows kernel starts: the first success ends the warm-up, a failure
        degrades (a --preload that does not import under its own name), a success clears."""
        if error is None:
            self.readiness.recover("kernels")
            self.readiness.recover("preload")
            self.readiness.mark_started()
        elif isinstance(error, PreloadError):
            self.readiness.degrade("preload", str(error))
        else:
            self.readiness.degrade("kernels", str(error))

    def record_error(self, exc: BaseException) -> None:
        """Keep a server-side exception so the test that caused it can be failed with it."""
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        with self._errors_lock:
            self.server_errors.append(text)

    def take_errors(self) -> list[str]:
        """Server-side tracebacks recorded since the last call."""
        with self._errors_lock:
            errors, self.server_errors = self.server_errors, []
        return errors

    def health(self) -> dict[str, Any]:
        """The body of ``GET /_emulator/health``: ``status`` is ``ready``, ``starting`` or
        ``degraded``, with ``reasons`` when degraded."""
        return {
            **self.readiness.snapshot(),
            "now": format_timestamp(self.clock.now()),
            "sessions": len(self.sessions.all_live()),
            "kernels": self.launcher.live_kernels,
            "pool": self.pool.status(),
            "kernel_name": self.config.kernel_name,
            "kernel_gateway": self._kernel_gateway(),
            "sandbox": self.sandbox.describe(),
            "launcher": {**self.launcher.describe(), "requested": self.config.kernel_launcher,
                         **({"reason": self.launcher_fallback} if self.launcher_fallback else {})},
        }

    def _kernel_gateway(self) -> str | None:
        """Where kernels run, if on a gateway: its URL without credentials."""
        if self.config.kernel_gateway is None:
            return None
        from .kernels.gateway import public_url

        return public_url(self.config.kernel_gateway)

    def known_sessions(self) -> list[dict[str, Any]]:
        """Every session the ledger knows, live or ended, oldest first (``GET
        /_emulator/sessions``): its ledger row, whether it is live, when it expires, and whether
        its notebook can be fetched."""
        self.sessions.reap()
        live = {s.id: s for s in self.sessions.all_live()}
        return [{**row, "live": row["id"] in live,
                 "expires_at": (format_timestamp(live[row["id"]].expires_at)
                                if row["id"] in live else None),
                 "notebook": self.transcripts.has_notebook(row["id"])}
                for row in self.ledger.sessions()]

    def reset(self) -> dict[str, Any]:
        """End every session, clear the in-memory ledger, the clock, recorded errors,
        transcripts held in memory and the request journal.

        A barrier: it runs holding the epoch exclusively, so a request that arrived before it
        and is still in flight (held by a fault, starting a kernel, running code) ends with a
        503 ``emulator_reset`` and leaves no session, charge, transcript or journal entry after
        it; a kernel such a request was starting is stopped once it is up.
        """
        with self.epoch.advance() as epoch:
            self.faults.clear()  # releases requests that fault rules hold: they end with a 503
            ended = self.sessions.end_all("reset", background=True)
            self.transcripts.clear()
            self.journal.clear(epoch)
            if not self.ledger.persistent:
                self.ledger.clear()
            self.clock.reset()
            self.take_errors()
        return {"status": "ok", "sessions_ended": ended}

    def close(self) -> None:
        """Stop everything this emulator started; sessions end as ``server_stopped``."""
        if self._closed:
            return
        self._closed = True
        for callback in self._on_close:
            callback()
        self._stop.set()
        self.faults.close()  # held requests answer 503 rather than run into a closing emulator
        self._reaper.join(timeout=5)
        self.sessions.end_all("server_stopped")
        self.sessions.wait_stopped()  # kernels a reset left stopping, before the loop closes
        self.pool.close()
        self.launcher.close()
        self.ledger.close()
