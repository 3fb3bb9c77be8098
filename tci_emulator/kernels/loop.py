"""The one asyncio loop thread on which jupyter-client's async kernel managers run.

jupyter-client's synchronous wrappers create an event loop per calling thread, which does not
suit a threaded HTTP server: every launcher owns one :class:`LoopThread` instead, and request
threads hand it coroutines and wait for their results.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """One asyncio loop in a daemon thread, for jupyter_client's async kernel management."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="tci-kernel-loop",
                                        daemon=True)
        self._thread.start()

    def run(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        """Run ``awaitable`` on the loop and wait for its result from any other thread.

        At ``timeout`` the coroutine is cancelled, not left running: a start that timed out
        must not go on to launch a process nobody waits for. (``Future.result`` raises
        ``concurrent.futures.TimeoutError``, which is the builtin ``TimeoutError`` only from
        Python 3.11 on, so that is the name caught.)
        """
        async def wrapper() -> T:
            return await awaitable
        future = asyncio.run_coroutine_threadsafe(wrapper(), self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        """Stop the loop and its thread (coroutines still pending are dropped)."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()
