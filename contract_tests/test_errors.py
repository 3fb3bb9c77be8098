"""Contract sections 2 and 8: requests that cannot be served get a 4xx status and the one
JSON error body (TCI's ``errors`` list plus Together's ``error`` object), never HTML."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from .client import EXECUTE, NO_BODY, SESSIONS, assert_error, assert_json
from .conftest import Target, Wire

UNKNOWN_SESSION = "ses_CVtmHZWnVBdtZnwbZNosk"  # a real id of the hosted service (2025-12-08)

GOOD = {"code": "print(1)", "language": "python"}
BAD_BODIES: list[tuple[str, Any, str]] = [
    ("code missing", {"language": "python"}, "code"),
    ("code not a string", {"code": 1, "language": "python"}, "code"),
    ("language missing", {"code": "print(1)"}, "language"),
    ("language not python", {"code": "print(1)", "language": "javascript"}, "language"),
    ("session_id a number", {**GOOD, "session_id": 5}, "session_id"),
    ("session_id empty", {**GOOD, "session_id": ""}, "session_id"),
    ("files not an array", {**GOOD, "files": {"name": "a.txt"}}, "files"),
    ("file encoding unknown",
     {**GOOD, "files": [{"name": "a.txt", "encoding": "hex", "content": "00"}]},
     "files[0].encoding"),
    ("file content not base64",
     {**GOOD, "files": [{"name": "a.bin", "encoding": "base64", "content": "!!!"}]},
     "files[0].content"),
    ("file name missing", {**GOOD, "files": [{"encoding": "string", "content": "x"}]},
     "files[0].name"),
    ("body an array", [GOOD], "body"),
]


@pytest.mark.parametrize("body,param", [(b, p) for _, b, p in BAD_BODIES],
                         ids=[name for name, _, _ in BAD_BODIES])
def test_invalid_execute_body_is_a_400_naming_the_field(wire: Wire, body: Any,
                                                        param: str) -> None:
    response = wire.target.request("POST", EXECUTE, key=wire.key, body=body)
    assert_error(response, 400, "invalid_request", param=param)


@pytest.mark.parametrize("raw", ["not json", "", "{\"code\": "],
                         ids=["not JSON", "empty", "truncated JSON"])
def test_unparseable_execute_body_is_a_400_naming_the_body(wire: Wire, raw: str) -> None:
    response = wire.target.request("POST", EXECUTE, key=wire.key, raw=raw,
                                   headers={"Content-Type": "application/json"})
    assert_error(response, 400, "invalid_request", param="body")


@pytest.mark.parametrize("method,path", [("POST", EXECUTE), ("GET", SESSIONS)])
@pytest.mark.parametrize("authorization",
                         [None, "", "Basic dXNlcjpwYXNz", "Bearer ", "Bearer", "token"],
                         ids=["no header", "empty header", "basic scheme", "empty bearer",
                              "bare bearer", "no scheme"])
def test_missing_or_malformed_key_is_a_401(target: Target, method: str, path: str,
                                           authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    body = GOOD if method == "POST" else NO_BODY
    response = target.request(method, path, key=None, body=body, headers=headers)
    assert_error(response, 401, "invalid_api_key")


def test_a_key_never_seen_is_a_401_or_a_new_tenant_with_no_sessions(target: Target) -> None:
    response = target.request("GET", SESSIONS, key=f"contract-unknown-{uuid.uuid4().hex}")
    if target.accepts_any_key:  # an emulator without --api-key: every key is a tenant
        assert assert_json(response, 200) == {"data": {"sessions": []}, "errors": None}
    else:
        assert_error(response, 401, "invalid_api_key")


def test_unknown_and_foreign_session_ids_answer_the_same_404(target: Target) -> None:
    owner, stranger = Wire(target, target.key()), Wire(target, target.other_key())
    owned = owner.run("secret = 1")["session_id"]
    foreign = assert_error(stranger.execute("print(secret)", owned), 404, "session_not_found",
                           param="session_id")
    unknown = assert_error(stranger.execute("print(1)", UNKNOWN_SESSION), 404,
                           "session_not_found", param="session_id")
    assert (json.dumps(foreign).replace(owned, "<id>")
            == json.dumps(unknown).replace(UNKNOWN_SESSION, "<id>"))
    assert owner.listed(owned)["execute_count"] == 1, "a stranger's call must not run"


@pytest.mark.parametrize("method,path", [
    ("GET", EXECUTE), ("PUT", EXECUTE), ("DELETE", "/tci/execute"), ("GET", "/v1//tci/execute"),
    ("POST", SESSIONS), ("DELETE", SESSIONS), ("PATCH", "/tci/sessions"),
])
def test_wrong_method_on_a_known_path_is_a_json_405(wire: Wire, method: str,
                                                     path: str) -> None:
    body = GOOD if method in ("POST", "PUT", "PATCH") else NO_BODY
    response = wire.target.request(method, path, key=wire.key, body=body)
    assert_error(response, 405, "method_not_allowed")


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/tci/unknown"), ("POST", "/v1/tci/interrupt"), ("POST", "/v1/tci/execute/extra"),
    ("DELETE", "/v1/tci/sessions/" + UNKNOWN_SESSION), ("GET", "/v2/tci/sessions"),
])
def test_unknown_route_is_a_json_404(wire: Wire, method: str, path: str) -> None:
    body = GOOD if method == "POST" else NO_BODY
    response = wire.target.request(method, path, key=wire.key, body=body)
    assert_error(response, 404, "not_found")
