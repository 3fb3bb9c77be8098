"""The official SDKs as test clients: long-lived driver processes spoken to in JSON lines.

Each SDK lives in its own install under ``TCI_SDK_DIR`` (the Makefile's ``.sdk/``; ``<repo>/.sdk``
when unset): ``v1`` and ``v2`` are virtual environments with ``together==1.5.35`` and
``together==2.42.0``, ``ts`` is a ``node_modules`` with ``together-ai@0.52.0``. A driver program
from ``tests/sdk/`` runs under that install's interpreter, builds its client the way user code
does (from ``TOGETHER_BASE_URL`` / ``TOGETHER_API_KEY``) and answers one JSON line per command, so
a test proves that unchanged SDK code works against the emulator over real HTTP. Drivers start
once per test session (importing an SDK costs far more than a call) and are stopped at the end.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tci_emulator import Emulator

__all__ = ["SDKS", "LISTING_SDKS", "PINNED", "DriverError", "Reply", "SdkClient", "SdkDriver",
           "SdkDrivers", "sdk_dir"]

SDKS = ("v1", "v2", "ts")
# SDKv1 has no call that lists sessions; v2 and TS have ``code_interpreter.sessions.list()``.
LISTING_SDKS = ("v2", "ts")
# The releases the Makefile installs (``SDK_V1``, ``SDK_V2``, ``SDK_TS``).
PINNED = {"v1": "1.5.35", "v2": "2.42.0", "ts": "0.52.0"}

_REPO = Path(__file__).resolve().parent.parent
_DRIVERS = Path(__file__).resolve().parent / "sdk"
_REPLY_TIMEOUT = 120.0
_STOP_TIMEOUT = 10.0


def sdk_dir() -> Path:
    """Where the SDKs are installed: ``$TCI_SDK_DIR``, else ``<repo>/.sdk``."""
    return Path(os.environ.get("TCI_SDK_DIR") or _REPO / ".sdk")


class DriverError(AssertionError):
    """A driver process failed (did not start, died, or did not understand a command)."""


@dataclass(frozen=True)
class Reply:
    """One driver reply: the SDK's result as plain JSON, or the exception it raised."""

    ok: bool
    result: Any = None
    error_type: str | None = None
    error_bases: tuple[str, ...] = ()
    status: int | None = None
    code: str | None = None
    message: str = ""
    traceback: str = field(default="", repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Reply:
        return cls(ok=body["ok"], result=body.get("result"), error_type=body.get("error_type"),
                   error_bases=tuple(body.get("error_bases") or ()), status=body.get("status"),
                   code=body.get("code"), message=body.get("message") or "",
                   traceback=body.get("traceback") or "")

    @property
    def data(self) -> dict[str, Any]:
        """``data`` of a successful response (fails the test, with the SDK's error, otherwise)."""
        assert self.ok, f"the SDK raised {self.error_type}: {self.message}\n{self.traceback}"
        data: dict[str, Any] = self.result["data"]
        return data


class SdkDriver:
    """One SDK's driver process, started with ``env`` and spoken to one command at a time."""

    def __init__(self, name: str, env: Mapping[str, str]) -> None:
        self.name = name
        self.env = dict(env)
        root = sdk_dir()
        if name == "ts":
            argv, cwd = ["node", str(_DRIVERS / "ts_driver.mjs")], root / "ts"
            installed = cwd / "node_modules" / "together-ai"
        else:
            argv = [str(root / name / "bin" / "python"), str(_DRIVERS / f"{name}_driver.py")]
            cwd = root
            installed = Path(argv[0])
        if not installed.exists():
            raise DriverError(f"SDK {name!r} is not installed under {root} (run `make sdks`)")
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            text=True, encoding="utf-8",
            env={**os.environ, **self.env, "TOGETHER_NO_BANNER": "1",
                 "PYTHONDONTWRITEBYTECODE": "1"})
        self._reader = threading.Thread(target=self._read, name=f"sdk-driver-{name}", daemon=True)
        self._reader.start()
        try:
            self.info: dict[str, Any] = self.call({"op": "hello"}).result
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def stderr_tail(self, limit: int = 4000) -> str:
        """The end of what the driver wrote to stderr (for failure messages)."""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-limit:]

    def call(self, command: Mapping[str, Any], timeout: float = _REPLY_TIMEOUT) -> Reply:
        """Send one command and wait for its reply."""
        with self._lock:
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(json.dumps(command) + "\n")
                self.process.stdin.flush()
                line = self._lines.get(timeout=timeout)
            except (OSError, queue.Empty) as exc:
                # A late reply would be read as the next command's: this driver is done.
                self.process.kill()
                raise DriverError(f"{self.name} driver did not answer ({exc!r}):\n"
                                  f"{self.stderr_tail()}") from None
        if line is None:
            raise DriverError(f"{self.name} driver exited ({self.process.poll()}):\n"
                              f"{self.stderr_tail()}")
        body = json.loads(line)
        if "driver_error" in body:
            raise DriverError(f"{self.name} driver: {body['driver_error']}")
        return Reply.from_json(body)

    def stop(self) -> None:
        """End the process (closing stdin ends its loop), killing it if it lingers."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=_STOP_TIMEOUT)
        self._reader.join(timeout=_STOP_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()


class SdkClient:
    """An SDK driver aimed at one emulator: the commands a test sends, as methods.

    The driver process was started pointing at one emulator; for another one (a test with its
    own settings) each command carries that emulator's ``TOGETHER_*`` values, which the driver
    sets while it builds the client. ``api_key`` replaces the key the same way.
    """

    def __init__(self, driver: SdkDriver, emulator: Emulator) -> None:
        self.driver = driver
        self.emulator = emulator
        self.name = driver.name

    def __repr__(self) -> str:
        return f"<SdkClient {self.name} -> {self.emulator.base_url}>"

    def _command(self, op: str, *, api_key: str | None, timeout: float | None,
                 max_retries: int | None, **fields: Any) -> dict[str, Any]:
        wanted = self.emulator.env()
        if api_key is not None:
            wanted["TOGETHER_API_KEY"] = api_key
        env = {name: value for name, value in wanted.items() if self.driver.env.get(name) != value}
        client = {name: value for name, value in (("timeout", timeout),
                                                  ("max_retries", max_retries))
                  if value is not None}
        return {"op": op, "env": env, "client": client,
                **{name: value for name, value in fields.items() if value is not None}}

    def execute(self, code: str, session_id: str | None = None, *,
                files: list[dict[str, str]] | None = None, api_key: str | None = None,
                timeout: float | None = None, max_retries: int | None = None) -> Reply:
        """``execute`` (v2, TS) or ``run`` (v1) through the SDK; the SDK's result or error."""
        return self.driver.call(self._command(
            "execute", code=code, session_id=session_id, files=files, api_key=api_key,
            timeout=timeout, max_retries=max_retries))

    def run(self, code: str, session_id: str | None = None, **kw: Any) -> dict[str, Any]:
        """Execute and return ``data`` of the response, failing the test if the SDK raised."""
        return self.execute(code, session_id, **kw).data

    def list_sessions(self, *, api_key: str | None = None) -> Reply:
        """``code_interpreter.sessions.list()`` through the SDK (v2 and TS only)."""
        return self.driver.call(self._command("list", api_key=api_key, timeout=None,
                                              max_retries=None))


class SdkDrivers:
    """The drivers of one test session, each started on first use with ``env``; stops them all."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self._drivers: dict[str, SdkDriver] = {}

    def driver(self, name: str) -> SdkDriver:
        """The running driver of SDK ``name``; one that died (or was given up) is replaced, so
        one test's failure does not become every later test's."""
        current = self._drivers.get(name)
        if current is not None and current.process.poll() is not None:
            current.stop()
            current = None
        if current is None:
            current = self._drivers[name] = SdkDriver(name, self.env)
        return current

    def client(self, name: str, emulator: Emulator) -> SdkClient:
        """SDK ``name`` aimed at ``emulator``."""
        return SdkClient(self.driver(name), emulator)

    def stop(self) -> None:
        drivers, self._drivers = list(self._drivers.values()), {}
        for driver in drivers:
            driver.stop()

    def __enter__(self) -> SdkDrivers:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
