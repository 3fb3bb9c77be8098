"""Every configured limit answers with a clear 4xx (or a visible truncation), set small per test.

Sizes are checked on both sides of each limit, so a limit that is off by one, counts characters
instead of bytes, or is not applied at all fails here. Session limits are checked under concurrent
creation: they are counted when the request arrives, so a burst cannot overshoot them.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tci_emulator import schema
from tci_emulator.outputs import TRUNCATION_MARKER

from ..helpers import Http, stdout_of


def refused(response: requests.Response, status: int, code: str, param: str | None) -> None:
    """Assert ``response`` is the contract error body with this status, code and param."""
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    schema.validate(body, "ErrorBody")
    assert body["error"]["code"] == code and body["error"]["param"] == param, body


def accepted(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text[:300]
    body: dict[str, Any] = response.json()
    schema.validate(body, "ExecuteSuccess")
    return dict(body["data"])


def text_file(name: str, content: str) -> dict[str, str]:
    return {"name": name, "encoding": "string", "content": content}


# -- request, code and files -----------------------------------------------------------------

def _body_of_size(size: int) -> bytes:
    """A valid execute body of exactly ``size`` bytes (padding in an ignored comment)."""
    head = b'{"language": "python", "code": "1 #'
    tail = b'"}'
    return head + b"p" * (size - len(head) - len(tail)) + tail


@pytest.mark.tci_emulator(max_request_bytes=10_000)
def test_request_body_over_max_request_bytes_is_413(http: Http) -> None:
    url = http.emulator.url + "/v1/tci/execute"
    headers = http.headers(http.emulator.api_key)
    accepted(http.session.post(url, data=_body_of_size(10_000), headers=headers))
    refused(http.session.post(url, data=_body_of_size(10_001), headers=headers),
            413, "payload_too_large", "body")


@pytest.mark.tci_emulator(max_request_bytes=10_000)
def test_oversized_body_without_a_length_or_far_over_the_limit_is_413(http: Http) -> None:
    url = http.emulator.url + "/v1/tci/execute"
    headers = http.headers(http.emulator.api_key)
    # A generator body is sent chunked, without a length: the limit holds all the same.
    refused(http.session.post(url, data=iter([_body_of_size(10_001)]), headers=headers),
            413, "payload_too_large", "body")
    refused(http.session.post(url, data=iter([_body_of_size(20_000)]), headers=headers),
            413, "payload_too_large", "body")
    assert http.emulator.sessions() == []
    accepted(http.session.post(url, data=iter([_body_of_size(10_000)]), headers=headers))
    accepted(http.session.post(url, data=iter([b"{}"[:1], _body_of_size(9_999)[1:]]),
                               headers=headers))
    assert len(http.emulator.sessions()) == 2
    refused(http.session.post(url, data=_body_of_size(5_000_000), headers=headers),
            413, "payload_too_large", "body")
    assert len(http.emulator.sessions()) == 2


@pytest.mark.tci_emulator(max_code_bytes=1_000)
def test_code_over_max_code_bytes_in_utf8_is_413(http: Http) -> None:
    fits = "#" + "€" * 333  # 1 + 999 bytes, 334 characters
    accepted(http.execute(fits))
    refused(http.execute(fits + "x"), 413, "payload_too_large", "code")
    refused(http.execute("#" + "€" * 334), 413, "payload_too_large", "code")  # 335 characters
    assert len(http.emulator.sessions()) == 1


@pytest.mark.tci_emulator(max_files=3)
def test_more_than_max_files_is_400(http: Http) -> None:
    files = [text_file(f"f{i}.txt", str(i)) for i in range(4)]
    refused(http.execute("1", files=files), 400, "invalid_request", "files")
    assert http.emulator.sessions() == []
    data = accepted(http.execute("import os; print(sorted(os.listdir('.')))", files=files[:3]))
    assert stdout_of(data) == "['f0.txt', 'f1.txt', 'f2.txt']\n"


@pytest.mark.tci_emulator(max_files_bytes=1_000)
def test_files_over_max_files_bytes_decoded_is_413(http: Http) -> None:
    # base64 counts decoded: 1000 bytes travel as 1336 characters and fit.
    fits = [{"name": "blob.bin", "encoding": "base64",
             "content": base64.b64encode(bytes(600)).decode()},
            text_file("text.txt", "é" * 200)]  # 400 bytes of UTF-8
    data = accepted(http.execute("import os; print(os.path.getsize('blob.bin') "
                                 "+ os.path.getsize('text.txt'))", files=fits))
    assert stdout_of(data) == "1000\n"
    over = fits + [text_file("one.more", "x")]
    refused(http.execute("1", files=over), 413, "payload_too_large", "files")
    assert len(http.emulator.sessions()) == 1


# -- output ----------------------------------------------------------------------------------

CAP = 1_000_000


@pytest.mark.tci_emulator(max_output_bytes=CAP)
@pytest.mark.parametrize("code", [
    "print('x' * 100_000_000)",
    "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 999_999 + '\\n')",
], ids=["one-print", "hundred-writes"])
def test_a_100_mb_print_is_capped_with_a_visible_marker(http: Http, code: str) -> None:
    # How fast, and with how much server memory, is the benchmark's to say (its rows "memory:
    # server peak ..."); here: what the caller gets, and that the session goes on.
    sid = http.run("1")["session_id"]
    data = http.run(code, sid)
    [item] = data["outputs"]
    marker = TRUNCATION_MARKER.format(limit=CAP)
    assert item["type"] == "stdout" and item["data"].endswith(marker)
    kept = item["data"][:-len(marker)]
    assert len(kept.encode()) <= CAP and set(kept) <= {"x", "\n"} and len(kept) > CAP - 1000
    assert stdout_of(http.run("print('next')", sid)) == "next\n"


@pytest.mark.tci_emulator(max_output_bytes=1_000)
def test_output_cap_counts_utf8_bytes_not_characters(http: Http) -> None:
    data = http.run("print('€' * 1000)")  # 3000 bytes of UTF-8
    [item] = data["outputs"]
    marker = TRUNCATION_MARKER.format(limit=1_000)
    kept = item["data"][:-len(marker)]
    assert item["data"].endswith(marker) and kept == "€" * 333


@pytest.mark.tci_emulator(max_output_bytes=1_000)
def test_output_under_the_cap_is_untouched(http: Http) -> None:
    data = http.run("print('y' * 998)")  # 999 bytes with the newline
    assert data["outputs"] == [{"type": "stdout", "data": "y" * 998 + "\n"}]


# -- sessions --------------------------------------------------------------------------------

def burst(count: int, send: Callable[[int], requests.Response]) -> list[requests.Response]:
    """Send ``count`` requests at the same moment from as many threads."""
    gate = threading.Barrier(count)
    responses: list[requests.Response | None] = [None] * count

    def one(index: int) -> None:
        gate.wait(timeout=30)
        responses[index] = send(index)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert all(r is not None for r in responses)
    return [r for r in responses if r is not None]


def _outcomes(responses: list[requests.Response]) -> list[int]:
    for response in responses:
        if response.status_code != 200:
            refused(response, 429, "too_many_sessions", None)
        else:
            accepted(response)
    return sorted(r.status_code for r in responses)


@pytest.mark.tci_emulator(max_sessions_per_key=2)
def test_concurrent_creations_stop_exactly_at_max_sessions_per_key(http: Http) -> None:
    responses = burst(6, lambda _: http.execute("1", key="alice"))
    assert _outcomes(responses) == [200, 200, 429, 429, 429, 429]
    assert len(http.emulator.sessions()) == 2
    accepted(http.execute("1", key="bob"))  # another key has its own allowance
    # An existing session still runs; only creation is limited.
    sid = next(r.json()["data"]["session_id"] for r in responses if r.status_code == 200)
    assert stdout_of(http.run("print(2)", sid, key="alice")) == "2\n"


@pytest.mark.tci_emulator(max_sessions=3, session_lifespan=60)
def test_concurrent_creations_stop_exactly_at_max_sessions_and_free_on_expiry(
        http: Http) -> None:
    responses = burst(8, lambda i: http.execute("1", key=f"key-{i % 4}"))
    assert _outcomes(responses) == [200] * 3 + [429] * 5
    assert len(http.emulator.sessions()) == 3
    refused(http.execute("1", key="newcomer"), 429, "too_many_sessions", None)
    http.emulator.clock.advance(61)  # every session expires; the places are free again
    accepted(http.execute("1", key="newcomer"))


@pytest.mark.tci_emulator(max_sessions=1)
def test_refused_creations_are_not_charged(http: Http) -> None:
    accepted(http.execute("1"))
    refused(http.execute("1"), 429, "too_many_sessions", None)
    assert http.emulator.usage()["total"]["sessions"] == 1
