"""The ledger on its own: exact money, budgets, persistence."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tci_emulator.errors import BudgetExceeded
from tci_emulator.ledger import Ledger, to_micros

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def ledgers() -> Iterator[Callable[..., Ledger]]:
    """Makes in-memory ledgers at $0.03 a session and closes them after the test (an unclosed
    sqlite3 connection is a ResourceWarning from Python 3.13, an error under this suite)."""
    made: list[Ledger] = []

    def make(**settings: Any) -> Ledger:
        made.append(Ledger(Decimal("0.03"), **settings))
        return made[-1]

    yield make
    for ledger in made:
        ledger.close()


def test_hundred_sessions_cost_exactly_three_dollars(ledgers: Callable[..., Ledger]) -> None:
    ledger = ledgers()
    for i in range(100):
        ledger.open_session(f"ses_{i:03d}", "k", T0)
    assert ledger.usage()["total"] == {"sessions": 100, "executions": 0, "cost_usd": 3.0}
    assert repr(ledger.usage()["total"]["cost_usd"]) == "3.0"


def test_budget_is_per_key_and_exact_at_the_edge(ledgers: Callable[..., Ledger]) -> None:
    ledger = ledgers(budget_usd=Decimal("0.09"))
    for i in range(3):
        ledger.open_session(f"a{i}", "alice", T0)
    with pytest.raises(BudgetExceeded):
        ledger.open_session("a3", "alice", T0)
    ledger.open_session("b0", "bob", T0)
    ledger.cancel_session("a2")
    ledger.open_session("a4", "alice", T0)


def test_prices_finer_than_a_micro_dollar_are_refused() -> None:
    assert to_micros(Decimal("0.000001")) == 1
    with pytest.raises(ValueError):
        to_micros(Decimal("0.0000001"))


def test_persistent_ledger_closes_open_rows_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(Decimal("0.03"), path=path)
    ledger.open_session("s1", "k", T0)
    ledger.count_execution("s1")
    ledger.close()
    reopened = Ledger(Decimal("0.03"), path=path)
    assert reopened.close_open_sessions(T0, "server_stopped") == 1
    row = reopened.session("s1")
    assert row is not None and row["end_reason"] == "server_stopped" and row["executions"] == 1
    reopened.close()


def test_first_end_reason_wins(ledgers: Callable[..., Ledger]) -> None:
    ledger = ledgers()
    ledger.open_session("s1", "k", T0)
    ledger.end_session("s1", T0, "expired")
    ledger.end_session("s1", T0, "reset")
    assert ledger.sessions()[0]["end_reason"] == "expired"


def test_a_creation_cut_by_a_dead_server_before_it_ran_is_withdrawn_on_reopen(
        tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(Decimal("0.03"), path=path)
    ledger.open_session("answered", "k", T0)
    ledger.count_execution("answered")
    ledger.open_session("starting", "k", T0)  # charged, its kernel still starting
    ledger.close()
    reopened = Ledger(Decimal("0.03"), path=path)
    assert reopened.close_open_sessions(T0, "server_stopped") == 1
    assert [row["id"] for row in reopened.sessions()] == ["answered"]
    reopened.close()
