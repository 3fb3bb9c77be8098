"""Session lifespan on the emulator's clock: exact expiry, listing, 410, and the reaper."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tci_emulator import Emulator
from tci_emulator.clock import parse_timestamp

from .helpers import Http, stdout_of, wait_until
from .processes import process_gone


def _kernel_of(emulator: Emulator, session_id: str) -> tuple[int, Path]:
    [session] = [s for s in emulator.server.state.sessions.all_live() if s.id == session_id]
    assert session.kernel.pid is not None
    return session.kernel.pid, session.kernel.root


def test_expires_at_is_started_at_plus_lifespan_and_unchanged_by_use(http: Http) -> None:
    sid = http.run("1")["session_id"]
    before = http.get("/tci/sessions").json()["data"]["sessions"][0]
    http.emulator.clock.advance(600)
    http.run("2", sid)
    after = http.get("/tci/sessions").json()["data"]["sessions"][0]
    assert after["expires_at"] == before["expires_at"]
    started = parse_timestamp(before["started_at"])
    assert parse_timestamp(before["expires_at"]) - started == timedelta(hours=1)
    assert after["execute_count"] == 2 and after["last_execute_at"] > before["last_execute_at"]


def test_session_works_one_microsecond_before_expiry_and_not_at_it(http: Http) -> None:
    clock = http.emulator.clock
    clock.freeze()
    sid = http.run("x = 1")["session_id"]
    [row] = http.get("/tci/sessions").json()["data"]["sessions"]
    expires = parse_timestamp(row["expires_at"])
    clock.set(expires - timedelta(microseconds=1))
    assert stdout_of(http.run("print(x)", sid)) == "1\n"
    assert [s["id"] for s in http.get("/tci/sessions").json()["data"]["sessions"]] == [sid]
    clock.set(expires)
    response = http.execute("print(x)", sid)
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "session_expired"
    assert http.get("/tci/sessions").json()["data"]["sessions"] == []
    # Still 410 afterwards (not 404): the emulator remembers why the session is gone.
    assert http.execute("1", sid).status_code == 410


def test_expired_session_of_another_key_is_404(http: Http) -> None:
    sid = http.run("1", key="alice")["session_id"]
    http.emulator.clock.advance(3600)
    assert http.execute("1", sid, key="bob").status_code == 404
    assert http.execute("1", sid, key="alice").status_code == 410


def test_advancing_the_clock_frees_kernel_processes_and_directories(http: Http) -> None:
    sids = [http.run("1")["session_id"] for _ in range(2)]
    kernels = [_kernel_of(http.emulator, sid) for sid in sids]
    assert not any(process_gone(pid) for pid, _ in kernels)
    http.post("/_emulator/clock", {"advance_seconds": 3600})
    wait_until(lambda: all(process_gone(pid) and not root.exists()
                                   for pid, root in kernels))
    usage = http.get("/_emulator/usage?sessions=1").json()
    assert {row["end_reason"] for row in usage["sessions"]} == {"expired"}


@pytest.mark.tci_emulator(session_lifespan=2, reap_interval=0.1)
def test_reaper_ends_sessions_as_real_time_passes(http: Http) -> None:
    assert http.emulator.server.state.pool.wait_full(60)  # a warm start, well inside 2 s
    sid = http.run("1")["session_id"]
    pid, root = _kernel_of(http.emulator, sid)
    # No request and no clock move: the periodic reaper alone must free the kernel.
    wait_until(lambda: process_gone(pid) and not root.exists())
    assert http.emulator.usage(sessions=True)["sessions"][0]["end_reason"] == "expired"


@pytest.mark.tci_emulator(session_lifespan=1800)
def test_lifespan_setting_reproduces_the_observed_thirty_minutes(http: Http) -> None:
    http.run("1")
    [row] = http.get("/tci/sessions").json()["data"]["sessions"]
    delta = parse_timestamp(row["expires_at"]) - parse_timestamp(row["started_at"])
    assert delta == timedelta(minutes=30)


def test_clock_endpoint_reports_and_moves_time(http: Http) -> None:
    first = parse_timestamp(http.get("/_emulator/clock").json()["now"])
    moved = http.post("/_emulator/clock", {"advance_seconds": 7200}).json()
    assert parse_timestamp(moved["now"]) - first >= timedelta(hours=2)
    frozen = http.post("/_emulator/clock", {"frozen": True}).json()
    assert frozen["frozen"] is True
    assert http.get("/_emulator/clock").json()["now"] == frozen["now"]


@pytest.mark.parametrize("body,param", [
    ({}, "body"), ({"advance_seconds": -1}, "advance_seconds"),
    ({"advance_seconds": "soon"}, "advance_seconds"), ({"frozen": "yes"}, "frozen"),
    ({"set": "2000-01-01T00:00:00Z"}, "set"), ({"set": "not a time"}, "set"),
    ({"advance_seconds": 1e12}, "advance_seconds"), ({"advance_seconds": 1e300}, "advance_seconds"),
    ({"set": "9999-12-31T23:30:00Z"}, "set"),
])
def test_clock_rejects_bad_moves(http: Http, body: dict[str, object], param: str) -> None:
    response = http.post("/_emulator/clock", body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert http.get("/_emulator/health").status_code == 200  # and nothing was broken
    assert http.run("print(1)")["outputs"] == [{"type": "stdout", "data": "1\n"}]


def test_reset_ends_sessions_and_restores_real_time(http: Http) -> None:
    sid = http.run("1")["session_id"]
    pid, _ = _kernel_of(http.emulator, sid)
    http.emulator.clock.advance(10)
    body = http.post("/_emulator/reset").json()
    assert body["sessions_ended"] == 1
    wait_until(lambda: process_gone(pid))
    assert http.emulator.usage()["total"]["sessions"] == 0
    assert abs(http.emulator.clock.now().timestamp() - time.time()) < 5
    assert http.execute("1", sid).status_code == 404
    assert os.environ["TOGETHER_BASE_URL"] == http.emulator.base_url
