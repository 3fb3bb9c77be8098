"""Fault injection over HTTP and through the Python handle: rules, matching, triggering, actions."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tci_emulator import Emulator
from tci_emulator.auth import fingerprint
from tci_emulator.faults import ACTIONS, REGISTRY
from tci_emulator.faults.actions import REQUIRED

from .helpers import Http, stdout_of, wait_until


def add(http: Http, rules: Any) -> list[dict[str, Any]]:
    response = http.post("/_emulator/faults", rules)
    assert response.status_code == 200, response.text
    return list(response.json()["rules"])


def test_rules_are_added_listed_and_deleted(http: Http) -> None:
    [first, second] = add(http, [{"action": "http_error", "status": 503},
                                 {"action": "latency", "seconds": 0}])
    assert first["id"] != second["id"] and first["fired"] == 0
    assert [r["id"] for r in http.get("/_emulator/faults").json()["rules"]] == [first["id"],
                                                                                second["id"]]
    assert http.session.delete(http.emulator.url + f"/_emulator/faults/{first['id']}").json() == \
        {"deleted": 1}
    assert http.session.delete(http.emulator.url + "/_emulator/faults/nope").status_code == 404
    assert http.session.delete(http.emulator.url + "/_emulator/faults").json() == {"deleted": 1}
    assert http.get("/_emulator/faults").json() == {"rules": [], "journal": []}


# A valid value for each parameter an action may require: a new required parameter needs one.
REQUIRED_SAMPLES = {"status": 503, "seconds": 0}


def test_the_registry_holds_the_documented_actions_in_order() -> None:
    assert ACTIONS == tuple(REGISTRY) == ("http_error", "latency", "hang", "reset_connection",
                                          "malformed_body", "kernel_crash", "expire_session")


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_action_is_accepted_by_the_control_plane(http: Http, name: str) -> None:
    action = REGISTRY[name]
    rule = {"action": name, **{p.name: REQUIRED_SAMPLES[p.name] for p in action.params
                               if p.default is REQUIRED}}
    [added] = add(http, rule)
    assert added["action"] == name
    assert added["operation"] == ("execute" if action.on_execution else "any")
    # Every parameter with a default shows it; the listing is the same rule.
    assert {p.name for p in action.params if p.default is not None} <= added.keys()
    assert http.get("/_emulator/faults").json()["rules"] == [added]


def test_an_unknown_action_is_a_400_naming_every_known_one(http: Http) -> None:
    response = http.post("/_emulator/faults", {"action": "explode"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "action"
    assert all(name in error["message"] for name in REGISTRY)
    assert http.get("/_emulator/faults").json()["rules"] == []


# Hop-by-hop, framing and CORS headers: a fault rule may not set them, whatever their case.
FORBIDDEN_HEADERS = [("Transfer-Encoding", "chunked"), ("connection", "close"),
                     ("Content-Length", "0"), ("Upgrade", "h2c"), ("Keep-Alive", "timeout=1"),
                     ("TE", "trailers"), ("Trailer", "x"), ("Proxy-Authenticate", "Basic"),
                     ("Access-Control-Allow-Origin", "*"), ("access-control-allow-credentials",
                                                            "true")]


@pytest.mark.parametrize("name,value", FORBIDDEN_HEADERS)
def test_a_forbidden_fault_header_is_a_400_naming_it(http: Http, name: str, value: str) -> None:
    response = http.post("/_emulator/faults", {"action": "http_error", "status": 503,
                                               "headers": {"Retry-After": "1", name: value}})
    assert response.status_code == 400
    assert repr(name) in response.json()["error"]["message"]
    assert http.get("/_emulator/faults").json()["rules"] == []


@pytest.mark.parametrize("rule,param", [
    ({"action": "explode"}, "action"), ({"action": "http_error"}, "status"),
    ({"action": "http_error", "status": 200}, "status"),
    ({"action": "http_error", "status": 500, "headers": ["x"]}, "headers"),
    ({"action": "latency"}, "seconds"), ({"action": "latency", "seconds": [3, 1]}, "seconds"),
    ({"action": "hang", "seconds": -1}, "seconds"), ({"action": "hang", "times": 0}, "times"),
    ({"action": "hang", "after": -1}, "after"),
    ({"action": "hang", "probability": 2}, "probability"),
    ({"action": "malformed_body", "mode": "weird"}, "mode"),
    ({"action": "hang", "operation": "delete"}, "operation"), ("not a rule", "body"),
    ({"action": "http_error", "status": 503, "time": 1}, "time"),
    ({"action": "latency", "seconds": 1, "status": 503}, "status"),
    ({"action": "http_error", "status": 503, "headers": {"X-A": "1\r\nSet-Cookie: x"}}, "headers"),
    ({"action": "http_error", "status": 503, "headers": {"Bad Name": "1"}}, "headers"),
    ({"action": "kernel_crash", "operation": "sessions"}, "operation"),
    ({"action": "expire_session", "operation": "sessions"}, "operation"),
    ({"action": "hang", "method": "GET /"}, "method"),
    *[({"action": "http_error", "status": 503, "headers": {name: value}}, "headers")
      for name, value in FORBIDDEN_HEADERS],
])
def test_invalid_rules_are_400_and_add_nothing(http: Http, rule: Any, param: str) -> None:
    response = http.post("/_emulator/faults", [{"action": "latency", "seconds": 0}, rule])
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert http.get("/_emulator/faults").json()["rules"] == []


def test_http_error_uses_the_contract_body_and_headers(http: Http) -> None:
    add(http, {"action": "http_error", "status": 429, "code": "rate_limited",
               "message": "Slow down.", "headers": {"Retry-After": "7"}, "times": 1})
    response = http.execute("1")
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert "retry-after" in list(response.raw.headers.keys())  # sent lower-case, as HTTP/2 does
    assert response.json() == {
        "data": None, "errors": [{"code": "rate_limited", "message": "Slow down."}],
        "error": {"message": "Slow down.", "type": "rate_limit_error", "param": None,
                  "code": "rate_limited"}}
    assert http.execute("1").status_code == 200  # retired after one firing
    assert http.emulator.usage()["total"]["sessions"] == 1  # the refused call cost nothing


@pytest.mark.parametrize("path", ["/tci/execute", "/v1/tci/execute", "/v1//tci/execute"])
def test_operation_matches_every_path_form_and_nothing_else(http: Http, path: str) -> None:
    add(http, {"action": "http_error", "status": 500, "operation": "execute"})
    assert http.execute("1", path=path).status_code == 500
    assert http.get("/v1/tci/sessions").status_code == 200
    assert http.get("/_emulator/usage").status_code == 200  # the control plane never fails


def test_matching_by_method_session_and_key(http: Http) -> None:
    sid = http.run("1", key="alice")["session_id"]
    add(http, [{"action": "http_error", "status": 502, "session_id": sid},
               {"action": "http_error", "status": 503, "key": "bob"},
               {"action": "http_error", "status": 504, "method": "GET"}])
    assert http.execute("1", sid, key="alice").status_code == 502
    assert http.execute("1", key="alice").status_code == 200
    assert http.execute("1", key="bob").status_code == 503
    assert http.get("/tci/sessions", key="alice").status_code == 504
    rules = http.get("/_emulator/faults").json()["rules"]
    assert rules[1]["key_fingerprint"] == fingerprint("bob") and "bob" not in json.dumps(rules)


def test_after_lets_requests_through_then_times_retires(http: Http) -> None:
    add(http, {"action": "http_error", "status": 503, "after": 2, "times": 2})
    assert [http.get("/tci/sessions").status_code for _ in range(6)] == [200, 200, 503, 503,
                                                                         200, 200]
    [rule] = http.get("/_emulator/faults").json()["rules"]
    assert (rule["matched"], rule["fired"], rule["retired"]) == (6, 2, True)


def test_first_rule_that_fires_wins(http: Http) -> None:
    add(http, [{"action": "http_error", "status": 501, "times": 1},
               {"action": "http_error", "status": 502}])
    assert [http.get("/tci/sessions").status_code for _ in range(3)] == [501, 502, 502]


def _fired_sequence(emulator: Emulator, count: int) -> list[bool]:
    emulator.reset()
    emulator.faults.add({"action": "http_error", "status": 503, "probability": 0.5, "seed": 7})
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    return [requests.get(emulator.base_url + "/tci/sessions", headers=headers,
                         timeout=10).status_code == 503 for _ in range(count)]


def test_seeded_probability_repeats_its_sequence(tci_emulator: Emulator) -> None:
    first = _fired_sequence(tci_emulator, 40)
    second = _fired_sequence(tci_emulator, 40)
    assert first == second and 5 < sum(first) < 35


def test_latency_delays_then_serves(http: Http) -> None:
    add(http, {"action": "latency", "seconds": [0.3, 0.4], "times": 1})
    start = time.monotonic()
    assert http.get("/tci/sessions").status_code == 200
    assert time.monotonic() - start >= 0.3


def test_hang_trips_a_client_timeout_and_reset_releases_it(http: Http) -> None:
    add(http, {"action": "hang", "seconds": 600, "operation": "sessions"})
    with pytest.raises(requests.ReadTimeout):
        http.session.get(http.emulator.base_url + "/tci/sessions", timeout=0.5,
                         headers=http.headers(http.emulator.api_key))
    start = time.monotonic()
    http.post("/_emulator/reset")
    assert http.get("/tci/sessions").status_code == 200
    assert time.monotonic() - start < 10  # the held request was released, not waited out


def test_reset_connection_closes_without_a_response(http: Http) -> None:
    add(http, {"action": "reset_connection", "times": 1})
    body = json.dumps({"code": "1", "language": "python"}).encode()
    with socket.create_connection(("127.0.0.1", int(http.emulator.url.rsplit(":", 1)[1])),
                                  timeout=10) as conn:
        conn.sendall(b"POST /v1/tci/execute HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json"
                     b"\r\nAuthorization: Bearer k\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\n\r\n" + body)
        assert conn.recv(65536) == b""  # closed, not a single byte of response
    assert http.run("print('still serving')")["outputs"][0]["data"] == "still serving\n"
    http.emulator.check()  # and nothing was recorded as a server error


def test_reset_connection_is_journalled_as_444_and_the_server_logs_nothing(
        http: Http, caplog: pytest.LogCaptureFixture) -> None:
    [rule] = add(http, {"action": "reset_connection", "times": 1})
    with caplog.at_level(logging.DEBUG), pytest.raises(requests.ConnectionError):
        http.get("/v1/tci/sessions")

    def entries() -> list[dict[str, Any]]:
        return [e for e in http.emulator.requests() if e["path"] == "/v1/tci/sessions"]

    wait_until(lambda: bool(entries()), timeout=30)  # the server journals after the client saw it
    [entry] = entries()
    assert (entry["status"], entry["fault"]) == (444, rule["id"])
    assert http.get("/v1/tci/sessions").status_code == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("mode", ["truncated", "not_json"])
def test_malformed_body_is_a_200_that_does_not_parse(http: Http, mode: str) -> None:
    add(http, {"action": "malformed_body", "mode": mode, "times": 1})
    response = http.execute("print(1)")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.text)
    assert http.emulator.usage()["total"]["sessions"] == 1  # served and billed all the same


def test_kernel_crash_kills_the_kernel_and_the_session_continues(http: Http) -> None:
    sid = http.run("x = 1")["session_id"]
    add(http, {"action": "kernel_crash", "session_id": sid, "times": 1})
    [item] = http.run("print(x)", sid)["outputs"]
    assert item["type"] == "error" and "kernel_crash" in item["data"]
    assert "variables and imports were lost" in item["data"]
    assert stdout_of(http.run("print('x' in dir())", sid)) == "False\n"


def test_expire_session_expires_it_just_before_the_run(http: Http) -> None:
    sid = http.run("x = 1")["session_id"]
    add(http, {"action": "expire_session", "session_id": sid})
    response = http.execute("print(x)", sid)
    assert response.status_code == 410 and response.json()["error"]["code"] == "session_expired"
    [row] = http.emulator.usage(sessions=True)["sessions"]
    assert row["end_reason"] == "expired" and row["executions"] == 1


def test_journal_records_fired_faults(http: Http) -> None:
    sid = http.run("1")["session_id"]
    [rule] = add(http, {"action": "http_error", "status": 503, "times": 1})
    http.execute("1", sid)
    [entry] = http.get("/_emulator/faults").json()["journal"]
    assert entry["rule_id"] == rule["id"] and entry["session_id"] == sid
    assert (entry["method"], entry["path"], entry["action"]) == ("POST", "/v1/tci/execute",
                                                                 "http_error")


def test_handle_offers_the_same_operations(tci_emulator: Emulator) -> None:
    [rule] = tci_emulator.faults.add({"action": "http_error", "status": 503})
    assert [r["id"] for r in tci_emulator.faults.rules()] == [rule["id"]]
    assert tci_emulator.faults.remove(rule["id"]) and not tci_emulator.faults.rules()
    tci_emulator.faults.add([{"action": "hang"}, {"action": "hang"}])
    tci_emulator.reset()
    assert tci_emulator.faults.rules() == [] and tci_emulator.faults.journal() == []


def test_rules_load_at_start_from_a_file_or_inline(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([{"action": "http_error", "status": 418, "operation": "sessions"}]))
    for source in (str(path), path.read_text()):
        with Emulator(faults=source, pool_size=0) as emulator:
            response = requests.get(emulator.base_url + "/tci/sessions", timeout=10,
                                    headers={"Authorization": "Bearer k"})
            assert response.status_code == 418


def test_handle_rules_shows_the_rules_in_order(tci_emulator: Emulator) -> None:
    added = tci_emulator.faults.add([{"action": "latency", "seconds": 0},
                                     {"action": "http_error", "status": 502}])
    assert tci_emulator.faults.rules() == added


def test_execution_faults_are_not_used_up_by_listing_calls(http: Http) -> None:
    [rule] = add(http, {"action": "kernel_crash", "times": 1})
    assert rule["operation"] == "execute"
    assert http.get("/v1/tci/sessions").status_code == 200
    [item] = http.run("print(1)")["outputs"]
    assert item["type"] == "error"
    assert f"KernelDied: fault rule {rule['id']} (kernel_crash) killed" in item["data"]
    assert http.get("/_emulator/faults").json()["rules"][0]["fired"] == 1


def test_expire_session_never_matches_a_call_that_creates_its_session(http: Http) -> None:
    add(http, {"action": "expire_session", "times": 1})
    sid = http.run("x = 1")["session_id"]  # a new session: nothing to expire
    response = http.execute("print(x)", sid)
    assert response.status_code == 410
    assert http.get("/_emulator/faults").json()["rules"][0]["fired"] == 1


def test_session_rules_match_a_body_sent_with_a_form_content_type(http: Http) -> None:
    sid = http.run("1")["session_id"]
    add(http, {"action": "http_error", "status": 503, "session_id": sid})
    body = json.dumps({"code": "1", "language": "python", "session_id": sid})
    response = http.session.post(http.emulator.url + "/tci/execute", data=body, timeout=60,
                                 headers={**http.headers(http.emulator.api_key),
                                          "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 503  # as curl -d sends it


def test_stopping_the_emulator_answers_a_held_request_with_503() -> None:
    emulator = Emulator(pool_size=0).start()
    replies: list[requests.Response] = []
    try:
        emulator.faults.add({"action": "hang", "seconds": 120})
        caller = threading.Thread(target=lambda: replies.append(requests.get(
            emulator.base_url + "/tci/sessions", timeout=60,
            headers={"Authorization": f"Bearer {emulator.api_key}"})))
        caller.start()
        wait_until(lambda: bool(emulator.faults.journal()), timeout=30)
    finally:
        emulator.stop()
    caller.join(timeout=30)
    [reply] = replies
    assert reply.status_code == 503 and reply.json()["error"]["code"] == "emulator_stopping"


def test_bad_rules_file_stops_the_start_before_any_kernel_or_thread(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([{"action": "http_error", "status": 503, "tiems": 2}]))
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(ValueError, match=r"faults\.json.*'tiems'"):
        Emulator(faults=str(path), pool_size=1).start()
    assert {t.name for t in threading.enumerate()} <= before


@pytest.mark.parametrize("problem,text", [("unknown field", '[{"action": "hang", "x": 1}]'),
                                          ("not JSON", "[{"), ("missing", None)])
def test_serve_reports_bad_fault_rules_in_one_line_and_exits_2(tmp_path: Path, problem: str,
                                                               text: str | None) -> None:
    path = tmp_path / "faults.json"
    if text is not None:
        path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "tci_emulator", "serve", "--port", "0",
                             "--pool-size", "0", "--faults", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, (problem, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith(f"tci-emulator: fault rules ({path}): ")
