"""The JSON-lines loop shared by the Python SDK drivers (``v1_driver.py``, ``v2_driver.py``).

A driver runs under the interpreter of one SDK's own virtual environment (``.sdk/v1``,
``.sdk/v2``), so it imports nothing from the project: only the standard library and the SDK.
It reads one JSON command per line on stdin and writes exactly one JSON reply per line on stdout:

    {"op": "hello"}       -> {"ok": true, "result": {"version": ..., "location": ..., "pid": ...}}
    {"op": "execute", "code": ..., "session_id": ..., "files": [...]}
    {"op": "list"}
        -> {"ok": true, "result": <the SDK's response as plain JSON>}
        or {"ok": false, "error_type": "<SDK exception class>", "error_bases": [...],
            "status": <HTTP status or null>, "code": <error.code of the body or null>,
            "message": ...}

Every command may carry ``"env"`` (variables set while the client is built, e.g. another
``TOGETHER_BASE_URL`` or ``TOGETHER_API_KEY``) and ``"client"`` (``timeout`` in seconds,
``max_retries``). The client itself is always built the way user code builds it, from the
``TOGETHER_*`` environment, so what is proven is that unchanged code works against the emulator.
A command the driver itself cannot understand answers ``{"ok": false, "driver_error": ...}``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any


class Adapter:
    """One SDK as the loop sees it: the ``together`` package of this interpreter, a client built
    from the environment, the operations it offers and how its exceptions read.

    Subclasses (one per SDK major version) give ``ops`` and ``describe``.
    """

    def __init__(self) -> None:
        import together  # the SDK of the interpreter running the driver

        self.module = together

    def make_client(self, options: dict[str, Any]) -> Any:
        """``Together(**options)``: key and base URL come from the ``TOGETHER_*`` variables."""
        return self.module.Together(**options)

    def ops(self) -> dict[str, Callable[[Any, dict[str, Any]], Any]]:
        raise NotImplementedError

    def describe(self, exc: BaseException) -> dict[str, Any]:
        raise NotImplementedError


def execute_arguments(command: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of an execute call; optional ones only when given, as users pass
    them."""
    arguments = {"code": command["code"], "language": command.get("language", "python")}
    arguments.update({name: command[name] for name in ("session_id", "files")
                      if command.get(name) is not None})
    return arguments


def _plain(value: Any) -> Any:
    """JSON fallback: datetimes (parsed by the SDK) as ISO 8601 text."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class _Environ:
    """Set some variables while a client is built, then put the old values back."""

    def __init__(self, overrides: dict[str, str]) -> None:
        self.overrides = overrides
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for name, value in self.overrides.items():
            self.saved[name] = os.environ.get(name)
            os.environ[name] = value

    def __exit__(self, *exc: object) -> None:
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def error_reply(exc: BaseException, status: Any, code: Any) -> dict[str, Any]:
    """The reply for an exception the SDK raised."""
    return {"ok": False, "error_type": type(exc).__name__,
            "error_bases": [cls.__name__ for cls in type(exc).__mro__],
            "status": status, "code": code, "message": str(exc)[:4000]}


def main(load: Callable[[], Adapter]) -> None:
    """Serve commands until stdin closes. ``load`` imports the SDK (after stdout is secured)."""
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # whatever the SDK prints (banners, warnings) goes to stderr, not the protocol
    sys.stdout = sys.stderr
    adapter = load()
    ops = adapter.ops()
    clients: dict[str, Any] = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            op = command["op"]
        except (ValueError, KeyError, TypeError) as exc:
            reply: dict[str, Any] = {"ok": False, "driver_error": f"bad command: {exc}"}
        else:
            if op == "hello":
                reply = {"ok": True, "result": {
                    "version": importlib.metadata.version(adapter.module.__name__),
                    "location": adapter.module.__file__, "pid": os.getpid()}}
            elif op not in ops:
                reply = {"ok": False, "driver_error": f"unknown op {op!r}"}
            else:
                reply = _run(adapter, ops[op], command, clients)
        protocol.write(json.dumps(reply, default=_plain) + "\n")


def _run(adapter: Adapter, op: Callable[[Any, dict[str, Any]], Any], command: dict[str, Any],
         clients: dict[str, Any]) -> dict[str, Any]:
    env = command.get("env") or {}
    options = command.get("client") or {}
    key = json.dumps([env, options], sort_keys=True)
    try:
        if key not in clients:
            with _Environ(env):
                clients[key] = adapter.make_client(options)
        return {"ok": True, "result": op(clients[key], command)}
    except Exception as exc:  # noqa: BLE001 - every SDK exception is a reply, not a crash
        reply = adapter.describe(exc)
        reply["traceback"] = traceback.format_exc()[-4000:]
        return reply
