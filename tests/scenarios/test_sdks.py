"""The three official SDKs, unchanged and pointed at the emulator by TOGETHER_BASE_URL, over HTTP.

SDKv1 (``together==1.5.35``), SDKv2 (``together==2.42.0``) and TS (``together-ai@0.52.0``) each
run in their own install, driven through ``tests/sdks.py``. What every SDK must see is checked for
all three; listing is checked for v2 and TS only, because SDKv1 has no call that lists sessions.

The exception each SDK raises is part of what the emulator promises (users catch these types), so
the tests pin the class names. They follow from each SDK's status mapping: SDKv1 has typed errors
for 401 and 400/403/404/415/422 only and an ``APIError`` for the rest; SDKv2 and TS have one class
per common status and a generic one (``APIStatusError`` in v2, ``APIError`` in TS) for 402 and 410.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from tci_emulator import Emulator
from tci_emulator.clock import parse_timestamp
from tci_emulator.emulator import DEFAULT_TEST_KEY

from ..helpers import Http, stdout_of, wait_until
from ..sdks import LISTING_SDKS, PINNED, Reply, SdkClient, sdk_dir

pytestmark = pytest.mark.sdk

# The exception class each SDK raises for an emulator failure status.
RAISES: dict[str, dict[int, str]] = {
    "v1": {401: "AuthenticationError", 402: "APIError", 404: "InvalidRequestError",
           410: "APIError"},
    "v2": {401: "AuthenticationError", 402: "APIStatusError", 404: "NotFoundError",
           410: "APIStatusError"},
    "ts": {401: "AuthenticationError", 402: "APIError", 404: "NotFoundError", 410: "APIError"},
}
# A 1x1 PNG of 68 bytes (the size of the cookbook's tiny.png); its bytes are not valid UTF-8.
TINY_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8"
            "AAAAASUVORK5CYII=")
# A real TCI session id (contract section 5): well formed, unknown to any emulator.
FOREIGN_SESSION = "ses_CVtmHZWnVBdtZnwbZNosk"


def assert_raised(reply: Reply, sdk: SdkClient, status: int, code: str) -> None:
    """The SDK raised its typed error for ``status``, carrying the emulator's error code."""
    assert not reply.ok, f"{sdk.name} returned {reply.result!r}"
    expected = (RAISES[sdk.name][status], status, code)
    assert (reply.error_type, reply.status, reply.code) == expected, \
        f"{sdk.name}: {reply.error_type}: {reply.message}\n{reply.traceback}"
    assert "AssertionError" not in reply.error_bases


def test_each_sdk_runs_its_pinned_release_from_its_own_install(sdk: SdkClient) -> None:
    info = sdk.driver.info
    assert info["version"] == PINNED[sdk.name]
    assert Path(info["location"]).resolve().is_relative_to((sdk_dir() / sdk.name).resolve())


def test_call_without_session_id_creates_a_session(sdk: SdkClient, tci_emulator: Emulator) -> None:
    data = sdk.run('print("Welcome to Together Code Interpreter!")')
    assert data["outputs"] == [{"type": "stdout",
                                "data": "Welcome to Together Code Interpreter!\n"}]
    assert data["status"] == "success"
    assert [s["id"] for s in tci_emulator.sessions()] == [data["session_id"]]


def test_session_reused_by_id_keeps_its_variables(sdk: SdkClient, tci_emulator: Emulator) -> None:
    session_id = sdk.run("x = 42")["session_id"]
    data = sdk.run('print(f"The value of x is {x}")', session_id)
    assert data["session_id"] == session_id
    assert stdout_of(data) == "The value of x is 42\n"
    assert tci_emulator.usage()["total"] == {"sessions": 1, "executions": 2, "cost_usd": 0.03}


def test_string_and_base64_files_are_written_before_the_code_runs(sdk: SdkClient) -> None:
    png = base64.b64decode(TINY_PNG)
    data = sdk.run(
        "import hashlib\n"
        "print(open('data.txt').read())\n"
        "raw = open('tiny.png', 'rb').read()\n"
        "print(len(raw), hashlib.sha256(raw).hexdigest())",
        files=[{"name": "data.txt", "encoding": "string",
                "content": "Sanguine is the colour of night."},
               {"name": "tiny.png", "encoding": "base64", "content": TINY_PNG}])
    assert stdout_of(data) == ("Sanguine is the colour of night.\n"
                               f"68 {hashlib.sha256(png).hexdigest()}\n")
    assert len(png) == 68


def test_uploaded_script_runs_with_a_shell_escape(sdk: SdkClient) -> None:
    data = sdk.run("!python myscript.py", files=[{
        "name": "myscript.py", "encoding": "string",
        "content": "import sys\nprint(f'Hello from inside {sys.argv[0]}!')"}])
    # A pseudo-terminal's line end, as the recorded service returned it.
    assert stdout_of(data) == "Hello from inside myscript.py!\r\n"


def test_matplotlib_plot_arrives_as_base64_png(sdk: SdkClient) -> None:
    data = sdk.run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    displays = [o["data"] for o in data["outputs"] if o["type"] == "display_data"]
    assert len(displays) == 1
    assert displays[0]["text/plain"] == "<Figure size 640x480 with 1 Axes>"
    assert base64.b64decode(displays[0]["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")


def test_user_exception_is_an_error_item_and_the_session_stays_usable(sdk: SdkClient) -> None:
    data = sdk.run("print('before')\n1/0")
    assert data["outputs"][0] == {"type": "stdout", "data": "before\n"}
    assert data["outputs"][-1]["type"] == "error"
    assert data["outputs"][-1]["data"].splitlines()[-1] == "ZeroDivisionError: division by zero"
    assert stdout_of(sdk.run("print('still here')", data["session_id"])) == "still here\n"


@pytest.mark.parametrize("sdk", LISTING_SDKS, indirect=True)
def test_sessions_list_shows_each_session_with_its_fields(sdk: SdkClient,
                                                          tci_emulator: Emulator) -> None:
    first = sdk.run("x = 1")["session_id"]
    sdk.run("x += 1", first)
    second = sdk.run("y = 2")["session_id"]
    reply = sdk.list_sessions()
    listed = reply.data["sessions"]
    assert [(s["id"], s["execute_count"]) for s in listed] == [(first, 2), (second, 1)]
    truth = {s["id"]: s for s in tci_emulator.sessions()}
    for session in listed:
        assert set(session) == {"id", "execute_count", "started_at", "last_execute_at",
                                "expires_at"}
        for name in ("started_at", "last_execute_at", "expires_at"):
            assert parse_timestamp(session[name]) == parse_timestamp(truth[session["id"]][name])


@pytest.mark.tci_emulator(api_keys=(DEFAULT_TEST_KEY,), pool_size=0)
def test_unknown_api_key_raises_the_sdks_authentication_error(sdk: SdkClient,
                                                              tci_emulator: Emulator) -> None:
    reply = sdk.execute("print(1)", api_key="not-a-key-of-this-emulator")
    assert_raised(reply, sdk, 401, "invalid_api_key")
    assert tci_emulator.usage()["total"]["sessions"] == 0


def test_unknown_session_raises_the_sdks_not_found_error(sdk: SdkClient) -> None:
    assert_raised(sdk.execute("print(1)", FOREIGN_SESSION), sdk, 404, "session_not_found")


def test_expired_session_raises_http_410(sdk: SdkClient, tci_emulator: Emulator) -> None:
    session_id = sdk.run("x = 1")["session_id"]
    tci_emulator.clock.advance(tci_emulator.config.session_lifespan + 1)
    assert_raised(sdk.execute("print(x)", session_id), sdk, 410, "session_expired")


@pytest.mark.tci_emulator(budget_usd="0.06", price_per_session="0.03")
def test_new_session_past_the_budget_raises_http_402(sdk: SdkClient,
                                                     tci_emulator: Emulator) -> None:
    first = sdk.run("x = 1")["session_id"]
    sdk.run("y = 2")
    assert_raised(sdk.execute("z = 3"), sdk, 402, "budget_exceeded")
    assert stdout_of(sdk.run("print(x)", first)) == "1\n"  # existing sessions cost nothing more
    assert tci_emulator.usage()["total"] == {"sessions": 2, "executions": 3, "cost_usd": 0.06}


@pytest.mark.parametrize("sdk", ["v2"], indirect=True)
def test_timed_out_execute_is_retried_and_every_retry_bills_a_new_session(
        sdk: SdkClient, tci_emulator: Emulator, http: Http) -> None:
    reply = sdk.execute("import time\ntime.sleep(3)", timeout=1, max_retries=2)
    assert (reply.ok, reply.error_type) == (False, "APITimeoutError"), reply
    # The executions go on server-side after the client gave up: wait for all three to start.
    wait_until(lambda: tci_emulator.usage()["total"]["executions"] >= 3)
    usage = tci_emulator.usage(sessions=True)
    assert usage["total"] == {"sessions": 3, "executions": 3, "cost_usd": 0.09}
    # Each session runs one call at a time: a second call returns once the slow code is done.
    for row in usage["sessions"]:
        assert http.run("print('done')", row["id"])["outputs"] == [{"type": "stdout",
                                                                    "data": "done\n"}]
