"""What needs the emulator's control plane: expiry driven by its clock, reset and usage.

Every test here is ``emulator_only``: skipped on a target without ``/_emulator``, and run on a
freshly reset target that is reset again afterwards (the clock goes back to real time).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tci_emulator.auth import fingerprint

from .client import TIMESTAMP, assert_error
from .conftest import Target, Wire

pytestmark = pytest.mark.emulator_only

ONE_MICROSECOND = timedelta(microseconds=1)


def _set_clock(target: Target, moment: datetime) -> None:
    text = moment.isoformat(timespec="microseconds")
    assert target.control("POST", "clock", {"set": text}) == {"now": text, "frozen": True}


def test_session_expires_exactly_at_expires_at(wire: Wire) -> None:
    target = wire.target
    frozen = target.control("POST", "clock", {"frozen": True})
    assert frozen["frozen"] is True and TIMESTAMP.fullmatch(frozen["now"])
    session_id = wire.run("alive = True")["session_id"]
    expires_at = datetime.fromisoformat(wire.listed(session_id)["expires_at"])

    _set_clock(target, expires_at - ONE_MICROSECOND)
    assert wire.run("print(alive)", session_id)["outputs"] == [
        {"type": "stdout", "data": "True\n"}]
    assert wire.listed(session_id)["execute_count"] == 2

    _set_clock(target, expires_at)
    for _ in range(2):  # and it stays expired
        assert_error(wire.execute("print(alive)", session_id), 410, "session_expired",
                     param="session_id")
    assert session_id not in {s["id"] for s in wire.sessions()}


def test_reset_ends_every_session_of_every_key(target: Target) -> None:
    first, second = Wire(target, target.key()), Wire(target, target.key())
    ids = [first.run("1")["session_id"], second.run("1")["session_id"]]
    assert target.control("POST", "reset") == {"status": "ok", "sessions_ended": 2}
    assert first.sessions() == [] and second.sessions() == []
    assert_error(first.execute("1", ids[0]), 404, "session_not_found", param="session_id")


def test_usage_counts_sessions_and_executions_per_key(wire: Wire) -> None:
    target = wire.target
    session_id = wire.run("1")["session_id"]
    wire.run("2", session_id)
    wire.run("3", session_id)
    usage = target.control("GET", "usage")
    assert set(usage) == {"price_per_session_usd", "budget_usd", "total", "by_key"}
    price = usage["price_per_session_usd"]
    assert isinstance(price, (int, float)) and price >= 0
    assert usage["budget_usd"] is None or isinstance(usage["budget_usd"], (int, float))
    mine = usage["by_key"][fingerprint(wire.key)]
    assert mine == {"sessions": 1, "executions": 3, "cost_usd": pytest.approx(price)}
    assert set(usage["total"]) == {"sessions", "executions", "cost_usd"}
    assert usage["total"]["sessions"] >= 1 and usage["total"]["executions"] >= 3

    rows = target.control("GET", "usage?sessions=1")["sessions"]
    row = next(r for r in rows if r["id"] == session_id)
    assert row == {"id": session_id, "key_fingerprint": fingerprint(wire.key),
                   "started_at": wire.listed(session_id)["started_at"], "ended_at": None,
                   "end_reason": None, "executions": 3, "cost_usd": pytest.approx(price)}


def test_each_call_without_session_id_is_a_new_billed_session(wire: Wire) -> None:
    target = wire.target
    for _ in range(2):
        wire.run("1")
    usage = target.control("GET", "usage")
    assert usage["by_key"][fingerprint(wire.key)] == {
        "sessions": 2, "executions": 2,
        "cost_usd": pytest.approx(2 * usage["price_per_session_usd"])}
