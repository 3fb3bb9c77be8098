"""One lifecycle for everything that runs an emulator: start, stop, ``with``, stop once.

:class:`~tci_emulator.Emulator`, the server thread under it
(:class:`~tci_emulator.server.EmulatorServer`) and the repository's handle on a
``tci-emulator serve`` child process (``ServeProcess`` in ``contract_tests/process.py``) each say
only how they start and how they stop; this base gives them the same rules, so a caller never has
to know which one it holds:

- :meth:`Lifecycle.start` returns the object (``Emulator().start()``); starting a running one
  does nothing.
- A start that fails stops whatever it had started before the error is raised, so a failed start
  leaves no thread, process or kernel behind.
- :meth:`Lifecycle.stop` does its work once per start: a second stop, a stop racing another
  thread's stop, or a stop of what never started returns at once. Stopping from a pytest
  finalizer, a signal handler's unwinding and ``__exit__`` in turn is therefore safe.
- ``with`` starts and stops.

A stopped object may be started again.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Generic, TypeVar

__all__ = ["Lifecycle"]

R = TypeVar("R")  # what stopping reports (a child process's exit code, or None)
L = TypeVar("L", bound="Lifecycle[Any]")


class Lifecycle(Generic[R]):
    """Base of the emulator's runnable objects: subclasses implement :meth:`_start` and
    :meth:`_stop` (which must tolerate a half-done start) and call ``super().__init__()``."""

    def __init__(self) -> None:
        self._lifecycle_lock = threading.Lock()
        self._running = False

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> R:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """Whether it was started and not stopped since."""
        return self._running

    def start(self: L) -> L:
        """Start, unless running; returns ``self``. A failure stops what was started, then
        raises."""
        with self._lifecycle_lock:
            if self._running:
                return self
            try:
                self._start()
            except BaseException:
                self._stop()
                raise
            self._running = True
        return self

    def _claim_stop(self) -> bool:
        """Whether this caller is the one to stop: true once per start, for the first caller."""
        with self._lifecycle_lock:
            running, self._running = self._running, False
        return running

    def stop(self) -> R | None:
        """Stop what :meth:`start` started, once; ``None`` when there was nothing to stop."""
        return self._stop() if self._claim_stop() else None

    def __enter__(self: L) -> L:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
