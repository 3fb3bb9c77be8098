"""Clean shutdown of ``tci-emulator serve``: signals stop every kernel and remove directories,
and kernels of a server killed outright exit on their own (they watch their parent)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import requests

from contract_tests.process import ServeProcess

from .helpers import pids_where, process_gone, wait_until


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if pid == ancestor:
            return True
    return False


def _workdir(entry: Path) -> Path:
    return Path(os.readlink(entry / "cwd"))


def _is_kernel(entry: Path) -> bool:
    """A kernel process, spawned or forked: it runs in its own ``kernels/<id>/work`` folder of a
    runtime directory (a forked kernel's command line is its template's, so that cannot tell).
    bubblewrap's processes, which change to the same folder, are not kernels."""
    argv = (entry / "cmdline").read_bytes().split(b"\0")
    workdir = _workdir(entry)
    return (not argv[0].endswith(b"bwrap") and workdir.name == "work"
            and len(workdir.parents) > 2 and workdir.parents[1].name == "kernels")


def _kernel_pids(server_pid: int) -> list[int]:
    """Kernel processes launched by the given server (in the sandbox, below bubblewrap)."""
    return pids_where(lambda entry: _is_kernel(entry)
                      and _descends_from(int(entry.name), server_pid))


def _kernels_in(runtime: set[Path]) -> list[int]:
    """Kernel processes of the given runtime directories, whoever their parent is now."""
    return pids_where(lambda entry: _is_kernel(entry) and any(
        str(_workdir(entry)).startswith(str(d) + "/") for d in runtime))


def _runtime_dirs(pid: int) -> set[Path]:
    return {Path(os.readlink(f"/proc/{kernel}/cwd")).parents[2] for kernel in _kernel_pids(pid)}


def _start_with_sessions(count: int) -> tuple[ServeProcess, list[int], set[Path]]:
    server = ServeProcess(["--pool-size", "1", "--no-access-log"]).start()
    try:
        for _ in range(count):
            requests.post(server.base_url + "/tci/execute",
                          json={"code": "1", "language": "python"},
                          headers={"Authorization": "Bearer k"}, timeout=60).raise_for_status()
        wait_until(lambda: len(_kernel_pids(server.pid)) == count + 1)
        pids = _kernel_pids(server.pid)
        return server, pids, _runtime_dirs(server.pid)
    except BaseException:
        server.stop()  # a failed start must not leave a server and its kernels running
        raise


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_every_kernel_and_removes_directories(sig: int) -> None:
    server, pids, runtime = _start_with_sessions(2)
    assert len(pids) == 3 and not any(process_gone(p) for p in pids)
    assert all(d.exists() for d in runtime)
    server_pid = server.pid
    assert server.stop(sig, timeout=15) == 0
    assert all(process_gone(p) for p in pids)
    assert not any(d.exists() for d in runtime)
    assert _kernel_pids(server_pid) == [] and _kernels_in(runtime) == []


def test_kernels_of_a_killed_server_exit_on_their_own() -> None:
    server, pids, runtime = _start_with_sessions(1)
    server.stop(signal.SIGKILL)
    wait_until(lambda: all(process_gone(p) for p in pids), timeout=15)
    # The runtime directory of a killed server cannot be cleaned by it: docs/limits.md says so.
    for directory in runtime:
        shutil.rmtree(directory, ignore_errors=True)
