"""The adjustable clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tci_emulator.clock import Clock, format_timestamp, parse_timestamp


def test_advance_moves_time_and_notifies_listeners() -> None:
    clock = Clock()
    calls: list[datetime] = []
    clock.subscribe(lambda: calls.append(clock.now()))
    before = clock.now()
    clock.advance(3600)
    assert clock.now() - before >= timedelta(hours=1)
    assert len(calls) == 1


def test_frozen_clock_stands_still_until_set() -> None:
    clock = Clock()
    frozen_at = clock.freeze()
    assert clock.now() == frozen_at and clock.frozen
    target = frozen_at + timedelta(microseconds=1)
    clock.set(target)
    assert clock.now() == target
    clock.freeze(False)
    assert clock.now() >= target and not clock.frozen


def test_the_clock_never_moves_back() -> None:
    clock = Clock()
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(clock.now() - timedelta(seconds=5))


def test_timestamps_are_rfc3339_utc_with_microseconds() -> None:
    moment = datetime(2025, 12, 8, 6, 42, 10, 271865, tzinfo=timezone.utc)
    assert format_timestamp(moment) == "2025-12-08T06:42:10.271865+00:00"
    assert format_timestamp(moment.replace(microsecond=0)) == "2025-12-08T06:42:10.000000+00:00"
    assert parse_timestamp("2025-12-08T06:42:10.271865Z") == moment
