"""Session kernels on a real Jupyter Enterprise Gateway (``--kernel-gateway``).

Every test here ends by asking the gateway itself (``GET /api/kernels``) that no kernel of the
emulator is left once its sessions ended: after a crash, expiry on the clock, a reset, a stop by
SIGTERM, and the gateway's own death and return. The contract suite runs its kernel-reaching
modules against a gateway target too (``contract_tests/conftest.py``), and the SDKv2 tests are run
once more against an emulator on the gateway (a pytest run of their own, configured with the
plugin's ``--tci-kernel-gateway`` options).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from contract_tests.client import Client
from contract_tests.gateway import KERNEL_NAME, EnterpriseGateway
from contract_tests.process import ServeProcess
from tci_emulator import Emulator
from tci_emulator.config import config_from
from tci_emulator.kernels.gateway import public_url

from .helpers import wait_until

_REPO = Path(__file__).resolve().parent.parent
KEY = "gateway-tests"
HEADERS = {"Authorization": f"Bearer {KEY}"}


def _settings(gateway: EnterpriseGateway) -> dict[str, Any]:
    return {"kernel_gateway": gateway.url, "kernel_gateway_token": gateway.token,
            "kernel_gateway_kernel": KERNEL_NAME}


def _flags(gateway: EnterpriseGateway) -> list[str]:
    return ["--kernel-gateway", gateway.url, "--kernel-gateway-token", gateway.token,
            "--kernel-gateway-kernel", KERNEL_NAME]


def _execute(url: str, code: str, session_id: str | None = None,
             **extra: Any) -> requests.Response:
    with Client(url, KEY) as client:
        return client.execute(code, session_id, **extra)


def _run(url: str, code: str, session_id: str | None = None, **extra: Any) -> dict[str, Any]:
    with Client(url, KEY) as client:
        return client.run(code, session_id, **extra)


def _text(data: dict[str, Any], kind: str) -> str:
    return "".join(o["data"] for o in data["outputs"] if o["type"] == kind)


@pytest.fixture
def on_gateway(enterprise_gateway: EnterpriseGateway) -> Iterator[Emulator]:
    """Function scope: an in-process emulator whose kernels run on the session's gateway;
    once it stopped, the gateway may keep no kernel it did not have before."""
    before = enterprise_gateway.kernel_ids()
    with Emulator(pool_size=1, **_settings(enterprise_gateway)) as emulator:
        yield emulator
    wait_until(lambda: not enterprise_gateway.kernel_ids() - before, timeout=30)


def _gateway_id(emulator: Emulator, session_id: str) -> str:
    session = next(s for s in emulator.server.state.sessions.all_live() if s.id == session_id)
    kernel_id = getattr(session.kernel, "gateway_id", None)
    assert isinstance(kernel_id, str)
    return kernel_id


def test_session_runs_on_the_gateway_in_a_private_directory_with_files_and_plain_errors(
        on_gateway: Emulator, enterprise_gateway: EnterpriseGateway) -> None:
    first = _run(on_gateway.url, "import os\nx = 6 * 7\nprint(os.getcwd())\nx",
                 files=[{"name": "data/a.txt", "encoding": "string", "content": "hello"}])
    sid = first["session_id"]
    assert _gateway_id(on_gateway, sid) in enterprise_gateway.kernel_ids()
    workdir = _text(first, "stdout").strip()
    assert Path(workdir).name.startswith("tci-emulator-")
    assert first["outputs"][-1] == {"type": "execute_result", "data": {"text/plain": "42"}}
    second = _run(on_gateway.url, "print(open('data/a.txt').read(), x)\n1/0", sid)
    assert _text(second, "stdout") == "hello 42\n"
    error = _text(second, "error")
    assert error.endswith("ZeroDivisionError: division by zero") and "\x1b[" not in error
    other = _run(on_gateway.url, "import os\nprint(os.path.exists('data/a.txt'))\nos.getcwd()")
    assert _text(other, "stdout") == "False\n"
    assert other["outputs"][-1]["data"]["text/plain"] != repr(workdir)


def test_time_limit_interrupts_the_gateway_kernel_and_keeps_its_state(
        enterprise_gateway: EnterpriseGateway) -> None:
    with Emulator(pool_size=0, execution_timeout=1.0, **_settings(enterprise_gateway)) as emu:
        sid = _run(emu.url, "y = 5")["session_id"]
        data = _run(emu.url, "import time\nwhile True: time.sleep(0.05)", sid)
        assert _text(data, "error").startswith("ExecutionTimeout:")
        assert "state is kept" in _text(data, "error")
        assert _text(_run(emu.url, "print(y)", sid), "stdout") == "5\n"


def test_kernel_crash_fault_replaces_the_gateway_kernel_and_leaves_none_behind(
        on_gateway: Emulator, enterprise_gateway: EnterpriseGateway) -> None:
    sid = _run(on_gateway.url, "x = 1\nopen('kept.txt', 'w').write('kept')")["session_id"]
    before = _gateway_id(on_gateway, sid)
    on_gateway.faults.add({"action": "kernel_crash"})
    crashed = _run(on_gateway.url, "print('never runs')", sid)
    on_gateway.faults.clear()
    assert [o["type"] for o in crashed["outputs"]] == ["error"]
    assert crashed["outputs"][0]["data"].startswith("KernelDied: fault rule")
    after = _run(on_gateway.url, "print(open('kept.txt').read())\nprint(x)", sid)
    assert _text(after, "stdout") == "kept\n"
    assert "NameError" in _text(after, "error")
    ours = {before, _gateway_id(on_gateway, sid)}
    on_gateway.reset()
    wait_until(lambda: not ours & enterprise_gateway.kernel_ids(), timeout=30)


def test_expiry_on_the_clock_shuts_the_sessions_gateway_kernel_down(
        on_gateway: Emulator, enterprise_gateway: EnterpriseGateway) -> None:
    sid = _run(on_gateway.url, "pass")["session_id"]
    kernel_id = _gateway_id(on_gateway, sid)
    on_gateway.clock.advance(3600)
    assert _execute(on_gateway.url, "pass", sid).status_code == 410
    wait_until(lambda: kernel_id not in enterprise_gateway.kernel_ids(), timeout=30)


def test_reset_shuts_every_sessions_gateway_kernel_down(
        on_gateway: Emulator, enterprise_gateway: EnterpriseGateway) -> None:
    sids = [_run(on_gateway.url, "pass")["session_id"] for _ in range(2)]
    ids = {_gateway_id(on_gateway, sid) for sid in sids}
    assert ids <= enterprise_gateway.kernel_ids()
    on_gateway.reset()
    wait_until(lambda: not ids & enterprise_gateway.kernel_ids(), timeout=30)


def test_serve_stopped_by_sigterm_leaves_no_kernel_on_the_gateway(
        enterprise_gateway: EnterpriseGateway) -> None:
    before = enterprise_gateway.kernel_ids()
    server = ServeProcess([*_flags(enterprise_gateway), "--pool-size", "2"]).start()
    try:
        sids = [_run(server.url, "z = 1")["session_id"] for _ in range(2)]
        assert len(set(sids)) == 2
        assert len(enterprise_gateway.kernel_ids() - before) >= 2
    finally:
        exit_code = server.stop()
    assert exit_code == 0
    assert not enterprise_gateway.kernel_ids() - before


def test_slow_gateway_is_held_to_the_start_timeout_and_its_late_kernel_is_removed(
        enterprise_gateway: EnterpriseGateway) -> None:
    assert enterprise_gateway.process is not None
    pid = enterprise_gateway.process.pid
    before = enterprise_gateway.kernel_ids()
    launched = enterprise_gateway.log().count("Local kernel launched")
    with Emulator(pool_size=0, kernel_start_timeout=2.0, **_settings(enterprise_gateway)) as emu:
        os.kill(pid, signal.SIGSTOP)  # the gateway accepts connections and answers nothing
        try:
            started = time.monotonic()
            response = _execute(emu.url, "print(1)")
            waited = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
        assert response.status_code == 503, response.text
        assert response.json()["errors"][0]["code"] == "kernel_unavailable"
        assert waited < 30, waited  # the 2 s start timeout, not the gateway's pace
        # The gateway still starts the kernel it was asked for once it runs again; the
        # emulator shuts it down as soon as the late answer names it.
        wait_until(lambda: enterprise_gateway.log().count("Local kernel launched") > launched,
                   timeout=60)
        wait_until(lambda: not enterprise_gateway.kernel_ids() - before, timeout=60)


def _closed_port() -> socket.socket:
    """A bound, not listening socket: connecting to its port is refused while it is held."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def test_unreachable_gateway_at_start_exits_2_with_one_line() -> None:
    with _closed_port() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "tci_emulator", "serve", "--port", "0", "--kernel-gateway",
             url], capture_output=True, text=True, timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("TCI_EMULATOR_")})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tci-emulator: kernel gateway "), lines
    assert url in lines[0] and "not reachable" in lines[0]


def test_gateway_killed_mid_run_answers_503_and_service_returns_with_it() -> None:
    with EnterpriseGateway() as gateway:
        server = ServeProcess([*_flags(gateway), "--pool-size", "1",
                               "--kernel-start-timeout", "30"]).start()
        try:
            sid = _run(server.url, "x = 1")["session_id"]
            running: dict[str, Any] = {}
            started = threading.Event()

            def long_call() -> None:
                started.set()
                running["data"] = _run(server.url, "import time\ntime.sleep(60)", sid)

            caller = threading.Thread(target=long_call)
            caller.start()
            started.wait(10)
            wait_until(lambda: any(s["execute_count"] == 2 for s in requests.get(
                server.url + "/v1/tci/sessions", headers=HEADERS, timeout=30
            ).json()["data"]["sessions"]), timeout=30)
            gateway.kill()
            caller.join(120)
            assert not caller.is_alive()
            error = _text(running["data"], "error")
            assert error.startswith("KernelDied:") and "gateway" in error, error

            down = _execute(server.url, "print(1)")
            assert down.status_code == 503, down.text
            assert down.json()["errors"][0]["code"] == "kernel_unavailable"
            again = _execute(server.url, "print(1)", sid)
            assert again.status_code == 503, again.text

            gateway.start()  # the same URL
            assert _text(_run(server.url, "print(2)"), "stdout") == "2\n"
            back = _run(server.url, "print(x)", sid)
            assert _text(back, "error").startswith("KernelDied:")
            assert _text(_run(server.url, "print('up')", sid), "stdout") == "up\n"
        finally:
            exit_code = server.stop()
        assert exit_code == 0
        assert gateway.kernel_ids() == set()


def test_sdk_v2_tests_pass_against_an_emulator_on_the_gateway(
        enterprise_gateway: EnterpriseGateway) -> None:
    """The SDKv2 tests of ``test_sdks.py``, unchanged, in a pytest run of their own whose
    emulators (the plugin's) run their kernels on the gateway."""
    before = enterprise_gateway.kernel_ids()
    launched = enterprise_gateway.log().count("Local kernel launched")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TCI_EMULATOR_", "PYTEST_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/scenarios/test_sdks.py", "-k", "v2", "-q",
         "-p", "no:cacheprovider",
         f"--tci-kernel-gateway={enterprise_gateway.url}",
         f"--tci-kernel-gateway-token={enterprise_gateway.token}",
         f"--tci-kernel-gateway-kernel={KERNEL_NAME}"],
        cwd=_REPO, env=env, capture_output=True, text=True, timeout=600)
    tail = result.stdout[-3000:]
    assert result.returncode == 0, tail + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", tail)
    assert passed and int(passed.group(1)) >= 10, tail
    assert "skipped" not in tail.splitlines()[-1], tail
    # their kernels really ran on the gateway: one or more per test
    assert enterprise_gateway.log().count("Local kernel launched") - launched >= int(
        passed.group(1)), tail
    assert not enterprise_gateway.kernel_ids() - before


def test_gateway_settings_come_from_flags_or_environment_and_bad_ones_are_refused() -> None:
    config = config_from(None, {"TCI_EMULATOR_KERNEL_GATEWAY": "http://gw.example:8888",
                                "TCI_EMULATOR_KERNEL_GATEWAY_TOKEN": "t0ken",
                                "TCI_EMULATOR_KERNEL_GATEWAY_KERNEL": "py"})
    assert (config.kernel_gateway, config.kernel_gateway_token,
            config.kernel_gateway_kernel) == ("http://gw.example:8888", "t0ken", "py")
    with pytest.raises(ValueError, match="kernel_gateway must be an http"):
        config_from(None, {}, kernel_gateway="gw.example:8888")
    with pytest.raises(ValueError, match="kernel_memory_mb does not apply"):
        config_from(None, {}, kernel_gateway="http://gw.example", kernel_memory_mb=256)


def test_health_names_the_gateway_without_its_credentials() -> None:
    assert public_url("https://user:secret@gw.example:8443/base/") == "https://gw.example:8443/base/"
    assert public_url("http://[::1]:8888") == "http://[::1]:8888"


def test_health_shows_the_gateway_and_its_kernels(on_gateway: Emulator,
                                                  enterprise_gateway: EnterpriseGateway) -> None:
    health = requests.get(on_gateway.url + "/_emulator/health", timeout=30).json()
    assert health["kernel_gateway"] == enterprise_gateway.url
    assert health["pool"]["size"] == 1


def test_a_second_gateway_in_the_same_process_is_refused(on_gateway: Emulator) -> None:
    with _closed_port() as sock:
        other = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(ValueError, match="one gateway per process"):
            Emulator(kernel_gateway=other, kernel_gateway_kernel=KERNEL_NAME).start()
