"""Tests of the agent tool against the TCI emulator.

They use nothing but the ``tci_emulator`` fixture, which comes with ``pip install tci-emulator``
(no conftest.py): while a test runs, ``TOGETHER_BASE_URL`` and ``TOGETHER_API_KEY`` point at a
fresh emulator, so ``run_python`` builds its client exactly as in production.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_tool import arun_python, run_python

# A 1x1 PNG; IPython shows it as display_data with image/png, as a plot would be.
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
RATE_LIMIT = {"action": "http_error", "status": 429, "headers": {"Retry-After": "0"},
              "operation": "execute"}


def test_the_tool_reports_output_result_images_and_session(tci_emulator):
    result = run_python(f"""
import base64
from IPython.display import Image, display
print("rows: 3")
display(Image(data=base64.b64decode("{PIXEL}")))
6 * 7
""")
    assert result.ok
    assert result.stdout == "rows: 3\n"
    assert result.result == "42"
    assert result.images == 1
    [session] = tci_emulator.sessions()
    assert result.session_id == session["id"]
    assert result.summary().endswith(f"images: 1\nstatus: ok\nsession_id: {session['id']}")


def test_the_agent_continues_in_its_session_and_sees_its_errors(tci_emulator):
    first = run_python("data = [3, 1, 2]")
    second = run_python("print(sorted(data))\ndata[5]", first.session_id)
    assert second.session_id == first.session_id
    assert second.stdout == "[1, 2, 3]\n"
    assert second.error == "IndexError: list index out of range"
    assert "error: IndexError: list index out of range" in second.summary()
    with tci_emulator.client() as client:
        listed = client.code_interpreter.sessions.list()
    assert [s.id for s in listed.data.sessions] == [first.session_id]


def test_an_expired_session_is_replaced_and_the_agent_told_its_state_is_gone(tci_emulator):
    first = run_python("answer = 42")
    tci_emulator.clock.advance(tci_emulator.config.session_lifespan)  # now at expires_at
    again = run_python("print(answer)", first.session_id)
    assert again.session_id not in (None, first.session_id)
    assert again.notes == (f"session {first.session_id} expired; the code ran in a new session, "
                           "so variables and files from earlier calls are gone",)
    assert again.error == "NameError: name 'answer' is not defined"
    assert [s["id"] for s in tci_emulator.sessions()] == [again.session_id]


def test_a_short_429_storm_is_ridden_out_by_the_sdk_retries(tci_emulator):
    tci_emulator.faults.add({**RATE_LIMIT, "times": 2})  # the SDK retries twice
    result = run_python("print('through')")
    assert result.ok and result.stdout == "through\n"
    assert tci_emulator.usage()["total"]["sessions"] == 1  # refused attempts cost nothing


def test_a_long_429_storm_is_reported_to_the_agent_instead_of_raised(tci_emulator):
    tci_emulator.faults.add({**RATE_LIMIT, "times": 10})
    result = run_python("print('never')")
    assert not result.ok
    assert result.error.startswith("rate limited")
    assert result.session_id is None
    assert tci_emulator.usage()["total"]["sessions"] == 0


def test_an_agent_loop_in_one_session_is_billed_as_one_session(tci_emulator):
    step = run_python("import math")
    for n in range(3):
        step = run_python(f"print(math.factorial({n + 3}))", step.session_id)
    assert step.stdout == "120\n"
    assert tci_emulator.usage()["total"] == {"sessions": 1, "executions": 4, "cost_usd": 0.03}


@pytest.mark.tci_emulator(price_per_session="0.05", budget_usd="0.10")
def test_an_agent_that_opens_a_session_per_call_runs_out_of_budget(tci_emulator):
    assert run_python("1").ok and run_python("2").ok
    third = run_python("3")
    assert third.error.startswith("the code interpreter refused the call (HTTP 402)")
    assert tci_emulator.usage()["total"]["cost_usd"] == 0.10


def test_the_async_tool_runs_code_too(tci_emulator):
    async def scenario():
        result = await arun_python("x = 5\nx * 2")
        async with tci_emulator.async_client() as client:
            listed = await client.code_interpreter.sessions.list()
        return result, listed

    result, listed = asyncio.run(scenario())
    assert result.result == "10"
    assert [s.id for s in listed.data.sessions] == [result.session_id]


# The emulator keeps HTTP connections alive: a client a test leaves open would hold one into the
# next test. The fixture closes the clients `tci_emulator.client()` made when their test ends.
_made = []


def test_a_client_the_fixture_made_is_open_during_its_test(tci_emulator):
    client = tci_emulator.client()
    _made.append(client)
    client.code_interpreter.execute(code="1", language="python")
    assert not client.is_closed()


def test_that_client_was_closed_when_its_test_ended():
    assert _made and _made[0].is_closed()
