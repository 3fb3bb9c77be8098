"""The session registry: ids, tenants, lifespan, one kernel and one fair lock per session.

A session is created by an execute call without ``session_id``; it belongs to the key that
created it, lives until ``started_at + lifespan`` (absolute, not sliding) and owns one kernel for
its whole life. Calls to one session run one at a time in arrival order (a ticket lock: plain
locks do not promise order); calls to different sessions run in parallel.

Expiry is decided by the clock alone: a session whose ``expires_at`` has come is ended the moment
anyone looks (a request, a listing, the clock being moved, or the periodic reaper), its kernel is
shut down and its directories removed.

A session is listed, and can expire, only once its creating call has answered: a moved clock
cannot end it under its creation (a creation is never answered 410), and a call naming it waits
behind the creation on the session's lock. Every step that leaves a trace is committed through the
emulator's :class:`~tci_emulator.epoch.Epoch`, so a reset is a barrier: a creation or execution in
flight across it ends with :class:`~tci_emulator.errors.EmulatorReset`, its charge and its session
withdrawn and its kernel stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .clock import Clock, format_timestamp
from .epoch import Epoch
from .errors import (
    EmulatorError,
    InvalidRequest,
    KernelUnavailable,
    SessionExpired,
    SessionNotFound,
    TooManySessions,
)
from .files import UploadedFile, write_files, writer_code
from .ids import SessionIdFactory
from .kernels.errors import KernelError
from .kernels.kernel import ExecutionResult, Kernel
from .kernels.pool import KernelPool
from .ledger import Ledger
from .transcripts import Execution, TranscriptStore

__all__ = ["FairLock", "Limits", "Session", "SessionRegistry"]


class FairLock:
    """A mutex granted in arrival order (first come, first served)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> FairLock:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._cond.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


@dataclass(frozen=True)
class Limits:
    """What one execution and the registry may use (from the config)."""

    lifespan: timedelta
    execution_timeout: float
    interrupt_grace: float
    max_output_bytes: int | None
    max_sessions: int | None
    max_sessions_per_key: int | None


@dataclass(eq=False)
class Session:
    """One live session and its kernel."""

    id: str
    key_fp: str
    started_at: datetime
    expires_at: datetime
    kernel: Kernel
    execute_count: int = 0
    last_execute_at: datetime | None = None
    lock: FairLock = field(default_factory=FairLock)
    # Set when the creating call answers 200: before that only the creator knows the session.
    answered: bool = False

    def listing(self) -> dict[str, Any]:
        """The session as ``GET /tci/sessions`` shows it."""
        return {
            "id": self.id,
            "execute_count": self.execute_count,
            "started_at": format_timestamp(self.started_at),
            "last_execute_at": (format_timestamp(self.last_execute_at)
                                if self.last_execute_at else None),
            "expires_at": format_timestamp(self.expires_at),
        }


Hook = Callable[[Session], None]


@contextmanager
def _held(session: Session, *, taken: bool) -> Iterator[None]:
    """The session's lock for one call (``taken``: acquired already, by :meth:`create`)."""
    if not taken:
        session.lock.__enter__()
    try:
        yield
    finally:
        session.lock.__exit__(None, None, None)


class SessionRegistry:
    """Finds, creates, runs and ends sessions; the domain behind the API routes."""

    def __init__(self, *, clock: Clock, pool: KernelPool, ledger: Ledger, limits: Limits,
                 transcripts: TranscriptStore | None = None, epoch: Epoch | None = None) -> None:
        self._clock = clock
        self._pool = pool
        self._ledger = ledger
        self._transcripts = transcripts  # told of every start, execution and end
        self.epoch = epoch or Epoch()  # what a reset moves on
        self.limits = limits
        self._ids = SessionIdFactory()
        self._lock = threading.Lock()
        self._live: dict[str, Session] = {}
        self._pending: dict[str, int] = {}  # creations in progress, per key
        self._stopping: list[threading.Thread] = []  # kernels being stopped in the background

    # -- lookup ----------------------------------------------------------------------------

    def get(self, session_id: str, key_fp: str) -> Session:
        """The caller's live session; 404 for unknown or foreign ids, 410 once expired.

        A session whose creating call is still running (its id read from the ledger, or the
        creator's client gave up waiting) is found: the call queues behind the creation on the
        session's lock, and is judged for expiry once the creation has answered.
        """
        with self._lock:
            session = self._live.get(session_id)
        if session is None or session.key_fp != key_fp:
            row = self._ledger.session(session_id)
            if row and row["key_fingerprint"] == key_fp and row["end_reason"] == "expired":
                raise SessionExpired(f"Session {session_id} expired at {row['ended_at']}.",
                                     param="session_id")
            raise SessionNotFound(f"Session {session_id} not found.", param="session_id")
        if session.answered:
            self._raise_if_expired(session)
        return session

    def active(self, key_fp: str) -> list[Session]:
        """The caller's active sessions, oldest first (expired ones are ended on the way)."""
        self.reap()
        with self._lock:
            return sorted((s for s in self._live.values() if s.key_fp == key_fp and s.answered),
                          key=lambda s: s.id)

    def all_live(self) -> list[Session]:
        """Every live session of every key (creations still in flight are not shown)."""
        with self._lock:
            return sorted((s for s in self._live.values() if s.answered), key=lambda s: s.id)

    def _raise_if_expired(self, session: Session) -> None:
        if self._clock.now() >= session.expires_at:
            self.end(session, "expired")
            raise SessionExpired(
                f"Session {session.id} expired at {format_timestamp(session.expires_at)}.",
                param="session_id")

    # -- create and execute ----------------------------------------------------------------

    def _create(self, key_fp: str, seen: int | None = None) -> Session:
        """Start a session for ``key_fp``: limits, then the charge, then a kernel. Returns it
        with its lock held, for the creating call to run its code first.

        ``seen`` is the generation the request arrived in: a reset since then withdraws the
        charge, stops the kernel (even one that was still starting) and raises
        :class:`EmulatorReset`.
        """
        seen = self.epoch.value if seen is None else seen
        self.epoch.check(seen)
        self._reserve(key_fp)
        try:
            started_at = self._clock.now()
            session_id = self._ids.new(started_at)
            with self.epoch.guard(seen):
                self._ledger.open_session(session_id, key_fp, started_at)
            kernel: Kernel | None = None
            try:
                kernel = self._pool.take()
                session = Session(session_id, key_fp, started_at,
                                  started_at + self.limits.lifespan, kernel)
                # Held by the creating call before anyone can find the session, so its code
                # runs first; execute() releases it.
                session.lock.__enter__()
                with self.epoch.guard(seen):
                    with self._lock:
                        self._live[session_id] = session
                    if self._transcripts is not None:
                        self._transcripts.open(session)
            except BaseException as exc:
                # Nothing of a session that never started may stay: no charge, no kernel.
                self._ledger.cancel_session(session_id)
                if kernel is not None:
                    kernel.shutdown()
                if isinstance(exc, KernelError):
                    raise KernelUnavailable(f"No kernel could be started: {exc}") from exc
                raise
        finally:
            with self._lock:
                self._pending[key_fp] -= 1
        return session

    def _reserve(self, key_fp: str) -> None:
        """Count a creation against the limits at request time, so concurrency cannot overshoot."""
        with self._lock:
            live_total = len(self._live) + sum(self._pending.values())
            live_key = (sum(1 for s in self._live.values() if s.key_fp == key_fp)
                        + self._pending.get(key_fp, 0))
            limits = self.limits
            if limits.max_sessions is not None and live_total >= limits.max_sessions:
                raise TooManySessions(
                    f"The emulator already runs {limits.max_sessions} sessions (--max-sessions).")
            if limits.max_sessions_per_key is not None and live_key >= limits.max_sessions_per_key:
                raise TooManySessions(
                    f"This key already has {limits.max_sessions_per_key} active sessions.")
            self._pending[key_fp] = self._pending.get(key_fp, 0) + 1

    def execute(
        self,
        key_fp: str,
        code: str,
        *,
        session_id: str | None = None,
        files: list[UploadedFile] | None = None,
        before_run: Hook | None = None,
        epoch: int | None = None,
    ) -> tuple[Session, ExecutionResult]:
        """Run ``code`` in the caller's session (a new one without ``session_id``).

        ``before_run`` is called with the session held, just before the code runs (the fault
        hook uses it to expire the session or crash its kernel at that moment). ``epoch`` is the
        generation the request arrived in (default: now); a reset since then ends the call with
        :class:`EmulatorReset` and leaves nothing of it behind.
        """
        seen = self.epoch.value if epoch is None else epoch
        created = session_id is None
        try:
            session = self._create(key_fp, seen) if created else self.get(session_id or "", key_fp)
        except EmulatorError:
            self.epoch.check(seen)  # a session ended by a reset is not "not found": it was reset
            raise
        answered = False
        try:
            with _held(session, taken=created):
                self.epoch.check(seen)
                if before_run is not None:
                    before_run(session)
                if not created:  # a creation is never answered 410, whatever the clock did
                    self._raise_if_expired(session)
                if session.kernel.closed:
                    self.epoch.check(seen)  # closed by a reset: say so, not "not found"
                    raise SessionNotFound(f"Session {session.id} not found.", param="session_id")
                result = self._run(session, code, files, seen)
                answered = True
                return session, result
        except BaseException:
            if created and not answered:
                # The caller never learns this session's id: it must not live on, or cost.
                self.end(session, "failed")
                self._ledger.cancel_session(session.id)
            raise

    def _run(self, session: Session, code: str, files: list[UploadedFile] | None,
             seen: int) -> ExecutionResult:
        limits = self.limits
        try:
            if files:
                self._write_files(session, files)
            with self.epoch.guard(seen):
                session.execute_count += 1
                session.last_execute_at = started_at = self._clock.now()
                self._ledger.count_execution(session.id)
            started = self._clock.monotonic()
            result = session.kernel.execute(
                code, timeout=limits.execution_timeout, grace=limits.interrupt_grace,
                max_output_bytes=limits.max_output_bytes)
            # A reset while the code ran stopped the kernel: the call ends with EmulatorReset
            # here, and neither its transcript cell nor its session outlives the barrier.
            with self.epoch.guard(seen):
                if self._transcripts is not None:
                    self._transcripts.record(session, Execution(
                        session.execute_count, code, tuple(files or ()), result,
                        started_at, self._clock.now(), self._clock.monotonic() - started))
                session.answered = True
            return result
        except KernelError as exc:
            raise KernelUnavailable(f"The session's kernel is not available: {exc}") from exc

    def _write_files(self, session: Session, files: list[UploadedFile]) -> None:
        """Uploads land beneath the session's working directory (its root, whatever the
        kernel's current directory is), written by the server (see :func:`write_files`), or by
        the kernel itself when a provisioner runs it on another machine."""
        if session.kernel.local:
            write_files(session.kernel.workdir, files)
            return
        result = session.kernel.execute(writer_code(files), silent=True,
                                        timeout=self.limits.execution_timeout,
                                        grace=self.limits.interrupt_grace)
        if result.status == "error":
            errors = [o["data"] for o in result.outputs if o["type"] == "error"]
            last = errors[-1].splitlines()[-1] if errors else "unknown error"
            raise InvalidRequest(f"Files could not be written: {last}", param="files")
        if result.status != "ok":
            raise KernelUnavailable("The kernel failed while writing the files.")

    # -- ending ----------------------------------------------------------------------------

    def end(self, session: Session, reason: str, *, background: bool = False) -> bool:
        """End a session: out of the registry, into the ledger, kernel stopped. Idempotent.

        With ``background`` the kernel is stopped by a thread of its own (stopping one takes
        about 0.1 s, which a reset between tests should not wait for); :meth:`wait_stopped`
        waits for those threads.
        """
        with self._lock:
            if self._live.get(session.id) is not session:
                return False
            del self._live[session.id]
        at = session.expires_at if reason == "expired" else self._clock.now()
        self._ledger.end_session(session.id, at, reason)
        if self._transcripts is not None:
            self._transcripts.close(session, reason, at)
        if not background:
            session.kernel.shutdown()
            return True
        stopper = threading.Thread(target=session.kernel.shutdown,
                                   name="tci-kernel-stop", daemon=True)
        with self._lock:
            self._stopping = [t for t in self._stopping if t.is_alive()] + [stopper]
        stopper.start()
        return True

    def wait_stopped(self) -> None:
        """Wait until every kernel stopped in the background has stopped."""
        with self._lock:
            stoppers, self._stopping = self._stopping, []
        for stopper in stoppers:
            stopper.join()

    def reap(self) -> int:
        """End every session whose ``expires_at`` has come; returns how many."""
        now = self._clock.now()
        with self._lock:  # a creation in flight is not reaped: it is answered first
            due = [s for s in self._live.values() if s.answered and now >= s.expires_at]
        return sum(self.end(s, "expired") for s in due)

    def end_all(self, reason: str, *, background: bool = False) -> int:
        """End every live session, creations in flight included (reset, shutdown)."""
        with self._lock:
            sessions = list(self._live.values())
        return sum(self.end(s, reason, background=background) for s in sessions)
