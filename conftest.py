"""Suite-wide checks for this repository's own tests.

After the whole run, no kernel process of ours may be left: every ``ipykernel_launcher`` that an
emulator started during this run (its connection file lives in a ``tci-emulator-`` runtime
directory) must be gone. A leak fails the run with the offending command lines.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest


def _start_ticks(pid: int | str) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])


def our_kernels(since_ticks: int) -> list[str]:
    """Command lines of emulator kernels started at or after ``since_ticks`` (jiffies)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "ipykernel_launcher" in cmdline and "tci-emulator-" in cmdline \
                    and _start_ticks(entry.name) >= since_ticks:
                found.append(f"{entry.name}: {cmdline}")
        except (OSError, IndexError, ValueError):
            continue
    return found


_SESSION_START = _start_ticks(os.getpid())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return  # xdist workers: the controller checks once everything is stopped
    deadline = time.monotonic() + 15
    leftovers = our_kernels(_SESSION_START)
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.2)  # kernels told to stop may take a moment to exit
        leftovers = our_kernels(_SESSION_START)
    if leftovers:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("ORPHANED KERNELS after the test run:\n" + "\n".join(leftovers),
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
