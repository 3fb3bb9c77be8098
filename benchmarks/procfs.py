"""Memory of local processes, read from Linux ``/proc`` (and psutil for the fork launcher's
unique and proportional sizes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .harness import BenchError

__all__ = ["cpu_seconds", "host_pid", "kernel_families", "memory_info", "peak_rss_mb", "reset_peak",
           "rss_mb"]


def _status_mb(pid: int, field: str) -> float:
    """One ``kB`` field of a local process's ``/proc/PID/status``, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no {field} for pid {pid}")


def rss_mb(pid: int) -> float:
    """Resident set size of a local process, in MB (Linux ``/proc``)."""
    return _status_mb(pid, "VmRSS")


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
    return _status_mb(pid, "VmHWM")


def reset_peak(pid: int) -> None:
    """Start a process's peak resident size over from its current size (``clear_refs`` 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def kernel_families(template: int) -> list[list[Any]]:
    """Each process the template forked (one per kernel) with its descendants (a sandboxed
    kernel is three processes: the outer one, the namespace's init and the kernel)."""
    import psutil  # type: ignore[import-untyped]  # ipykernel depends on it
    return [[child, *child.children(recursive=True)]
            for child in psutil.Process(template).children()]


def memory_info(process: Any) -> Any:
    """psutil's full memory figures (USS, PSS, ...) of a process or a pid."""
    import psutil  # type: ignore[import-untyped]  # ipykernel depends on it
    if isinstance(process, int):
        process = psutil.Process(process)
    return process.memory_full_info()
