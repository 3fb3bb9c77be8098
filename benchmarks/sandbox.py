"""Rows of the sandbox: bubblewrap namespaces on against off, in one run."""

from __future__ import annotations

import time
from contextlib import ExitStack
from functools import partial

from tci_emulator.emulator import Emulator

from .client import Client
from .harness import BenchError, Row, progress, seconds
from .run import Run

__all__ = ["sandbox_cost"]


def sandbox_cost(run: Run) -> None:
    """The sandbox on against off, in one run: a new session from the pool, a cold kernel
    start, and an execution in a session. Two in-process emulators, one per mode, take
    turns sample by sample, so a busy machine slows both sides alike."""
    n = max(run.plan.warm_sessions // 2, 3)
    modes = ("off", "namespaces")
    progress(f"sandbox off and on: pool, cold start, same session ({n} each)")
    found: dict[str, dict[str, list[float]]] = {m: {"pool": [], "cold": [], "same": []}
                                                for m in modes}
    with ExitStack() as stack:
        emulators = {m: stack.enter_context(Emulator(pool_size=1, sandbox=m,
                                                     kernel_name=run.kernel_name))
                     for m in modes}
        clients = {m: Client(emulators[m].url) for m in modes}
        for client in clients.values():
            stack.callback(client.close)
        for _ in range(n):
            for mode in modes:
                state = emulators[mode].server.state
                for other in emulators.values():  # nothing starting on either side
                    if not other.server.state.pool.wait_full(60):
                        raise BenchError("an in-process pool did not fill")
                found[mode]["pool"].append(seconds(partial(clients[mode].execute, "print(1)")))
                emulators[mode].reset()
                state.sessions.wait_stopped()
        for _ in range(n):
            for mode in modes:
                launcher = emulators[mode].server.state.launcher
                start = time.perf_counter()
                kernel = launcher.start()
                found[mode]["cold"].append(time.perf_counter() - start)
                kernel.shutdown()
        sessions = {m: clients[m].execute("x = 0")["session_id"] for m in modes}
        for _ in range(10 * n):
            for mode in modes:
                found[mode]["same"].append(
                    seconds(partial(clients[mode].execute, "x = 1", sessions[mode])))
    wanted = (("new session from the pool", "pool", 2.0),
              ("cold start: kernel to ready", "cold", 60.0),
              ("same session `x = 1`", "same", 0.5))
    for title, key, allowed in wanted:
        off = Row.latency(f"sandbox off: {title}", found["off"][key], note="info")
        on = Row.latency(f"sandbox namespaces: {title}", found["namespaces"][key],
                         target=f"<= +{allowed:g} ms at p50")
        extra = (on.p50 or 0) - (off.p50 or 0)
        on.compared = f"{extra:+.2f} ms vs off"
        on.passed = extra <= allowed
        run.rows += [off, on]
