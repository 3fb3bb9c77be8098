"""Injected faults as the official SDKs meet them: retries, waits, give-ups, parse errors, cost.

Each test provokes one fault through ``/_emulator/faults`` and checks what the real client does
(the retry table of the contract's section 7) and what the emulator saw (its request journal and
ledger).
"""

from __future__ import annotations

from typing import Any

import pytest

from tci_emulator import Emulator
from tci_emulator.clock import parse_timestamp

from ..helpers import Http, stdout_of, wait_until
from ..sdks import SdkClient

pytestmark = pytest.mark.sdk


def executes(emulator: Emulator) -> list[dict[str, Any]]:
    """Journal entries of execute calls, oldest first."""
    return [e for e in emulator.requests() if e["path"].endswith("/tci/execute")]


@pytest.mark.parametrize("sdk", ["v2"], indirect=True)
def test_one_time_503_is_retried_by_sdkv2_and_billed_once(sdk: SdkClient,
                                                          tci_emulator: Emulator) -> None:
    tci_emulator.faults.add({"operation": "execute", "action": "http_error", "status": 503,
                             "times": 1})
    assert stdout_of(sdk.run("print('through')")) == "through\n"
    first, second = executes(tci_emulator)
    assert (first["status"], first["sdk"]["retry_count"]) == (503, 0)
    assert (second["status"], second["sdk"]["retry_count"]) == (200, 1)
    assert tci_emulator.usage()["total"]["sessions"] == 1


@pytest.mark.parametrize("sdk", ["v1", "v2"], indirect=True)
def test_429_with_retry_after_makes_the_sdk_wait_and_retry(sdk: SdkClient,
                                                          tci_emulator: Emulator) -> None:
    tci_emulator.faults.add({"operation": "execute", "action": "http_error", "status": 429,
                             "headers": {"Retry-After": "2"}, "times": 1})
    assert stdout_of(sdk.run("print('waited')")) == "waited\n"
    refused, served = executes(tci_emulator)
    assert (refused["status"], served["status"]) == (429, 200)
    # Both SDKs' own first backoff is at most one second: two seconds means Retry-After ruled.
    waited = parse_timestamp(served["time"]) - parse_timestamp(refused["time"])
    assert waited.total_seconds() >= 1.9


@pytest.mark.parametrize("sdk", ["ts"], indirect=True)
def test_typescript_sdk_gives_up_on_a_500_without_retrying(sdk: SdkClient,
                                                           tci_emulator: Emulator) -> None:
    tci_emulator.faults.add({"operation": "execute", "action": "http_error", "status": 500,
                             "times": 1})
    reply = sdk.execute("print(1)")
    assert (reply.ok, reply.status, reply.error_type) == (False, 500, "InternalServerError"), reply
    assert len(executes(tci_emulator)) == 1


@pytest.mark.parametrize("sdk", ["v2"], indirect=True)
def test_reset_connection_ends_in_sdkv2s_connection_error_after_its_retries(
        sdk: SdkClient, tci_emulator: Emulator) -> None:
    tci_emulator.faults.add({"operation": "execute", "action": "reset_connection"})
    reply = sdk.execute("print(1)", max_retries=2)
    assert (reply.ok, reply.error_type) == (False, "APIConnectionError"), reply
    [rule] = tci_emulator.faults.rules()
    assert rule["fired"] == 3  # the first attempt and two retries
    assert tci_emulator.usage()["total"]["sessions"] == 0  # no call got as far as a session


# SDKv1 wraps the parse failure in its APIError (status 200); v2 and TS let the parser's own
# error through.
MALFORMED_ERRORS = {"v1": "APIError", "v2": "JSONDecodeError", "ts": "SyntaxError"}


@pytest.mark.parametrize("sdk", ["v1", "v2", "ts"], indirect=True)
@pytest.mark.parametrize("mode", ["truncated", "not_json"])
def test_malformed_body_is_reported_not_returned(sdk: SdkClient, tci_emulator: Emulator,
                                                 mode: str) -> None:
    tci_emulator.faults.add({"operation": "execute", "action": "malformed_body", "mode": mode,
                             "times": 1})
    reply = sdk.execute("print(1)")
    assert not reply.ok, f"{sdk.name} returned {reply.result!r} for a malformed body"
    assert reply.error_type == MALFORMED_ERRORS[sdk.name], reply


@pytest.mark.parametrize("sdk", ["v1", "v2", "ts"], indirect=True)
def test_kernel_crash_is_an_error_item_and_the_next_call_works(sdk: SdkClient,
                                                               tci_emulator: Emulator) -> None:
    session_id = sdk.run("x = 1")["session_id"]
    tci_emulator.faults.add({"action": "kernel_crash", "session_id": session_id, "times": 1})
    [item] = sdk.run("print(x)", session_id)["outputs"]
    assert item["type"] == "error" and "kernel_crash" in item["data"]
    assert "variables and imports were lost" in item["data"]
    assert stdout_of(sdk.run("print('x' in dir())", session_id)) == "False\n"


@pytest.mark.parametrize("sdk", ["v2"], indirect=True)
def test_hang_with_a_client_timeout_is_resent_and_every_resend_is_billed(
        sdk: SdkClient, tci_emulator: Emulator, http: Http) -> None:
    tci_emulator.faults.add({"operation": "execute", "action": "hang", "seconds": 2})
    reply = sdk.execute("print(1)", timeout=0.5, max_retries=2)
    assert (reply.ok, reply.error_type) == (False, "APITimeoutError"), reply
    # Each held request goes on once the hang ends, and creates (and bills) its own session;
    # wait until all three have answered, so none spills into the next test.
    wait_until(lambda: len(executes(tci_emulator)) == 3)
    assert tci_emulator.usage()["total"]["cost_usd"] == 0.09
    assert [r["fired"] for r in tci_emulator.faults.rules()] == [3]


@pytest.mark.parametrize("sdk", ["v1", "v2", "ts"], indirect=True)
def test_latency_slows_the_call_but_the_sdk_gets_its_result(sdk: SdkClient,
                                                           tci_emulator: Emulator) -> None:
    tci_emulator.faults.add({"operation": "execute", "action": "latency", "seconds": 0.5,
                             "times": 1})
    assert stdout_of(sdk.run("print('late')")) == "late\n"
    [entry] = executes(tci_emulator)
    assert entry["duration_ms"] >= 500 and entry["fault"] is not None


@pytest.mark.parametrize("sdk", ["v1", "v2", "ts"], indirect=True)
def test_expire_session_fault_reaches_the_sdk_as_http_410(sdk: SdkClient,
                                                          tci_emulator: Emulator) -> None:
    session_id = sdk.run("x = 1")["session_id"]
    tci_emulator.faults.add({"action": "expire_session", "session_id": session_id})
    reply = sdk.execute("print(x)", session_id)
    assert (reply.ok, reply.status, reply.code) == (False, 410, "session_expired"), reply
