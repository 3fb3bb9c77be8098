"""Runaway and dying code: time limits, interrupts, restarts, crashes and the memory cap.

Real kernels, real processes: the code under test loops, swallows interrupts, exits, segfaults,
is killed from outside or allocates past the cap. Each time the reply is a success envelope whose
last item is an ``error`` naming the cause, the session goes on, and other sessions and the
server are unaffected.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest

from tci_emulator import Emulator

from ..helpers import Http, stdout_of, wait_until


def _errors(data: dict[str, object]) -> list[str]:
    outputs = data["outputs"]
    assert isinstance(outputs, list)
    return [o["data"] for o in outputs if o["type"] == "error"]


def _pid(emulator: Emulator, session_id: str) -> int:
    [session] = [s for s in emulator.server.state.sessions.all_live() if s.id == session_id]
    assert session.kernel.pid is not None
    return session.kernel.pid


@pytest.mark.tci_emulator(execution_timeout=1.0, interrupt_grace=2.0)
def test_infinite_loop_is_interrupted_keeping_output_and_state(http: Http) -> None:
    sid = http.run("x = 'kept'")["session_id"]
    data = http.run("print('started', flush=True)\nwhile True:\n    pass", sid)
    assert stdout_of(data) == "started\n"
    [error] = _errors(data)
    assert error.startswith("ExecutionTimeout:") and "1 s" in error and "state is kept" in error
    assert stdout_of(http.run("print(x)", sid)) == "kept\n"


@pytest.mark.tci_emulator(execution_timeout=1.0, interrupt_grace=1.0)
def test_code_that_swallows_interrupts_gets_a_restarted_kernel(http: Http) -> None:
    sid = http.run("x = 'lost'")["session_id"]
    pid = _pid(http.emulator, sid)
    data = http.run("import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
                    "    except KeyboardInterrupt:\n        pass", sid)
    [error] = _errors(data)
    assert error.startswith("ExecutionTimeout:") and "restarted" in error and "lost" in error
    assert _pid(http.emulator, sid) != pid
    after = http.run("print('x' in dir())", sid)
    assert stdout_of(after) == "False\n"


@pytest.mark.parametrize("code,cause", [
    ("import os\nos._exit(3)", "exited with code 3"),
    ("import ctypes\nctypes.string_at(0)", "killed by SIGSEGV"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "killed by SIGKILL"),
])
def test_dying_kernel_is_named_and_the_session_continues_fresh(http: Http, code: str,
                                                               cause: str) -> None:
    bystander = http.run("y = 'untouched'")["session_id"]
    sid = http.run("x = 1\nopen('kept.txt', 'w').write('file')")["session_id"]
    # (Output still in the kernel's buffers when it dies is lost, so none is asserted here.)
    [error] = _errors(http.run(code, sid))
    assert error.startswith("KernelDied:") and cause in error and "variables" in error
    assert stdout_of(http.run("print('x' in dir(), open('kept.txt').read())", sid)) == \
        "False file\n"
    assert stdout_of(http.run("print(y)", bystander)) == "untouched\n"


def test_kernel_killed_from_outside_is_reported(http: Http) -> None:
    sid = http.run("1")["session_id"]
    pid = _pid(http.emulator, sid)
    # In the session's own directory: the sandbox shows the kernel nothing else of the host.
    [session] = [s for s in http.emulator.server.state.sessions.all_live() if s.id == sid]
    marker = session.kernel.workdir / "running"
    data: dict[str, object] = {}

    def run() -> None:
        data.update(http.run(f"import time, pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                             "time.sleep(60)", sid))

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(marker.exists)
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=60)
    [error] = _errors(data)
    assert "killed by SIGKILL" in error
    assert stdout_of(http.run("print('fresh')", sid)) == "fresh\n"


@pytest.mark.tci_emulator(kernel_memory_mb=256)
def test_allocation_past_the_memory_cap_kills_only_that_kernel(http: Http) -> None:
    bystander = http.run("import numpy, pandas\nz = 3")["session_id"]
    sid = http.run("x = 1")["session_id"]
    data = http.run("big = bytearray(1024 ** 3)", sid)
    [error] = _errors(data)
    assert error.startswith("KernelDied:") and "memory cap of 256 MB" in error
    assert stdout_of(http.run("print('ok')", sid)) == "ok\n"
    assert stdout_of(http.run("print(z)", bystander)) == "3\n"
    assert http.get("/_emulator/health").json()["status"] == "ready"
