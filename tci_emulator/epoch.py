"""Resets as barriers: a generation number that every in-flight request checks.

A request notes the generation it arrived in. A reset moves the generation on while holding the
barrier exclusively; each step of a request that leaves a trace (the charge of a new session, the
session joining the registry, the count of an execution, its transcript, its journal entry) is
committed while holding the barrier shared and only if the generation is still the one the
request arrived in. So nothing a request did before a reset can appear after it: either the step
was committed before the reset (and the reset clears it) or it is refused with
:class:`~tci_emulator.errors.EmulatorReset`.

Shared holds are short (a dict insert, a SQLite row, a transcript cell); nothing slow, such as
running code or starting a kernel, is ever done while holding the barrier, so a reset waits only
for commits already under way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import EmulatorReset

__all__ = ["Epoch"]


class Epoch:
    """The generation counter of one emulator, with a shared/exclusive barrier around it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._value = 0
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0  # new commits wait behind a reset, so it cannot starve
        self._in_flight = 0  # requests between enter() and leave()

    @property
    def value(self) -> int:
        """The current generation (it grows by one at every reset)."""
        return self._value

    def enter(self) -> int:
        """Note a request's arrival; returns its generation (pair with :meth:`leave`)."""
        with self._cond:
            self._in_flight += 1
            return self._value

    def leave(self) -> None:
        """Note that a request entered with :meth:`enter` is done."""
        with self._cond:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        """Requests that have arrived and are not done: what a reset now would cut."""
        return self._in_flight

    def current(self, seen: int) -> bool:
        """Whether no reset happened since generation ``seen`` was noted."""
        return self._value == seen

    def check(self, seen: int) -> None:
        """Raise :class:`EmulatorReset` if a reset happened since ``seen`` (no commit follows)."""
        if self._value != seen:
            raise EmulatorReset()

    @contextmanager
    def guard(self, seen: int) -> Iterator[None]:
        """Hold the barrier shared for one commit; raises :class:`EmulatorReset` if a reset
        happened since ``seen``. A reset waits until the commit is done."""
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            if self._value != seen:
                raise EmulatorReset()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def advance(self) -> Iterator[int]:
        """Hold the barrier exclusively and move to the next generation (a reset runs inside:
        no commit of an earlier generation can land during or after it)."""
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
            self._value += 1
            value = self._value
        try:
            yield value
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
