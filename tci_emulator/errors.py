"""One exception hierarchy for every request the emulator cannot serve, and one renderer.

A request that cannot be served (bad body, bad key, unknown or expired session, limits, injected
faults, kernel infrastructure failure) raises a subclass of :class:`EmulatorError`. Each class
carries its HTTP status, a stable machine ``code`` and a default message as class attributes, the
way werkzeug's ``exceptions`` module does, so the error table lives in exactly one place.

:func:`render_error` turns any of them into the body of ``docs/contract.md`` section 8: the TCI
``FailedExecution`` envelope (``data: null``, ``errors: [...]``) plus Together's usual ``error``
object, which SDKv1 needs to raise a typed error instead of an ``AssertionError``.

Failures of the user's code are *not* errors here: they are data (an ``error`` output item in a
success envelope). This module imports nothing from Flask so it can be used anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "EmulatorError",
    "InvalidRequest",
    "InvalidApiKey",
    "AdminForbidden",
    "AdminUnauthorized",
    "BudgetExceeded",
    "SessionNotFound",
    "RouteNotFound",
    "MethodNotAllowed",
    "SessionExpired",
    "PayloadTooLarge",
    "TooManySessions",
    "KernelUnavailable",
    "InternalError",
    "InjectedError",
    "EmulatorReset",
    "MalformedHttpRequest",
    "UriTooLong",
    "HeadersTooLarge",
    "HttpVersionNotSupported",
    "HostNotAllowed",
    "CrossOriginRefused",
    "RequestTimeout",
    "TooManyConnections",
    "render_error",
]


class EmulatorError(Exception):
    """Base of every error the emulator answers with a 4xx/5xx status.

    Subclasses set ``status``, ``code``, ``type`` and ``message``; an instance may override the
    message, name the offending request field (``param``) and add response headers.
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    type: ClassVar[str] = "server_error"
    message: ClassVar[str] = "The emulator could not serve this request."
    default_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        message: str | None = None,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.detail = message if message is not None else self.message
        self.param = param
        self.headers: dict[str, str] = {**self.default_headers, **(headers or {})}
        super().__init__(self.detail)

    @property
    def status_code(self) -> int:
        """The HTTP status of this instance (a class constant except for injected errors)."""
        return self.status

    @property
    def error_code(self) -> str:
        """The machine code of this instance (a class constant except for injected errors)."""
        return self.code


class InvalidRequest(EmulatorError):
    """The body is not a valid ExecuteRequest; ``param`` names the field."""

    status = 400
    code = "invalid_request"
    type = "invalid_request_error"
    message = "The request is invalid."


class InvalidApiKey(EmulatorError):
    """Missing, empty or unknown bearer key: Together's gateway answer."""

    status = 401
    code = "invalid_api_key"
    type = "invalid_request_error"
    message = "Invalid API key provided. Send 'Authorization: Bearer <key>'."
    default_headers = {"WWW-Authenticate": 'Bearer realm="tci"'}


class BudgetExceeded(EmulatorError):
    """Creating one more session would take the key beyond its configured budget."""

    status = 402
    code = "budget_exceeded"
    type = "invalid_request_error"
    message = "Creating a session would exceed this key's budget."


class AdminForbidden(EmulatorError):
    """The control plane is switched off or needs the admin token."""

    status = 403
    code = "admin_forbidden"
    type = "invalid_request_error"
    message = "The emulator control plane refused this request."


class AdminUnauthorized(EmulatorError):
    """The control plane needs the admin token and the request did not present it (or presented
    a wrong one): a 401, so a client such as the dashboard knows to ask for it."""

    status = 401
    code = "admin_unauthorized"
    type = "invalid_request_error"
    message = "The control plane needs 'Authorization: Bearer <admin token>'."
    default_headers = {"WWW-Authenticate": 'Bearer realm="tci-emulator control plane"'}


class SessionNotFound(EmulatorError):
    """Unknown session, or a session of another key: the two are indistinguishable on purpose."""

    status = 404
    code = "session_not_found"
    type = "invalid_request_error"
    message = "Session not found."


class RouteNotFound(EmulatorError):
    """No route has this path."""

    status = 404
    code = "not_found"
    type = "invalid_request_error"
    message = "No such endpoint."


class MethodNotAllowed(EmulatorError):
    """The path exists but not with this method."""

    status = 405
    code = "method_not_allowed"
    type = "invalid_request_error"
    message = "Method not allowed on this endpoint."


class SessionExpired(EmulatorError):
    """The session reached its ``expires_at``."""

    status = 410
    code = "session_expired"
    type = "invalid_request_error"
    message = "Session has expired."


class PayloadTooLarge(EmulatorError):
    """The request body, code or files exceed a configured limit."""

    status = 413
    code = "payload_too_large"
    type = "invalid_request_error"
    message = "The request is too large."


class TooManySessions(EmulatorError):
    """A session limit (per key or in all) is reached."""

    status = 429
    code = "too_many_sessions"
    type = "rate_limit_error"
    message = "Too many active sessions."


class KernelUnavailable(EmulatorError):
    """The emulator could not start or reach a kernel (infrastructure, not the user's code)."""

    status = 503
    code = "kernel_unavailable"
    type = "server_error"
    message = "No kernel could be started for this session."


class InternalError(EmulatorError):
    """An unexpected exception inside the emulator; the traceback is kept server-side."""

    status = 500
    code = "internal_error"
    type = "server_error"
    message = "Internal emulator error."


class InjectedError(EmulatorError):
    """An HTTP error produced on purpose by a fault rule; status and code come from the rule."""

    def __init__(
        self,
        status: int,
        code: str | None = None,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message or f"Injected fault: HTTP {status}.", headers=headers)
        self._status = status
        self._code = code or ("rate_limited" if status == 429 else f"http_{status}")

    @property
    def status_code(self) -> int:
        return self._status

    @property
    def error_code(self) -> str:
        return self._code


class EmulatorReset(EmulatorError):
    """The emulator was reset while this request was in flight: nothing of it was kept.

    ``x-should-retry: false`` tells SDKv2 and TypeScript not to send it again into the next test.
    """

    status = 503
    code = "emulator_reset"
    type = "server_error"
    message = ("The emulator was reset while this request was in flight; it created, billed and "
               "recorded nothing.")
    default_headers = {"x-should-retry": "false"}


class MalformedHttpRequest(EmulatorError):
    """The HTTP server could not parse the request (bad request line, header or framing)."""

    status = 400
    code = "bad_http_request"
    type = "invalid_request_error"
    message = "The HTTP request could not be parsed."


class UriTooLong(EmulatorError):
    """The request line is longer than the HTTP server reads (64 KiB)."""

    status = 414
    code = "uri_too_long"
    type = "invalid_request_error"
    message = "The request line is too long."


class HeadersTooLarge(EmulatorError):
    """A header line is longer than 64 KiB, or there are more than 100 headers."""

    status = 431
    code = "headers_too_large"
    type = "invalid_request_error"
    message = "The request headers are too large."


class HttpVersionNotSupported(EmulatorError):
    """The request line names an HTTP version other than 1.x."""

    status = 505
    code = "http_version_not_supported"
    type = "invalid_request_error"
    message = "Only HTTP/1.0 and HTTP/1.1 are served."


class HostNotAllowed(EmulatorError):
    """The ``Host`` header names a host the emulator does not serve (a DNS-rebinding page)."""

    status = 403
    code = "host_not_allowed"
    type = "invalid_request_error"
    message = "This Host is not served; add it with --allowed-host."


class CrossOriginRefused(EmulatorError):
    """A state-changing request carries the ``Origin`` of another site (a web page's request)."""

    status = 403
    code = "cross_origin_refused"
    type = "invalid_request_error"
    message = "Requests from another web origin may not change anything here."


class RequestTimeout(EmulatorError):
    """The client did not send a whole request within the client timeout."""

    status = 408
    code = "request_timeout"
    type = "invalid_request_error"
    message = "The request was not received in time."


class TooManyConnections(EmulatorError):
    """Every connection slot serves a request: the new connection is answered and closed."""

    status = 503
    code = "too_many_connections"
    type = "server_error"
    message = "The emulator has too many open connections; retry shortly."


def _error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def render_error(error: EmulatorError, *, spec_literal: bool = False) -> tuple[int, dict[str, Any]]:
    """Return ``(status, body)`` for ``error``: the single place an error body is built.

    With ``spec_literal`` the answer is the OpenAPI spec's only documented form
    (``docs/contract.md`` section 8), HTTP 200 with
    ``{"data": null, "errors": [...]}``, for users whose code relied on it.
    """
    status = error.status_code
    item = {"code": error.error_code, "message": error.detail}
    if spec_literal:
        return 200, {"data": None, "errors": [item]}
    err_type = error.type if type(error) is not InjectedError else _error_type(status)
    return status, {
        "data": None,
        "errors": [item],
        "error": {
            "message": error.detail,
            "type": err_type,
            "param": error.param,
            "code": error.error_code,
        },
    }
