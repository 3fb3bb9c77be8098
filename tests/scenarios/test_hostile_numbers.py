"""Every number a request or a fault rule carries is range-checked: a 400 naming the field,
never a 500, and a range obeys the same caps as a scalar."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from ..helpers import Http

HUGE = 10**400  # JSON allows it; float() of it overflows


def post(http: Http, path: str, body: Any) -> requests.Response:
    """POST ``body`` as JSON text that may hold NaN and Infinity (Python's json reads them)."""
    return http.session.post(http.emulator.url + path, data=json.dumps(body, allow_nan=True),
                             headers={"Content-Type": "application/json"}, timeout=60)


@pytest.mark.parametrize("body,param", [
    ({"advance_seconds": HUGE}, "advance_seconds"),
    ({"advance_seconds": -1}, "advance_seconds"),
    ({"advance_seconds": float("inf")}, "advance_seconds"),
    ({"advance_seconds": float("nan")}, "advance_seconds"),
    ({"advance_seconds": "60"}, "advance_seconds"),
])
def test_hostile_clock_moves_are_400_naming_the_field(http: Http, body: dict[str, Any],
                                                      param: str) -> None:
    before = http.get("/_emulator/clock").json()["now"]
    response = post(http, "/_emulator/clock", body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert http.get("/_emulator/clock").json()["now"] >= before  # still serving


@pytest.mark.parametrize("rule,param", [
    ({"action": "latency", "seconds": [0, HUGE]}, "seconds"),
    ({"action": "latency", "seconds": [3600, 1e9]}, "seconds"),  # a range past the 3600 s cap
    ({"action": "latency", "seconds": [float("nan"), 1]}, "seconds"),
    ({"action": "latency", "seconds": [2, 1]}, "seconds"),
    ({"action": "hang", "seconds": HUGE}, "seconds"),
    ({"action": "hang", "seconds": float("inf")}, "seconds"),
    ({"action": "http_error", "status": HUGE}, "status"),
    ({"action": "http_error", "status": 503, "times": HUGE}, "times"),
    ({"action": "http_error", "status": 503, "after": HUGE}, "after"),
    ({"action": "http_error", "status": 503, "seed": HUGE}, "seed"),
    ({"action": "http_error", "status": 503, "probability": float("nan")}, "probability"),
    ({"action": "http_error", "status": 503, "headers": {"Retry-After": 10**4000}}, "headers"),
    ({"action": "http_error", "status": 503, "headers": {"Retry-After": float("inf")}},
     "headers"),
])
def test_hostile_rule_numbers_are_400_naming_the_field(http: Http, rule: dict[str, Any],
                                                       param: str) -> None:
    response = post(http, "/_emulator/faults", rule)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert http.get("/_emulator/faults").json()["rules"] == []


def test_a_range_within_the_cap_is_kept(http: Http) -> None:
    [rule] = http.post("/_emulator/faults", {"action": "latency", "seconds": [0, 3600],
                                             "operation": "sessions"}).json()["rules"]
    assert rule["seconds"] == [0.0, 3600.0]


@pytest.mark.parametrize("limit", ["9" * 5000, "1" * 10])
def test_a_limit_with_thousands_of_digits_is_400(http: Http, limit: str) -> None:
    response = http.get("/_emulator/requests", params={"limit": limit})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "limit"
    assert http.get("/_emulator/requests", params={"limit": "999999999"}).status_code == 200
