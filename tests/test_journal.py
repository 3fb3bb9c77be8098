"""The request journal: what each request was, who sent it, bounded, cleared by a reset."""

from __future__ import annotations

import json
from typing import Any

import pytest
from werkzeug.datastructures import Headers

from tci_emulator import Emulator
from tci_emulator.auth import fingerprint
from tci_emulator.clock import parse_timestamp
from tci_emulator.journal import RequestJournal, sdk_identity

from .helpers import Http
from .sdks import PINNED, SdkClient, SdkDrivers

UNKNOWN_SESSION = "ses_CVtmHZWnVBdtZnwbZNosk"


def _journal(http: Http, query: str = "") -> list[dict[str, Any]]:
    response = http.get("/_emulator/requests" + query)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["capacity"] == 1000
    return list(body["requests"])


def test_each_request_is_journaled_with_status_session_fingerprint_and_duration(
        http: Http) -> None:
    session_id = http.run("x = 1")["session_id"]
    assert http.execute("x", UNKNOWN_SESSION).status_code == 404
    assert http.session.get(http.emulator.url + "/v1/tci/sessions", timeout=60).status_code == 401
    entries = _journal(http)
    assert [(e["method"], e["path"], e["status"], e["session_id"]) for e in entries] == [
        ("POST", "/v1/tci/execute", 200, session_id),
        ("POST", "/v1/tci/execute", 404, UNKNOWN_SESSION),
        ("GET", "/v1/tci/sessions", 401, None),
    ]
    key_fp = fingerprint(http.emulator.api_key)
    assert [e["key_fingerprint"] for e in entries] == [key_fp, key_fp, None]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert all(e["fault"] is None for e in entries)
    assert entries[0]["duration_ms"] > 0
    times = [parse_timestamp(e["time"]) for e in entries]
    assert times == sorted(times)
    assert entries[0]["sdk"]["user_agent"].startswith("python-requests/")
    assert entries[0]["sdk"]["retry_count"] is None


def test_a_rejected_key_is_journaled_by_fingerprint_never_in_clear(tci_emulator: Emulator) -> None:
    http = Http(tci_emulator)
    secret = "sk-very-secret-key-0123456789"
    http.run("1", key=secret)
    http.post("/_emulator/clock", {"advance_seconds": 1}, key="admin-token-is-not-a-tenant")
    entries = tci_emulator.requests()
    assert [e["key_fingerprint"] for e in entries] == [fingerprint(secret), None]
    assert secret not in json.dumps(entries)


def test_limit_keeps_the_newest_entries_last(http: Http) -> None:
    for code in ("1", "2", "3"):
        http.run(code)
    assert [e["seq"] for e in _journal(http, "?limit=2")] == [2, 3]
    assert [e["seq"] for e in _journal(http, "?limit=10")] == [1, 2, 3]
    assert _journal(http, "?limit=0") == []
    for bad in ("-1", "two", "1.5", "\u00b2"):
        response = http.get("/_emulator/requests", params={"limit": bad})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "limit"


def test_reading_the_journal_does_not_fill_it_and_reset_clears_it(
        http: Http, tci_emulator: Emulator) -> None:
    http.run("1")
    _journal(http)
    _journal(http)
    assert [e["path"] for e in tci_emulator.requests()] == ["/v1/tci/execute"]
    tci_emulator.reset()
    assert tci_emulator.requests() == [] and _journal(http) == []
    http.run("2")
    assert [e["seq"] for e in tci_emulator.requests()] == [1]  # numbering starts again


def test_journal_is_a_ring_of_the_newest_entries() -> None:
    journal = RequestJournal(capacity=3)
    for n in range(5):
        journal.record(time="t", method="GET", path=f"/{n}", status=200, session_id=None,
                       key_fp=None, duration_ms=1.0, fault=None, headers=Headers())
    assert [e["path"] for e in journal.entries()] == ["/2", "/3", "/4"]
    assert [e["seq"] for e in journal.entries(limit=2)] == [4, 5]


def test_sdk_identity_is_read_from_stainless_and_legacy_headers() -> None:
    stainless = sdk_identity(Headers({
        "user-agent": "Together/Python 2.42.0", "x-stainless-lang": "python",
        "x-stainless-package-version": "2.42.0", "x-stainless-runtime": "CPython",
        "x-stainless-runtime-version": "3.11.9", "x-stainless-os": "Linux",
        "x-stainless-arch": "x64", "x-stainless-retry-count": "2"}))
    assert stainless == {"user_agent": "Together/Python 2.42.0", "package_version": "2.42.0",
                         "language": "python", "runtime": "CPython",
                         "runtime_version": "3.11.9", "os": "Linux", "arch": "x64",
                         "retry_count": 2}
    legacy = sdk_identity(Headers({
        "User-Agent": "Together/v1 PythonBindings/1.5.35",
        "X-Together-Client-User-Agent": json.dumps(
            {"bindings_version": "1.5.35", "lang": "python", "lang_version": "3.11.9"})}))
    assert (legacy["package_version"], legacy["language"], legacy["runtime_version"],
            legacy["retry_count"]) == ("1.5.35", "python", "3.11.9", None)
    bare = sdk_identity(Headers({"User-Agent": "Together/JS 0.52.0",
                                 "X-Stainless-Retry-Count": "not a number"}))
    assert (bare["package_version"], bare["language"], bare["retry_count"]) == \
        ("0.52.0", "js", None)
    assert len(sdk_identity(Headers({"User-Agent": "x" * 100_000}))["user_agent"]) == 200


@pytest.mark.sdk
@pytest.mark.parametrize("name, language", [("v1", "python"), ("v2", "python"), ("ts", "js")])
def test_each_official_sdk_is_identified_with_its_version(
        sdk_drivers: SdkDrivers, tci_emulator: Emulator, name: str, language: str) -> None:
    sdk: SdkClient = sdk_drivers.client(name, tci_emulator)
    sdk.run("print(1)")
    [entry] = [e for e in tci_emulator.requests() if e["path"] == "/v1/tci/execute"]
    identity = entry["sdk"]
    assert (identity["package_version"], identity["language"]) == (PINNED[name], language)
    assert identity["retry_count"] == (None if name == "v1" else 0)
    assert entry["key_fingerprint"] == fingerprint(tci_emulator.api_key)


@pytest.mark.sdk
def test_sdk_v2_retry_after_an_injected_503_is_two_entries_with_retry_counts_0_and_1(
        sdk_drivers: SdkDrivers, tci_emulator: Emulator, http: Http) -> None:
    rule = http.post("/_emulator/faults", {"operation": "execute", "action": "http_error",
                                           "status": 503, "times": 1,
                                           "headers": {"Retry-After": "0"}})
    assert rule.status_code in (200, 201), rule.text
    [rule_id] = [r["id"] for r in rule.json()["rules"]]
    data = sdk_drivers.client("v2", tci_emulator).run("print('after the retry')")
    entries = [e for e in tci_emulator.requests() if e["path"] == "/v1/tci/execute"]
    assert [(e["status"], e["sdk"]["retry_count"]) for e in entries] == [(503, 0), (200, 1)]
    assert (entries[0]["fault"], entries[1]["fault"]) == (rule_id, None)
    assert (entries[0]["session_id"], entries[1]["session_id"]) == (None, data["session_id"])


def test_every_value_a_client_sends_is_kept_cut_to_200_characters(
        http: Http, tci_emulator: Emulator) -> None:
    tci_emulator.faults.add({"action": "http_error", "status": 503, "times": 1})
    long_path = "/v1/tci/execute" + "/x" * 5000
    assert http.post(long_path, {}).status_code == 404
    assert http.session.get(tci_emulator.url + "/v1/tci/sessions", timeout=60, headers={
        **http.headers(tci_emulator.api_key), "User-Agent": "u" * 10_000}).status_code == 503
    entries = _journal(http)
    assert [len(e["path"]) for e in entries] == [200, len("/v1/tci/sessions")]
    assert entries[0]["path"].endswith(f"...[{len(long_path)} chars]")
    assert len(entries[1]["sdk"]["user_agent"]) == 200
    assert all(len(value) <= 200 for entry in tci_emulator.faults.journal()
               for value in entry.values() if isinstance(value, str))


def test_journal_entries_name_the_sdk_from_the_headers_kept_at_record_time() -> None:
    journal = RequestJournal()
    described = {"bindings_version": "1.5.35", "lang": "python", "lang_version": "3.11.9",
                 "uname": "Linux " + "x" * 600}  # longer than any value the journal keeps
    headers = Headers({"User-Agent": "Together/v1 PythonBindings/1.5.35",
                       "X-Together-Client-User-Agent": json.dumps(described)})
    assert journal.record(time="t", method="POST", path="/v1/tci/execute", status=200,
                          session_id=None, key_fp=None, duration_ms=1.0, fault=None,
                          headers=headers) == 1
    headers["User-Agent"] = "changed after the request"  # the entry does not hold the headers
    [entry] = journal.entries()
    assert entry["sdk"] == sdk_identity(Headers({
        "User-Agent": "Together/v1 PythonBindings/1.5.35",
        "X-Together-Client-User-Agent": json.dumps(described)}))
    assert (entry["sdk"]["package_version"], entry["sdk"]["runtime_version"]) == \
        ("1.5.35", "3.11.9")
