"""Prices and usage: what the code run through the emulator would have cost on TCI.

Money is kept as integer micro-dollars, so 100 sessions at $0.03 cost exactly $3.00. The ledger
is one SQLite database: in memory by default (tests, the in-process emulator), or a file in the
state directory, where it survives restarts. Sessions cannot survive a restart (their kernels die
with the server), so rows still open when a ledger is opened are closed as ``server_stopped``.

Creating a session is charged once, to the key that created it; a budget check and the charge
happen in one transaction, so concurrent creations cannot overshoot a budget.

A ledger file is history that cannot be rebuilt, so it is never lost in silence. Opening one
takes the state directory's lock (one server per directory: a second one would close the first
one's live sessions as ``server_stopped``) and checks the file before anything is written: an
empty (0-byte) file, a file that is not SQLite, a database of some other program, or one that
``PRAGMA quick_check`` finds damaged stops the start with :class:`StateDirError`, whose one line
says what is wrong and what to do.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from .clock import format_timestamp
from .errors import BudgetExceeded

__all__ = ["Ledger", "StateDirError", "lock_state_dir", "to_micros", "to_usd"]

MICROS = Decimal(1_000_000)
_SQLITE_HEADER = b"SQLite format 3\x00"
_COLUMNS = {"id", "key_fp", "started_at", "ended_at", "end_reason", "executions", "cost_micros"}
LOCK_FILE = "lock"

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


class StateDirError(ValueError):
    """The state directory cannot be used; the message is one line saying why."""


def lock_state_dir(directory: Path) -> int:
    """Take the directory's exclusive lock for this process's life; returns the open lock file.

    ``flock`` dies with its holder whatever kills it, so a crashed server never leaves the
    directory locked. The holder's pid is written in the file, to name it to a second server.
    """
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StateDirError(f"--state-dir {directory}: cannot open its lock file: "
                            f"{exc.strerror}.") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StateDirError(f"--state-dir {directory} is in use by another tci-emulator server "
                            f"(pid {holder}); stop it or name another directory.") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _check_file(path: Path) -> None:
    """Refuse an existing ledger file that is empty or not SQLite, before SQLite opens it."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateDirError(f"{path} cannot be read: {exc.strerror}.") from None
    if not head:
        raise StateDirError(f"{path} is empty (0 bytes): the ledger it held is lost; restore it, "
                            "or move it away to start a new one.")
    if head != _SQLITE_HEADER:
        raise StateDirError(f"{path} is not a tci-emulator ledger (not an SQLite database); "
                            "move it away or name another --state-dir.")


def _check_database(db: sqlite3.Connection, path: Path) -> None:
    """``PRAGMA quick_check``, then the schema: damaged or foreign databases are refused."""
    problems = [str(row[0]) for row in db.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        first = " ".join(problems[0].split())[:150] if problems else "no answer"
        raise StateDirError(f"{path} is damaged (PRAGMA quick_check: {first}); restore it from a "
                            "backup, or move it away to start a new ledger.")
    tables = {str(row[0]) for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(sessions)")}
    if tables and ("sessions" not in tables or not _COLUMNS <= columns):
        raise StateDirError(f"{path} is an SQLite database of some other program (no "
                            "tci-emulator sessions table); move it away or name another "
                            "--state-dir.")


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
        self._dir_lock = lock_state_dir(path.parent) if path is not None else None
        try:
            self._db = self._open(path)
        except BaseException:
            if self._dir_lock is not None:
                os.close(self._dir_lock)
            raise

    @staticmethod
    def _open(path: Path | None) -> sqlite3.Connection:
        if path is None:
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            db.executescript(_SCHEMA)
            return db
        _check_file(path)
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        try:
            _check_database(db, path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StateDirError(f"{path} is damaged or not a ledger ({exc}); restore it, or "
                                "move it away to start a new one.") from None
        except BaseException:
            db.close()
            raise
        return db

    def close_open_sessions(self, at: datetime, reason: str) -> int:
        """Close every row still open (at start-up and shutdown); returns how many.

        A row that never counted an execution belongs to a creation that was still starting its
        kernel when its server died: it never answered 200, so it is withdrawn, not billed.
        """
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE ended_at IS NULL AND executions = 0")
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
                "UPDATE sessions SET ended_at = ?, end_reason = ? "
                "WHERE id = ? AND ended_at IS NULL",
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
            if self._dir_lock is not None:
                os.close(self._dir_lock)
                self._dir_lock = None
