"""Rows of the Enterprise Gateway launcher: local kernels against kernels on a gateway."""

from __future__ import annotations

import time
from collections.abc import Sequence

from .harness import Row, progress
from .run import POOL_SIZE, Run

__all__ = ["gateway_rows"]


def gateway_rows(run: Run, flags: Sequence[str]) -> None:
    """Local kernels against kernels on a Jupyter Enterprise Gateway (``flags``: the
    ``--kernel-gateway...`` settings), measured in turn by two emulators of this run: a new
    session from the warm pool, a cold start (no pool: the session's kernel is started for it)
    and same-session executions, interleaved."""
    count = run.plan.gateway_samples
    sides = {"local kernels": (), "gateway kernels": tuple(flags)}
    for what, pool in (("new session from the warm pool", str(POOL_SIZE)),
                       ("cold start: new session, empty pool", "0")):
        progress(f"gateway: {what}, local and gateway ({count} each)")
        measured = {}
        for side, extra in sides.items():
            server, client = run.serve(*extra, "--pool-size", pool)
            measured[side] = run.new_session_times(client, count)
            client.close()
            server.stop()
        local = Row.latency(f"gateway: {what}, local kernels", measured["local kernels"])
        remote = Row.latency(f"gateway: {what}, gateway kernels", measured["gateway kernels"],
                             note="info")
        remote.compared = f"{(remote.p50 or 0) - (local.p50 or 0):+.1f} ms vs local"
        run.rows += [local, remote]

    progress(f"gateway: same-session `x = 1`, local and gateway interleaved ({count * 10})")
    clients = {side: run.serve(*extra)[1] for side, extra in sides.items()}
    sessions = {side: client.execute("x = 0")["session_id"] for side, client in clients.items()}
    samples: dict[str, list[float]] = {side: [] for side in clients}
    for _ in range(count * 10):
        for side, client in clients.items():
            start = time.perf_counter()
            client.execute("x = 1", sessions[side])
            samples[side].append(time.perf_counter() - start)
    local = Row.latency("gateway: same session `x = 1`, local kernel", samples["local kernels"])
    remote = Row.latency("gateway: same session `x = 1`, gateway kernel",
                         samples["gateway kernels"], note="info")
    remote.compared = f"{(remote.p50 or 0) - (local.p50 or 0):+.2f} ms vs local"
    run.rows += [local, remote]
    for client in clients.values():
        client.reset()
