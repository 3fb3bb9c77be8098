"""Pricing and usage over HTTP: per-key accounting, the usage body, budgets, persistence."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from contract_tests.process import ServeProcess
from tci_emulator.auth import fingerprint

from .helpers import Http


def test_usage_counts_sessions_and_executions_per_key(http: Http) -> None:
    a = http.run("1", key="alice")["session_id"]
    http.run("2", a, key="alice")
    http.run("3", a, key="alice")
    http.run("1", key="alice")
    http.run("1", key="bob")
    usage = http.get("/_emulator/usage").json()
    assert usage["price_per_session_usd"] == 0.03
    assert usage["total"] == {"sessions": 3, "executions": 5, "cost_usd": 0.09}
    assert usage["by_key"] == {
        fingerprint("alice"): {"sessions": 2, "executions": 4, "cost_usd": 0.06},
        fingerprint("bob"): {"sessions": 1, "executions": 1, "cost_usd": 0.03},
    }


def test_usage_with_sessions_lists_rows_and_never_raw_keys(http: Http) -> None:
    sid = http.run("1", key="very-secret-key")["session_id"]
    response = http.get("/_emulator/usage?sessions=1")
    assert "very-secret-key" not in response.text
    [row] = response.json()["sessions"]
    assert row == {"id": sid, "key_fingerprint": fingerprint("very-secret-key"),
                   "started_at": row["started_at"], "ended_at": None, "end_reason": None,
                   "executions": 1, "cost_usd": 0.03}
    http.post("/_emulator/reset")
    assert http.get("/_emulator/usage?sessions=1").json()["sessions"] == []


@pytest.mark.tci_emulator(price_per_session="0.01", pool_size=2)
def test_many_sessions_cost_exactly(http: Http) -> None:
    # 0.1 + 0.2 != 0.3 in binary floats; the ledger's integer micro-dollars keep it exact.
    for _ in range(30):
        http.run("1")
    assert http.get("/_emulator/usage").json()["total"]["cost_usd"] == 0.3
    assert http.emulator.server.state.ledger.usage()["total"]["cost_usd"] == 0.3


@pytest.mark.tci_emulator(budget_usd="0.06")
def test_budget_refuses_new_sessions_with_402_but_keeps_existing(http: Http) -> None:
    first = http.run("x = 1", key="agent")["session_id"]
    http.run("1", key="agent")
    refused = http.execute("1", key="agent")
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert http.run("x", first, key="agent")["outputs"] == [
        {"type": "execute_result", "data": {"text/plain": "1"}}]
    assert http.execute("1", key="someone-else").status_code == 200
    assert http.get("/_emulator/usage").json()["by_key"][fingerprint("agent")]["sessions"] == 2


@pytest.mark.tci_emulator(budget_usd="0.09", pool_size=0)
def test_concurrent_creations_cannot_overshoot_the_budget(http: Http) -> None:
    statuses: list[int] = []
    lock = threading.Lock()

    def create() -> None:
        status = http.execute("1", key="racer").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 402, 402, 402]


def _serve(state_dir: Path) -> ServeProcess:
    return ServeProcess(["--pool-size", "0", "--state-dir", str(state_dir),
                         "--no-access-log"]).start()


def test_ledger_survives_a_restart_with_state_dir(tmp_path: Path) -> None:
    headers = {"Authorization": "Bearer persistent"}
    server = _serve(tmp_path)
    url = server.url
    try:
        body: dict[str, Any] = {"code": "1", "language": "python"}
        sid = requests.post(url + "/v1/tci/execute", json=body, headers=headers,
                            timeout=60).json()["data"]["session_id"]
        requests.post(url + "/v1/tci/execute", json={**body, "session_id": sid},
                      headers=headers, timeout=60).raise_for_status()
    finally:
        assert server.stop() == 0
    server = _serve(tmp_path)
    url = server.url
    try:
        usage = requests.get(url + "/_emulator/usage?sessions=1", timeout=10).json()
        assert usage["total"] == {"sessions": 1, "executions": 2, "cost_usd": 0.03}
        [row] = usage["sessions"]
        assert row["id"] == sid and row["end_reason"] == "server_stopped"
        # The session itself did not survive: its kernel died with the first server.
        gone = requests.post(url + "/v1/tci/execute", json={**body, "session_id": sid},
                             headers=headers, timeout=60)
        assert gone.status_code == 404
    finally:
        assert server.stop() == 0
    assert (tmp_path / "ledger.sqlite3").exists()


def test_price_setting_is_exact_decimal(http: Http) -> None:
    assert Decimal(str(http.get("/_emulator/usage").json()["price_per_session_usd"])) == \
        Decimal("0.03")
