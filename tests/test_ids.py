"""Session ids: base58 of UUIDv7, as real ids decode."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tci_emulator.ids import SessionIdFactory, b58decode, b58encode, session_uuid, uuid_time

REAL_IDS = {
    "ses_CVtmHZWnVBdtZnwbZNosk": datetime(2025, 12, 8, 6, 41, 51, 890000, tzinfo=timezone.utc),
    "ses_CVtmJv6pRn1gHtiyQzEpS": datetime(2025, 12, 8, 6, 42, 10, 271000, tzinfo=timezone.utc),
}


@pytest.mark.parametrize("session_id,started", REAL_IDS.items())
def test_real_ids_decode_to_uuid7_at_their_start(session_id: str, started: datetime) -> None:
    value = session_uuid(session_id)
    assert value.version == 7 and value.variant == "specified in RFC 4122"
    assert uuid_time(value) == started


@given(st.integers(min_value=0, max_value=2**122))
@settings(max_examples=200)
def test_base58_round_trips(value: int) -> None:
    assert b58decode(b58encode(value)) == value


def test_new_ids_encode_their_millisecond_and_sort_by_creation() -> None:
    factory = SessionIdFactory()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    moments = [start + timedelta(microseconds=250 * i) for i in range(40)]
    ids = [factory.new(m) for m in moments]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for session_id, moment in zip(ids, moments, strict=True):
        assert len(session_id) == 25 and session_id.startswith("ses_")
        assert uuid_time(session_uuid(session_id)) == moment.replace(
            microsecond=moment.microsecond // 1000 * 1000)


def test_decoding_rejects_foreign_ids() -> None:
    with pytest.raises(ValueError):
        session_uuid("sess_abc")
    with pytest.raises(ValueError):
        b58decode("0OIl")
