"""The warm kernel pool: ready kernels kept ahead of new sessions.

A new session is only as fast as the kernel it gets; starting one costs about half a second
here. The pool starts kernels before they are asked for, through the same
:class:`~.spawn.KernelLauncher` as any other start, so a pooled kernel is exactly
what an on-demand one would be.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .kernel import Kernel
from .spawn import KernelLauncher

__all__ = ["KernelPool"]

_log = logging.getLogger(__name__)


@dataclass
class _PoolState:
    ready: deque[Kernel] = field(default_factory=deque)
    starting: int = 0  # refills in flight: up to the launcher's concurrent_refills
    claimed: int = 0  # takers waiting for the refill in flight instead of starting their own
    on_demand: int = 0  # kernels takers are starting themselves (the pool was empty)
    failures: int = 0  # refills failed in a row (for the back-off)
    retry_at: float = 0.0  # no refill before this monotonic time
    filled_once: bool = False


class KernelPool:
    """Keeps ``size`` ready kernels ahead of demand, refilled one at a time in the background.

    Why this shape:

    - A taken kernel is never returned: it serves one session for its whole life, so no state,
      file or installed package can leak from one session to the next.
    - Refills run one at a time, and not while a taker is starting a kernel of its own: a
      kernel start is a burst of CPU, and on a small machine several at once would slow the
      executions already running and the cold start a user is waiting for.
    - A taker that finds the pool empty while a refill is in flight waits for that kernel (it
      is already part-way up) rather than starting a second one next to it; any further taker
      starts its own kernel in its own thread, so a burst of new sessions starts kernels
      concurrently instead of queueing behind the single refill thread.
    - Only ready kernels are handed out: a pooled kernel is fully started and preloaded, and
      one that died while waiting in the pool is discarded on the way out.
    """

    def __init__(self, launcher: KernelLauncher, size: int,
                 on_error: Callable[[BaseException], None] | None = None,
                 on_start: Callable[[BaseException | None], None] | None = None) -> None:
        """``on_error`` gets each failed refill; ``on_start`` the outcome of every kernel start,
        refill or on-demand (``None`` for a success), for readiness."""
        self._launcher = launcher
        self._size = max(size, 0)
        self._on_start = on_start
        self._state = _PoolState()
        self._cond = threading.Condition()
        self._closed = False
        self._on_error = on_error
        self._created = launcher.clock.monotonic()
        # One refill at a time, unless the launcher's starts are cheap enough to overlap.
        self._threads = [threading.Thread(target=self._refill_forever, name="tci-kernel-pool",
                                          daemon=True)
                         for _ in range(max(getattr(launcher, "concurrent_refills", 1), 1))]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        """How many ready kernels the pool keeps."""
        return self._size

    def take(self) -> Kernel:
        """A ready kernel for a new session: a warm one if any, else one started now."""
        while True:
            kernel = self._take_warm()
            if kernel is None:
                break
            if kernel.is_alive():
                return kernel
            kernel.shutdown()  # died while waiting in the pool; take another
        try:
            started = self._launcher.start()
        except Exception as exc:
            self._report_start(exc)
            raise
        finally:
            with self._cond:
                self._state.on_demand -= 1
                self._cond.notify_all()
        self._report_start(None)
        return started

    def _report_start(self, error: BaseException | None) -> None:
        if self._on_start is not None and not self._closed:
            self._on_start(error)

    def _take_warm(self) -> Kernel | None:
        """Pop a ready kernel, waiting for an unclaimed refill in flight; else count an
        on-demand start (the caller then starts its own kernel) and return ``None``."""
        state = self._state
        with self._cond:
            if not state.ready and state.starting > state.claimed and not self._closed:
                state.claimed += 1
                try:
                    while not state.ready and state.starting and not self._closed:
                        self._cond.wait()
                finally:
                    state.claimed -= 1
            if state.ready:
                kernel = state.ready.popleft()
                self._cond.notify_all()  # wake the refill thread
                return kernel
            state.on_demand += 1
            return None

    def status(self) -> dict[str, int]:
        """Counts for the health endpoint: warm kernels, refills and on-demand starts."""
        with self._cond:
            return {"size": self._size, "ready": len(self._state.ready),
                    "starting": self._state.starting, "on_demand": self._state.on_demand}

    def wait_full(self, timeout: float) -> bool:
        """Block until the pool holds ``size`` ready kernels (for start-up and benchmarks)."""
        clock = self._launcher.clock
        deadline = clock.monotonic() + timeout
        with self._cond:
            while len(self._state.ready) < self._size and not self._closed:
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return len(self._state.ready) >= self._size

    def drain(self) -> None:
        """Shut down the warm kernels (the pool refills afterwards unless closed)."""
        with self._cond:
            kernels = list(self._state.ready)
            self._state.ready.clear()
            self._cond.notify_all()
        for kernel in kernels:
            kernel.shutdown()

    def close(self) -> None:
        """Stop refilling and shut down the warm kernels."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=self._launcher.start_timeout + 5)
        self.drain()

    def _refill_due(self) -> bool:
        state = self._state
        return (len(state.ready) + state.starting < self._size and not state.on_demand
                and self._launcher.clock.monotonic() >= state.retry_at)

    def _refill_forever(self) -> None:
        clock = self._launcher.clock
        state = self._state
        while True:
            with self._cond:
                while not self._closed and not self._refill_due():
                    backoff = state.retry_at - clock.monotonic()
                    self._cond.wait(backoff if backoff > 0 else None)
                if self._closed:
                    return
                state.starting += 1
            try:
                kernel: Kernel | None = self._launcher.start()
                error: BaseException | None = None
            except Exception as exc:  # noqa: BLE001 - reported, then retried after a back-off
                kernel, error = None, exc
            with self._cond:
                state.starting -= 1
                if kernel is not None and not self._closed:
                    state.ready.append(kernel)
                    state.failures = 0
                    kernel = None
                elif error is not None:
                    state.failures += 1
                    state.retry_at = clock.monotonic() + min(2.0 ** (state.failures - 1), 30.0)
                just_filled = len(state.ready) >= self._size and not state.filled_once
                state.filled_once = state.filled_once or just_filled
                self._cond.notify_all()
            if kernel is not None:  # started while closing
                kernel.shutdown()
            self._report_start(error)
            if error is not None and self._on_error is not None and not self._closed:
                self._on_error(error)
            if just_filled:
                _log.info("kernel pool ready: %d warm kernel%s (%s) in %.2f s", self._size,
                          "" if self._size == 1 else "s", self._launcher.kernel_name,
                          clock.monotonic() - self._created)
