"""The benchmark's harness: the plan of a run, timing, percentiles, the table of rows with their
targets, and the report (the table on stdout, the figures as JSON).

Every row module measures with these and appends :class:`Row` objects to its run; nothing here
knows what is measured.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tci_emulator import __version__

__all__ = ["BenchError", "Row", "Plan", "FULL", "QUICK", "percentile", "fmt", "render", "report",
           "progress", "poll", "parallel", "timed", "seconds", "drive_for", "machine"]


# -- figures and the table --------------------------------------------------------------------


class BenchError(RuntimeError):
    """A request or kernel failed during the benchmark: the run is not valid."""


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


def fmt(number: float | None) -> str:
    """A figure as the table shows it: "-" for none, "n/a" for NaN, fewer decimals as it grows."""
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
    """The rows as a Markdown table (readable in a terminal, pasteable into docs/speed.md)."""
    header = ["measurement", "p50", "p95", "value", "unit", "n", "compared with baseline",
              "target", "result"]
    lines = [header, ["---"] * len(header)]
    for row in rows:
        lines.append([row.name, fmt(row.p50), fmt(row.p95), fmt(row.value), row.unit,
                      str(row.n or "-"), row.compared or "-", row.target or "-",
                      row.result or ("-" if not row.note else row.note)])
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


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


# -- timing -----------------------------------------------------------------------------------


def progress(message: str) -> None:
    """Say on stderr what is being measured (stdout holds the table only)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``condition()`` holds, or raise :class:`BenchError` naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def parallel(calls: Sequence[Callable[[], Any]]) -> list[Any]:
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


def timed(call: Callable[[], Any]) -> Callable[[], tuple[float, float, Any]]:
    """Wrap ``call`` to return (start, end, result) on the perf counter."""
    def run() -> tuple[float, float, Any]:
        start = time.perf_counter()
        result = call()
        return start, time.perf_counter(), result
    return run


def drive_for(steps: Sequence[Callable[[], Any]], seconds: float) -> tuple[int, float]:
    """Each step in its own thread, over and over for ``seconds``: (calls done, elapsed)."""
    stop_at = time.perf_counter() + seconds

    def drive(step: Callable[[], Any]) -> int:
        count = 0
        while time.perf_counter() < stop_at:
            step()
            count += 1
        return count

    start = time.perf_counter()
    counts = parallel([partial(drive, step) for step in steps])
    return sum(counts), time.perf_counter() - start


def seconds(call: Callable[[], Any]) -> float:
    """How long ``call()`` took, in seconds."""
    start, end, _ = timed(call)()
    return end - start


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


def report(rows: Sequence[Row], *, about: dict[str, Any], plan: Plan, quick: bool,
           duration: float, json_path: Path | None) -> int:
    """Print the table and what it was measured on, write the JSON file if asked; the exit
    code: 1 if a row missed its target."""
    print(render(rows))
    print(f"\n{about['cpus']} CPUs, load average at start {about['load_average'][0]:.2f}; "
          f"python {about['python']}, jupyter_client {about['jupyter_client']}, "
          f"ipykernel {about['ipykernel']}; {'quick' if quick else 'full'} run, "
          f"{duration:.0f} s")
    if json_path is not None:
        json_path.write_text(json.dumps({"machine": about, "quick": quick,
                                         "duration_s": duration, "plan": asdict(plan),
                                         "rows": [asdict(r) | {"result": r.result} for r in rows]},
                                        indent=2))
    return 1 if any(r.passed is False for r in rows) else 0
