"""Random interleavings of creations, executions, resets, clock moves, kernel crashes and fault
rules, with calls in flight across every step (hypothesis ``RuleBasedStateMachine``).

Before a reset the machine waits until every call it sent has reached the server, so each call
is known to be from before or after each reset. After every step: the live listing is within the
ledger; nothing answered by a call from before a reset (even a 200 committed just before it) is in
the ledger, the listing or the journal after it; no key's spend passes the budget; a creation is
never answered 410 and nothing is answered 500. Whenever every call has been answered: the
sessions in the ledger are exactly those whose creation answered 200 in this generation.

The example budget is fixed and small (see ``MACHINE_SETTINGS``) so it runs in ``make test``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest
import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tci_emulator import Emulator

from ..helpers import InFlight, wait_until

KEYS = ("tenant-a", "tenant-b")
BUDGET = Decimal("0.09")  # three sessions per key per generation
MACHINE_SETTINGS = settings(max_examples=8, stateful_step_count=12, deadline=None,
                            suppress_health_check=list(HealthCheck))
CREATION_STATUSES = {200, 402, 502, 503}  # 502: the injected http_error; 503: a reset
EXECUTION_STATUSES = {200, 404, 410, 502, 503}


@dataclass
class Call:
    """One call the machine sent, and what it knew when it sent it."""

    flight: InFlight
    key: str
    creates: bool
    generation: int
    crossed_reset: bool = False  # it reached the server before a reset and was still in flight
    answered: requests.Response | None = field(default=None)

    def result(self) -> requests.Response:
        if self.answered is None:
            self.answered = self.flight.response(timeout=120)
        return self.answered


class BarrierMachine(RuleBasedStateMachine):
    """The model: calls of this generation, calls of earlier ones, and what each answered."""

    emulator: Emulator  # set by the test below

    @initialize()
    def start_clean(self) -> None:
        self.emulator.reset()
        self.generation = 0
        self.calls: list[Call] = []
        self.before_reset: set[str] = set()  # session ids answered 200 before the last reset

    # -- helpers ---------------------------------------------------------------------------

    def _send(self, key: str, session_id: str | None = None) -> None:
        body = {"code": "x = 1", "language": "python"}
        if session_id is not None:
            body["session_id"] = session_id
        self.calls.append(Call(InFlight(self.emulator, body, key=key), key, session_id is None,
                               self.generation))

    def _current_sessions(self) -> list[tuple[str, str]]:
        """(key, session id) of this generation's answered creations."""
        found = []
        for call in self.calls:
            if call.creates and call.generation == self.generation and call.flight.done:
                response = call.result()
                if response.status_code == 200 and not call.crossed_reset:
                    found.append((call.key, response.json()["data"]["session_id"]))
        return found

    def _ledger_ids(self) -> set[str]:
        return {row["id"] for row in self.emulator.usage(sessions=True)["sessions"]}

    # -- rules -----------------------------------------------------------------------------

    @rule(key=st.sampled_from(KEYS))
    def create(self, key: str) -> None:
        self._send(key)

    @precondition(lambda self: bool(self._current_sessions()))
    @rule(data=st.data())
    def execute(self, data: st.DataObject) -> None:
        key, session_id = data.draw(st.sampled_from(self._current_sessions()))
        self._send(key, session_id)

    @rule()
    def reset(self) -> None:
        epoch = self.emulator.server.state.epoch
        # Every call not yet answered has reached the server: it is from before this reset.
        wait_until(lambda: epoch.in_flight >= sum(not c.flight.done for c in self.calls))
        crossing = [c for c in self.calls if not c.flight.done]
        self.emulator.reset()
        for call in crossing:
            call.crossed_reset = True
        for call in self.calls:
            response = call.result() if call.generation == self.generation else None
            if response is not None and response.status_code == 200 and call.creates:
                self.before_reset.add(response.json()["data"]["session_id"])
        self.generation += 1

    @rule(seconds=st.sampled_from([1, 600, 7200]))
    def move_clock(self, seconds: int) -> None:
        self.emulator.clock.advance(seconds)

    @rule(spec=st.sampled_from([
        {"action": "kernel_crash", "times": 1},
        {"action": "latency", "seconds": [0.05, 0.3], "times": 2},
        {"action": "hang", "seconds": 2, "times": 1},
        {"action": "http_error", "status": 502, "times": 1},
    ]))
    def add_fault(self, spec: dict[str, object]) -> None:
        self.emulator.faults.add(spec)

    @rule()
    def settle(self) -> None:
        """Wait for every call, then the strict equality holds."""
        for call in self.calls:
            call.result()
        assert self._ledger_ids() == {sid for _, sid in self._current_sessions()}

    # -- after every step ------------------------------------------------------------------

    @invariant()
    def answers_are_allowed(self) -> None:
        for call in self.calls:
            if call.flight.done:
                status = call.result().status_code
                allowed = CREATION_STATUSES if call.creates else EXECUTION_STATUSES
                assert status in allowed, call.result().text
                if status == 503:
                    assert call.result().json()["error"]["code"] == "emulator_reset"
                    assert call.crossed_reset

    @invariant()
    def listing_is_within_the_ledger(self) -> None:
        listed = {s["id"] for s in self.emulator.sessions()}
        assert listed <= self._ledger_ids()

    @invariant()
    def nothing_from_before_a_reset_after_it(self) -> None:
        ledger = self._ledger_ids()
        listed = {s["id"] for s in self.emulator.sessions()}
        journalled = {e["session_id"] for e in self.emulator.requests()}
        assert not self.before_reset & (ledger | listed | journalled)

    @invariant()
    def budget_is_never_passed(self) -> None:
        for totals in self.emulator.usage()["by_key"].values():
            assert Decimal(str(totals["cost_usd"])) <= BUDGET

    def teardown(self) -> None:
        for call in self.calls:
            call.result()
        self.emulator.reset()


@pytest.mark.tci_emulator(pool_size=1, budget_usd=str(BUDGET))
def test_resets_clocks_and_faults_never_leak_or_lose_a_session(tci_emulator: Emulator) -> None:
    BarrierMachine.emulator = tci_emulator
    run_state_machine_as_test(BarrierMachine, settings=MACHINE_SETTINGS)
    tci_emulator.check()
