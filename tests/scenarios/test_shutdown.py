"""Clean shutdown of ``tci-emulator serve``: signals stop every kernel and remove directories,
and kernels of a server killed outright exit on their own (they watch their parent)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from contract_tests.client import Client
from contract_tests.process import ServeProcess

from ..helpers import wait_until
from ..processes import kernel_pids_in, kernel_pids_of, process_gone


def _runtime_dirs(pid: int) -> set[Path]:
    return {Path(os.readlink(f"/proc/{kernel}/cwd")).parents[2] for kernel in kernel_pids_of(pid)}


def _start_with_sessions(count: int) -> tuple[ServeProcess, list[int], set[Path]]:
    server = ServeProcess(["--pool-size", "1", "--no-access-log"]).start()
    try:
        with Client(server.url, "k") as client:
            for _ in range(count):
                client.run("1")
        wait_until(lambda: len(kernel_pids_of(server.pid)) == count + 1)
        pids = kernel_pids_of(server.pid)
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
    assert kernel_pids_of(server_pid) == [] and kernel_pids_in(*runtime) == []


def test_kernels_of_a_killed_server_exit_on_their_own() -> None:
    server, pids, runtime = _start_with_sessions(1)
    server.stop(signal.SIGKILL)
    wait_until(lambda: all(process_gone(p) for p in pids), timeout=15)
    # The runtime directory of a killed server cannot be cleaned by it: docs/limits.md says so.
    for directory in runtime:
        shutil.rmtree(directory, ignore_errors=True)
