"""The fault engine and its actions without a server: parsing, the registry, and what each action
does to a request, seen through a recording :class:`~tci_emulator.faults.FaultedRequest`."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import tci_emulator.faults
from tci_emulator.errors import InjectedError, InvalidRequest
from tci_emulator.faults import REGISTRY, Action, FaultRule
from tci_emulator.faults.actions import FiredRule, Param

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


class Recorder:
    """A FaultedRequest that records what an action asked for."""

    def __init__(self) -> None:
        self.held: list[float] = []
        self.dropped = False
        self.hooks: list[Callable[[Any], None]] = []
        self.spoils: list[Callable[[bytes], bytes]] = []

    def hold(self, seconds: float) -> None:
        self.held.append(seconds)

    def drop_connection(self) -> None:
        self.dropped = True

    def run_before(self, hook: Callable[[Any], None]) -> None:
        self.hooks.append(hook)

    def spoil_body(self, spoil: Callable[[bytes], bytes]) -> None:
        self.spoils.append(spoil)

    def now(self) -> datetime:
        return NOW


def fire(spec: dict[str, Any]) -> tuple[FaultRule, Recorder]:
    rule = FaultRule.parse("fault_1", spec)
    request = Recorder()
    rule.handler.apply(rule, request)
    return rule, request


def test_the_engine_and_the_actions_import_no_flask() -> None:
    package = Path(tci_emulator.faults.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("flask", "werkzeug") for n in names), path


def test_http_error_raises_the_rules_error_with_lower_case_headers() -> None:
    with pytest.raises(InjectedError) as raised:
        fire({"action": "http_error", "status": 429, "headers": {"Retry-After": 2}})
    assert raised.value.status_code == 429 and raised.value.error_code == "rate_limited"
    assert dict(raised.value.headers) == {"retry-after": "2"}


def test_a_latency_range_is_drawn_from_the_rules_seed() -> None:
    draws = [fire({"action": "latency", "seconds": [1, 2], "seed": 7})[1].held for _ in range(2)]
    assert draws[0] == draws[1] and 1 <= draws[0][0] <= 2
    assert fire({"action": "latency", "seconds": [1, 2], "seed": 8})[1].held != draws[0]


def test_hang_holds_30_seconds_unless_told_and_null_seconds_is_missing() -> None:
    assert fire({"action": "hang"})[1].held == [30.0]
    assert fire({"action": "hang", "seconds": 2})[1].held == [2.0]
    with pytest.raises(InvalidRequest, match="A hang rule needs 'seconds'"):
        FaultRule.parse("fault_1", {"action": "hang", "seconds": None})
    with pytest.raises(InvalidRequest, match="A latency rule needs 'seconds'"):
        FaultRule.parse("fault_1", {"action": "latency"})


def test_reset_connection_drops_the_connection() -> None:
    assert fire({"action": "reset_connection"})[1].dropped


@pytest.mark.parametrize("mode,spoiled", [("truncated", b'{"a"'), ("not_json", b"<html>")])
def test_malformed_body_spoils_the_body(mode: str, spoiled: bytes) -> None:
    [spoil] = fire({"action": "malformed_body", "mode": mode})[1].spoils
    assert spoil(b'{"a": 1}').startswith(spoiled) and spoil(b'{"a": 1}') != b'{"a": 1}'


class _Session:
    """What the execution hooks touch of a session: its expiry and its kernel's kill."""

    def __init__(self) -> None:
        self.expires_at = NOW + timedelta(minutes=5)
        self.killed: list[str] = []
        self.kernel = self

    def kill(self, reason: str) -> None:
        self.killed.append(reason)


def test_expire_session_clamps_the_expiry_to_when_it_fired() -> None:
    rule, request = fire({"action": "expire_session", "session_id": "ses_1"})
    session = _Session()
    request.hooks[0](session)
    assert session.expires_at == NOW and rule.operation == "execute"
    assert not rule.matches("execute", "POST", None, None)  # a call creating its session


def test_kernel_crash_kills_the_kernel_naming_the_rule() -> None:
    _, request = fire({"action": "kernel_crash"})
    session = _Session()
    request.hooks[0](session)
    assert session.killed and "fault_1" in session.killed[0]


@pytest.fixture
def new_action() -> Iterator[type[Action]]:
    """An action defined in the test, removed from the registry afterwards."""

    class Teapot(Action):
        name = "teapot"
        params = (Param("cups", lambda v: int(v), 1),)

        def apply(self, rule: FiredRule, request: Any) -> None:
            request.hold(float(rule.params["cups"]))

    try:
        yield Teapot
    finally:
        REGISTRY.pop("teapot", None)


def test_a_new_action_is_one_class(new_action: type[Action]) -> None:
    rule, request = fire({"action": "teapot", "cups": 3})
    assert rule.as_json()["cups"] == 3 and request.held == [3.0]
    with pytest.raises(InvalidRequest, match="'sugar'"):
        FaultRule.parse("fault_2", {"action": "teapot", "sugar": 1})
    with pytest.raises(InvalidRequest, match="teapot"):
        FaultRule.parse("fault_3", {"action": "kettle"})
