"""Rows of the in-process costs: the per-request fault hook with no rules, ``Emulator.reset()``,
and what a pytest run waits for (an in-process emulator started, then its first execute)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from tci_emulator.app import create_app
from tci_emulator.config import Config
from tci_emulator.emulator import Emulator
from tci_emulator.http.fault_hook import apply_faults

from .client import KEY, Client
from .harness import BenchError, Row, progress
from .run import Run

__all__ = ["fault_hook", "first_execute", "reset_cost"]


def fault_hook(run: Run) -> None:
    """The fault hook's cost per request with no rules, timed in batches."""
    row = Row("fault hook with no rules, per request", "us", target="< 1 ms")
    progress(f"fault hook ({run.plan.hook_calls} calls)")
    call, description = _fault_hook(run.stack)
    batch = 100
    samples = []
    for _ in range(run.plan.hook_calls // batch):
        start = time.perf_counter()
        for _ in range(batch):
            call()
        samples.append((time.perf_counter() - start) / batch)
    row = Row.latency(row.name, samples, unit="us", target=row.target,
                      compared=description)
    row.n = run.plan.hook_calls
    row.passed = (row.p50 or 0) < 1000
    run.rows.append(row)


def first_execute(run: Run) -> None:
    """What a pytest run waits for: an in-process emulator started, then its first call."""
    progress(f"in-process emulator start to first execute ({run.plan.resets // 4 + 1})")
    samples = []
    for _ in range(run.plan.resets // 4 + 1):
        start = time.perf_counter()
        with Emulator(pool_size=1) as emulator:
            client = Client(emulator.url)
            try:
                client.execute("print(1)")
                samples.append(time.perf_counter() - start)
            finally:
                client.close()
    run.rows.append(Row.latency("plugin: Emulator() start to its first execute", samples,
                                note="info"))


def reset_cost(run: Run, emulator: Emulator) -> None:
    """``Emulator.reset()`` with two live sessions: until it returns, and until their
    kernels have stopped."""
    progress(f"Emulator.reset() with 2 live sessions ({run.plan.resets})")
    state = emulator.server.state
    client = Client(emulator.url)
    returned, stopped = [], []
    try:
        for _ in range(run.plan.resets):
            if not state.pool.wait_full(60):
                raise BenchError("the in-process pool did not fill")
            client.execute("print(1)")
            client.execute("print(1)")
            start = time.perf_counter()
            emulator.reset()
            returned.append(time.perf_counter() - start)
            state.sessions.wait_stopped()
            stopped.append(time.perf_counter() - start)
    finally:
        client.close()
    run.rows.append(Row.latency("Emulator.reset() with 2 live sessions (returns)", returned,
                                note="info"))
    run.rows.append(Row.latency("Emulator.reset() with 2 live sessions (kernels stopped)",
                                stopped, note="info"))


def _fault_hook(stack: ExitStack) -> tuple[Callable[[], Any], str]:
    """The per-request fault hook with no rules as a no-argument call.

    The hook runs as the app runs it: ``apply_faults`` inside a request context of an
    ``execute`` request, on an app of its own with no kernels.
    """
    app = create_app(Config(port=0, pool_size=0, access_log=False))
    state = app.extensions["tci_emulator"]
    stack.callback(state.close)
    context = app.test_request_context("/v1/tci/execute", method="POST",
                                       json={"code": "1", "language": "python"},
                                       headers={"Authorization": f"Bearer {KEY}"})
    context.push()
    stack.callback(context.pop)

    def call() -> Any:
        return apply_faults(state.faults, state.clock)

    if call() is not None:
        raise BenchError("a fault fired with no rules")
    return call, "apply_faults per execute request, in-process"
