"""A small client of an emulator's HTTP API, for the parts of the emulator that act as a caller.

The MCP face reaches sessions only through this client, with the caller's own key, so every
tool call is an ordinary API request: the ledger charges it, the budget limits it, fault rules
match it and the request journal names who sent it (the ``User-Agent`` given here). Nothing
takes a shortcut into the emulator's state.

Failures come back as :class:`ApiFailure`, one exception for everything short of a usable
answer: an error body (4xx/5xx, or the OpenAPI spec's literal HTTP 200 ``{"data": null,
"errors": [...]}``; ``docs/contract.md`` section 8), a body that is not JSON, a dropped
connection, a timeout. Its message says what happened in words a person (or a model) can act on.

Standard library only (``urllib``), so the command line can use it without any extra installed.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

__all__ = ["ApiFailure", "ApiClient", "error_message", "is_loopback", "open_url",
           "root_url"]

DEFAULT_TIMEOUT = 600.0  # seconds: SDKv1's own request timeout; executions may run long


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def root_url(url: str) -> str:
    """The emulator's root URL from whatever a user passes: a trailing ``/`` or ``/v1`` goes."""
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def open_url(request: urllib.request.Request, timeout: float) -> Any:
    """Open ``request``; a proxy configured for the outside world never stands between a
    client and an emulator on this machine."""
    host = urllib.parse.urlsplit(request.full_url).hostname or ""
    handlers = [urllib.request.ProxyHandler({})] if is_loopback(host) else []
    return urllib.request.build_opener(*handlers).open(request, timeout=timeout)


def error_message(body: bytes) -> str:
    """The message of an error body (``docs/contract.md`` section 8), else the start of the
    body."""
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            if isinstance(parsed.get("error"), dict):
                return str(parsed["error"]["message"])
            if isinstance(parsed.get("errors"), list) and parsed["errors"]:
                first = parsed["errors"][0]
                return str(first.get("message") if isinstance(first, dict) else first)
    except (ValueError, KeyError, TypeError):
        pass
    return body[:200].decode("utf-8", "replace")


class ApiFailure(Exception):
    """The emulator did not give a usable answer; ``status`` is ``None`` when it gave none.

    ``code`` is the machine code of ``docs/contract.md`` (``budget_exceeded``, ...) when
    the body had one; ``retry_after`` the ``Retry-After`` header, if any.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 param: str | None = None, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.retry_after = retry_after


def _failure_from_body(status: int, body: bytes, retry_after: str | None) -> ApiFailure:
    code = param = None
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        errors = parsed.get("errors")
        if isinstance(error, dict):
            code, param = error.get("code"), error.get("param")
        elif isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code")
    return ApiFailure(error_message(body), status=status,
                      code=str(code) if code is not None else None,
                      param=str(param) if param is not None else None, retry_after=retry_after)


@dataclass(frozen=True)
class ApiClient:
    """Calls one emulator (``url``, its root) as one caller (``api_key``, ``user_agent``).

    ``admin_token`` is the emulator's ``--admin-token``, for the control-plane reads (usage,
    transcripts); ``None`` when it has none.
    """

    url: str
    api_key: str
    user_agent: str
    admin_token: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def execute(self, code: str, session_id: str | None = None,
                files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """``POST /v1/tci/execute``: the success envelope's ``data``."""
        body: dict[str, Any] = {"code": code, "language": "python", "session_id": session_id}
        if files is not None:
            body["files"] = files
        return self._api("POST", "/v1/tci/execute", body)

    def sessions(self) -> list[dict[str, Any]]:
        """``GET /v1/tci/sessions``: the caller's live sessions."""
        sessions = self._api("GET", "/v1/tci/sessions").get("sessions")
        if not isinstance(sessions, list):
            raise ApiFailure("The emulator's session listing has no 'sessions' list.", status=200)
        return sessions

    def control(self, path: str) -> Any:
        """A control-plane read (``/_emulator/...``), with the admin token if there is one."""
        status, headers, body = self._send("GET", path, None, self.admin_token)
        return self._parse(status, headers, body)

    def control_raw(self, path: str) -> bytes:
        """A control-plane read whose body is not a JSON envelope (a notebook)."""
        status, headers, body = self._send("GET", path, None, self.admin_token)
        if status != 200:
            raise _failure_from_body(status, body, headers.get("Retry-After"))
        return body

    # -- plumbing --------------------------------------------------------------------------

    def _api(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        status, headers, raw = self._send(method, path, body, self.api_key)
        parsed = self._parse(status, headers, raw)
        data = parsed.get("data") if isinstance(parsed, dict) else None
        if not isinstance(data, dict):  # the OpenAPI spec's literal failure form: 200
            raise _failure_from_body(status, raw, headers.get("Retry-After"))
        return data

    @staticmethod
    def _parse(status: int, headers: Mapping[str, str] | Message, raw: bytes) -> Any:
        if status >= 400:
            raise _failure_from_body(status, raw, headers.get("Retry-After"))
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ApiFailure(f"The emulator answered HTTP {status} with a body that is not valid "
                             f"JSON ({exc}); the call may still have run.", status=status) from None

    def _send(self, method: str, path: str, body: Any,
              token: str | None) -> tuple[int, Mapping[str, str] | Message, bytes]:
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, headers=headers,
                                         method=method)
        try:
            with open_url(request, self.timeout) as response:
                return int(response.status), response.headers, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return int(exc.code), exc.headers, exc.read()
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            raise self._transport_failure(exc) from None

    def _transport_failure(self, exc: OSError | http.client.HTTPException) -> ApiFailure:
        """What went wrong below HTTP, in words (urllib wraps some errors, not others)."""
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return ApiFailure(f"The emulator did not answer within {self.timeout:g} s; the call "
                              "may still be running.")
        if isinstance(reason, (http.client.RemoteDisconnected, ConnectionResetError,
                               BrokenPipeError)):
            return ApiFailure(f"The emulator closed the connection without an answer ({reason}); "
                              "the call may or may not have run.")
        if isinstance(reason, http.client.HTTPException):
            return ApiFailure(f"The emulator's answer was not valid HTTP ({reason!r}); the call "
                              "may or may not have run.")
        return ApiFailure(f"The emulator at {self.url} cannot be reached: {reason}.")
