"""Rows of the forking launcher: new sessions at the rate RL and evaluation suites create them,
against raw jupyter-client cold starts at the same concurrency, and many idle live sessions
(their memory, and what they cost a session still working)."""

from __future__ import annotations

from functools import partial

from .client import must_create
from .harness import BenchError, Row, drive_for, fmt, percentile, progress, seconds
from .procfs import kernel_families, memory_info
from .raw import cold_start
from .run import POOL_SIZE, Run

__all__ = ["forking", "idle_sessions"]

FORK_CLIENTS = 8


def forking(run: Run) -> None:
    """The forking launcher at the rate RL and evaluation suites create sessions, each
    figure against raw jupyter-client cold starts at the same concurrency, in this run."""
    plan = run.plan
    concurrency = FORK_CLIENTS
    progress(f"raw cold starts, {concurrency} concurrent, for {plan.fork_seconds:g} s")

    def raw_session() -> None:
        kernel = run.raw.new()
        cold_start(kernel)
        run.raw.stop([kernel])

    raw_count, raw_time = drive_for([raw_session] * concurrency, plan.fork_seconds)
    raw_rate = raw_count / raw_time
    run.rows.append(Row(f"fork: raw jupyter-client cold start + first execute + stop, "
                        f"{concurrency} concurrent, {plan.fork_seconds:g} s (baseline)",
                        "sessions/s", value=raw_rate, n=raw_count))

    # Sessions end 10 s after creation, so the run holds a bounded number of kernels.
    server, client = run.launch("--kernel-launcher", "fork", "--pool-size", str(POOL_SIZE),
                                "--no-access-log", "--session-lifespan", "10",
                                "--reap-interval", "0.5", "--max-sessions", "2000")
    if client.health()["launcher"]["in_force"] != "fork":
        raise BenchError(f"the fork launcher is not in force: {client.health()['launcher']}")
    run.settle(client)
    progress(f"new sessions, {concurrency} concurrent clients, for {plan.fork_seconds:g} s")
    clients = run.clients(server, concurrency)
    count, elapsed = drive_for([partial(must_create, c) for c in clients],
                               plan.fork_seconds)
    rate = count / elapsed
    run.rows.append(Row(f"fork: new sessions over HTTP, {concurrency} concurrent clients, "
                        f"{plan.fork_seconds:g} s", "sessions/s", value=rate, n=count,
                        compared=f"{rate / raw_rate:.1f}x raw", target=">= 4x raw",
                        passed=rate >= 4 * raw_rate))
    client.reset()
    run.settle(client)
    progress(f"new sessions, sequential ({plan.fork_sequential})")
    samples = [seconds(partial(must_create, client)) for _ in range(plan.fork_sequential)]
    row = Row.latency(f"fork: new session over HTTP, sequential, sustained "
                      f"({plan.fork_sequential} calls)", samples, target="p50 <= 60 ms")
    row.passed = (row.p50 or float("inf")) <= 60
    row.compared = f"{run.cold_p50 / (row.p50 or float('nan')):.1f}x faster than cold p50"
    run.rows.append(row)
    client.reset()
    server.stop()
    idle_sessions(run)


def idle_sessions(run: Run) -> None:
    """Many idle live sessions: their memory, and what they cost a session still working."""
    plan = run.plan
    server, client = run.launch("--kernel-launcher", "fork", "--pool-size", str(POOL_SIZE),
                                "--no-access-log", "--max-sessions", str(plan.fork_idle + 10))
    run.settle(client)
    pairs = run.plan.same_session_pairs // 2
    progress(f"same session `x = 1` unloaded ({pairs})")
    session = client.execute("x = 0")["session_id"]
    for _ in range(20):
        client.execute("x = 1", session)
    unloaded = [seconds(partial(client.execute, "x = 1", session)) for _ in range(pairs)]
    progress(f"{plan.fork_idle} idle live sessions")
    for _ in range(plan.fork_idle - 1):
        must_create(client)
    run.settle(client, sessions=False)
    template = client.health()["launcher"]["template_pid"]
    families = kernel_families(template)
    uss = [sum(memory_info(p).uss for p in family) / 2**20 for family in families]
    total = sum(memory_info(p).pss for family in families for p in family)
    total += memory_info(template).pss + memory_info(server.pid).pss
    per_session = percentile(uss, 0.5)
    run.rows.append(Row("fork: idle session memory, unique (USS of its processes, median)",
                        "MB", value=per_session, n=len(uss), target="<= 15 MB",
                        passed=per_session <= 15))
    run.rows.append(Row(f"fork: {plan.fork_idle} idle live sessions, memory in all (PSS of "
                        "server, template and kernels)", "MB", value=total / 2**20,
                        n=len(families), target="<= 6144 MB",
                        passed=total / 2**20 <= 6144 and len(families) >= plan.fork_idle))
    progress(f"same session `x = 1` with {plan.fork_idle} idle sessions ({pairs})")
    loaded = [seconds(partial(client.execute, "x = 1", session)) for _ in range(pairs)]
    row = Row.latency(f"fork: same session `x = 1` with {plan.fork_idle} idle live sessions",
                      loaded, target="p50 <= 2x unloaded")
    base = Row.latency("", unloaded)
    ratio = (row.p50 or float("nan")) / (base.p50 or float("nan"))
    row.compared = f"{ratio:.2f}x unloaded p50 ({fmt(base.p50)} ms)"
    row.passed = ratio <= 2
    run.rows.append(row)
    client.reset()
    server.stop()
