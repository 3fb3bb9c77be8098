"""Suite-wide checks for this repository's own tests.

After the whole run, no kernel process of ours may be left: every ``ipykernel_launcher`` that an
emulator of this run started (its connection file lives in a ``tci-emulator-`` runtime
directory; it descends from this process, or the server that launched it is gone) must be gone.
A leak fails the run with the offending command lines.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.processes import descends_from, pids_where, start_ticks


def _ours(pid: int) -> bool:
    """Whether ``pid`` descends from this process, or its launching server has died."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    launcher = next((int(v.split(b"=", 1)[1]) for v in environ
                     if v.startswith(b"JPY_PARENT_PID=")), None)
    if launcher is not None and not Path(f"/proc/{launcher}").exists():
        return True
    return descends_from(pid, os.getpid())


def our_kernels(since_ticks: int) -> list[str]:
    """Command lines of emulator kernels of this run started at or after ``since_ticks``."""
    found: list[str] = []

    def leaked(entry: Path) -> bool:
        cmdline = (entry / "cmdline").read_bytes()
        if (b"ipykernel_launcher" in cmdline and b"tci-emulator-" in cmdline
                and start_ticks(entry.name) >= since_ticks and _ours(int(entry.name))):
            found.append(f"{entry.name}: " + cmdline.replace(b"\0", b" ").decode())
            return True
        return False

    pids_where(leaked)
    return found


_SESSION_START = start_ticks(os.getpid())


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
