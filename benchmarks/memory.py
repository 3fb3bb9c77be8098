"""Rows of memory: an idle session's kernel and the idle server, and the server's peak under the
two hostile loads that once multiplied it (huge session ids, concurrent huge prints).

:func:`huge_session_ids` and :func:`concurrent_prints` are the loads themselves, shared with the
tests that hold the behaviour (``tests/test_memory.py``).
"""

from __future__ import annotations

from functools import partial

from contract_tests.process import ServeProcess

from .client import Client, post, stdout_of
from .harness import BenchError, Row, parallel, progress
from .procfs import host_pid, peak_rss_mb, reset_peak, rss_mb
from .run import POOL_SIZE, Run

__all__ = ["huge_session_ids", "concurrent_prints", "memory", "bounded_memory"]

WHO_AM_I = "import os; print(os.getpid(), os.getcwd())"


def huge_session_ids(url: str, count: int = 25, size: int = 20 * 2**20) -> list[tuple[int, bytes]]:
    """Send ``count`` executes naming a ``size``-character session_id, one after another."""
    return [post(url, {"code": "1", "language": "python", "session_id": "s" * size})
            for _ in range(count)]


def concurrent_prints(url: str, count: int = 3, size: int = 300_000_000) -> list[tuple[int, bytes]]:
    """``count`` new sessions at once, each printing ``size`` characters."""
    body = {"code": f"print('x' * {size})", "language": "python"}
    return parallel([partial(post, url, body) for _ in range(count)])


def memory(run: Run, server: ServeProcess, client: Client) -> None:
    """Resident memory of an idle session's kernel (against a raw kernel) and of the idle
    server."""
    progress("memory")
    run.settle(client)
    inner_pid, cwd = stdout_of(client.execute(WHO_AM_I)).split(" ", 1)
    kernel_pid = host_pid(server.pid, int(inner_pid), cwd)
    kernel = run.raw.new().start()
    kernel.execute("import os")
    raw_rss = rss_mb(kernel.pid)
    session_rss = rss_mb(kernel_pid)
    run.raw.stop([kernel])
    client.reset()
    run.settle(client)
    run.rows.append(Row("memory: RSS of an idle session's kernel", "MB", value=session_rss,
                        n=1, compared=f"raw kernel {raw_rss:.0f} MB"))
    run.rows.append(Row(f"memory: RSS of the server (idle, pool of {POOL_SIZE})", "MB",
                        value=rss_mb(server.pid), n=1,
                        compared="kernels not included"))


def bounded_memory(run: Run) -> None:
    """Peak server memory under the two hostile loads that once multiplied it: a 20 MB
    session_id sent 25 times (715 MB kept before) and three concurrent 300 MB prints
    (2.4 GB peak before, with each reply capped at 8 MB)."""
    progress("server memory under a 20 MB session_id x 25 and 3 concurrent 300 MB prints")
    cap = 8 * 2**20
    server, client = run.launch("--pool-size", "3", "--no-access-log", "--kernel-name",
                                run.kernel_name, "--max-output-bytes", str(cap))
    run.settle(client)
    idle = rss_mb(server.pid)
    reset_peak(server.pid)
    if {status for status, _ in huge_session_ids(server.url)} != {400}:
        raise BenchError("a 20 MB session_id was not refused with 400")
    ids_peak, ids_after = peak_rss_mb(server.pid) - idle, rss_mb(server.pid) - idle
    run.rows.append(Row("memory: server peak over idle, 20 MB session_id x 25", "MB",
                        value=ids_peak, n=25, target="< 100 MB kept",
                        compared=f"{ids_after:.0f} MB kept after; 715 MB kept before",
                        passed=ids_after < 100))
    client.reset()
    run.settle(client)
    idle = rss_mb(server.pid)
    reset_peak(server.pid)
    if {status for status, _ in concurrent_prints(server.url)} != {200}:
        raise BenchError("a 300 MB print did not answer 200")
    per_execution = (peak_rss_mb(server.pid) - idle) / 3
    limit = 2 * cap / 2**20 + 40  # the constant: buffers of one reply, measured
    run.rows.append(Row("memory: server peak over idle per execution, 3 concurrent "
                        "300 MB prints (cap 8 MB)", "MB", value=per_execution, n=3,
                        target=f"<= 2 x cap + 40 MB = {limit:.0f} MB",
                        compared="2.4 GB in all before", passed=per_execution <= limit))
    client.reset()
    server.stop()
