"""The only reader of the time.

Session lifespans, timestamps and ids use :meth:`Clock.now`, which is the system's UTC time plus
an offset that tests move forward through the control plane, or a frozen instant. Durations that
must be real (execution time limits, latencies) use :meth:`Clock.monotonic`, which is never
adjusted. Nothing in the emulator sleeps to simulate the passing of time: moving the clock is
enough, and listeners (the session reaper) are told at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

__all__ = ["Clock", "LATEST", "MAX_ADVANCE_SECONDS", "format_timestamp", "parse_timestamp"]

# The latest time the clock may show, far enough from datetime.max for any lifespan.
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)
# No single move can be longer than from the epoch to LATEST: the range check of advance_seconds.
MAX_ADVANCE_SECONDS = (LATEST - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds()


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with 6-digit microseconds and ``+00:00``, as the real listings show."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset); naive input is taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


class Clock:
    """Adjustable wall clock: real UTC time, moved on by ``advance`` or pinned by ``freeze``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._frozen: datetime | None = None
        self._listeners: list[Callable[[], object]] = []

    def now(self) -> datetime:
        """The emulator's current time (aware, UTC)."""
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return datetime.now(timezone.utc) + self._offset

    @staticmethod
    def monotonic() -> float:
        """Real elapsed seconds for time limits and measurements; never adjusted."""
        return time.monotonic()

    @property
    def frozen(self) -> bool:
        """Whether the clock stands still until moved."""
        with self._lock:
            return self._frozen is not None

    def advance(self, seconds: float) -> datetime:
        """Move the time forward (never back) and notify listeners; returns the new time.

        Refuses to go past :data:`LATEST`: beyond it, adding a session's lifespan would leave
        ``datetime``'s range and every request would fail.
        """
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        try:
            step = timedelta(seconds=seconds)
            if self.now() + step > LATEST:
                raise OverflowError
        except OverflowError:
            raise ValueError(f"the clock cannot move past {LATEST.isoformat()}") from None
        with self._lock:
            if self._frozen is not None:
                self._frozen += step
            else:
                self._offset += step
        return self._changed()

    def set(self, moment: datetime) -> datetime:
        """Jump to ``moment`` (which must not be in the clock's past); keeps frozen state."""
        now = self.now()
        if moment < now:
            raise ValueError("the clock only moves forward")
        if self.frozen:
            return self._set_frozen(moment)
        return self.advance((moment - now).total_seconds())

    def _set_frozen(self, moment: datetime) -> datetime:
        if moment > LATEST:
            raise ValueError(f"the clock cannot move past {LATEST.isoformat()}")
        with self._lock:
            self._frozen = moment
        return self._changed()

    def freeze(self, frozen: bool = True) -> datetime:
        """Stop the time at its current value, or let it run again from there."""
        current = self.now()
        with self._lock:
            if frozen:
                self._frozen = current
            elif self._frozen is not None:
                self._offset = current - datetime.now(timezone.utc)
                self._frozen = None
        return current

    def reset(self) -> None:
        """Back to real time: no offset, not frozen."""
        with self._lock:
            self._offset = timedelta(0)
            self._frozen = None

    def subscribe(self, listener: Callable[[], object]) -> None:
        """Call ``listener`` after every move of the clock."""
        self._listeners.append(listener)

    def _changed(self) -> datetime:
        for listener in list(self._listeners):
            listener()
        return self.now()
