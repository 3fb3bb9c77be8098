"""Contract sections 3, 5 and 6: sessions, their listing, their ids, and uploaded files."""

from __future__ import annotations

import base64
from datetime import datetime

from tci_emulator.ids import session_uuid, uuid_time

from .client import TIMESTAMP, assert_success, stdout_of
from .conftest import Target, Wire


def _time(text: str) -> datetime:
    assert TIMESTAMP.fullmatch(text), f"not RFC 3339 UTC with 6-digit microseconds: {text!r}"
    return datetime.fromisoformat(text)


def test_session_keeps_variables_imports_and_files_between_calls(wire: Wire) -> None:
    created = wire.run("import json\ncounter = 41",
                       files=[{"name": "notes.txt", "encoding": "string", "content": "kept"}])
    session_id = created["session_id"]
    again = wire.run("counter += 1\nprint(json.dumps(counter), open('notes.txt').read())",
                     session_id)
    assert again["session_id"] == session_id
    assert again["outputs"] == [{"type": "stdout", "data": "42 kept\n"}]


def test_call_without_session_id_starts_a_fresh_session(wire: Wire) -> None:
    first = wire.run("only_here = 1")["session_id"]
    second = wire.run("print('only_here' in globals())")
    assert second["session_id"] != first
    assert stdout_of(second) == "False\n"


def test_null_session_id_is_treated_as_absent(wire: Wire) -> None:
    first = wire.run("only_here = 1")["session_id"]
    response = wire.target.request("POST", "/v1/tci/execute", key=wire.key, body={
        "code": "print('only_here' in globals())", "language": "python", "session_id": None})
    second = assert_success(response)
    assert second["session_id"] != first
    assert stdout_of(second) == "False\n"
    assert {first, second["session_id"]} <= {s["id"] for s in wire.sessions()}


def test_files_are_written_before_the_code_runs_in_its_working_directory(wire: Wire) -> None:
    payload = bytes(range(256))
    data = wire.run(
        "import os\nraw = open('blob.bin', 'rb').read()\n"
        "print(os.path.exists(os.path.join(os.getcwd(), 'blob.bin')), len(raw),\n"
        "      raw == bytes(range(256)))\n"
        "print(open('hello.txt', encoding='utf-8').read())",
        files=[{"name": "blob.bin", "encoding": "base64",
                "content": base64.b64encode(payload).decode()},
               {"name": "hello.txt", "encoding": "string", "content": "grüße"}])
    assert data["outputs"] == [{"type": "stdout", "data": "True 256 True\ngrüße\n"}]


def test_listing_entry_has_exactly_the_contract_fields_and_timestamps(wire: Wire) -> None:
    session_id = wire.run("1")["session_id"]
    entry = wire.listed(session_id)
    assert isinstance(entry["execute_count"], int) and not isinstance(entry["execute_count"], bool)
    started = _time(entry["started_at"])
    last = _time(entry["last_execute_at"])
    expires = _time(entry["expires_at"])
    assert started <= last < expires


def test_execute_count_and_last_execute_at_include_the_creating_call(wire: Wire) -> None:
    session_id = wire.run("1")["session_id"]
    before = wire.listed(session_id)
    assert before["execute_count"] == 1
    assert _time(before["last_execute_at"]) >= _time(before["started_at"])
    wire.run("2", session_id)
    after = wire.listed(session_id)
    assert after["execute_count"] == 2
    assert _time(after["last_execute_at"]) > _time(before["last_execute_at"])
    assert after["started_at"] == before["started_at"]


def test_expires_at_is_fixed_from_creation_not_sliding(wire: Wire) -> None:
    session_id = wire.run("1")["session_id"]
    before = wire.listed(session_id)
    lifespan = _time(before["expires_at"]) - _time(before["started_at"])
    if wire.target.session_lifespan is not None:
        assert lifespan == wire.target.session_lifespan
    else:
        assert lifespan.total_seconds() > 0
    wire.run("2", session_id)
    assert wire.listed(session_id)["expires_at"] == before["expires_at"]


def test_session_id_decodes_to_a_uuid7_whose_millisecond_is_started_at(wire: Wire) -> None:
    session_id = wire.run("1")["session_id"]
    started = _time(wire.listed(session_id)["started_at"])
    value = session_uuid(session_id)
    assert value.version == 7 and value.variant == "specified in RFC 4122"
    assert uuid_time(value) == started.replace(microsecond=started.microsecond // 1000 * 1000)


def test_session_ids_sort_by_creation_time(wire: Wire) -> None:
    first = wire.run("1")["session_id"]
    second = wire.run("1")["session_id"]
    assert first < second
    assert session_uuid(first).int < session_uuid(second).int


def test_listing_shows_only_the_callers_sessions(target: Target) -> None:
    mine, theirs = Wire(target, target.key()), Wire(target, target.other_key())
    my_session = mine.run("1")["session_id"]
    their_session = theirs.run("1")["session_id"]
    my_ids = {s["id"] for s in mine.sessions()}
    their_ids = {s["id"] for s in theirs.sessions()}
    assert my_session in my_ids and their_session not in my_ids
    assert their_session in their_ids and my_session not in their_ids
    if target.accepts_any_key:  # tenants of this test's own: nothing else is listed
        assert my_ids == {my_session} and their_ids == {their_session}

