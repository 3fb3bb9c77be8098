"""Rows of the front door: the emulator over HTTP against raw jupyter-client on the same work.

A cold kernel start (the baseline), ``tci-emulator serve``'s start-up, new sessions from the warm
pool, same-session executions (the server's overhead per call), executions while the pool
refills, keep-alive throughput with four clients, executions with a thousand stalled connections
open, and bursts of new sessions. The emulator runs as ``tci-emulator serve`` in a child process,
as users run it.
"""

from __future__ import annotations

import resource
import socket
import time
from functools import partial
from urllib.parse import urlsplit

from contract_tests.process import ServeProcess

from .client import Client, new_session_ok
from .harness import Row, drive_for, parallel, percentile, poll, progress, timed
from .procfs import cpu_seconds
from .raw import cold_start
from .run import POOL_SIZE, Run

__all__ = ["cold", "server_start", "new_sessions", "same_session", "during_refill",
           "throughput", "stalled", "burst"]


def cold(run: Run) -> None:
    """The baseline: a jupyter-client kernel started, then its first execute, one at a time."""
    progress(f"cold starts with jupyter-client ({run.plan.cold})")
    samples = []
    for _ in range(run.plan.cold):
        kernel = run.raw.new()
        start = time.perf_counter()
        kernel.start().execute("print(1)")
        samples.append(time.perf_counter() - start)
        run.raw.stop([kernel])
    row = Row.latency("cold start: jupyter-client kernel to ready + first execute (baseline)",
                      samples)
    run.cold_p50 = row.p50 or float("nan")
    run.rows.append(row)


def _pool_ready(client: Client) -> bool:
    return bool(client.health()["pool"]["ready"] == POOL_SIZE)


def server_start(run: Run) -> None:
    """``tci-emulator serve`` from launch to a health answer, and to a full warm pool."""
    progress(f"tci-emulator serve start-ups ({run.plan.server_starts})")
    to_health, to_pool = [], []
    for _ in range(run.plan.server_starts):
        start = time.perf_counter()
        server = ServeProcess(["--pool-size", str(POOL_SIZE), "--no-access-log",
                               "--kernel-name", run.kernel_name])
        try:
            server.start()
            client = Client(server.url)
            try:
                client.health()
                to_health.append(time.perf_counter() - start)
                poll(partial(_pool_ready, client), 60, "the first pool fill")
                to_pool.append(time.perf_counter() - start)
            finally:
                client.close()
        finally:
            server.stop()
    run.rows.append(Row.latency("server start: `tci-emulator serve --port 0` to health ok",
                                to_health, target="< 1000 ms",
                                passed=percentile(to_health, 0.5) < 1.0))
    run.rows.append(Row.latency(f"server start: to pool ready ({POOL_SIZE} warm kernels)",
                                to_pool, target="< 2000 ms",
                                passed=percentile(to_pool, 0.5) < 2.0))


def new_sessions(run: Run, client: Client) -> None:
    """New sessions from a warm pool against a cold start, then back to back faster than
    the pool refills."""
    plan = run.plan
    progress(f"new sessions with a warm pool ({plan.warm_sessions})")
    warm = run.new_session_times(client, plan.warm_sessions)
    row = Row.latency("new session over HTTP, warm pool (`print(1)`, no session_id)", warm,
                      target=">= 12x faster than cold")
    speedup = run.cold_p50 / (row.p50 or float("nan"))
    row.compared = f"{speedup:.0f}x faster than cold p50"
    row.passed = speedup >= 12
    run.rows.append(row)

    progress(f"new sessions back to back, faster than the refill ({plan.back_to_back})")
    run.settle(client)
    rushed = []
    for _ in range(plan.back_to_back):
        start = time.perf_counter()
        client.execute("print(1)")
        rushed.append(time.perf_counter() - start)
    client.reset()
    row = Row.latency("new session over HTTP, back to back (pool drained, refill racing)",
                      rushed, note="info")
    row.compared = f"{run.cold_p50 / (row.p50 or float('nan')):.1f}x faster than cold p50"
    run.rows.append(row)


def same_session(run: Run, client: Client) -> None:
    """The server's overhead per call: ``x = 1`` in one session over HTTP and on a raw
    kernel, interleaved call by call."""
    pairs = run.plan.same_session_pairs
    progress(f"same-session `x = 1`, HTTP and jupyter-client interleaved ({pairs} pairs)")
    run.settle(client)
    session = client.execute("x = 0")["session_id"]
    kernel = run.raw.new().start()
    for _ in range(20):  # warm both paths up
        client.execute("x = 1", session)
        kernel.execute("x = 1")
    via_http, direct = [], []
    for _ in range(pairs):
        start = time.perf_counter()
        client.execute("x = 1", session)
        middle = time.perf_counter()
        kernel.execute("x = 1")
        via_http.append(middle - start)
        direct.append(time.perf_counter() - middle)
    run.raw.stop([kernel])
    client.reset()
    raw_row = Row.latency("same session `x = 1`: jupyter-client direct", direct)
    row = Row.latency("same session `x = 1`: over HTTP", via_http,
                      target="<= +0.5 ms at p50")
    overhead = (row.p50 or 0) - (raw_row.p50 or 0)
    row.compared = f"{overhead:+.2f} ms ({(row.p50 or 0) / (raw_row.p50 or 1):.2f}x)"
    row.passed = overhead <= 0.5
    run.rows += [raw_row, row]


def during_refill(run: Run, server: ServeProcess, client: Client) -> None:
    """Same-session executions while the pool refills: one start at a time leaves a core."""
    rounds = max(run.plan.burst_rounds + 1, 2)
    progress(f"same-session `x = 1` while the pool refills ({rounds} refills)")
    run.settle(client)
    session = client.execute("x = 0")["session_id"]
    poll(lambda: client.health()["pool"]["ready"] == POOL_SIZE, 60, "the pool to refill")
    [other] = run.clients(server, 1)
    samples: list[float] = []
    for _ in range(rounds):
        for _ in range(POOL_SIZE):  # empty the pool: refills begin
            other.execute("print(1)")
        refilled = False
        while not refilled:
            for _ in range(10):
                start = time.perf_counter()
                client.execute("x = 1", session)
                samples.append(time.perf_counter() - start)
            pool = client.health()["pool"]
            refilled = pool["ready"] == POOL_SIZE and not pool["starting"]
    client.reset()
    quiet = next(r for r in run.rows if r.name == "same session `x = 1`: over HTTP")
    row = Row.latency("same session `x = 1`: over HTTP while the pool refills", samples,
                      note="info")
    row.compared = f"p50 {(row.p50 or 0) - (quiet.p50 or 0):+.2f} ms vs pool idle"
    run.rows.append(row)


def throughput(run: Run, server: ServeProcess, client: Client) -> None:
    """Keep-alive throughput: four clients each on a session of its own against four
    threads each on a raw kernel, side after side."""
    plan = run.plan
    progress(f"throughput, 4 clients x {plan.throughput_seconds:g} s x "
             f"{plan.throughput_rounds} rounds per side")
    run.settle(client)
    clients = run.clients(server, 4)
    sessions = [each.execute("x = 0")["session_id"] for each in clients]
    kernels = parallel([run.raw.new().start for _ in range(4)])
    emulator_count = raw_count = 0
    emulator_time = raw_time = 0.0

    server_cpu = 0.0  # the server process's own CPU time (kernels are its children)
    for _ in range(plan.throughput_rounds):
        cpu_before = cpu_seconds(server.pid)
        count, elapsed = drive_for([partial(c.execute, "x = 1", s)
                                    for c, s in zip(clients, sessions, strict=True)],
                                   plan.throughput_seconds)
        server_cpu += cpu_seconds(server.pid) - cpu_before
        emulator_count, emulator_time = emulator_count + count, emulator_time + elapsed
        count, elapsed = drive_for([partial(k.execute, "x = 1") for k in kernels],
                                   plan.throughput_seconds)
        raw_count, raw_time = raw_count + count, raw_time + elapsed
    run.raw.stop(kernels)
    client.reset()
    raw_rate = raw_count / raw_time
    rate = emulator_count / emulator_time
    run.rows.append(Row("throughput: 4 threads x own kernel, jupyter-client direct",
                        "exec/s", value=raw_rate, n=raw_count))
    run.rows.append(Row("throughput: 4 clients x own session, over HTTP (keep-alive)",
                        "exec/s", value=rate, n=emulator_count,
                        compared=f"{rate / raw_rate:.0%} of raw", target=">= 90% of raw",
                        passed=rate >= 0.9 * raw_rate))
    # CPU time, unlike a rate, hardly moves with the load other processes put on the machine.
    run.rows.append(Row("throughput: server CPU per execution over HTTP (keep-alive)",
                        "ms", value=server_cpu / emulator_count * 1000, n=emulator_count,
                        note="info"))


def stalled(run: Run, server: ServeProcess, client: Client) -> None:
    """Same-session executions while 1000 connections sit on half a request (slowloris)."""
    count = run.plan.stalled
    progress(f"same-session `x = 1` with {count} stalled connections open")
    run.settle(client)
    session = client.execute("x = 0")["session_id"]
    parts = urlsplit(server.url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)

    def timed(samples: int) -> list[float]:
        timings = []
        for _ in range(samples):
            start = time.perf_counter()
            client.execute("x = 1", session)
            timings.append(time.perf_counter() - start)
        return timings

    timed(20)  # warm up
    quiet = timed(run.plan.stalled_samples)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(address, timeout=30)
            sockets.append(sock)
            sock.sendall(b"GET /v1/tci/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
        client.health()
        loaded = timed(run.plan.stalled_samples)
        client.health()
    finally:
        for sock in sockets:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    client.reset()
    row = Row.latency(f"same session `x = 1`: over HTTP, {count} stalled connections open",
                      loaded, target="p50 <= 2x without them")
    ratio = (row.p50 or 0) / (percentile(quiet, 0.5) * 1e3)
    row.compared = f"{ratio:.2f}x p50 without them ({percentile(quiet, 0.5) * 1e3:.2f} ms)"
    row.passed = ratio <= 2.0
    run.rows.append(row)


def burst(run: Run, server: ServeProcess, client: Client) -> None:
    """Bursts of new sessions at once against as many raw cold starts at once."""
    plan = run.plan
    size = plan.burst
    progress(f"bursts of {size} new sessions, {plan.burst_rounds} rounds per side")
    emulator_walls, raw_walls = [], []
    emulator_latencies: list[float] = []
    raw_latencies: list[float] = []
    failures = 0
    for _ in range(plan.burst_rounds):
        run.settle(client)
        clients = [Client(server.url) for _ in range(size)]
        try:
            results = parallel([timed(partial(new_session_ok, c)) for c in clients])
        finally:
            for each in clients:
                each.close()
        failures += sum(1 for _, _, ok in results if not ok)
        emulator_walls.append(max(end for _, end, _ in results)
                              - min(start for start, _, _ in results))
        emulator_latencies += [end - start for start, end, _ in results]
        client.reset()

        run.settle(client)  # the emulator idle while the raw side runs
        kernels = [run.raw.new() for _ in range(size)]
        results = parallel([timed(partial(cold_start, k)) for k in kernels])
        raw_walls.append(max(end for _, end, _ in results)
                         - min(start for start, _, _ in results))
        raw_latencies += [end - start for start, end, _ in results]
        run.raw.stop(kernels)
    raw_wall, wall = percentile(raw_walls, 0.5), percentile(emulator_walls, 0.5)
    run.rows.append(Row.latency(f"burst of {size}: raw kernel starts + first execute, "
                                "concurrent (value: wall time)", raw_latencies,
                                value=raw_wall * 1e3))
    row = Row.latency(f"burst of {size}: new sessions over HTTP, concurrent (value: wall time)",
                      emulator_latencies, value=wall * 1e3,
                      target="wall <= raw wall, 0 failed")
    row.compared = (f"wall {wall:.2f} s vs {raw_wall:.2f} s raw; "
                    f"{failures} failed")
    row.passed = wall <= raw_wall and failures == 0
    run.rows.append(row)
