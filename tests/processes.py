"""The tests' one process helper: what they read from ``/proc`` about the processes an emulator
starts (kernels, servers, the sandbox's processes) and whether they have ended.

The contract suite's share (:func:`process_gone`, :func:`pids_where`,
:func:`kernels_launched_by`, :func:`listening_port`) lives in ``contract_tests/procfs.py``,
since that suite stands alone; it is re-exported here, so a test imports from one place.
"""

from __future__ import annotations

import os
from pathlib import Path

from contract_tests.procfs import kernels_launched_by, listening_port, pids_where, process_gone

__all__ = ["descends_from", "is_kernel", "kernel_pids_in", "kernel_pids_of",
           "kernels_launched_by", "listening_port", "parent_of", "pids_where", "process_gone",
           "process_running", "start_ticks"]


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def start_ticks(pid: int | str) -> int:
    """When process ``pid`` started, in clock ticks since boot."""
    return int(_stat_fields(pid)[19])


def parent_of(pid: int) -> int:
    """The parent pid of process ``pid``."""
    return int(_stat_fields(pid)[1])


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether process ``pid`` is a descendant of ``ancestor`` (now: an orphan is reparented)."""
    while pid > 1:
        pid = parent_of(pid)
        if pid == ancestor:
            return True
    return False


def process_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie, not gone)."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except FileNotFoundError:
        return False


def is_kernel(entry: Path) -> bool:
    """Whether the ``/proc/<pid>`` ``entry`` is a kernel process, spawned or forked: it runs in
    its own ``kernels/<id>/work`` folder of a runtime directory (a forked kernel's command line
    is its template's, so that cannot tell). bubblewrap's processes, which change to the same
    folder, are not kernels."""
    argv = (entry / "cmdline").read_bytes().split(b"\0")
    workdir = Path(os.readlink(entry / "cwd"))
    return (not argv[0].endswith(b"bwrap") and workdir.name == "work"
            and len(workdir.parents) > 2 and workdir.parents[1].name == "kernels")


def kernel_pids_of(server_pid: int) -> list[int]:
    """Kernel processes below the server process ``server_pid`` (in the sandbox, below
    bubblewrap)."""
    return pids_where(lambda entry: is_kernel(entry)
                      and descends_from(int(entry.name), server_pid))


def kernel_pids_in(*runtime: Path) -> list[int]:
    """Kernel processes of the given runtime directories, whoever their parent is now."""
    prefixes = tuple(str(directory) + os.sep for directory in runtime)
    return pids_where(lambda entry: is_kernel(entry)
                      and os.readlink(entry / "cwd").startswith(prefixes))
