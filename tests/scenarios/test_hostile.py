"""Hostile input against the real HTTP surface: property tests with a fixed example budget.

Whatever arrives (any bytes, any JSON, wrong types in every field, odd or invalid Unicode, bad
base64, bad file names, odd headers, wrong methods, malformed HTTP), the answer is either a
contract error body (4xx, JSON, valid against ``tci_emulator/schema/responses.json``) or a success
envelope valid against the same schema; never a 5xx, never HTML, and the server keeps serving.

One emulator serves the whole module with ``max_sessions=1``, held by one shared session, so no
example can start a kernel: a body that would create a session is validated in full and then
refused with 429 at the door. Valid bodies run in the shared session. After every example the
health check answers and the shared session is still the only one; after every test a real
execution in it still works.
"""

from __future__ import annotations

import base64
import json
import socket
import string
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tci_emulator import Emulator, errors, schema
from tci_emulator.files import MAX_PART_BYTES

EXECUTE_PATHS = ("/tci/execute", "/v1/tci/execute", "/v1//tci/execute")
SESSIONS_PATHS = ("/tci/sessions", "/v1/tci/sessions", "/v1//tci/sessions")
BOGUS_SESSION = "ses_1111111111111111111111"

#: Reproducible and bounded: no example database, derandomised, no per-example deadline. The
#: function-scoped fixture is the after-test liveness check, meant to run once per test.
BUDGET = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.function_scoped_fixture])
SMALL_BUDGET = settings(BUDGET, max_examples=40)

#: The status each error code must come with, read from the error hierarchy itself.
STATUS_OF = {cls.code: cls.status for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.EmulatorError)
             and cls not in (errors.EmulatorError, errors.InjectedError)}


@dataclass
class Target:
    """The module's emulator, its one shared session and raw HTTP to it."""

    emulator: Emulator
    session_id: str
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def key(self) -> str:
        return self.emulator.api_key

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def post(self, data: bytes, *, path: str = "/v1/tci/execute",
             headers: dict[str, Any] | None = None) -> requests.Response:
        return self.http.post(self.emulator.url + path, data=data,
                              headers=headers if headers is not None else self.auth(), timeout=60)

    def post_json(self, body: Any, *, ascii_only: bool = True, **kw: Any) -> requests.Response:
        raw = json.dumps(body, ensure_ascii=ascii_only).encode("utf-8")
        return self.post(raw, headers={**self.auth(), "Content-Type": "application/json"}, **kw)


def contract_body(target: Target, response: requests.Response) -> dict[str, Any]:
    """Assert the invariant of every answer and return its JSON body.

    Success (200) validates as a success envelope or listing; anything else is a 4xx contract
    error body whose two error objects agree and whose status fits its code. The emulator raised
    nothing, still answers its health check and still holds exactly the shared session.
    """
    assert response.status_code < 500, response.text[:500]
    assert response.headers["Content-Type"] == "application/json", response.text[:200]
    body: dict[str, Any] = response.json()
    if response.status_code == 200:
        schema.validate(body)
        assert body["errors"] is None
    else:
        schema.validate(body, "ErrorBody")
        error = body["error"]
        assert body["errors"] == [{"code": error["code"], "message": error["message"]}]
        assert STATUS_OF[error["code"]] == response.status_code, body
    still_serving(target)
    return body


def still_serving(target: Target) -> None:
    target.emulator.check()
    health = requests.get(target.emulator.url + "/_emulator/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ready"
    assert [s["id"] for s in target.emulator.sessions()] == [target.session_id]


def stdout(body: dict[str, Any]) -> str:
    return "".join(o["data"] for o in body["data"]["outputs"] if o["type"] == "stdout")


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One emulator for the module, whose single allowed session is the shared one."""
    with Emulator(pool_size=0, max_sessions=1) as emulator:
        response = requests.post(emulator.url + "/v1/tci/execute",
                                 json={"code": "shared = True", "language": "python"},
                                 headers={"Authorization": f"Bearer {emulator.api_key}"},
                                 timeout=120)
        assert response.status_code == 200, response.text
        yield Target(emulator, response.json()["data"]["session_id"])


@pytest.fixture(autouse=True)
def _serves_after_each_test(target: Target) -> Iterator[None]:
    yield
    still_serving(target)
    response = target.post_json({"code": "print(shared)", "language": "python",
                                 "session_id": target.session_id})
    assert response.status_code == 200, response.text
    assert stdout(response.json()) == "True\n"


# -- strategies ----------------------------------------------------------------------------

CONTENT_TYPES = st.sampled_from([
    None, "application/json", "application/json; charset=latin-1", "text/plain",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "image/png",
    "application/octet-stream", "garbage/\u00e9", ""])

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(10 ** 40), max_value=10 ** 40)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["code", "language", "session_id", "files", "name", "encoding",
                         "content"]) | st.text(max_size=10), inner, max_size=5),
    max_leaves=20)
wrong_types = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
               | st.lists(st.integers(), max_size=3) | st.dictionaries(st.text(max_size=3),
                                                                         st.integers(), max_size=2))

ODD_TEXT = ["", "\x00", "a\x00b", "\u200f\u202eevil\u202c", "\U0001F600\U0001F469\u200d\U0001F4BB",
            "e\u0301", "\ufeffbom", "line\u2028sep\u2029", "tab\tcr\rcrlf\r\nend", "\x1b[31mred",
            "\U0010FFFF", "\uFFFE\uFFFF", "\u0000" * 3, "x" * 5000,
            "\u0627\u0644\u0639\u0631\u0628\u064a\u0629"]
unicode_text = st.sampled_from(ODD_TEXT) | st.text(max_size=200) | st.text(
    st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF), max_size=50)


def valid_file(name: str = "ok.txt") -> dict[str, str]:
    return {"name": name, "encoding": "string", "content": "x"}


# -- bodies ----------------------------------------------------------------------------------

@BUDGET
@given(data=st.binary(max_size=3000) | st.text(max_size=300).map(str.encode),
       content_type=CONTENT_TYPES, path=st.sampled_from(EXECUTE_PATHS))
def test_arbitrary_bytes_with_any_content_type_get_a_contract_error(
        target: Target, data: bytes, content_type: str | None, path: str) -> None:
    headers = target.auth()
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = target.post(data, path=path, headers=headers)
    contract_body(target, response)
    assert 400 <= response.status_code < 500


@BUDGET
@given(value=json_values, ascii_only=st.booleans())
def test_any_json_document_gets_a_contract_answer(target: Target, value: Any,
                                                  ascii_only: bool) -> None:
    body = contract_body(target, target.post_json(value, ascii_only=ascii_only))
    if not isinstance(value, dict):
        assert body["error"]["param"] == "body"


@pytest.mark.parametrize("raw,param", [
    (b"[" * 100_000 + b"]" * 100_000, "body"),
    (b'{"code": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}", "body"),
    (b'{"code": ' + b"9" * 10_000 + b', "language": "python"}', "body"),
    (b'{"code": NaN, "language": "python"}', "code"),
    (b'{"code": "1", "language": "python", "files": [' + b"{}," * 10_000 + b"{}]}", "files"),
    (b'\xef\xbb\xbf{"code": "1", "language": "python"', "body"),
    (b'{"code": "1", "language": "python"} trailing', "body"),
    (b"\x00" * 100, "body"),
    (b" " * 1000, "body"),
])
def test_known_hostile_bodies_are_400_naming_the_culprit(target: Target, raw: bytes,
                                                          param: str) -> None:
    answer = contract_body(target, target.post(raw))
    assert answer["error"]["code"] == "invalid_request" and answer["error"]["param"] == param


def _invalid_fields(body: dict[str, Any]) -> set[str]:
    """The request fields that break the contract's section 3, judged field by field."""
    bad = set()
    if not isinstance(body.get("code"), str):
        bad.add("code")
    if body.get("language") != "python":
        bad.add("language")
    sid = body.get("session_id")
    if sid is not None and (not isinstance(sid, str) or sid == ""):
        bad.add("session_id")
    files = body.get("files")
    if files is not None and not (isinstance(files, list)
                                  and all(f == valid_file() for f in files)):
        bad.add("files")
    return bad


MISSING = object()


@BUDGET
@given(code=st.sampled_from(["1", "print('x')", ""]) | wrong_types | st.just(MISSING),
       language=st.sampled_from(["python", "Python", " python", "ruby", ""]) | wrong_types
       | st.just(MISSING),
       session_id=st.sampled_from(["shared", BOGUS_SESSION, ""]) | wrong_types | st.just(MISSING),
       files=st.lists(st.just(valid_file()) | wrong_types, max_size=3) | wrong_types
       | st.just(MISSING),
       extra=st.dictionaries(st.text(max_size=8), json_scalars, max_size=2))
def test_every_field_with_any_type_is_validated(target: Target, code: Any, language: Any,
                                                session_id: Any, files: Any,
                                                extra: dict[str, Any]) -> None:
    body = {k: v for k, v in extra.items() if k not in ("code", "language", "session_id", "files")}
    for name, value in (("code", code), ("language", language), ("session_id", session_id),
                        ("files", files)):
        if value is not MISSING:
            body[name] = target.session_id if value == "shared" and name == "session_id" else value
    answer = contract_body(target, target.post_json(body))
    bad = _invalid_fields(body)
    if bad:
        assert answer["error"]["code"] == "invalid_request"
        assert answer["error"]["param"].partition("[")[0].partition(".")[0] in bad, (bad, answer)
    elif body.get("session_id") == target.session_id:
        assert answer["data"]["session_id"] == target.session_id
    elif body.get("session_id") is None:
        assert answer["error"]["code"] == "too_many_sessions"  # fully valid, then refused
    else:
        assert answer["error"]["code"] == "session_not_found"


# -- text ------------------------------------------------------------------------------------

@SMALL_BUDGET
@given(text=unicode_text, ascii_only=st.booleans())
def test_odd_unicode_round_trips_through_code_and_stdout(target: Target, text: str,
                                                        ascii_only: bool) -> None:
    body = contract_body(target, target.post_json(
        {"code": f"print({text!r}, end='')", "language": "python",
         "session_id": target.session_id}, ascii_only=ascii_only))
    assert stdout(body) == text
    assert [o["type"] for o in body["data"]["outputs"]] == (["stdout"] if text else [])


LONE_SURROGATES = st.integers(0xD800, 0xDFFF).map(lambda cp: f"\\u{cp:04x}")


@BUDGET
@given(where=st.sampled_from(["code", "session_id", "files[0].name", "files[0].content"]),
       surrogate=LONE_SURROGATES, prefix=st.text(string.ascii_letters, max_size=5))
def test_lone_surrogate_escapes_are_refused_naming_the_field(target: Target, where: str,
                                                             surrogate: str, prefix: str) -> None:
    marker = f"MARK{uuid.uuid4().hex}"
    body: dict[str, Any] = {"code": "1", "language": "python", "session_id": target.session_id,
                            "files": [valid_file()]}
    if where.startswith("files"):
        body["files"][0][where.rpartition(".")[2]] = prefix + marker
    else:
        body[where] = prefix + marker
    raw = json.dumps(body).replace(marker, surrogate).encode()
    answer = contract_body(target, target.post(raw))
    assert answer["error"] == {"message": answer["error"]["message"],
                               "type": "invalid_request_error",
                               "param": where, "code": "invalid_request"}


def test_escaped_surrogate_pairs_are_ordinary_characters(target: Target) -> None:
    raw = ('{"code": "print(\'\\ud83d\\ude00\')", "language": "python", '
           f'"session_id": "{target.session_id}"}}').encode()
    assert stdout(contract_body(target, target.post(raw))) == "\U0001F600\n"


# -- files -----------------------------------------------------------------------------------

BASE64ISH = st.text(string.ascii_letters + string.digits + "+/=" + "-_ \n!\u00e9", max_size=40)


@SMALL_BUDGET
@given(content=BASE64ISH | st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()))
def test_base64_content_is_decoded_strictly_and_arrives_byte_exact(target: Target,
                                                                   content: str) -> None:
    try:
        expected: bytes | None = base64.b64decode(content, validate=True)
    except ValueError:
        expected = None
    answer = contract_body(target, target.post_json({
        "code": "print(open('b64.bin', 'rb').read().hex())", "language": "python",
        "session_id": target.session_id,
        "files": [{"name": "b64.bin", "encoding": "base64", "content": content}]}))
    if expected is None:
        assert answer["error"]["param"] == "files[0].content"
    else:
        assert stdout(answer) == expected.hex() + "\n"


HOSTILE_NAMES = [
    "/etc/passwd", "//x", "///", "/", "\\", "\\\\server\\share", "..", "../x", "a/../../x",
    "a/..", "C:x", "c:\\x", "\x00", "a\x00b", "", ".", "./", "a/", "a\\", "a" * 300,
    "d/" * 400 + "f", "\u202eexe.txt", "\U0001F600.txt", " ", "-rf", "~/x", "$HOME", "a//b",
    "./a/./b", "a\\b\\c", "\u00e9" * 128, "\u00e9" * 127 + "a",
]
names = st.sampled_from(HOSTILE_NAMES) | st.text("./\\a\x00:\u00e9~ ", min_size=0, max_size=12) \
    | st.text("ab/", min_size=200, max_size=1100)

FIND_FILE = """
import os
hits = []
for folder, _, found in os.walk('.'):
    for name in found:
        path = os.path.join(folder, name)
        with open(path, 'rb') as handle:
            if handle.read() == {token!r}:
                hits.append(os.path.realpath(path))
                os.remove(path)
root = os.path.realpath('.')
print(len(hits), all(os.path.commonpath([root, hit]) == root for hit in hits))
"""


@BUDGET
@given(name=names)
def test_hostile_file_names_are_refused_or_land_inside_the_session(target: Target,
                                                                   name: str) -> None:
    token = uuid.uuid4().hex.encode()
    answer = contract_body(target, target.post_json({
        "code": FIND_FILE.format(token=token), "language": "python",
        "session_id": target.session_id,
        "files": [{"name": name, "encoding": "base64",
                   "content": base64.b64encode(token).decode()}]}))
    if answer["data"] is None:
        assert answer["error"]["code"] == "invalid_request"
        assert answer["error"]["param"] in ("files[0].name", "files")
    else:
        assert stdout(answer) == "1 True\n"
    if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") or "\x00" in name:
        assert answer["data"] is None and answer["error"]["param"] == "files[0].name"
    if any(len(part.encode()) > MAX_PART_BYTES for part in name.replace("\\", "/").split("/")):
        assert answer["data"] is None and answer["error"]["param"] == "files[0].name"


def test_one_name_as_both_file_and_folder_is_refused_before_a_session_exists(
        target: Target) -> None:
    answer = contract_body(target, target.post_json({
        "code": "1", "language": "python",
        "files": [valid_file("data/x.csv"), valid_file("data")]}))
    assert answer["error"]["param"] == "files[1].name"


# -- headers, methods, paths -----------------------------------------------------------------

header_text = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=80)
bearer_like = st.builds(lambda scheme, token: f"{scheme} {token}",
                        st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", ""]),
                        header_text)
header_bytes = st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b)


def _sendable(value: str | bytes) -> bool:
    """What the client library lets through: no leading whitespace (CR/LF are excluded above)."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return not text[:1].isspace()


# Control characters other than a tab are invalid in a header value (RFC 9110, 5.5).
_CONTROL = frozenset(chr(c) for c in [*range(0, 9), *range(10, 32), 127])


@BUDGET
@given(value=(header_text | bearer_like | header_bytes).filter(_sendable))
def test_odd_authorization_headers_get_401_or_an_own_tenant(target: Target,
                                                            value: str | bytes) -> None:
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    response = requests.get(target.emulator.url + "/v1/tci/sessions",
                            headers={"Authorization": value}, timeout=30)
    body = contract_body(target, response)
    scheme, _, token = text.strip().partition(" ")
    if _CONTROL & set(text):
        assert response.status_code == 400 and body["error"]["code"] == "bad_http_request"
    elif scheme.lower() != "bearer" or not token.strip():
        assert response.status_code == 401 and body["error"]["code"] == "invalid_api_key"
    else:
        assert response.status_code == 200
        if token.strip() != target.key:
            assert body["data"]["sessions"] == []


@pytest.mark.parametrize("headers,status", [
    ({"Authorization": "Bearer " + "k" * 60_000}, 200),
    ({"Authorization": "Bearer " + "k" * 70_000}, 431),
    ({**{f"X-Filler-{i}": "v" for i in range(120)}}, 431),
    ({"X-Big": "v" * 70_000}, 431),
])
def test_huge_headers_are_served_or_refused_as_json(target: Target, headers: dict[str, str],
                                                     status: int) -> None:
    response = requests.get(target.emulator.url + "/v1/tci/sessions",
                            headers={**target.auth(), **headers}, timeout=30)
    assert response.status_code == status
    body = contract_body(target, response)
    if status == 431:
        assert body["error"]["code"] == "headers_too_large"


def test_request_line_too_long_is_414_json(target: Target) -> None:
    response = requests.get(target.emulator.url + "/v1/tci/sessions?" + "q" * 70_000,
                            headers=target.auth(), timeout=30)
    assert response.status_code == 414
    assert contract_body(target, response)["error"]["code"] == "uri_too_long"


@BUDGET
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                               "PROPFIND", "FOO"]),
       path=st.sampled_from(EXECUTE_PATHS + SESSIONS_PATHS + ("/", "/v1", "/_emulator/nope"))
       | st.text(min_size=1, max_size=30).map(lambda t: "/" + urllib.parse.quote(t)))
def test_wrong_methods_and_unknown_paths_are_json(target: Target, method: str, path: str) -> None:
    response = target.http.request(method, target.emulator.url + path, headers=target.auth(),
                                   timeout=30)
    body = contract_body(target, response)
    route = path.replace("//", "/")
    if route in ("/tci/sessions", "/v1/tci/sessions"):
        assert (response.status_code == 200) == (method == "GET")
    elif route in ("/tci/execute", "/v1/tci/execute"):
        assert response.status_code == (400 if method == "POST" else 405)
    if response.status_code == 405:
        assert body["error"]["code"] == "method_not_allowed"


def test_head_answers_headers_only(target: Target) -> None:
    for path, status in (("/v1/tci/sessions", 200), ("/v1/tci/execute", 405), ("/nope", 404)):
        response = target.http.head(target.emulator.url + path, headers=target.auth(), timeout=30)
        assert response.status_code == status and response.content == b""
        assert response.headers["Content-Type"] == "application/json"


# -- malformed HTTP --------------------------------------------------------------------------

def raw_exchange(target: Target, data: bytes) -> tuple[int | None, bytes]:
    """Send raw bytes, close our side, return (status or None for HTTP/0.9, body)."""
    with socket.create_connection(("127.0.0.1", target.emulator.server.port), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    if not received.startswith(b"HTTP/"):
        return None, received
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"\r\ncontent-type: application/json" in head.lower(), head
    return int(head.split(b" ", 2)[1]), body


POST_HEAD = b"POST /v1/tci/execute HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer k\r\n"


@pytest.mark.parametrize("data,code", [
    (b"GARBAGE\r\n\r\n", "bad_http_request"),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", "bad_http_request"),
    (b"GET /v1/tci/sessions HTTP/9.9\r\n\r\n", "http_version_not_supported"),
    (b"GET /v1/tci/sessions HTTP/1.1 extra\r\n\r\n", "bad_http_request"),
    (b"GET /v1/tci/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-" + b"\xff" * 10 + b": v\r\n\r\n",
     "bad_http_request"),
    (POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n", "bad_http_request"),
    (POST_HEAD + b"Content-Length: 100\r\n\r\n{\"code\"", "bad_http_request"),
    (POST_HEAD + b"Content-Length: -5\r\n\r\n{}", "bad_http_request"),
    (POST_HEAD + b"Content-Length: 2\r\nContent-Length: 5\r\n\r\n{}", "bad_http_request"),
    (b"GET /v1/tci/%ff%00%C3%A9 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "not_found"),
    (b"GET /v1/tci/\xc3\xa9 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "bad_http_request"),
    (b"CONNECT evil:443 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "not_found"),
])
def test_malformed_http_gets_a_json_error(target: Target, data: bytes, code: str) -> None:
    status, raw = raw_exchange(target, data)
    body = json.loads(raw)
    schema.validate(body, "ErrorBody")
    assert body["error"]["code"] == code
    # A request line the parser cannot read is answered the HTTP/0.9 way: body only.
    assert status in (None, STATUS_OF[code])
    still_serving(target)


@SMALL_BUDGET
@given(line=st.binary(min_size=1, max_size=200).filter(lambda b: b"\n" not in b))
def test_junk_request_lines_get_a_json_error(target: Target, line: bytes) -> None:
    status, body = raw_exchange(target, line + b"\r\nHost: 127.0.0.1\r\n\r\n")
    assert status is None or 400 <= status < 600
    if body or status is not None:  # a blank request line is dropped without an answer
        schema.validate(json.loads(body), "ErrorBody")
    still_serving(target)


def test_a_stalled_upload_does_not_block_other_clients(target: Target) -> None:
    with socket.create_connection(("127.0.0.1", target.emulator.server.port), timeout=30) as sock:
        sock.sendall(POST_HEAD + b"Content-Length: 1000\r\n\r\n{\"code\": ")
        still_serving(target)
        response = target.post_json({"code": "print(shared)", "language": "python",
                                     "session_id": target.session_id})
        assert stdout(contract_body(target, response)) == "True\n"
