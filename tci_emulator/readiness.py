"""Readiness: whether a new session could be served now, and if not, why.

``GET /_emulator/health`` answers ``ready``, ``starting`` or ``degraded`` from this object, and
``tci-emulator wait`` polls it, so a CI script starts its tests only once sessions really work
(Kubernetes' readiness probes and LocalStack's ``/_localstack/health`` make the same split
between "the process answers" and "the service can serve").

Any component reports a problem under its own name and clears it when it is over::

    state.readiness.degrade("sandbox", "bubblewrap is not installed: ...")
    state.readiness.recover("sandbox")

Each problem is logged once when it appears (or its text changes) and once when it clears, so a
pool that retries a failing kernel start every few seconds does not flood the log, and the
first line says what went wrong.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

__all__ = ["Readiness", "Status"]

Status = Literal["ready", "starting", "degraded"]

_log = logging.getLogger("tci_emulator.readiness")


class Readiness:
    """Problems reported by components, plus whether the warm-up has finished.

    ``starting`` until :meth:`mark_started` (the first kernel is ready, or nothing is started
    ahead); ``degraded`` while any component has a problem, whatever the warm-up; else ``ready``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problems: dict[str, str] = {}
        self._started = False
        self._changed = threading.Condition(self._lock)

    def degrade(self, component: str, reason: str) -> None:
        """Report that ``component`` keeps new sessions from being served, and why."""
        with self._lock:
            if self._problems.get(component) == reason:
                return
            self._problems[component] = reason
            self._changed.notify_all()
        _log.error("not ready: %s: %s", component, reason)

    def recover(self, component: str) -> None:
        """The problem ``component`` reported is over (a no-op when it had none)."""
        with self._lock:
            if self._problems.pop(component, None) is None:
                return
            self._changed.notify_all()
        _log.warning("%s recovered", component)

    def mark_started(self) -> None:
        """The warm-up is over: a new session could be served now, problems aside."""
        with self._lock:
            self._started = True
            self._changed.notify_all()

    @property
    def status(self) -> Status:
        with self._lock:
            return self._status()

    def _status(self) -> Status:
        if self._problems:
            return "degraded"
        return "ready" if self._started else "starting"

    def snapshot(self) -> dict[str, Any]:
        """``status`` and ``reasons`` (``component: reason`` lines) for the health body."""
        with self._lock:
            return {"status": self._status(),
                    "reasons": [f"{name}: {text}" for name, text in sorted(self._problems.items())]}

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until ``ready`` (or ``timeout`` seconds); whether it is ready. Used by
        ``serve --ready-file``; condition waits, no polling."""
        with self._changed:
            return self._changed.wait_for(lambda: self._status() == "ready", timeout)
