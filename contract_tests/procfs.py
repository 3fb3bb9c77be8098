"""What the test suites read from ``/proc`` (Linux): whether a process has ended, which
processes match, which port a process listens on, which kernels a server launched.

The contract suite needs these for the targets it starts itself (the ``serve`` child may leave
no kernel behind; the Enterprise Gateway's port is read back, its kernels looked for); the
project's own tests use them through ``tests/processes.py``, which adds what only they need.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (gone, or a zombie not yet reaped).

    A killed multi-threaded process (every kernel) shows its main thread as a zombie while
    its other threads are still exiting; until they have, ``waitpid`` does not see it end.
    So a zombie counts as ended only once it is down to one thread.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return (fields.get("State", "").strip()[:1] in ("Z", "X")
            and fields.get("Threads", "1").strip() == "1")


def pids_where(predicate: Callable[[Path], bool]) -> list[int]:
    """Pids of the processes whose ``/proc/<pid>`` entry satisfies ``predicate`` (processes
    that vanish or cannot be read while looked at are skipped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if predicate(entry):
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def kernels_launched_by(server_pid: int) -> list[int]:
    """Live kernel processes launched by the server process ``server_pid`` (jupyter_client
    puts ``JPY_PARENT_PID`` in a kernel's environment)."""
    marker = f"JPY_PARENT_PID={server_pid}".encode()
    found = pids_where(lambda entry: marker in (entry / "environ").read_bytes().split(b"\0"))
    return [pid for pid in found if not process_gone(pid)]


def listening_port(pid: int) -> int | None:
    """The TCP port process ``pid`` listens on, from its socket inodes and ``/proc/net/tcp``."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                return int(fields[1].rsplit(":", 1)[1], 16)
    return None
