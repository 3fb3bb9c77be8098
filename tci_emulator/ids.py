"""Session ids as the real service made them: ``ses_`` + base58 of a UUIDv7.

Seven real ids decode to UUIDv7 values whose millisecond timestamp is the session's
``started_at``. The base58 alphabet is in ASCII order and ids are left-padded to 21 characters,
so ids sort by creation time as strings too. Within one millisecond a counter in the random bits
keeps them strictly increasing.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from datetime import datetime, timezone

__all__ = ["ALPHABET", "SessionIdFactory", "b58encode", "b58decode", "session_uuid", "uuid_time",
           "MAX_SESSION_ID_CHARS"]

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
PREFIX = "ses_"
ID_LENGTH = 21
# The longest session_id a request may name: ids are 25 characters, so anything past this is not
# an id, and is refused before any lookup (a 20 MB "id" must not be held, logged or echoed).
MAX_SESSION_ID_CHARS = 128


def b58encode(value: int, width: int = ID_LENGTH) -> str:
    """Encode a non-negative integer in base58, left-padded with the zero digit to ``width``."""
    digits: list[str] = []
    while value:
        value, rest = divmod(value, 58)
        digits.append(ALPHABET[rest])
    return "".join(reversed(digits)).rjust(width, ALPHABET[0])


def b58decode(text: str) -> int:
    """Decode base58 text; raises ``ValueError`` on a character outside the alphabet."""
    value = 0
    for char in text:
        index = ALPHABET.find(char)
        if index < 0:
            raise ValueError(f"not a base58 character: {char!r}")
        value = value * 58 + index
    return value


def session_uuid(session_id: str) -> uuid.UUID:
    """The UUID inside a ``ses_`` id."""
    if not session_id.startswith(PREFIX):
        raise ValueError("session ids start with 'ses_'")
    return uuid.UUID(int=b58decode(session_id[len(PREFIX):]))


def uuid_time(value: uuid.UUID) -> datetime:
    """The millisecond timestamp of a UUIDv7 as an aware UTC datetime."""
    return datetime.fromtimestamp((value.int >> 80) / 1000, tz=timezone.utc)


class SessionIdFactory:
    """Makes strictly increasing ``ses_`` ids whose UUIDv7 time is the given instant."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def new(self, moment: datetime) -> str:
        """An id for a session started at ``moment`` (its millisecond is kept in the UUID)."""
        millis = int(moment.timestamp() * 1000)
        with self._lock:
            rand_a = secrets.randbits(12)
            rand_b = secrets.randbits(62)
            value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
            if value <= self._last and (self._last >> 80) == millis:
                # Same millisecond: step the counter so ids stay ordered.
                value = self._last + 1
            self._last = value
        return PREFIX + b58encode(value)
