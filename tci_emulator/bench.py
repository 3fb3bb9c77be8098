"""Benchmark: the emulator against raw jupyter-client kernels, in one run on one machine.

    python -m tci_emulator.bench [--json FILE] [--quick]      (or: make bench)

Why a benchmark and not tests: timings depend on the machine and its load, so they are measured
and printed (with a PASS/FAIL against each target), never asserted in the test suite. Every
figure is compared with a baseline measured in the same run, so a slow or busy machine shifts
both sides alike.

The baseline is jupyter-client used directly (``KernelManager`` + ``BlockingKernelClient``),
which is why this module imports jupyter_client next to :mod:`tci_emulator.kernels`. Raw kernels
get the same transport (IPC) and the same IPython settings as the emulator's, so a difference is
the emulator's doing, not a configuration's. The emulator runs as ``tci-emulator serve`` in a
child process (as users run it) and is driven over loopback HTTP by ``http.client``, one
keep-alive connection per client thread.

Every kernel, server and directory the benchmark starts is stopped or removed before it exits,
also when it fails or is interrupted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import resource
import shutil
import socket
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from . import __version__
from .emulator import Emulator
from .kernels import IPYTHON_SETTINGS
from .process import ServeProcess

__all__ = ["main", "Row"]

KEY = "tci-bench-key"
POOL_SIZE = 2
WHO_AM_I = "import os; print(os.getpid(), os.getcwd())"
# Raw kernels get the emulator's IPython settings on their command line.
RAW_KERNEL_ARGS = [f"--{name}={value}" for name, value in IPYTHON_SETTINGS.items()]


class BenchError(RuntimeError):
    """A request or kernel failed during the benchmark: the run is not valid."""


# -- figures --------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Row:
    """One line of the table: a measurement, its baseline comparison and its target verdict."""

    name: str
    unit: str  # "ms", "us", "exec/s", "MB", "s"
    p50: float | None = None
    p95: float | None = None
    value: float | None = None  # a single figure (throughput, wall time, memory)
    n: int = 0
    compared: str = ""
    target: str = ""
    passed: bool | None = None
    note: str = ""

    @classmethod
    def latency(cls, name: str, seconds: Sequence[float], unit: str = "ms", **kw: Any) -> Row:
        scale = {"ms": 1e3, "us": 1e6, "s": 1.0}[unit]
        return cls(name, unit, p50=percentile(seconds, 0.5) * scale,
                   p95=percentile(seconds, 0.95) * scale, n=len(seconds), **kw)

    @property
    def result(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "FAIL")


def _fmt(number: float | None) -> str:
    if number is None:
        return "-"
    if number != number:  # NaN
        return "n/a"
    if abs(number) >= 100:
        return f"{number:,.0f}"
    if abs(number) >= 10:
        return f"{number:.1f}"
    return f"{number:.2f}"


def render(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (readable in a terminal, pasteable into the README)."""
    header = ["measurement", "p50", "p95", "value", "unit", "n", "compared with baseline",
              "target", "result"]
    lines = [header, ["---"] * len(header)]
    for row in rows:
        lines.append([row.name, _fmt(row.p50), _fmt(row.p95), _fmt(row.value), row.unit,
                      str(row.n or "-"), row.compared or "-", row.target or "-",
                      row.result or ("-" if not row.note else row.note)])
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def rss_mb(pid: int) -> float:
    """Resident set size of a local process, in MB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a local process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_pid(ancestor: int, inner_pid: int, cwd: str) -> int:
    """The host's pid of the kernel that reports ``inner_pid`` and ``cwd`` about itself: the
    same number unsandboxed, another one in a sandbox's PID namespace (``NSpid`` in /proc
    lists a process's pid in each namespace it is in, the innermost last)."""
    pending = [ancestor]
    while pending:
        pid = pending.pop()
        try:
            # Each thread lists the children it started: the server starts them from several.
            children = [child for task in Path(f"/proc/{pid}/task").iterdir()
                        for child in (task / "children").read_text().split()]
            status = Path(f"/proc/{pid}/status").read_text()
            here = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        nspid = next((line.split()[1:] for line in status.splitlines()
                      if line.startswith("NSpid:")), [])
        if nspid and int(nspid[-1]) == inner_pid and here == cwd.strip():
            return pid
        pending += [int(child) for child in children]
    raise BenchError(f"no process below {ancestor} is pid {inner_pid} in {cwd.strip()}")


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a local process since start or :func:`reset_peak`, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmHWM for pid {pid}")


def reset_peak(pid: int) -> None:
    """Start a process's peak resident size over from its current size (``clear_refs`` 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    """One execute call on a connection of its own: (status, raw body)."""
    client = Client(url)
    try:
        data = json.dumps(body).encode()
        client.conn.request("POST", "/v1/tci/execute", body=data, headers={
            "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        response = client.conn.getresponse()
        return response.status, response.read()
    finally:
        client.close()


def huge_session_ids(url: str, count: int = 25, size: int = 20 * 2**20) -> list[tuple[int, bytes]]:
    """Send ``count`` executes naming a ``size``-character session_id, one after another."""
    return [_post(url, {"code": "1", "language": "python", "session_id": "s" * size})
            for _ in range(count)]


def concurrent_prints(url: str, count: int = 3, size: int = 300_000_000) -> list[tuple[int, bytes]]:
    """``count`` new sessions at once, each printing ``size`` characters."""
    body = {"code": f"print('x' * {size})", "language": "python"}
    return _parallel([partial(_post, url, body) for _ in range(count)])


# -- the two sides --------------------------------------------------------------------------

class RawKernel:
    """A kernel the plain jupyter-client way: ``KernelManager`` + ``BlockingKernelClient``."""

    def __init__(self, workdir: Path, kernel_name: str) -> None:
        from jupyter_client.manager import KernelManager

        self.dir = Path(tempfile.mkdtemp(prefix="raw-", dir=workdir))
        self.manager: Any = KernelManager(kernel_name=kernel_name, transport="ipc",
                                          ip=str(self.dir / "ipc"),
                                          connection_file=str(self.dir / "connection.json"))
        self.client: Any = None

    def start(self) -> RawKernel:
        """Start the process, wait until ready (jupyter-client's own wait_for_ready)."""
        self.manager.start_kernel(extra_arguments=RAW_KERNEL_ARGS, cwd=str(self.dir))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)
        return self

    def execute(self, code: str) -> None:
        reply = self.client.execute_interactive(code, output_hook=lambda msg: None, timeout=120)
        if reply["content"]["status"] != "ok":
            raise BenchError(f"raw kernel failed to run {code!r}: {reply['content']}")

    @property
    def pid(self) -> int:
        return int(self.manager.provisioner.process.pid)

    def stop(self) -> None:
        try:
            if self.client is not None:
                self.client.stop_channels()
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=True)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class RawKernels:
    """Every raw kernel of the run, so that all of them are stopped whatever happens."""

    def __init__(self, workdir: Path, kernel_name: str) -> None:
        self.workdir = workdir
        self.kernel_name = kernel_name
        self._all: list[RawKernel] = []
        self._lock = threading.Lock()

    def new(self) -> RawKernel:
        kernel = RawKernel(self.workdir, self.kernel_name)
        with self._lock:
            self._all.append(kernel)
        return kernel

    def stop(self, kernels: Sequence[RawKernel] | None = None) -> None:
        """Stop ``kernels`` (default: all), in parallel; each stop costs about 0.1 s."""
        with self._lock:
            chosen = list(self._all if kernels is None else kernels)
            self._all = [k for k in self._all if k not in chosen]
        _parallel([k.stop for k in chosen])


class Client:
    """One keep-alive HTTP connection to the emulator, with the bench key."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                               timeout=300)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {KEY}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()  # reconnects on the next call
            raise
        return response.status, json.loads(raw)

    def execute(self, code: str, session_id: str | None = None) -> dict[str, Any]:
        """Run code; returns ``data`` of the success envelope or raises :class:`BenchError`."""
        body: dict[str, Any] = {"code": code, "language": "python"}
        if session_id is not None:
            body["session_id"] = session_id
        status, reply = self.call("POST", "/v1/tci/execute", body)
        if status != 200 or reply.get("errors"):
            raise BenchError(f"execute answered {status}: {reply}")
        data: dict[str, Any] = reply["data"]
        if any(o["type"] == "error" for o in data["outputs"]):
            raise BenchError(f"execute failed in the kernel: {data['outputs']}")
        return data

    def health(self) -> dict[str, Any]:
        status, body = self.call("GET", "/_emulator/health")
        if status != 200:
            raise BenchError(f"health answered {status}: {body}")
        result: dict[str, Any] = body
        return result

    def reset(self) -> None:
        status, body = self.call("POST", "/_emulator/reset")
        if status != 200:
            raise BenchError(f"reset answered {status}: {body}")

    def close(self) -> None:
        self.conn.close()


def _stdout(data: dict[str, Any]) -> str:
    return "".join(o["data"] for o in data["outputs"] if o["type"] == "stdout")


def _new_session_ok(client: Client) -> bool:
    """Create a session with ``print(1)``; whether it answered as it should."""
    try:
        return _stdout(client.execute("print(1)")) == "1\n"
    except (BenchError, OSError, http.client.HTTPException):
        return False


def _cold_start(kernel: RawKernel) -> None:
    kernel.start().execute("print(1)")


def _parallel(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released together; returns results (re-raises the first error)."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(calls)) if calls else None

    def run(index: int) -> None:
        try:
            assert barrier is not None
            barrier.wait()
            results[index] = calls[index]()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _timed(call: Callable[[], Any]) -> Callable[[], tuple[float, float, Any]]:
    """Wrap ``call`` to return (start, end, result) on the perf counter."""
    def run() -> tuple[float, float, Any]:
        start = time.perf_counter()
        result = call()
        return start, time.perf_counter(), result
    return run


# -- the measurements -----------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """Sample counts: the full run stays within a few minutes on 2 cores."""

    cold: int
    server_starts: int
    warm_sessions: int
    back_to_back: int
    same_session_pairs: int
    throughput_seconds: float
    throughput_rounds: int
    burst: int
    burst_rounds: int
    resets: int
    hook_calls: int
    gateway_samples: int = 20
    stalled: int = 1000
    stalled_samples: int = 200
    fork_seconds: float = 20.0  # 8 concurrent clients creating sessions, each side
    fork_sequential: int = 200  # new sessions one after another
    fork_idle: int = 300  # idle live sessions held at once


FULL = Plan(cold=20, server_starts=8, warm_sessions=40, back_to_back=12, same_session_pairs=600,
            throughput_seconds=5.0, throughput_rounds=3, burst=20, burst_rounds=3, resets=20,
            hook_calls=20000)
QUICK = Plan(cold=4, server_starts=2, warm_sessions=6, back_to_back=4, same_session_pairs=80,
             throughput_seconds=2.0, throughput_rounds=1, burst=8, burst_rounds=1, resets=3,
             hook_calls=2000, gateway_samples=4, stalled_samples=40, fork_seconds=4.0,
             fork_sequential=30, fork_idle=30)


class Bench:
    """Runs every measurement in order and collects the rows."""

    def __init__(self, plan: Plan, stack: ExitStack, kernel_name: str = "python3") -> None:
        self.plan = plan
        self.kernel_name = kernel_name
        workdir = Path(tempfile.mkdtemp(prefix="tci-bench-"))
        stack.callback(shutil.rmtree, workdir, True)
        self.raw = RawKernels(workdir, kernel_name)
        stack.callback(self.raw.stop)
        self.stack = stack
        self.rows: list[Row] = []
        self.cold_p50 = float("nan")

    def serve(self, *extra: str) -> tuple[ServeProcess, Client]:
        server = ServeProcess(["--pool-size", str(POOL_SIZE), "--no-access-log",
                               "--kernel-name", self.kernel_name, "--max-sessions", "200",
                               "--client-timeout", "300", *extra])  # stalled connections stay stalled
        self.stack.callback(server.stop)
        server.start()
        client = Client(server.url)
        self.stack.callback(client.close)
        return server, client

    @staticmethod
    def settle(client: Client) -> None:
        """Wait until no session is left and the pool is full (nothing starting or stopping)."""
        def settled() -> bool:
            health = client.health()
            pool = health["pool"]
            return (health["sessions"] == 0 and pool["ready"] == pool["size"]
                    and health["kernels"] == pool["size"] and not pool["starting"])
        _poll(settled, 120, "the pool to refill")

    # -- cold start (baseline) -------------------------------------------------------------

    def cold(self) -> None:
        _progress(f"cold starts with jupyter-client ({self.plan.cold})")
        samples = []
        for _ in range(self.plan.cold):
            kernel = self.raw.new()
            start = time.perf_counter()
            kernel.start().execute("print(1)")
            samples.append(time.perf_counter() - start)
            self.raw.stop([kernel])
        row = Row.latency("cold start: jupyter-client kernel to ready + first execute (baseline)",
                          samples)
        self.cold_p50 = row.p50 or float("nan")
        self.rows.append(row)

    # -- server start ----------------------------------------------------------------------

    def server_start(self) -> None:
        _progress(f"tci-emulator serve start-ups ({self.plan.server_starts})")
        to_health, to_pool = [], []
        for _ in range(self.plan.server_starts):
            start = time.perf_counter()
            server = ServeProcess(["--pool-size", str(POOL_SIZE), "--no-access-log",
                                   "--kernel-name", self.kernel_name])
            try:
                server.start()
                client = Client(server.url)
                try:
                    client.health()
                    to_health.append(time.perf_counter() - start)
                    _poll(lambda: client.health()["pool"]["ready"] == POOL_SIZE, 60,
                          "the first pool fill")
                    to_pool.append(time.perf_counter() - start)
                finally:
                    client.close()
            finally:
                server.stop()
        self.rows.append(Row.latency("server start: `tci-emulator serve --port 0` to health ok",
                                     to_health, target="< 1000 ms",
                                     passed=percentile(to_health, 0.5) < 1.0))
        self.rows.append(Row.latency(f"server start: to pool ready ({POOL_SIZE} warm kernels)",
                                     to_pool, target="< 2000 ms",
                                     passed=percentile(to_pool, 0.5) < 2.0))

    # -- new sessions ----------------------------------------------------------------------

    def new_session_times(self, client: Client, count: int) -> list[float]:
        """Seconds of ``count`` new sessions (``print(1)``), each on a settled emulator."""
        samples = []
        for _ in range(count):
            self.settle(client)
            start = time.perf_counter()
            data = client.execute("print(1)")
            samples.append(time.perf_counter() - start)
            if _stdout(data) != "1\n":
                raise BenchError(f"unexpected output {data['outputs']}")
            client.reset()
        return samples

    def new_sessions(self, client: Client) -> None:
        plan = self.plan
        _progress(f"new sessions with a warm pool ({plan.warm_sessions})")
        warm = self.new_session_times(client, plan.warm_sessions)
        row = Row.latency("new session over HTTP, warm pool (`print(1)`, no session_id)", warm,
                          target=">= 12x faster than cold")
        speedup = self.cold_p50 / (row.p50 or float("nan"))
        row.compared = f"{speedup:.0f}x faster than cold p50"
        row.passed = speedup >= 12
        self.rows.append(row)

        _progress(f"new sessions back to back, faster than the refill ({plan.back_to_back})")
        self.settle(client)
        rushed = []
        for _ in range(plan.back_to_back):
            start = time.perf_counter()
            client.execute("print(1)")
            rushed.append(time.perf_counter() - start)
        client.reset()
        row = Row.latency("new session over HTTP, back to back (pool drained, refill racing)",
                          rushed, note="info")
        row.compared = f"{self.cold_p50 / (row.p50 or float('nan')):.1f}x faster than cold p50"
        self.rows.append(row)

    # -- same session ----------------------------------------------------------------------

    def same_session(self, client: Client) -> None:
        pairs = self.plan.same_session_pairs
        _progress(f"same-session `x = 1`, HTTP and jupyter-client interleaved ({pairs} pairs)")
        self.settle(client)
        session = client.execute("x = 0")["session_id"]
        kernel = self.raw.new().start()
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
        self.raw.stop([kernel])
        client.reset()
        raw_row = Row.latency("same session `x = 1`: jupyter-client direct", direct)
        row = Row.latency("same session `x = 1`: over HTTP", via_http,
                          target="<= +0.5 ms at p50")
        overhead = (row.p50 or 0) - (raw_row.p50 or 0)
        row.compared = f"{overhead:+.2f} ms ({(row.p50 or 0) / (raw_row.p50 or 1):.2f}x)"
        row.passed = overhead <= 0.5
        self.rows += [raw_row, row]

    def during_refill(self, server: ServeProcess, client: Client) -> None:
        """Same-session executions while the pool refills: one start at a time leaves a core."""
        rounds = max(self.plan.burst_rounds + 1, 2)
        _progress(f"same-session `x = 1` while the pool refills ({rounds} refills)")
        self.settle(client)
        session = client.execute("x = 0")["session_id"]
        _poll(lambda: client.health()["pool"]["ready"] == POOL_SIZE, 60, "the pool to refill")
        other = Client(server.url)
        self.stack.callback(other.close)
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
        quiet = next(r for r in self.rows if r.name == "same session `x = 1`: over HTTP")
        row = Row.latency("same session `x = 1`: over HTTP while the pool refills", samples,
                          note="info")
        row.compared = f"p50 {(row.p50 or 0) - (quiet.p50 or 0):+.2f} ms vs pool idle"
        self.rows.append(row)

    # -- throughput ------------------------------------------------------------------------

    def throughput(self, server: ServeProcess, client: Client) -> None:
        plan = self.plan
        _progress(f"throughput, 4 clients x {plan.throughput_seconds:g} s x "
                  f"{plan.throughput_rounds} rounds per side")
        self.settle(client)
        clients = [Client(server.url) for _ in range(4)]
        for each in clients:
            self.stack.callback(each.close)
        sessions = [each.execute("x = 0")["session_id"] for each in clients]
        kernels = _parallel([self.raw.new().start for _ in range(4)])
        emulator_count = raw_count = 0
        emulator_time = raw_time = 0.0

        def drive(step: Callable[[], Any], stop_at: list[float]) -> int:
            count = 0
            while time.perf_counter() < stop_at[0]:
                step()
                count += 1
            return count

        def run_side(steps: list[Callable[[], Any]]) -> tuple[int, float]:
            stop_at = [time.perf_counter() + plan.throughput_seconds]
            start = time.perf_counter()
            counts = _parallel([partial(drive, step, stop_at) for step in steps])
            return sum(counts), time.perf_counter() - start

        server_cpu = 0.0  # the server process's own CPU time (kernels are its children)
        for _ in range(plan.throughput_rounds):
            cpu_before = cpu_seconds(server.pid)
            count, elapsed = run_side([partial(c.execute, "x = 1", s)
                                       for c, s in zip(clients, sessions)])
            server_cpu += cpu_seconds(server.pid) - cpu_before
            emulator_count, emulator_time = emulator_count + count, emulator_time + elapsed
            count, elapsed = run_side([partial(k.execute, "x = 1") for k in kernels])
            raw_count, raw_time = raw_count + count, raw_time + elapsed
        self.raw.stop(kernels)
        client.reset()
        raw_rate = raw_count / raw_time
        rate = emulator_count / emulator_time
        self.rows.append(Row("throughput: 4 threads x own kernel, jupyter-client direct",
                             "exec/s", value=raw_rate, n=raw_count))
        self.rows.append(Row("throughput: 4 clients x own session, over HTTP (keep-alive)",
                             "exec/s", value=rate, n=emulator_count,
                             compared=f"{rate / raw_rate:.0%} of raw", target=">= 90% of raw",
                             passed=rate >= 0.9 * raw_rate))
        # CPU time, unlike a rate, hardly moves with the load other processes put on the machine.
        self.rows.append(Row("throughput: server CPU per execution over HTTP (keep-alive)",
                             "ms", value=server_cpu / emulator_count * 1000, n=emulator_count,
                             note="info"))

    # -- stalled connections ---------------------------------------------------------------

    def stalled(self, server: ServeProcess, client: Client) -> None:
        """Same-session executions while 1000 connections sit on half a request (slowloris)."""
        count = self.plan.stalled
        _progress(f"same-session `x = 1` with {count} stalled connections open")
        self.settle(client)
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
        quiet = timed(self.plan.stalled_samples)
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
            loaded = timed(self.plan.stalled_samples)
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
        self.rows.append(row)

    # -- burst -----------------------------------------------------------------------------

    def burst(self, server: ServeProcess, client: Client) -> None:
        plan = self.plan
        size = plan.burst
        _progress(f"bursts of {size} new sessions, {plan.burst_rounds} rounds per side")
        emulator_walls, raw_walls = [], []
        emulator_latencies: list[float] = []
        raw_latencies: list[float] = []
        failures = 0
        for _ in range(plan.burst_rounds):
            self.settle(client)
            clients = [Client(server.url) for _ in range(size)]
            try:
                results = _parallel([_timed(partial(_new_session_ok, c)) for c in clients])
            finally:
                for each in clients:
                    each.close()
            failures += sum(1 for _, _, ok in results if not ok)
            emulator_walls.append(max(end for _, end, _ in results)
                                  - min(start for start, _, _ in results))
            emulator_latencies += [end - start for start, end, _ in results]
            client.reset()

            self.settle(client)  # the emulator idle while the raw side runs
            kernels = [self.raw.new() for _ in range(size)]
            results = _parallel([_timed(partial(_cold_start, k)) for k in kernels])
            raw_walls.append(max(end for _, end, _ in results)
                             - min(start for start, _, _ in results))
            raw_latencies += [end - start for start, end, _ in results]
            self.raw.stop(kernels)
        raw_wall, wall = percentile(raw_walls, 0.5), percentile(emulator_walls, 0.5)
        self.rows.append(Row.latency(f"burst of {size}: raw kernel starts + first execute, "
                                     "concurrent (value: wall time)", raw_latencies,
                                     value=raw_wall * 1e3))
        row = Row.latency(f"burst of {size}: new sessions over HTTP, concurrent (value: wall time)",
                          emulator_latencies, value=wall * 1e3,
                          target="wall <= raw wall, 0 failed")
        row.compared = (f"wall {wall:.2f} s vs {raw_wall:.2f} s raw; "
                        f"{failures} failed")
        row.passed = wall <= raw_wall and failures == 0
        self.rows.append(row)

    # -- memory ----------------------------------------------------------------------------

    def memory(self, server: ServeProcess, client: Client) -> None:
        _progress("memory")
        self.settle(client)
        inner_pid, cwd = _stdout(client.execute(WHO_AM_I)).split(" ", 1)
        kernel_pid = host_pid(server.pid, int(inner_pid), cwd)
        kernel = self.raw.new().start()
        kernel.execute("import os")
        raw_rss = rss_mb(kernel.pid)
        session_rss = rss_mb(kernel_pid)
        self.raw.stop([kernel])
        client.reset()
        self.settle(client)
        self.rows.append(Row("memory: RSS of an idle session's kernel", "MB", value=session_rss,
                             n=1, compared=f"raw kernel {raw_rss:.0f} MB"))
        self.rows.append(Row(f"memory: RSS of the server (idle, pool of {POOL_SIZE})", "MB",
                             value=rss_mb(server.pid), n=1,
                             compared="kernels not included"))

    def bounded_memory(self) -> None:
        """Peak server memory under the two hostile loads that once multiplied it: a 20 MB
        session_id sent 25 times (715 MB kept before) and three concurrent 300 MB prints
        (2.4 GB peak before, with each reply capped at 8 MB)."""
        _progress("server memory under a 20 MB session_id x 25 and 3 concurrent 300 MB prints")
        cap = 8 * 2**20
        server = ServeProcess(["--pool-size", "3", "--no-access-log", "--kernel-name",
                               self.kernel_name, "--max-output-bytes", str(cap)])
        self.stack.callback(server.stop)
        server.start()
        client = Client(server.url)
        self.stack.callback(client.close)
        self.settle(client)
        idle = rss_mb(server.pid)
        reset_peak(server.pid)
        if {status for status, _ in huge_session_ids(server.url)} != {400}:
            raise BenchError("a 20 MB session_id was not refused with 400")
        ids_peak, ids_after = peak_rss_mb(server.pid) - idle, rss_mb(server.pid) - idle
        self.rows.append(Row("memory: server peak over idle, 20 MB session_id x 25", "MB",
                             value=ids_peak, n=25, target="< 100 MB kept",
                             compared=f"{ids_after:.0f} MB kept after; 715 MB kept before",
                             passed=ids_after < 100))
        client.reset()
        self.settle(client)
        idle = rss_mb(server.pid)
        reset_peak(server.pid)
        if {status for status, _ in concurrent_prints(server.url)} != {200}:
            raise BenchError("a 300 MB print did not answer 200")
        per_execution = (peak_rss_mb(server.pid) - idle) / 3
        limit = 2 * cap / 2**20 + 40  # the constant: buffers of one reply, measured
        self.rows.append(Row("memory: server peak over idle per execution, 3 concurrent "
                             "300 MB prints (cap 8 MB)", "MB", value=per_execution, n=3,
                             target=f"<= 2 x cap + 40 MB = {limit:.0f} MB",
                             compared="2.4 GB in all before", passed=per_execution <= limit))
        client.reset()
        server.stop()

    # -- in-process costs ------------------------------------------------------------------

    def fault_hook(self) -> None:
        row = Row("fault hook with no rules, per request", "us", target="< 1 ms")
        _progress(f"fault hook ({self.plan.hook_calls} calls)")
        call, description = _fault_hook(self.stack)
        batch = 100
        samples = []
        for _ in range(self.plan.hook_calls // batch):
            start = time.perf_counter()
            for _ in range(batch):
                call()
            samples.append((time.perf_counter() - start) / batch)
        row = Row.latency(row.name, samples, unit="us", target=row.target,
                          compared=description)
        row.n = self.plan.hook_calls
        row.passed = (row.p50 or 0) < 1000
        self.rows.append(row)

    def first_execute(self) -> None:
        """What a pytest run waits for: an in-process emulator started, then its first call."""
        _progress(f"in-process emulator start to first execute ({self.plan.resets // 4 + 1})")
        samples = []
        for _ in range(self.plan.resets // 4 + 1):
            start = time.perf_counter()
            with Emulator(pool_size=1) as emulator:
                client = Client(emulator.url)
                try:
                    client.execute("print(1)")
                    samples.append(time.perf_counter() - start)
                finally:
                    client.close()
        self.rows.append(Row.latency("plugin: Emulator() start to its first execute", samples,
                                     note="info"))

    def reset_cost(self, emulator: Emulator) -> None:
        _progress(f"Emulator.reset() with 2 live sessions ({self.plan.resets})")
        state = emulator.server.state
        client = Client(emulator.url)
        returned, stopped = [], []
        try:
            for _ in range(self.plan.resets):
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
        self.rows.append(Row.latency("Emulator.reset() with 2 live sessions (returns)", returned,
                                     note="info"))
        self.rows.append(Row.latency("Emulator.reset() with 2 live sessions (kernels stopped)",
                                     stopped, note="info"))


    def sandbox_cost(self) -> None:
        """The sandbox on against off, in one run: a new session from the pool, a cold kernel
        start, and an execution in a session. Two in-process emulators, one per mode, take
        turns sample by sample, so a busy machine slows both sides alike."""
        n = max(self.plan.warm_sessions // 2, 3)
        modes = ("off", "namespaces")
        _progress(f"sandbox off and on: pool, cold start, same session ({n} each)")
        found: dict[str, dict[str, list[float]]] = {m: {"pool": [], "cold": [], "same": []}
                                                    for m in modes}
        with ExitStack() as stack:
            emulators = {m: stack.enter_context(Emulator(pool_size=1, sandbox=m,
                                                         kernel_name=self.kernel_name))
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
                    found[mode]["pool"].append(_seconds(lambda: clients[mode].execute("print(1)")))
                    emulators[mode].reset()
                    state.sessions.wait_stopped()
            for _ in range(n):
                for mode in modes:
                    launcher = emulators[mode].server.state.launcher
                    start = time.perf_counter()
                    kernel = launcher.start()
                    found[mode]["cold"].append(time.perf_counter() - start)
                    launcher.discard(kernel)
            sessions = {m: clients[m].execute("x = 0")["session_id"] for m in modes}
            for _ in range(10 * n):
                for mode in modes:
                    found[mode]["same"].append(
                        _seconds(lambda: clients[mode].execute("x = 1", sessions[mode])))
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
            self.rows += [off, on]


    def forking(self) -> None:
        """The forking launcher at the rate RL and evaluation suites create sessions, each
        figure against raw jupyter-client cold starts at the same concurrency, in this run."""
        plan = self.plan
        concurrency = FORK_CLIENTS
        _progress(f"raw cold starts, {concurrency} concurrent, for {plan.fork_seconds:g} s")

        def raw_session() -> None:
            kernel = self.raw.new()
            _cold_start(kernel)
            self.raw.stop([kernel])

        raw_count, raw_time = _drive_for([raw_session] * concurrency, plan.fork_seconds)
        raw_rate = raw_count / raw_time
        self.rows.append(Row(f"fork: raw jupyter-client cold start + first execute + stop, "
                             f"{concurrency} concurrent, {plan.fork_seconds:g} s (baseline)",
                             "sessions/s", value=raw_rate, n=raw_count))

        # Sessions end 10 s after creation, so the run holds a bounded number of kernels.
        server = ServeProcess(["--kernel-launcher", "fork", "--pool-size", str(POOL_SIZE),
                               "--no-access-log", "--session-lifespan", "10",
                               "--reap-interval", "0.5", "--max-sessions", "2000"])
        self.stack.callback(server.stop)
        server.start()
        client = Client(server.url)
        self.stack.callback(client.close)
        if client.health()["launcher"]["in_force"] != "fork":
            raise BenchError(f"the fork launcher is not in force: {client.health()['launcher']}")
        self.settle(client)
        _progress(f"new sessions, {concurrency} concurrent clients, for {plan.fork_seconds:g} s")
        clients = [Client(server.url) for _ in range(concurrency)]
        for each in clients:
            self.stack.callback(each.close)
        count, elapsed = _drive_for([partial(_must_create, c) for c in clients],
                                    plan.fork_seconds)
        rate = count / elapsed
        self.rows.append(Row(f"fork: new sessions over HTTP, {concurrency} concurrent clients, "
                             f"{plan.fork_seconds:g} s", "sessions/s", value=rate, n=count,
                             compared=f"{rate / raw_rate:.1f}x raw", target=">= 4x raw",
                             passed=rate >= 4 * raw_rate))
        client.reset()
        self.settle(client)
        _progress(f"new sessions, sequential ({plan.fork_sequential})")
        samples = [_seconds(partial(_must_create, client)) for _ in range(plan.fork_sequential)]
        row = Row.latency(f"fork: new session over HTTP, sequential, sustained "
                          f"({plan.fork_sequential} calls)", samples, target="p50 <= 60 ms")
        row.passed = (row.p50 or float("inf")) <= 60
        row.compared = f"{self.cold_p50 / (row.p50 or float('nan')):.1f}x faster than cold p50"
        self.rows.append(row)
        client.reset()
        server.stop()
        self.idle_sessions()

    def idle_sessions(self) -> None:
        """Many idle live sessions: their memory, and what they cost a session still working."""
        plan = self.plan
        server = ServeProcess(["--kernel-launcher", "fork", "--pool-size", str(POOL_SIZE),
                               "--no-access-log", "--max-sessions", str(plan.fork_idle + 10)])
        self.stack.callback(server.stop)
        server.start()
        client = Client(server.url)
        self.stack.callback(client.close)
        self.settle(client)
        pairs = self.plan.same_session_pairs // 2
        _progress(f"same session `x = 1` unloaded ({pairs})")
        session = client.execute("x = 0")["session_id"]
        for _ in range(20):
            client.execute("x = 1", session)
        unloaded = [_seconds(partial(client.execute, "x = 1", session)) for _ in range(pairs)]
        _progress(f"{plan.fork_idle} idle live sessions")
        for _ in range(plan.fork_idle - 1):
            _must_create(client)
        self.settle_pool(client)
        template = client.health()["launcher"]["template_pid"]
        families = _families(template)
        uss = [sum(_memory(p).uss for p in family) / 2**20 for family in families]
        total = sum(_memory(p).pss for family in families for p in family)
        total += _memory(template).pss + _memory(server.pid).pss
        per_session = percentile(uss, 0.5)
        self.rows.append(Row("fork: idle session memory, unique (USS of its processes, median)",
                             "MB", value=per_session, n=len(uss), target="<= 15 MB",
                             passed=per_session <= 15))
        self.rows.append(Row(f"fork: {plan.fork_idle} idle live sessions, memory in all (PSS of "
                             "server, template and kernels)", "MB", value=total / 2**20,
                             n=len(families), target="<= 6144 MB",
                             passed=total / 2**20 <= 6144 and len(families) >= plan.fork_idle))
        _progress(f"same session `x = 1` with {plan.fork_idle} idle sessions ({pairs})")
        loaded = [_seconds(partial(client.execute, "x = 1", session)) for _ in range(pairs)]
        row = Row.latency(f"fork: same session `x = 1` with {plan.fork_idle} idle live sessions",
                          loaded, target="p50 <= 2x unloaded")
        base = Row.latency("", unloaded)
        ratio = (row.p50 or float("nan")) / (base.p50 or float("nan"))
        row.compared = f"{ratio:.2f}x unloaded p50 ({_fmt(base.p50)} ms)"
        row.passed = ratio <= 2
        self.rows.append(row)
        client.reset()
        server.stop()

    @staticmethod
    def settle_pool(client: Client) -> None:
        """Wait until the pool is full again (sessions stay)."""
        def full() -> bool:
            pool = client.health()["pool"]
            return bool(pool["ready"] == pool["size"] and not pool["starting"])
        _poll(full, 120, "the pool to refill")


FORK_CLIENTS = 8


def _must_create(client: Client) -> None:
    """A new session running ``print(1)``, or :class:`BenchError`."""
    if _stdout(client.execute("print(1)")) != "1\n":
        raise BenchError("a new session did not print 1")


def _drive_for(steps: Sequence[Callable[[], Any]], seconds: float) -> tuple[int, float]:
    """Each step in its own thread, over and over for ``seconds``: (calls done, elapsed)."""
    stop_at = time.perf_counter() + seconds

    def drive(step: Callable[[], Any]) -> int:
        count = 0
        while time.perf_counter() < stop_at:
            step()
            count += 1
        return count

    start = time.perf_counter()
    counts = _parallel([partial(drive, step) for step in steps])
    return sum(counts), time.perf_counter() - start


def _families(template: int) -> list[list[Any]]:
    """Each process the template forked (one per kernel) with its descendants (a sandboxed
    kernel is three processes: the outer one, the namespace's init and the kernel)."""
    import psutil  # type: ignore[import-untyped]  # ipykernel depends on it
    return [[child, *child.children(recursive=True)]
            for child in psutil.Process(template).children()]


def _memory(process: Any) -> Any:
    import psutil  # type: ignore[import-untyped]  # ipykernel depends on it
    if isinstance(process, int):
        process = psutil.Process(process)
    return process.memory_full_info()


def _seconds(call: Callable[[], Any]) -> float:
    start, end, _ = _timed(call)()
    return end - start


def gateway_rows(bench: Bench, flags: Sequence[str]) -> None:
    """Local kernels against kernels on a Jupyter Enterprise Gateway (``flags``: the
    ``--kernel-gateway...`` settings), measured in turn by two emulators of this run: a new
    session from the warm pool, a cold start (no pool: the session's kernel is started for it)
    and same-session executions, interleaved."""
    count = bench.plan.gateway_samples
    sides = {"local kernels": (), "gateway kernels": tuple(flags)}
    for what, pool in (("new session from the warm pool", str(POOL_SIZE)),
                       ("cold start: new session, empty pool", "0")):
        _progress(f"gateway: {what}, local and gateway ({count} each)")
        measured = {}
        for side, extra in sides.items():
            server, client = bench.serve(*extra, "--pool-size", pool)
            measured[side] = bench.new_session_times(client, count)
            client.close()
            server.stop()
        local = Row.latency(f"gateway: {what}, local kernels", measured["local kernels"])
        remote = Row.latency(f"gateway: {what}, gateway kernels", measured["gateway kernels"],
                             note="info")
        remote.compared = f"{(remote.p50 or 0) - (local.p50 or 0):+.1f} ms vs local"
        bench.rows += [local, remote]

    _progress(f"gateway: same-session `x = 1`, local and gateway interleaved ({count * 10})")
    clients = {side: bench.serve(*extra)[1] for side, extra in sides.items()}
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
    bench.rows += [local, remote]
    for client in clients.values():
        client.reset()


def _fault_hook(stack: ExitStack) -> tuple[Callable[[], Any], str]:
    """The per-request fault hook with no rules as a no-argument call.

    The hook runs as the app runs it: ``apply_faults`` inside a request context of an
    ``execute`` request, on an app of its own with no kernels.
    """
    from .app import create_app
    from .config import Config
    from .faults import apply_faults

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


def run(plan: Plan, kernel_name: str = "python3", gateway: Sequence[str] = ()) -> list[Row]:
    """Every measurement, in one run; everything started is stopped before returning.
    ``gateway`` (``--kernel-gateway URL ...`` flags) adds the local-vs-gateway rows."""
    with ExitStack() as stack:
        bench = Bench(plan, stack, kernel_name)
        bench.cold()
        bench.server_start()
        _progress("starting the emulator under test")
        server, client = bench.serve()
        bench.settle(client)
        bench.new_sessions(client)
        # The HTTP layer's rows compare the same kernels on both sides: the emulator's spawned
        # and unsandboxed, like raw jupyter-client's, so a difference is the server's own. The
        # sandbox and the forking launcher are measured by rows of their own below.
        _progress("starting an emulator whose kernels are raw jupyter-client's kind")
        same_kind, same_kind_client = bench.serve("--sandbox", "off", "--kernel-launcher", "spawn")
        bench.settle(same_kind_client)
        bench.same_session(same_kind_client)
        bench.during_refill(same_kind, same_kind_client)
        bench.throughput(same_kind, same_kind_client)
        bench.stalled(same_kind, same_kind_client)
        same_kind_client.close()
        same_kind.stop()
        bench.burst(server, client)
        bench.memory(server, client)
        server.stop()
        bench.bounded_memory()
        _progress("in-process emulator for the fault hook and reset")
        emulator = stack.enter_context(Emulator(pool_size=POOL_SIZE, kernel_name=kernel_name))
        bench.fault_hook()
        bench.reset_cost(emulator)
        bench.first_execute()
        bench.sandbox_cost()
        bench.forking()
        if gateway:
            gateway_rows(bench, gateway)
        return bench.rows


def run_http(plan: Plan, kernel_name: str = "python3") -> list[Row]:
    """Only the HTTP layer's rows (``--http-only``): same-session overhead and keep-alive
    throughput against raw jupyter-client, on kernels of its kind (see :func:`run`)."""
    with ExitStack() as stack:
        bench = Bench(plan, stack, kernel_name)
        server, client = bench.serve("--sandbox", "off", "--kernel-launcher", "spawn")
        bench.settle(client)
        bench.same_session(client)
        bench.throughput(server, client)
        return bench.rows


def run_forking(plan: Plan, kernel_name: str = "python3") -> list[Row]:
    """Only the forking launcher's rows (``--fork-only``), with the cold-start baseline."""
    with ExitStack() as stack:
        bench = Bench(plan, stack, kernel_name)
        bench.cold()
        bench.forking()
        return bench.rows


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    from importlib.metadata import version

    return {
        "tci_emulator": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "jupyter_client": version("jupyter_client"),
        "ipykernel": version("ipykernel"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tci_emulator.bench``: print the table; exit 1 if a target failed."""
    parser = argparse.ArgumentParser(prog="python -m tci_emulator.bench",
                                     description="Benchmark the emulator against raw "
                                     "jupyter-client kernels on this machine.")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument("--kernel-name", default="python3", help="kernel spec of both sides")
    parser.add_argument("--kernel-gateway", metavar="URL",
                        help="also measure kernels on this Jupyter Enterprise Gateway")
    parser.add_argument("--kernel-gateway-token", metavar="TOKEN", help="its token")
    parser.add_argument("--kernel-gateway-kernel", metavar="NAME", help="its kernel spec")
    parser.add_argument("--fork-only", action="store_true",
                        help="only the forking launcher's rows (and the cold-start baseline)")
    parser.add_argument("--http-only", action="store_true",
                        help="only the HTTP layer's rows: same-session overhead, throughput")
    args = parser.parse_args(argv)
    gateway = [f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items()
               if name.startswith("kernel_gateway") and value]
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    about = machine()
    rows = (run_forking(plan, args.kernel_name) if args.fork_only
            else run_http(plan, args.kernel_name) if args.http_only
            else run(plan, args.kernel_name, gateway))
    duration = time.perf_counter() - started
    print(render(rows))
    print(f"\n{about['cpus']} CPUs, load average at start {about['load_average'][0]:.2f}; "
          f"python {about['python']}, jupyter_client {about['jupyter_client']}, "
          f"ipykernel {about['ipykernel']}; {'quick' if args.quick else 'full'} run, "
          f"{duration:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": about, "quick": args.quick,
                                         "duration_s": duration, "plan": asdict(plan),
                                         "rows": [asdict(r) | {"result": r.result} for r in rows]},
                                        indent=2))
    return 1 if any(r.passed is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
