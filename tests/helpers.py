"""Raw HTTP helpers for the project's own tests."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import requests

from tci_emulator import Emulator


class Http:
    """Raw HTTP against one emulator, with the test key unless told otherwise."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.session = requests.Session()

    def headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def execute(self, code: str, session_id: str | None = None, *, key: str | None = None,
                files: list[dict[str, str]] | None = None, path: str = "/v1/tci/execute",
                **extra: Any) -> requests.Response:
        body: dict[str, Any] = {"code": code, "language": "python", **extra}
        if session_id is not None:
            body["session_id"] = session_id
        if files is not None:
            body["files"] = files
        return self.session.post(self.emulator.url + path, json=body,
                                 headers=self.headers(key or self.emulator.api_key), timeout=120)

    def run(self, code: str, session_id: str | None = None, **kw: Any) -> dict[str, Any]:
        """Execute and return ``data`` of a success envelope (asserting it is one)."""
        response = self.execute(code, session_id, **kw)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["errors"] is None and body["data"]["status"] == "success", body
        return dict(body["data"])

    def get(self, path: str, key: str | None = None, **kw: Any) -> requests.Response:
        return self.session.get(self.emulator.url + path,
                                headers=self.headers(key or self.emulator.api_key), timeout=60,
                                **kw)

    def post(self, path: str, body: Any = None, key: str | None = None,
             **kw: Any) -> requests.Response:
        return self.session.post(self.emulator.url + path, json=body,
                                 headers=self.headers(key or self.emulator.api_key), timeout=60,
                                 **kw)


def stdout_of(data: dict[str, Any]) -> str:
    """All stdout text of an execution's outputs."""
    return "".join(o["data"] for o in data["outputs"] if o["type"] == "stdout")


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds, failing after ``timeout`` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (gone, or a zombie not yet reaped).

    A killed multi-threaded process (every kernel) shows its main thread as a zombie while
    its other threads are still exiting; until they have, ``waitpid`` does not see it end.
    So a zombie counts as ended only once it is down to one thread.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return (fields.get("State", "").strip()[:1] in ("Z", "X")
            and fields.get("Threads", "1").strip() == "1")


def pids_where(predicate: Callable[[Path], bool]) -> list[int]:
    """Pids of the processes whose ``/proc/<pid>`` entry satisfies ``predicate`` (processes
    that vanish or cannot be read while looked at are skipped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if predicate(entry):
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


class InFlight:
    """One execute call in a thread of its own; :meth:`response` waits for its answer."""

    def __init__(self, emulator: Emulator, body: dict[str, Any], key: str | None = None) -> None:
        self._result: list[requests.Response | BaseException] = []
        self._thread = threading.Thread(target=self._send, args=(emulator, body, key))
        self._thread.start()

    def _send(self, emulator: Emulator, body: dict[str, Any], key: str | None) -> None:
        try:
            self._result.append(requests.post(
                emulator.base_url + "/tci/execute", json=body, timeout=120,
                headers={"Authorization": f"Bearer {key or emulator.api_key}"}))
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
