"""Prices and usage: what the code run through the emulator would have cost on TCI.

Money is kept as integer micro-dollars, so 100 sessions at $0.03 cost exactly $3.00. The ledger
is one SQLite database: in memory by default (tests, the in-process emulator), or a file in the
state directory, where it survives restarts. Sessions cannot survive a restart (their kernels die
with the server), so rows still open when a ledger is opened are closed as ``server_stopped``.

Creating a session is charged once, to the key that created it; a budget check and the charge
happen in one transaction, so concurrent creations cannot overshoot a budget.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from .clock import format_timestamp
from .errors import BudgetExceeded

__all__ = ["Ledger", "to_micros", "to_usd"]

MICROS = Decimal(1_000_000)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    key_fp TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    end_reason TEXT,
    executions INTEGER NOT NULL DEFAULT 0,
    cost_micros INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_key ON sessions (key_fp);
"""


def to_micros(usd: Decimal) -> int:
    """Dollars to integer micro-dollars; refuses amounts finer than a micro-dollar."""
    micros = usd * MICROS
    if micros != micros.to_integral_value():
        raise ValueError(f"{usd} USD is finer than one micro-dollar")
    return int(micros)


def to_usd(micros: int) -> float:
    """Micro-dollars as a JSON number whose text is the exact decimal amount (e.g. 0.09)."""
    return float(Decimal(micros) / MICROS)


@dataclass(frozen=True)
class Totals:
    """Sessions, executions and cost of one key or of everything."""

    sessions: int
    executions: int
    cost_micros: int

    def as_json(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "executions": self.executions,
                "cost_usd": to_usd(self.cost_micros)}


class Ledger:
    """Charges sessions, counts executions and reports usage; thread-safe."""

    def __init__(self, price_usd: Decimal, *, budget_usd: Decimal | None = None,
                 path: Path | None = None) -> None:
        self.price_micros = to_micros(price_usd)
        self.budget_micros = to_micros(budget_usd) if budget_usd is not None else None
        self.persistent = path is not None
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False,
                                   isolation_level=None)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close_open_sessions(self, at: datetime, reason: str) -> int:
        """Close every row still open (at start-up and shutdown); returns how many."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE sessions SET ended_at = ?, end_reason = ? WHERE ended_at IS NULL",
                (format_timestamp(at), reason))
            return cur.rowcount

    def open_session(self, session_id: str, key_fp: str, started_at: datetime) -> None:
        """Charge a new session to ``key_fp``; raises :class:`BudgetExceeded` past the budget."""
        with self._lock:
            if self.budget_micros is not None:
                (spent,) = self._db.execute(
                    "SELECT COALESCE(SUM(cost_micros), 0) FROM sessions WHERE key_fp = ?",
                    (key_fp,)).fetchone()
                if spent + self.price_micros > self.budget_micros:
                    raise BudgetExceeded(
                        f"Creating a session would cost ${to_usd(self.price_micros)} and take this "
                        f"key past its budget of ${to_usd(self.budget_micros)} "
                        f"(spent ${to_usd(spent)}).")
            self._db.execute(
                "INSERT INTO sessions (id, key_fp, started_at, cost_micros) VALUES (?, ?, ?, ?)",
                (session_id, key_fp, format_timestamp(started_at), self.price_micros))

    def cancel_session(self, session_id: str) -> None:
        """Forget a session that never started (its kernel failed): nothing is charged."""
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    def count_execution(self, session_id: str) -> None:
        """Count one execution of a session."""
        with self._lock:
            self._db.execute("UPDATE sessions SET executions = executions + 1 WHERE id = ?",
                             (session_id,))

    def end_session(self, session_id: str, at: datetime, reason: str) -> None:
        """Record when and why a session ended (first reason wins)."""
        with self._lock:
            self._db.execute(
                "UPDATE sessions SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL",
                (format_timestamp(at), reason, session_id))

    def session(self, session_id: str) -> dict[str, Any] | None:
        """One session's row, or ``None``."""
        rows = self._rows("WHERE id = ?", (session_id,))
        return rows[0] if rows else None

    def sessions(self) -> list[dict[str, Any]]:
        """Every session's row, oldest first."""
        return self._rows("", ())

    def _rows(self, where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, key_fp, started_at, ended_at, end_reason, executions, cost_micros "
                f"FROM sessions {where} ORDER BY started_at, id", params).fetchall()
        return [{"id": r[0], "key_fingerprint": r[1], "started_at": r[2], "ended_at": r[3],
                 "end_reason": r[4], "executions": r[5], "cost_usd": to_usd(r[6])} for r in rows]

    def usage(self, *, include_sessions: bool = False) -> dict[str, Any]:
        """The body of ``GET /_emulator/usage``."""
        with self._lock:
            total = Totals(*self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(executions), 0), COALESCE(SUM(cost_micros), 0) "
                "FROM sessions").fetchone())
            by_key = {row[0]: Totals(*row[1:]) for row in self._db.execute(
                "SELECT key_fp, COUNT(*), SUM(executions), SUM(cost_micros) FROM sessions "
                "GROUP BY key_fp ORDER BY key_fp")}
        body: dict[str, Any] = {
            "price_per_session_usd": to_usd(self.price_micros),
            "budget_usd": to_usd(self.budget_micros) if self.budget_micros is not None else None,
            "total": total.as_json(),
            "by_key": {fp: t.as_json() for fp, t in by_key.items()},
        }
        if include_sessions:
            body["sessions"] = self.sessions()
        return body

    def clear(self) -> None:
        """Forget everything (reset of an in-memory ledger)."""
        with self._lock:
            self._db.execute("DELETE FROM sessions")

    def close(self) -> None:
        with self._lock:
            self._db.close()
