"""The benchmark's HTTP client: one keep-alive ``http.client`` connection per client thread.

Deliberately not the contract suite's ``requests``-based client: the front door's rows measure a
fraction of a millisecond of server overhead, and a client that adds its own (``requests``
prepares, merges and hooks every call) would hide it. This one sends the bytes an SDK sends and
reads the answer, nothing more.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from .harness import BenchError

__all__ = ["KEY", "Client", "post", "stdout_of", "new_session_ok", "must_create"]

KEY = "tci-bench-key"


class Client:
    """One keep-alive HTTP connection to the emulator, with the bench key."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                               timeout=300)

    def send(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """One request on this connection: (status, raw body). A failed connection is closed,
        and the next call reconnects."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {KEY}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            raise

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request: (status, parsed JSON body)."""
        status, raw = self.send(method, path, body)
        return status, json.loads(raw)

    def execute(self, code: str, session_id: str | None = None) -> dict[str, Any]:
        """Run code; returns ``data`` of the success envelope or raises :class:`BenchError`."""
        body: dict[str, Any] = {"code": code, "language": "python"}
        if session_id is not None:
            body["session_id"] = session_id
        status, reply = self.call("POST", "/v1/tci/execute", body)
        if status != 200 or reply.get("errors"):
            raise BenchError(f"execute answered {status}: {reply}")
        data: dict[str, Any] = reply["data"]
        if any(o["type"] == "error" for o in data["outputs"]):
            raise BenchError(f"execute failed in the kernel: {data['outputs']}")
        return data

    def health(self) -> dict[str, Any]:
        status, body = self.call("GET", "/_emulator/health")
        if status != 200:
            raise BenchError(f"health answered {status}: {body}")
        result: dict[str, Any] = body
        return result

    def reset(self) -> None:
        status, body = self.call("POST", "/_emulator/reset")
        if status != 200:
            raise BenchError(f"reset answered {status}: {body}")

    def close(self) -> None:
        self.conn.close()


def post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    """One execute call on a connection of its own: (status, raw body)."""
    client = Client(url)
    try:
        return client.send("POST", "/v1/tci/execute", body)
    finally:
        client.close()


def stdout_of(data: dict[str, Any]) -> str:
    """What an execution printed to stdout."""
    return "".join(o["data"] for o in data["outputs"] if o["type"] == "stdout")


def new_session_ok(client: Client) -> bool:
    """Create a session with ``print(1)``; whether it answered as it should."""
    try:
        return stdout_of(client.execute("print(1)")) == "1\n"
    except (BenchError, OSError, http.client.HTTPException):
        return False


def must_create(client: Client) -> None:
    """A new session running ``print(1)``, or :class:`BenchError`."""
    if stdout_of(client.execute("print(1)")) != "1\n":
        raise BenchError("a new session did not print 1")
