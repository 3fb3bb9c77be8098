"""A reset is a barrier: what was in flight across it leaves nothing after it.

Each test starts calls that a fault rule holds, that wait for a kernel to start, or that run code,
then resets the emulator as the pytest fixture does between two tests, and checks what the next
test would see: no session, no charge, no journal entry or transcript, no kernel left running,
and for the held call itself a 503 naming the reset (which SDKv2 and TS are told not to retry).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tci_emulator import Emulator

from ..helpers import Http, InFlight, wait_until

CREATE = {"code": "print('from before the reset')", "language": "python"}


def assert_ended_by_reset(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "emulator_reset"
    assert response.headers["x-should-retry"] == "false"


def assert_nothing_left(emulator: Emulator) -> None:
    """What the next test would see: nothing of the calls from before the reset."""
    assert emulator.sessions() == []
    assert emulator.usage(sessions=True)["sessions"] == []
    assert [e["path"] for e in emulator.requests()] == []
    assert emulator.server.state.transcripts.session_ids() == []


@pytest.mark.parametrize("action", ["hang", "latency"])
def test_a_creation_held_by_a_fault_ends_with_503_at_reset_and_leaves_nothing(
        tci_emulator: Emulator, action: str) -> None:
    tci_emulator.faults.add({"action": action, "seconds": 600, "operation": "execute"})
    held = InFlight(tci_emulator, CREATE)
    wait_until(lambda: tci_emulator.faults.rules()[0]["fired"] == 1)
    tci_emulator.reset()  # what the fixture does before the next test
    assert_ended_by_reset(held.response(timeout=30))
    assert_nothing_left(tci_emulator)


def test_an_execution_held_by_a_fault_does_not_run_in_the_next_test(http: Http) -> None:
    emulator = http.emulator
    session_id = http.run("x = 1")["session_id"]
    emulator.faults.add({"action": "hang", "seconds": 600, "session_id": session_id})
    held = InFlight(emulator, {**CREATE, "session_id": session_id})
    wait_until(lambda: emulator.faults.rules()[0]["fired"] == 1)
    emulator.reset()
    assert_ended_by_reset(held.response(timeout=30))
    assert_nothing_left(emulator)


@pytest.mark.tci_emulator(pool_size=0)
def test_a_cold_start_at_reset_is_stopped_and_not_billed(tci_emulator: Emulator) -> None:
    launcher = tci_emulator.server.state.launcher
    starting = InFlight(tci_emulator, CREATE)
    wait_until(lambda: launcher.live_kernels == 1)  # its kernel is starting
    tci_emulator.reset()
    assert_ended_by_reset(starting.response())
    assert_nothing_left(tci_emulator)
    wait_until(lambda: launcher.live_kernels == 0)  # the kernel it was starting is stopped


@pytest.mark.tci_emulator(pool_size=0)
def test_four_creations_in_flight_at_reset_all_answer_503_and_cost_nothing(
        tci_emulator: Emulator) -> None:
    launcher = tci_emulator.server.state.launcher
    calls = [InFlight(tci_emulator, CREATE, key=f"key-{i}") for i in range(4)]
    wait_until(lambda: launcher.live_kernels == 4)
    tci_emulator.reset()
    for call in calls:
        assert_ended_by_reset(call.response())
    assert tci_emulator.usage()["total"] == {"sessions": 0, "executions": 0, "cost_usd": 0.0}
    assert_nothing_left(tci_emulator)
    wait_until(lambda: launcher.live_kernels == 0)
    # And the emulator serves the next test as usual.
    response = requests.post(tci_emulator.base_url + "/tci/execute", json=CREATE, timeout=60,
                             headers={"Authorization": f"Bearer {tci_emulator.api_key}"})
    assert response.status_code == 200
    assert tci_emulator.usage()["total"]["sessions"] == 1


def test_code_running_at_reset_ends_at_once_and_is_not_recorded(http: Http) -> None:
    emulator = http.emulator
    session_id = http.run("import time")["session_id"]
    running = InFlight(emulator, {"code": "time.sleep(600)", "language": "python",
                                  "session_id": session_id})
    wait_until(lambda: emulator.usage()["total"]["executions"] == 2)  # counted: it runs
    emulator.reset()
    assert_ended_by_reset(running.response(timeout=30))
    assert_nothing_left(emulator)


@pytest.mark.tci_emulator(pool_size=0)
def test_a_creation_is_never_answered_410_when_the_clock_moves_meanwhile(
        tci_emulator: Emulator) -> None:
    launcher = tci_emulator.server.state.launcher
    starting = InFlight(tci_emulator, CREATE)
    wait_until(lambda: launcher.live_kernels == 1)
    tci_emulator.clock.advance(7200)  # past the whole lifespan while the kernel starts
    response = starting.response()
    assert response.status_code == 200, response.text
    session_id = response.json()["data"]["session_id"]
    [row] = tci_emulator.usage(sessions=True)["sessions"]
    assert row["id"] == session_id and row["cost_usd"] == 0.03
    # It answered, so it was billed; it is expired from the next look on.
    later = requests.post(tci_emulator.base_url + "/tci/execute",
                          json={**CREATE, "session_id": session_id}, timeout=60,
                          headers={"Authorization": f"Bearer {tci_emulator.api_key}"})
    assert later.status_code == 410


def test_with_a_state_dir_a_creation_cut_by_a_reset_leaves_no_ledger_row(
        tmp_path: Path) -> None:
    # The in-memory ledger is cleared by a reset anyway; a persistent one is not, so the row of
    # a creation that never answered 200 must be withdrawn, not left behind as "reset".
    with Emulator(pool_size=0, state_dir=tmp_path) as emulator:
        launcher = emulator.server.state.launcher
        answered = requests.post(emulator.base_url + "/tci/execute", json=CREATE, timeout=60,
                                 headers={"Authorization": f"Bearer {emulator.api_key}"})
        assert answered.status_code == 200
        starting = InFlight(emulator, CREATE)
        wait_until(lambda: launcher.live_kernels == 2)
        emulator.reset()
        assert_ended_by_reset(starting.response())
        rows = emulator.usage(sessions=True)["sessions"]
        assert [(r["id"], r["end_reason"]) for r in rows] == \
            [(answered.json()["data"]["session_id"], "reset")]
