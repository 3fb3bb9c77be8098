"""Access log lines: one per request, as text or as one JSON object, safe to print.

Paths, session ids and methods come from the client. Written raw, a newline forges a second log
line and an ANSI escape drives the terminal of whoever reads the log. Text lines therefore escape
every control character (C0, DEL, C1), the Unicode line separators, the bidirectional overrides
and the backslash itself (so an escape can't be forged either) as ``\\xNN``/``\\uNNNN``; JSON
lines leave escaping to ``json.dumps`` with ``ensure_ascii``, which covers the same characters.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

__all__ = ["AccessRecord", "escape", "format_line", "log_access", "log_refusal", "LOG_FORMATS",
           "access_logger"]

LOG_FORMATS = ("text", "json")
access_logger = logging.getLogger("tci_emulator.access")
_UNSAFE = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\\\\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(value: str) -> str:
    """``value`` with every character that could forge a line or drive a terminal escaped."""
    return _UNSAFE.sub(_escaped, value)


@dataclass(frozen=True)
class AccessRecord:
    """One request as the access log shows it."""

    time: str
    method: str
    path: str
    status: int
    session: str | None
    key_fingerprint: str | None
    ms: float
    fault: str | None


def format_line(record: AccessRecord, log_format: str = "text") -> str:
    """The log line of one request: ``text`` (for people) or ``json`` (one object per line)."""
    if log_format == "json":
        return json.dumps({**asdict(record), "ms": round(record.ms, 3)}, ensure_ascii=True)
    extra = "".join(f" {name}={escape(value)}" for name, value in
                    (("key", record.key_fingerprint), ("fault", record.fault)) if value)
    return (f"{escape(record.method)} {escape(record.path)} {record.status} "
            f"session={escape(record.session or '-')} {record.ms:.1f}ms{extra}")


def log_access(logger: logging.Logger, record: AccessRecord, log_format: str = "text") -> None:
    """Write one request's line at INFO (``%s`` formatting: the line is never a format string)."""
    logger.info("%s", format_line(record, log_format))


def log_refusal(method: str, path: str, status: int, ms: float, log_format: str) -> None:
    """Log a request the front door answered itself (the app never saw it)."""
    log_access(access_logger, AccessRecord(
        time=datetime.now(timezone.utc).isoformat(), method=method, path=path, status=status,
        session=None, key_fingerprint=None, ms=ms, fault=None), log_format)
