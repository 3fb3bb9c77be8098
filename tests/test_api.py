"""The real API over HTTP: paths, envelopes, auth, validation, tenants, files, concurrency."""

from __future__ import annotations

import base64
import os
import threading
from typing import Any

import pytest

from tci_emulator.ids import session_uuid, uuid_time
from tci_emulator.clock import parse_timestamp

from .helpers import Http, stdout_of, wait_until


@pytest.mark.parametrize("path", ["/tci/execute", "/v1/tci/execute", "/v1//tci/execute"])
def test_every_execute_path_form_runs_code(http: Http, path: str) -> None:
    data = http.run("print('hi')", path=path)
    assert data["outputs"] == [{"type": "stdout", "data": "hi\n"}]
    assert data["session_id"].startswith("ses_")


@pytest.mark.parametrize("path", ["/tci/sessions", "/v1/tci/sessions", "/v1//tci/sessions"])
def test_every_sessions_path_form_lists(http: Http, path: str) -> None:
    sid = http.run("1")["session_id"]
    body = http.get(path).json()
    assert body["errors"] is None
    assert [s["id"] for s in body["data"]["sessions"]] == [sid]


def test_session_keeps_state_between_calls(http: Http) -> None:
    sid = http.run("x = 42")["session_id"]
    data = http.run('print(f"The value of x is {x}")', sid)
    assert data["session_id"] == sid
    assert stdout_of(data) == "The value of x is 42\n"


def test_session_id_null_creates_a_session(http: Http) -> None:
    response = http.post("/v1/tci/execute",
                         {"code": "print(1)", "language": "python", "session_id": None})
    assert response.status_code == 200
    assert response.json()["data"]["session_id"].startswith("ses_")


def test_last_expression_is_execute_result_and_streams_merge(http: Http) -> None:
    data = http.run("print('a')\nprint('b')\n6 * 7")
    assert data["outputs"] == [
        {"type": "stdout", "data": "a\nb\n"},
        {"type": "execute_result", "data": {"text/plain": "42"}},
    ]


def test_user_exception_is_an_error_item_in_a_success_envelope(http: Http) -> None:
    data = http.run("print('before')\n1/0")
    assert data["outputs"][0] == {"type": "stdout", "data": "before\n"}
    error = data["outputs"][-1]
    assert error["type"] == "error"
    assert "\x1b[" not in error["data"]
    assert error["data"].splitlines()[-1] == "ZeroDivisionError: division by zero"
    assert stdout_of(http.run("print('still here')", data["session_id"])) == "still here\n"


def test_plot_is_display_data_with_png(http: Http) -> None:
    data = http.run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    displays = [o for o in data["outputs"] if o["type"] == "display_data"]
    assert len(displays) == 1
    assert displays[0]["data"]["text/plain"] == "<Figure size 640x480 with 1 Axes>"
    assert base64.b64decode(displays[0]["data"]["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")


def test_session_id_decodes_to_uuid7_with_started_at(http: Http) -> None:
    sid = http.run("1")["session_id"]
    listed = http.get("/tci/sessions").json()["data"]["sessions"][0]
    value = session_uuid(sid)
    assert value.version == 7 and len(sid) == 25
    started = parse_timestamp(listed["started_at"])
    assert uuid_time(value) == started.replace(microsecond=started.microsecond // 1000 * 1000)


def test_sessions_listing_fields_and_formats(http: Http) -> None:
    sid = http.run("1")["session_id"]
    http.run("2", sid)
    [row] = http.get("/tci/sessions").json()["data"]["sessions"]
    assert set(row) == {"id", "execute_count", "started_at", "last_execute_at", "expires_at"}
    assert row["execute_count"] == 2
    for name in ("started_at", "last_execute_at", "expires_at"):
        assert row[name].endswith("+00:00") and len(row[name].split(".")[1]) == 6 + 6
    lifespan = parse_timestamp(row["expires_at"]) - parse_timestamp(row["started_at"])
    assert lifespan.total_seconds() == 3600


def test_tenants_are_isolated(http: Http) -> None:
    sid = http.run("secret = 1", key="alice")["session_id"]
    assert http.get("/tci/sessions", key="bob").json()["data"]["sessions"] == []
    foreign = http.execute("secret", sid, key="bob")
    unknown = http.execute("1", "ses_1111111111111111111111", key="bob")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"]["code"] == unknown.json()["error"]["code"] == "session_not_found"
    assert stdout_of(http.run("print(secret)", sid, key="alice")) == "1\n"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", "token"])
def test_missing_or_malformed_key_is_401(http: Http, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = http.session.post(http.emulator.url + "/v1/tci/execute",
                                 json={"code": "1", "language": "python"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.tci_emulator(api_keys=("good-key",))
def test_configured_keys_restrict_access(http: Http) -> None:
    assert http.execute("1", key="other").status_code == 401
    assert http.execute("1", key="good-key").status_code == 200


@pytest.mark.parametrize("body,param", [
    ({"language": "python"}, "code"),
    ({"code": 5, "language": "python"}, "code"),
    ({"code": "1"}, "language"),
    ({"code": "1", "language": "ruby"}, "language"),
    ({"code": "1", "language": "python", "session_id": 7}, "session_id"),
    ({"code": "1", "language": "python", "files": "x"}, "files"),
    ({"code": "1", "language": "python", "files": [{"name": "a"}]}, "files[0].encoding"),
    ({"code": "1", "language": "python",
      "files": [{"name": "/etc/x", "encoding": "string", "content": ""}]}, "files[0].name"),
    ({"code": "1", "language": "python",
      "files": [{"name": "../x", "encoding": "string", "content": ""}]}, "files[0].name"),
    ({"code": "1", "language": "python",
      "files": [{"name": "a", "encoding": "base64", "content": "!!"}]}, "files[0].content"),
    ([1, 2], "body"),
])
def test_invalid_bodies_are_400_naming_the_field(http: Http, body: Any, param: str) -> None:
    response = http.post("/v1/tci/execute", body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["data"] is None
    assert payload["error"]["param"] == param
    assert payload["errors"][0]["code"] == "invalid_request"


def test_unknown_routes_methods_and_junk_are_json(http: Http) -> None:
    cases = [(http.get("/nope"), 404), (http.get("/v1/tci/execute"), 405),
             (http.session.post(http.emulator.url + "/v1/tci/execute", data=b"\xff\x00junk",
                                headers=http.headers("k")), 400)]
    for response, status in cases:
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["data"] is None


@pytest.mark.tci_emulator(max_request_bytes=1000)
def test_oversized_body_is_413_json(http: Http) -> None:
    response = http.execute("x = '" + "a" * 5000 + "'")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.tci_emulator(spec_errors=True)
def test_spec_literal_error_form(http: Http) -> None:
    response = http.execute("1", "ses_1111111111111111111111")
    assert response.status_code == 200
    assert response.json() == {"data": None, "errors": [
        {"code": "session_not_found", "message": "Session ses_1111111111111111111111 not found."}]}


def test_files_are_written_before_the_code_runs(http: Http) -> None:
    png = base64.b64encode(bytes(range(68))).decode()
    data = http.run(
        "import os\nprint(open('data.txt').read())\nprint(os.path.getsize('img/tiny.png'))",
        files=[{"name": "data.txt", "encoding": "string", "content": "Sanguine ✓"},
               {"name": "img/tiny.png", "encoding": "base64", "content": png}])
    assert stdout_of(data) == "Sanguine ✓\n68\n"


def test_files_stay_in_their_session(http: Http) -> None:
    sid = http.run("1", files=[{"name": "mine.txt", "encoding": "string", "content": "x"}])[
        "session_id"]
    assert stdout_of(http.run("import os; print(os.path.exists('mine.txt'))", sid)) == "True\n"
    assert stdout_of(http.run("import os; print(os.path.exists('mine.txt'))")) == "False\n"


def test_symlink_out_of_the_session_is_refused(http: Http) -> None:
    sid = http.run("import os; os.symlink('/tmp', 'out')")["session_id"]
    response = http.execute("1", sid, files=[{"name": "out/evil.txt", "encoding": "string",
                                              "content": "x"}])
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "files[0].name"
    assert not os.path.exists("/tmp/evil.txt")


def test_shell_escape_runs_an_uploaded_script(http: Http) -> None:
    data = http.run("!python myscript.py", files=[{
        "name": "myscript.py", "encoding": "string",
        "content": "import sys\nprint(f'Hello from inside {sys.argv[0]}!')"}])
    # Shell escapes run in a pseudo-terminal: "\r\n", as the recorded service returned.
    assert stdout_of(data) == "Hello from inside myscript.py!\r\n"


def test_kernel_environment_has_no_server_secrets(http: Http,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The fixture points TOGETHER_API_KEY at the emulator in this (server) process.
    monkeypatch.setenv("SOME_SERVER_SECRET", "s3cret")
    data = http.run("import os\nprint(sorted(k for k in os.environ if 'SECRET' in k or "
                    "k.startswith('TOGETHER')))")
    assert stdout_of(data) == "[]\n"


def test_concurrent_requests_to_one_session_each_run_exactly_once(http: Http) -> None:
    # One at a time in arrival order is the FairLock's promise (tests/test_sessions.py); here
    # concurrent calls through HTTP must neither be lost nor run twice.
    sid = http.run("order = []")["session_id"]
    threads = [threading.Thread(target=http.run, args=(f"order.append({i})", sid))
               for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stdout_of(http.run("print(sorted(order))", sid)) == f"{list(range(6))}\n"


def test_sessions_run_in_parallel(http: Http) -> None:
    a = http.run("1")["session_id"]
    b = http.run("1")["session_id"]
    # Session a, once running, waits for a file that is made only once a call to session b
    # has returned: serialised sessions would never let b run while a waits (a gives up after
    # 30 s). The files are in a's own directory, the only one its sandbox shows it.
    [workdir] = [s.kernel.workdir for s in http.emulator.server.state.sessions.all_live()
                 if s.id == a]
    started, barrier = workdir / "a-started", workdir / "barrier"
    done: dict[str, Any] = {}

    def waiter() -> None:
        done["a"] = http.run(
            f"import os, pathlib, time\npathlib.Path({str(started)!r}).touch()\n"
            f"t = time.monotonic()\n"
            f"while not os.path.exists({str(barrier)!r}) and time.monotonic() - t < 30:\n"
            f"    time.sleep(0.01)\nprint(os.path.exists({str(barrier)!r}))", a)

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(started.exists)  # a is running now
    http.run("1", b)
    barrier.touch()
    thread.join()
    assert stdout_of(done["a"]) == "True\n"


def test_health_reports_ready_once_a_kernel_is_warm(http: Http) -> None:
    wait_until(lambda: http.get("/_emulator/health").json()["pool"]["ready"] >= 1)
    body = http.get("/_emulator/health").json()
    assert body["status"] == "ready" and body["reasons"] == []
    assert set(body["pool"]) >= {"ready", "starting"}


def test_lone_surrogates_in_output_are_replaced_not_a_500(http: Http) -> None:
    data = http.run("print('\\udcff')\nimport sys; sys.stdout.write('x\\udcffy')")
    assert stdout_of(data) == "\ufffd\nx\ufffdy"
    assert len(http.emulator.sessions()) == http.emulator.usage()["total"]["sessions"] == 1
    http.emulator.check()


def test_401_names_the_scheme_and_405_the_allowed_methods(http: Http) -> None:
    unauthorised = http.session.post(http.emulator.base_url + "/tci/execute",
                                     json={"code": "1", "language": "python"})
    assert unauthorised.headers["WWW-Authenticate"].startswith("Bearer")
    wrong_method = http.get("/v1/tci/execute")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]


@pytest.mark.tci_emulator(spec_errors=True)
def test_spec_literal_form_leaves_injected_statuses_and_the_control_plane_alone(
        http: Http) -> None:
    http.emulator.faults.add({"action": "http_error", "status": 503, "times": 1})
    assert http.execute("1").status_code == 503
    assert http.post("/_emulator/clock", {"advance_seconds": -1}).status_code == 400
    assert http.execute("1", "ses_1111111111111111111111").status_code == 200
