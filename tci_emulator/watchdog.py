"""The per-kernel memory cap: a watchdog that kills a kernel whose resident memory passes it.

An address-space limit (``RLIMIT_AS``/``RLIMIT_DATA``) counts reservations, not use: OpenBLAS
alone reserves some 80 MB at ``import numpy``, so a 256 MB limit would break ordinary imports
while a kernel really uses 60 MB. The cap here is on what a kernel really holds, its resident
set plus that of its children (``!python`` and friends), read from ``/proc`` every
``interval`` seconds, like a container's memory limit. A kernel over the cap is killed (its
whole process group) and the execution's error item names the cause; the session continues in a
fresh kernel. Between two samples a fast allocation can overshoot the cap by what it allocates in
``interval`` (hundreds of MB at worst); ``docs/limits.md`` says so.

In the sandbox (:mod:`tci_emulator.kernels.sandbox`) the watched pid is bubblewrap's, and every
process of the session is one of its descendants: a child that double-forks or calls ``setsid`` is
re-parented to the PID namespace's init, which is bubblewrap's child, not to the host's init. So
the cap counts every process of the session, and killing the kernel ends them all.

Works for kernels with a local pid on Linux; elsewhere the cap is not enforced (and says so).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["MemoryWatchdog", "first_descendants", "resident_bytes", "PAGE_SIZE"]

_log = logging.getLogger(__name__)

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            found.extend(int(child) for child in text.split())
    except (OSError, ValueError):
        pass
    return found


def resident_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, in bytes (0 if gone)."""
    total = 0
    stack = [pid]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * PAGE_SIZE
        except (OSError, ValueError, IndexError):
            continue
        stack.extend(_children(current))
    return total


def first_descendants(pid: int, depth: int) -> list[int]:
    """The first child of ``pid``, its first child, and so on, ``depth`` levels down (fewer if
    the chain is shorter): how a sandboxed kernel is found below bubblewrap and its init."""
    chain: list[int] = []
    current = pid
    for _ in range(depth):
        children = _children(current)
        if not children:
            break
        current = min(children)
        chain.append(current)
    return chain


OnExceeded = Callable[[int], None]


class MemoryWatchdog:
    """Samples registered processes and calls their handler once they pass ``limit_bytes``."""

    def __init__(self, limit_bytes: int, *, interval: float = 0.05) -> None:
        self.limit_bytes = limit_bytes
        self._interval = interval
        self._watched: dict[int, OnExceeded] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tci-memory-watchdog", daemon=True)
        self._thread.start()

    @staticmethod
    def supported() -> bool:
        """Whether this system exposes per-process memory in ``/proc``."""
        return Path(f"/proc/{os.getpid()}/statm").exists()

    def watch(self, pid: int, on_exceeded: OnExceeded) -> None:
        """Watch ``pid``; ``on_exceeded(resident_bytes)`` is called once if it passes the cap."""
        with self._lock:
            self._watched[pid] = on_exceeded

    def unwatch(self, pid: int) -> None:
        """Stop watching ``pid`` (its kernel is stopping or being replaced)."""
        with self._lock:
            self._watched.pop(pid, None)

    def close(self) -> None:
        """Stop sampling (the emulator is shutting down)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        # Event.wait paces the sampling; it is not a stand-in for anything else.
        while not self._stop.wait(self._interval):
            with self._lock:
                watched = list(self._watched.items())
            for pid, handler in watched:
                used = resident_bytes(pid)
                if used > self.limit_bytes:
                    self.unwatch(pid)
                    try:
                        handler(used)
                    except Exception:  # noqa: BLE001 - e.g. the kernel was stopped meanwhile
                        _log.exception("memory cap: could not stop process %d", pid)
