"""What the project's own tests share: raw HTTP bound to an in-process emulator (the one test
client of ``contract_tests/client.py``), polling with a deadline, calls left in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests

from contract_tests.client import Client, stdout_of
from tci_emulator import Emulator

__all__ = ["Http", "InFlight", "checked_handle", "stdout_of", "wait_until"]


class Http(Client):
    """Raw HTTP against one emulator (``emulator``), with its test key unless told otherwise."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(emulator.url, emulator.api_key)
        self.emulator = emulator


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds, failing after ``timeout`` seconds (never a fixed
    sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


class InFlight:
    """One execute call in a thread of its own; :meth:`response` waits for its answer."""

    def __init__(self, emulator: Emulator, body: dict[str, Any], key: str | None = None) -> None:
        self._result: list[requests.Response | BaseException] = []
        self._thread = threading.Thread(target=self._send, args=(emulator, body, key))
        self._thread.start()

    def _send(self, emulator: Emulator, body: dict[str, Any], key: str | None) -> None:
        try:
            with Client(emulator.url, key or emulator.api_key) as client:
                self._result.append(client.post("/v1/tci/execute", body))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self._result.append(exc)

    @property
    def done(self) -> bool:
        """Whether the call has been answered (or failed)."""
        return not self._thread.is_alive()

    def response(self, timeout: float = 60) -> requests.Response:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the call was not answered"
        result = self._result[0]
        if isinstance(result, BaseException):
            raise result
        return result


def checked_handle(emulator: Emulator) -> Iterator[Http]:
    """A function-scoped fixture's body: the emulator reset, raw HTTP to it, and afterwards any
    server-side exception raised into the test that caused it."""
    emulator.reset()
    yield Http(emulator)
    emulator.check()
