"""The front door: Host and Origin checks, client and idle timeouts, keep-alive, the connection
limit, stalled connections and the access log, over real HTTP on loopback."""

from __future__ import annotations

import http.client
import json
import logging
import os
import resource
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import requests

from contract_tests.process import ServeProcess
from tci_emulator import Emulator
from tci_emulator.http.logline import escape

from .helpers import Http, wait_until

FOREIGN = "rebind.attacker.example"
EVIL_ORIGIN = "http://evil.example"


def port_of(emulator: Emulator) -> int:
    return emulator.server.port


def auth(emulator: Emulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulator.api_key}"}


def refused(response: requests.Response, code: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes the connection (or the deadline passes)."""
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server kept the connection open; received {received!r}")


# -- Host ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/tci/sessions"), ("POST", "/v1/tci/execute"), ("GET", "/tci/sessions"),
    ("GET", "/_emulator/health"), ("POST", "/_emulator/reset"), ("GET", "/_emulator/faults"),
    ("GET", "/no/such/route"), ("GET", "/mcp"),
])
def test_a_foreign_host_is_refused_on_every_route(http: Http, method: str, path: str) -> None:
    emulator = http.emulator
    response = requests.request(method, emulator.url + path, timeout=30,
                                json={"code": "print(1)", "language": "python"},
                                headers={**auth(emulator),
                                         "Host": f"{FOREIGN}:{port_of(emulator)}"})
    refused(response, "host_not_allowed")
    assert "--allowed-host" in response.json()["error"]["message"]
    assert emulator.sessions() == []  # nothing ran


@pytest.mark.tci_emulator(allowed_hosts=("emulator.test", ".svc.test"))
@pytest.mark.parametrize("host,served", [
    ("localhost", True), ("localhost:8787", True), ("LOCALHOST.:1", True),
    ("127.0.0.1", True), ("127.0.0.1:99", True), ("[::1]", True), ("[::1]:8787", True),
    ("emulator.test", True), ("emulator.test:443", True), ("svc.test", True),
    ("api.svc.test:80", True),
    (FOREIGN, False), ("127.0.0.2", False), ("localhost.evil.example", False),
    ("evil-svc.test", False), ("emulator.test.evil.example", False), ("[::2]", False),
    ("localhost:abc", False), ("", False),
])
def test_local_names_bound_host_and_allowed_hosts_are_served(http: Http, host: str,
                                                             served: bool) -> None:
    response = requests.get(http.emulator.url + "/v1/tci/sessions", timeout=30,
                            headers={**auth(http.emulator), "Host": host})
    if served:
        assert response.status_code == 200, response.text
    else:
        refused(response, "host_not_allowed")


def test_a_request_without_a_host_header_is_served(http: Http) -> None:
    """HTTP/1.0 tools may omit Host; browsers (the rebinding threat) always send it."""
    with socket.create_connection(("127.0.0.1", port_of(http.emulator)), timeout=30) as sock:
        sock.sendall(b"GET /_emulator/health HTTP/1.0\r\n\r\n")
        answer = read_until_closed(sock, time.monotonic() + 30)
    assert answer.startswith(b"HTTP/1.0 200 ")


# -- Origin ----------------------------------------------------------------------------------

CROSS_SITE_POSTS = [
    ("/_emulator/reset", "text/plain", b""),
    ("/_emulator/clock", "text/plain", b'{"advance_seconds": 86400}'),
    ("/_emulator/clock", "application/x-www-form-urlencoded", b'{"advance_seconds": 86400}'),
    ("/_emulator/faults", "text/plain", b'{"action": "hang", "seconds": 600}'),
    ("/_emulator/faults", "multipart/form-data; boundary=x",
     b'{"action": "http_error", "status": 500}'),
    ("/v1/tci/execute", "text/plain", b'{"code": "print(1)", "language": "python"}'),
]


@pytest.mark.parametrize("path,content_type,body", CROSS_SITE_POSTS)
def test_cross_site_posts_are_refused_and_change_nothing(http: Http, path: str,
                                                         content_type: str, body: bytes) -> None:
    sid = http.run("x = 1")["session_id"]
    clock_before = http.post("/_emulator/clock", {"frozen": True}).json()  # a reset unfreezes
    response = requests.post(http.emulator.url + path, data=body, timeout=30,
                             headers={**auth(http.emulator), "Content-Type": content_type,
                                      "Origin": EVIL_ORIGIN})
    refused(response, "cross_origin_refused")
    assert http.get("/_emulator/faults").json()["rules"] == []
    assert http.get("/_emulator/clock").json() == clock_before
    assert [s["id"] for s in http.emulator.sessions()] == [sid]  # not reset, nothing created
    assert http.run("print(x)", sid)["outputs"][0]["data"] == "1\n"


def test_cross_site_delete_of_the_fault_rules_is_refused(http: Http) -> None:
    http.post("/_emulator/faults", {"action": "latency", "seconds": 0})
    response = requests.delete(http.emulator.url + "/_emulator/faults", timeout=30,
                               headers={"Origin": EVIL_ORIGIN})
    refused(response, "cross_origin_refused")
    assert len(http.get("/_emulator/faults").json()["rules"]) == 1


@pytest.mark.parametrize("origin_of", [
    lambda port: f"http://127.0.0.1:{port}", lambda port: f"http://localhost:{port}",
    lambda port: f"http://[::1]:{port}",
])
def test_the_emulators_own_origin_and_no_origin_may_post(http: Http, origin_of: Any) -> None:
    origin = origin_of(port_of(http.emulator))
    with_origin = requests.post(http.emulator.url + "/_emulator/clock", timeout=30,
                                json={"advance_seconds": 1}, headers={"Origin": origin})
    assert with_origin.status_code == 200, with_origin.text
    # curl -d: a form content type and no Origin, as docs/control-plane.md shows.
    plain = requests.post(http.emulator.url + "/_emulator/clock", data='{"advance_seconds": 1}',
                          headers={"Content-Type": "application/x-www-form-urlencoded"},
                          timeout=30)
    assert plain.status_code == 200, plain.text


@pytest.mark.parametrize("headers", [
    {"Origin": "null"}, {"Origin": "http://127.0.0.1:1"}, {"Origin": "https://127.0.0.1:{port}"},
    {"Origin": f"http://{FOREIGN}:{{port}}"}, {"Origin": "http://127.0.0.1:{port}.evil.example"},
    {"Origin": "garbage"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
])
def test_other_origins_may_not_post(http: Http, headers: dict[str, str]) -> None:
    port = port_of(http.emulator)
    sent = {name: value.replace("{port}", str(port)) for name, value in headers.items()}
    response = requests.post(http.emulator.url + "/_emulator/clock", json={"advance_seconds": 1},
                             headers=sent, timeout=30)
    refused(response, "cross_origin_refused")


def test_reads_with_a_foreign_origin_get_no_cors_headers(http: Http) -> None:
    """A page may send a GET, but without CORS headers its script cannot read the answer."""
    for method in ("GET", "OPTIONS"):
        response = requests.request(method, http.emulator.base_url + "/tci/sessions", timeout=30,
                                    headers={**auth(http.emulator), "Origin": EVIL_ORIGIN,
                                             "Access-Control-Request-Method": "POST"})
        assert response.status_code in (200, 405)
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


# -- keep-alive, timeouts, the connection limit ----------------------------------------------

def test_connections_are_kept_alive_between_requests(http: Http) -> None:
    conn = http_connection(http.emulator)
    try:
        conn.request("GET", "/_emulator/health")
        conn.getresponse().read()
        sock = conn.sock
        for _ in range(5):
            conn.request("GET", "/_emulator/health")
            response = conn.getresponse()
            assert response.status == 200 and response.getheader("Connection") != "close"
            response.read()
        assert conn.sock is sock  # the same connection served every request
    finally:
        conn.close()


def http_connection(emulator: Emulator) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port_of(emulator), timeout=30)


@pytest.mark.tci_emulator(client_timeout=1.0)
@pytest.mark.parametrize("sent", [b"", b"GET /v1/tci/ses", b"GET / HTTP/1.1\r\nHost: localh",
                                  b"POST /_emulator/reset HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  b"Content-Length: 10\r\n\r\n{}"])
def test_an_incomplete_request_is_closed_after_the_client_timeout(http: Http,
                                                                  sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port_of(http.emulator)), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(sent)
        answer = read_until_closed(sock, started + 20)
        waited = time.monotonic() - started
    assert waited >= 0.9  # not before the timeout
    if sent:  # a partial request is told why; a silent connection is just closed
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ") and b"application/json" in head.lower()
        assert json.loads(body)["error"]["code"] == "request_timeout"
    else:
        assert answer == b""
    assert http.get("/_emulator/health").status_code == 200


@pytest.mark.tci_emulator(client_timeout=1.5)
def test_a_slow_drip_does_not_extend_the_client_timeout(http: Http) -> None:
    """Each byte resets an idle timer, not the request's deadline (slowloris)."""
    payload = b"GET /v1/tci/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: " + b"a" * 300
    with socket.create_connection(("127.0.0.1", port_of(http.emulator)), timeout=30) as sock:
        started = time.monotonic()
        for byte in payload:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sock.settimeout(0.1)  # the drip's pace: one byte per 0.1 s unless the server answers
            try:
                sock.recv(65536)  # the 408, or b"" for a close: the server ended the request
                break
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
        else:
            pytest.fail("the server read a 30 s drip without ending the request")
        assert 1.4 <= time.monotonic() - started < 10


@pytest.mark.tci_emulator(keep_alive_timeout=1.0)
def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(http: Http) -> None:
    with socket.create_connection(("127.0.0.1", port_of(http.emulator)), timeout=30) as sock:
        sock.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        started = time.monotonic()
        answer = read_until_closed(sock, started + 20)
    assert answer.startswith(b"HTTP/1.1 200 ") and time.monotonic() - started >= 0.9


@pytest.mark.tci_emulator(connection_limit=20, client_timeout=120)
def test_at_the_connection_limit_the_longest_stalled_connection_makes_room(http: Http) -> None:
    port = port_of(http.emulator)
    with ExitStack() as stack:
        stalled = []
        for _ in range(20):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=30))
            sock.sendall(b"GET /v1/tci/ses")
            stalled.append(sock)
        wait_until(lambda: http.emulator.server.connections >= 20, timeout=30)
        response = requests.get(http.emulator.url + "/_emulator/health", timeout=30)
        assert response.status_code == 200
        assert read_until_closed(stalled[0], time.monotonic() + 20) == b""  # the oldest went


@pytest.mark.tci_emulator(connection_limit=16)
def test_when_every_connection_is_serving_a_new_one_is_answered_503_at_once(http: Http) -> None:
    http.emulator.faults.add({"action": "hang", "seconds": 120, "operation": "sessions"})
    address = ("127.0.0.1", port_of(http.emulator))
    request = (b"GET /v1/tci/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Authorization: Bearer " + http.emulator.api_key.encode() + b"\r\n\r\n")
    with ExitStack() as stack:
        held = []
        for _ in range(16):
            sock = stack.enter_context(socket.create_connection(address, timeout=30))
            sock.sendall(request)
            held.append(sock)
        wait_until(lambda: len(http.emulator.faults.journal()) >= 16, timeout=60)
        with socket.create_connection(address, timeout=30) as extra:
            started = time.monotonic()
            answer = read_until_closed(extra, started + 20)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 1" in head
        assert json.loads(body)["error"]["code"] == "too_many_connections"
        http.emulator.faults.clear()  # the held requests go on and are served
        for sock in held:
            sock.settimeout(30)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


# -- 1000 stalled connections ----------------------------------------------------------------

STALLED = 1000


@pytest.fixture
def descriptors() -> Iterator[None]:
    """Room for 1000 client sockets, their 1000 server ends and the kernels' descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * STALLED + 1024
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} is below the {wanted} this test needs")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def execute_many(conn: http.client.HTTPConnection, sid: str, key: str, count: int) -> None:
    """``count`` executions in session ``sid`` over one kept-alive connection, each a 200."""
    body = json.dumps({"code": "x = 1", "language": "python", "session_id": sid})
    for _ in range(count):
        conn.request("POST", "/v1/tci/execute", body=body,
                     headers={"Authorization": f"Bearer {key}",
                              "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200


@pytest.mark.timeout(240)
def test_1000_stalled_connections_are_held_while_a_normal_client_is_served(
        descriptors: None) -> None:
    """The stalled connections stay open (held, not dropped) while an ordinary client's calls
    and the health check are answered. How much slower the client is meanwhile is a figure of
    the benchmark (``make bench``, the stalled-connections row), not of this test."""
    with Emulator(pool_size=1, client_timeout=200) as emulator, ExitStack() as stack:
        port = port_of(emulator)
        conn = http_connection(emulator)
        stack.callback(conn.close)
        sid = requests.post(emulator.base_url + "/tci/execute", headers=auth(emulator),
                            json={"code": "x = 0", "language": "python"},
                            timeout=60).json()["data"]["session_id"]
        deadline = time.monotonic() + 180
        with ExitStack() as connections:
            for _ in range(STALLED):
                assert time.monotonic() < deadline, "opening the connections took too long"
                sock = connections.enter_context(
                    socket.create_connection(("127.0.0.1", port), timeout=30))
                sock.sendall(b"GET /v1/tci/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
            wait_until(lambda: emulator.server.connections >= STALLED, timeout=60)
            health = requests.get(emulator.url + "/_emulator/health", timeout=30)
            assert health.status_code == 200
            execute_many(conn, sid, emulator.api_key, 40)
            # Every stalled connection is still open: held, not dropped to serve the client.
            assert emulator.server.connections >= STALLED
        wait_until(lambda: emulator.server.connections < STALLED, timeout=60)
        emulator.check()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.timeout(240)
def test_out_of_descriptors_the_server_keeps_serving_and_does_not_spin(
        descriptors: None) -> None:
    """`ulimit -n 1024` and 1100 stalled connections: the old server spun at 100% CPU on
    EMFILE and served no one."""
    with ServeProcess(["--pool-size", "0", "--client-timeout", "200"]) as server, \
            ExitStack() as stack:
        # The server started with room for 4096 connections; now it has 1024 descriptors.
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (1024, 1024))
        address = ("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
        deadline = time.monotonic() + 120
        for _ in range(1100):
            assert time.monotonic() < deadline, "opening the stalled connections took too long"
            sock = stack.enter_context(socket.create_connection(address, timeout=30))
            sock.sendall(b"GET /v1/tci/ses")
        client = requests.Session()
        stack.callback(client.close)

        def health() -> int:
            return client.get(server.url + "/_emulator/health", timeout=30).status_code

        wait_until(lambda: health() == 200, timeout=60)  # once the backlog is worked through
        used, served, started = cpu_seconds(server.pid), 0, time.monotonic()
        while time.monotonic() - started < 2.0:  # a 2 s window of ordinary requests
            assert health() == 200
            served += 1
        used = cpu_seconds(server.pid) - used
        assert used < 0.5 + served * 0.005, (used, served)  # a spinning loop burns the window


# -- the access log --------------------------------------------------------------------------

def test_escape_makes_control_characters_and_backslashes_visible() -> None:
    assert escape("a\nb\rc\x1b[31md\x00\x7f\x9b\\e\u2028\u202e") == \
        "a\\x0ab\\x0dc\\x1b[31md\\x00\\x7f\\x9b\\\\e\\u2028\\u202e"
    assert escape("ses_CVtmHZWnVBdtZnwbZNosk /v1/tci/execute é") == \
        "ses_CVtmHZWnVBdtZnwbZNosk /v1/tci/execute é"


HOSTILE_PATH = "/v1/tci/x\nGET /forged 200 session=-\x1b[2J\x1b[31m"


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tci_emulator.access"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_newlines_and_ansi_escapes_in_a_path_are_escaped_in_the_log(
        caplog: pytest.LogCaptureFixture, log_format: str) -> None:
    with Emulator(access_log=True, pool_size=0, log_format=log_format) as emulator:
        with caplog.at_level(logging.INFO, logger="tci_emulator.access"):
            quoted = urllib.parse.quote(HOSTILE_PATH, safe="/")
            response = requests.get(emulator.url + quoted, headers=auth(emulator), timeout=30)
            assert response.status_code == 404
            wait_until(lambda: bool(_access_lines(caplog)), timeout=30)
    [line] = _access_lines(caplog)
    assert "\n" not in line and "\x1b" not in line
    if log_format == "text":
        assert "\\x0aGET /forged" in line and "\\x1b[2J" in line and " 404 session=- " in line
    else:
        record = json.loads(line)
        assert record["path"] == HOSTILE_PATH and record["status"] == 404
        assert set(record) == {"time", "method", "path", "status", "session",
                               "key_fingerprint", "ms", "fault"}


def test_json_log_lines_carry_session_key_fingerprint_and_fault(
        caplog: pytest.LogCaptureFixture) -> None:
    with Emulator(access_log=True, pool_size=0, log_format="json") as emulator:
        [rule] = emulator.faults.add({"action": "latency", "seconds": 0, "times": 1})
        with caplog.at_level(logging.INFO, logger="tci_emulator.access"):
            response = requests.post(emulator.base_url + "/tci/execute", headers=auth(emulator),
                                     json={"code": "1", "language": "python"}, timeout=60)
            sid = response.json()["data"]["session_id"]
            wait_until(lambda: bool(_access_lines(caplog)), timeout=30)
    [record] = [json.loads(line) for line in _access_lines(caplog)]
    assert (record["method"], record["path"], record["status"]) == ("POST", "/v1/tci/execute", 200)
    assert record["session"] == sid and record["fault"] == rule["id"]
    assert record["key_fingerprint"] and emulator.api_key not in json.dumps(record)
    assert isinstance(record["ms"], float) and record["time"].endswith("+00:00")


def test_requests_the_front_door_refuses_are_logged_too(caplog: pytest.LogCaptureFixture) -> None:
    with Emulator(access_log=True, pool_size=0) as emulator:
        with caplog.at_level(logging.INFO, logger="tci_emulator.access"):
            requests.get(emulator.url + "/_emulator/health", timeout=30,
                         headers={"Host": FOREIGN})
            with socket.create_connection(("127.0.0.1", port_of(emulator)), timeout=30) as sock:
                sock.sendall(b"GET /\x1b[2J HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n")
                answer = read_until_closed(sock, time.monotonic() + 30)
            assert answer.split(b" ", 2)[1] == b"400"
            wait_until(lambda: len(_access_lines(caplog)) >= 2, timeout=30)
    host_line, protocol_line = _access_lines(caplog)
    assert host_line.startswith("GET /_emulator/health 403 ")
    assert " 400 " in protocol_line and "\x1b" not in protocol_line


# -- response framing ------------------------------------------------------------------------

BIG = b"b" * (3 * 65536)  # past the size a first body piece is sent with the head
_HELD_STARTED = threading.Event()
_HELD_RELEASE = threading.Event()


def _framing_app(environ: dict[str, Any], start_response: Any) -> Any:
    """Answers by path: a sized body, a body longer than its Content-Length, an unsized body
    in three pieces (sent until the connection closes), a large body, a lower-case header."""
    path = environ["PATH_INFO"]
    if path == "/sized":
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", "11")])
        return [b'{"ok": true}'[:11]]
    if path == "/excess":
        start_response("200 OK", [("Content-Length", "4")])
        return [b"abcdefgh"]
    if path == "/pieces":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"one,", b"two,", b"three"])
    if path == "/held":  # answers once the test lets it
        _HELD_STARTED.set()
        assert _HELD_RELEASE.wait(30)
        start_response("200 OK", [("Content-Length", "4")])
        return [b"held"]
    if path == "/big":
        start_response("200 OK", [("Content-Length", str(len(BIG)))])
        return [BIG]
    start_response("503 Service Unavailable", [("retry-after", "1"), ("Content-Length", "2")])
    return [b"no"]


@pytest.fixture
def framing_server() -> Iterator[Any]:
    """A bare HTTP server (no emulator) serving :func:`_framing_app` (an ``HttpServer``)."""
    from tci_emulator.config import Config
    from tci_emulator.http.wsgi import HttpServer

    server = HttpServer(_framing_app, Config(port=0, threads=2))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        _HELD_RELEASE.set()  # a request a failed test left held ends now
        server.stop_accepting()
        server.close()
        thread.join(10)
        server.release()


@pytest.mark.parametrize("method,path,status,body", [
    ("GET", "/sized", 200, b'{"ok": true'),
    ("GET", "/excess", 200, b"abcd"),
    ("GET", "/pieces", 200, b"one,two,three"),
    ("GET", "/big", 200, BIG),
    ("GET", "/lower", 503, b"no"),
    ("HEAD", "/sized", 200, b""),
])
def test_responses_are_framed_whole_on_a_kept_alive_connection(
        framing_server: Any, method: str, path: str, status: int, body: bytes) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", framing_server.port, timeout=30)
    try:
        for _ in range(3):  # the next request on the same connection finds it in order
            conn.request(method, path)
            response = conn.getresponse()
            assert (response.status, response.read()) == (status, body)
            assert response.will_close == (path == "/pieces")  # unsized: ends with the close
            if response.will_close:
                conn.close()
            if path == "/lower":  # the name as the app wrote it, not capitalised
                assert ("retry-after", "1") in response.getheaders()
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(framing_server: Any) -> None:
    with socket.create_connection(("127.0.0.1", framing_server.port), timeout=30) as sock:
        sock.sendall(b"GET /sized HTTP/1.1\r\nHost: localhost\r\n\r\n"
                     b"GET /excess HTTP/1.1\r\nHost: localhost\r\n\r\n"
                     b"GET /lower HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        received = read_until_closed(sock, time.monotonic() + 30)
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in received.split(b"HTTP/1.1 ")[1:]]
    assert [part[:3] for part in received.split(b"HTTP/1.1 ")[1:]] == [b"200", b"200", b"503"]
    assert bodies == [b'{"ok": true', b"abcd", b"no"]


def test_a_client_that_ends_its_side_while_its_request_runs_still_gets_the_answer(
        framing_server: Any) -> None:
    _HELD_STARTED.clear()
    _HELD_RELEASE.clear()
    with socket.create_connection(("127.0.0.1", framing_server.port), timeout=30) as sock:
        sock.sendall(b"GET /held HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)  # as `nc -N` does: nothing more will come
        assert _HELD_STARTED.wait(30)
        # The server reads the end of the request side while the request still runs.
        wait_until(lambda: any(channel.peer_closed for channel in
                               list(framing_server.server.active_channels.values())), 30)
        _HELD_RELEASE.set()
        received = read_until_closed(sock, time.monotonic() + 30)  # then the server closes
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and received.endswith(b"\r\n\r\nheld")
