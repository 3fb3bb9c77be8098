"""Least privilege: loopback by default, consent for remote binding, a guarded control plane,
private directories, and keys that never reach a log."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
import requests

from tci_emulator import Emulator
from tci_emulator.cli import main

from ..helpers import Http


def test_default_bind_is_loopback() -> None:
    assert Emulator().config.host == "127.0.0.1"


@pytest.mark.parametrize("argv,needs", [
    (["serve", "--host", "0.0.0.0"], "--allow-remote"),
    (["serve", "--host", "0.0.0.0", "--allow-remote"], "--api-key"),
])
def test_remote_binding_needs_consent_and_keys(argv: list[str], needs: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert needs in capsys.readouterr().err


@pytest.mark.tci_emulator(admin_token="admin-secret")
def test_admin_token_guards_the_control_plane(http: Http) -> None:
    wrong = http.post("/_emulator/reset", key="wrong")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "admin_unauthorized"
    assert "Wrong admin token" in wrong.json()["error"]["message"]
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert http.get("/_emulator/usage").status_code == 401
    assert http.get("/_emulator/usage", key="admin-secret").status_code == 200
    assert http.get("/_emulator/health").status_code == 200  # health stays public
    assert http.run("print(1)")["outputs"]  # the API itself is unaffected


@pytest.mark.tci_emulator(admin=False)
def test_control_plane_can_be_switched_off(http: Http) -> None:
    for response in (http.post("/_emulator/reset"), http.post("/_emulator/clock",
                                                              {"advance_seconds": 1})):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "admin_forbidden"


def _mode(path: Path) -> int:
    """Permission bits (jupyter_client may add the sticky bit to a connection file's folder)."""
    return stat.S_IMODE(path.stat().st_mode) & 0o777


def test_kernel_and_session_directories_are_private(http: Http) -> None:
    sid = http.run("1")["session_id"]
    [session] = [s for s in http.emulator.server.state.sessions.all_live() if s.id == sid]
    launcher = http.emulator.server.state.launcher
    for path in (launcher.runtime, session.kernel.root, session.kernel.workdir):
        assert _mode(path) == 0o700, path


def test_keys_never_reach_the_access_log(caplog: pytest.LogCaptureFixture) -> None:
    key = "sk-very-secret-key-123"
    with Emulator(access_log=True, pool_size=0, api_key=key) as emulator:
        with caplog.at_level(logging.INFO, logger="tci_emulator.access"):
            headers = {"Authorization": f"Bearer {key}"}
            response = requests.post(emulator.base_url + "/tci/execute", headers=headers,
                                     json={"code": "1", "language": "python"}, timeout=60)
            sid = response.json()["data"]["session_id"]
            requests.get(emulator.base_url + "/tci/sessions", headers=headers, timeout=60)
            requests.get(emulator.base_url + "/tci/sessions",
                         headers={"Authorization": "Bearer wrong-" + key}, timeout=60)
    lines = [record.getMessage() for record in caplog.records]
    assert any(f"POST /v1/tci/execute 200 session={sid}" in line for line in lines), lines
    assert not any("secret" in line for line in lines)
