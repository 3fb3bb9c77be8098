"""The real API over HTTP, beyond the wire contract that ``contract_tests/`` asserts on every
target: configured keys, the body limit, the spec's literal error form, files and symlinks, the
kernel's environment, concurrent calls, health, the 401 and 405 headers."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from .helpers import Http, stdout_of, wait_until


@pytest.mark.tci_emulator(api_keys=("good-key",))
def test_configured_keys_restrict_access(http: Http) -> None:
    assert http.execute("1", key="other").status_code == 401
    assert http.execute("1", key="good-key").status_code == 200


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
