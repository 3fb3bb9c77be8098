"""HTTP protocol errors at the front door: the request parser's limits, and the contract's JSON
error body for every request refused before the app sees it (400, 408, 413, 414, 431, 505, and
the 503 of a full server), never waitress's text.

The parser keeps the standard library's line limits (a request line or header line of at most
:data:`MAX_LINE` bytes, at most :data:`MAX_HEADERS` headers), refuses HTTP versions other than
1.0 and 1.1, and refuses a declared body larger than the emulator accepts before it arrives.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from waitress.parser import HTTPRequestParser, ParsingError
from waitress.task import ErrorTask
from waitress.utilities import Error as WaitressError

from ..errors import (
    EmulatorError,
    HeadersTooLarge,
    HttpVersionNotSupported,
    InternalError,
    MalformedHttpRequest,
    PayloadTooLarge,
    UriTooLong,
    render_error,
)

__all__ = ["error_parts", "raw_response", "RequestParser", "ProtocolErrorTask", "MAX_LINE",
           "MAX_HEADERS"]

MAX_LINE = 65536  # request line and each header line, as the standard library's parser
MAX_HEADERS = 100


def error_parts(error: EmulatorError) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status line, headers (without Content-Length) and JSON body of a front-door error."""
    status, body = render_error(error)  # not an API answer: never the OpenAPI spec's literal form
    payload = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), *error.headers.items()]
    return f"{status} {HTTPStatus(status).phrase}", headers, payload


def raw_response(error: EmulatorError) -> bytes:
    """A whole ``Connection: close`` HTTP/1.1 response, for answers written outside a task."""
    status, headers, payload = error_parts(error)
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers),
             f"Content-Length: {len(payload)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + payload


class _Refusal(WaitressError):  # type: ignore[misc]
    """A waitress parse error that carries the emulator error to answer with."""

    def __init__(self, error: EmulatorError) -> None:
        super().__init__(error.detail)
        self.error = error
        self.code = error.status_code


def _body_too_large() -> PayloadTooLarge:
    return PayloadTooLarge("The request body is larger than the emulator accepts.", param="body")


def _as_emulator_error(error: Any) -> EmulatorError:
    if isinstance(error, _Refusal):
        return error.error
    code = getattr(error, "code", 500)
    if code == 413:
        return _body_too_large()
    if code == 431:
        return HeadersTooLarge()
    if code >= 500 and code != 501:
        return InternalError()
    return MalformedHttpRequest(f"{getattr(error, 'reason', 'Bad Request')}: "
                                f"{str(getattr(error, 'body', ''))[:200]}.")


class RequestParser(HTTPRequestParser):  # type: ignore[misc]
    """waitress's parser with the standard library's line limits and the emulator's body limit."""

    refusal: EmulatorError | None = None
    error: Any = None

    def _refuse(self, error: EmulatorError) -> None:
        self.refusal = error
        raise ParsingError(error.detail)

    def parse_header(self, header_plus: bytes) -> None:
        first, _, rest = header_plus.partition(b"\r\n")
        if len(first) > MAX_LINE:
            self._refuse(UriTooLong())
        lines = rest.split(b"\r\n") if rest else []
        if len(lines) > MAX_HEADERS or any(len(line) > MAX_LINE for line in lines):
            self._refuse(HeadersTooLarge())
        super().parse_header(header_plus)
        if self.version not in ("1.0", "1.1"):
            self._refuse(HttpVersionNotSupported())
        limit = getattr(self.adj, "tci_max_body", None)
        if limit is not None and self.content_length > limit:
            self._refuse(_body_too_large())

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        error: Any = self.error
        if self.refusal is not None and error is not None:
            self.error = _Refusal(self.refusal)
        return consumed


class ProtocolErrorTask(ErrorTask):  # type: ignore[misc]
    """A protocol error answered with the contract's JSON error body, never text or HTML."""

    def execute(self) -> None:
        error = _as_emulator_error(self.request.error)
        self.channel.log_refusal(error, getattr(self.request, "command", None),
                                 getattr(self.request, "path", None))
        status, headers, payload = error_parts(error)
        self.status = status
        self.response_headers.extend(headers)
        self.set_close_on_finish()
        self.content_length = len(payload)
        self.write(payload)
