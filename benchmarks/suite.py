"""The whole benchmark in order, and its command line (``python -m benchmarks``, ``make bench``):
print the table; exit 1 if a row missed its target."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from tci_emulator.emulator import Emulator

from .fork import forking
from .front_door import (
    burst,
    cold,
    during_refill,
    new_sessions,
    same_session,
    server_start,
    stalled,
    throughput,
)
from .gateway import gateway_rows
from .harness import FULL, QUICK, Plan, Row, machine, progress, report
from .in_process import fault_hook, first_execute, reset_cost
from .memory import bounded_memory, memory
from .run import POOL_SIZE, Run
from .sandbox import sandbox_cost

__all__ = ["main", "run_all", "run_forking", "run_http"]


def run_all(plan: Plan, kernel_name: str = "python3", gateway: Sequence[str] = ()) -> list[Row]:
    """Every measurement, in one run; everything started is stopped before returning.
    ``gateway`` (``--kernel-gateway URL ...`` flags) adds the local-vs-gateway rows."""
    with ExitStack() as stack:
        run = Run(plan, stack, kernel_name)
        cold(run)
        server_start(run)
        progress("starting the emulator under test")
        server, client = run.serve()
        run.settle(client)
        new_sessions(run, client)
        # The HTTP layer's rows compare the same kernels on both sides: the emulator's spawned
        # and unsandboxed, like raw jupyter-client's, so a difference is the server's own. The
        # sandbox and the forking launcher are measured by rows of their own below.
        progress("starting an emulator whose kernels are raw jupyter-client's kind")
        same_kind, same_kind_client = run.serve("--sandbox", "off", "--kernel-launcher", "spawn")
        run.settle(same_kind_client)
        same_session(run, same_kind_client)
        during_refill(run, same_kind, same_kind_client)
        throughput(run, same_kind, same_kind_client)
        stalled(run, same_kind, same_kind_client)
        same_kind_client.close()
        same_kind.stop()
        burst(run, server, client)
        memory(run, server, client)
        server.stop()
        bounded_memory(run)
        progress("in-process emulator for the fault hook and reset")
        emulator = stack.enter_context(Emulator(pool_size=POOL_SIZE, kernel_name=kernel_name))
        fault_hook(run)
        reset_cost(run, emulator)
        first_execute(run)
        sandbox_cost(run)
        forking(run)
        if gateway:
            gateway_rows(run, gateway)
        return run.rows


def run_http(plan: Plan, kernel_name: str = "python3") -> list[Row]:
    """Only the HTTP layer's rows (``--http-only``): same-session overhead and keep-alive
    throughput against raw jupyter-client, on kernels of its kind (see :func:`run_all`)."""
    with ExitStack() as stack:
        run = Run(plan, stack, kernel_name)
        server, client = run.serve("--sandbox", "off", "--kernel-launcher", "spawn")
        run.settle(client)
        same_session(run, client)
        throughput(run, server, client)
        return run.rows


def run_forking(plan: Plan, kernel_name: str = "python3") -> list[Row]:
    """Only the forking launcher's rows (``--fork-only``), with the cold-start baseline."""
    with ExitStack() as stack:
        run = Run(plan, stack, kernel_name)
        cold(run)
        forking(run)
        return run.rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks``: print the table; exit 1 if a target failed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
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
            else run_all(plan, args.kernel_name, gateway))
    duration = time.perf_counter() - started
    return report(rows, about=about, plan=plan, quick=args.quick, duration=duration,
                  json_path=args.json)
