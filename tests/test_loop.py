"""The kernel loop thread: coroutines run there for any thread, and one that times out stops."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator

import pytest

from tci_emulator.kernels.loop import LoopThread


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def test_a_coroutine_runs_on_the_loop_thread_and_returns_its_result(loop: LoopThread) -> None:
    async def where() -> str:
        return threading.current_thread().name

    assert loop.run(where(), timeout=30) == "tci-kernel-loop"


def test_a_run_that_times_out_is_cancelled_on_the_loop(loop: LoopThread) -> None:
    """A kernel start that timed out must not go on to launch a process: on every Python,
    including 3.10 where ``concurrent.futures.TimeoutError`` is not the builtin one."""
    cancelled = threading.Event()
    started = threading.Event()

    async def slow_start() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(concurrent.futures.TimeoutError):
        loop.run(slow_start(), timeout=1.0)
    assert started.wait(30), "the coroutine never ran"
    assert cancelled.wait(30), "the timed-out coroutine was left running"


def test_an_exception_in_the_coroutine_reaches_the_caller(loop: LoopThread) -> None:
    async def fail() -> None:
        raise RuntimeError("no kernel")

    with pytest.raises(RuntimeError, match="no kernel"):
        loop.run(fail(), timeout=30)
