"""``/mcp``: the MCP server over streamable HTTP, inside the emulator's own WSGI app.

The MCP SDK's streamable HTTP transport is an ASGI app; the emulator is a WSGI app served by a
WSGI server. :class:`McpMount` is WSGI middleware that sends ``/mcp`` (and nothing else) to
that ASGI app through ``a2wsgi``, so the mount works under whichever WSGI server serves the
emulator. The ASGI side runs on one event loop in a thread of its own, where the SDK's session
manager lives for as long as the emulator; both are built on the first ``/mcp`` request (an
emulator that never speaks MCP never imports the SDK) and stopped when the emulator closes.

At the door, before the SDK sees anything: the bearer key is checked exactly as the API checks
it (``--api-key``), and the SDK's own transport security refuses a ``Host`` or ``Origin`` that
is not this machine's loopback (or the bound ``--host``), against DNS rebinding. Every refusal
is JSON, never the SDK's plain text: a JSON-RPC error, the endpoint's own protocol, so an MCP
client shows its message, with the emulator's status and machine code in ``error.data``.

The transport is stateless with JSON responses: each MCP message is one HTTP request answered
by one JSON body, so no stream holds a WSGI worker thread open, and nothing about an MCP
session lives in the server (the TCI session is named by ``session_id``, as in the API).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from ..api_client import is_loopback
from ..auth import authenticate
from ..config import Config
from ..errors import EmulatorError, InternalError, MethodNotAllowed
from ..state import EmulatorState

__all__ = ["McpMount", "MCP_PATH"]

MCP_PATH = "/mcp"
START_TIMEOUT = 30.0  # seconds for the SDK's session manager to come up on its loop

# JSON-RPC 2.0's own codes (the MCP SDK imports them from mcp_types; this module must not
# import the SDK before it is needed).
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_REFUSAL_CODES = {400: "invalid_request", 403: "origin_not_allowed", 404: "not_found",
                  405: "method_not_allowed", 406: "not_acceptable", 413: "payload_too_large",
                  415: "unsupported_media_type", 421: "host_not_allowed"}


class McpRefused(EmulatorError):
    """The MCP transport refused the request (its status and reason, as the SDK gave them)."""

    type = "invalid_request_error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self._status = status

    @property
    def status_code(self) -> int:
        return self._status

    @property
    def error_code(self) -> str:
        return _REFUSAL_CODES.get(self._status, f"http_{self._status}")


class McpUnavailable(EmulatorError):
    """``/mcp`` was asked for, but the MCP SDK is not installed."""

    status = 501
    code = "mcp_unavailable"
    type = "server_error"
    message = "MCP over HTTP needs the MCP SDK: pip install 'tci-emulator[mcp]'."


def _respond(error: EmulatorError, start_response: Callable[..., Any]) -> list[bytes]:
    """Answer a refusal at ``/mcp`` in the endpoint's own protocol: a JSON-RPC error (``id``
    null: the request was not read), which MCP clients show with its message, carrying the
    emulator's status and machine code in ``data``."""
    status = error.status_code
    payload = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
        "code": INVALID_REQUEST if status < 500 else INTERNAL_ERROR, "message": error.detail,
        "data": {"status": status, "code": error.error_code, "param": error.param}}}).encode()
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    start_response(f"{status} {reason}", [
        ("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
        *error.headers.items()])
    return [payload]


def _self_url(config: Config, environ: dict[str, Any]) -> str:
    """Where the tools reach this same emulator: the bound address (loopback for a wildcard
    bind) and the port the request came in on."""
    host = config.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{environ['SERVER_PORT']}"


def transport_security(config: Config) -> Any:
    """The SDK's DNS-rebinding protection: loopback names, the bound host if remote, and the
    names of ``--allowed-host``. A wildcard form (``*``, ``.suffix``) the SDK cannot express
    switches its check off: the server's front door (:mod:`tci_emulator.http.guard`) checks
    Host and Origin on every route, ``/mcp`` included, and stays in force."""
    from mcp.server.transport_security import TransportSecuritySettings

    names = ["127.0.0.1", "localhost", "[::1]"]
    if not is_loopback(config.host):
        names.append(f"[{config.host}]" if ":" in config.host else config.host)
    if any(name == "*" or name.startswith(".") for name in config.allowed_hosts):
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    names += config.allowed_hosts
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[form for name in names for form in (name, f"{name}:*")],
        allowed_origins=[form for name in names
                         for form in (f"http://{name}", f"http://{name}:*")])


class _Bridge:
    """The MCP server's ASGI app on an event loop thread, seen as a WSGI app."""

    def __init__(self, config: Config, url: str) -> None:
        from a2wsgi import ASGIMiddleware

        from .server import Endpoint, Pricing, build_server

        server = build_server(Endpoint(url, config.admin_token),
                              Pricing(config.price_per_session, config.session_lifespan))
        asgi = server.streamable_http_app(
            streamable_http_path=MCP_PATH, json_response=True, stateless_http=True,
            transport_security=transport_security(config),
            max_request_body_size=config.max_request_bytes, host=config.host)
        manager = server.session_manager
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="tci-mcp-http",
                                        daemon=True)
        self._thread.start()
        self._stop: asyncio.Event | None = None
        started = threading.Event()

        async def serve() -> None:
            self._stop = asyncio.Event()
            async with manager.run():
                started.set()
                await self._stop.wait()

        self._serving = asyncio.run_coroutine_threadsafe(serve(), self.loop)
        if not started.wait(START_TIMEOUT):
            self.close()
            raise RuntimeError("the MCP session manager did not start")
        bridge = ASGIMiddleware(asgi, loop=self.loop)  # type: ignore[arg-type]
        self.wsgi: WSGIApp = bridge  # type: ignore[assignment]

    def close(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        try:
            self._serving.result(timeout=10)
        except Exception:  # noqa: BLE001 - stopping: whatever the manager raised is moot
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class McpMount:
    """WSGI middleware: ``/mcp`` to the MCP server, everything else to the emulator's app."""

    def __init__(self, app: WSGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state
        self._bridge: _Bridge | None = None
        self._lock = threading.Lock()
        self._closed = False
        state.on_close(self.close)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").rstrip("/") != MCP_PATH or not self.state.config.mcp:
            return self.app(environ, start_response)
        try:
            authenticate(environ.get("HTTP_AUTHORIZATION"), self.state.config.api_keys)
            if environ.get("REQUEST_METHOD") != "POST":
                # Stateless: no stream to listen on (GET) and no MCP session to end (DELETE).
                # The spec's answer is 405; an open GET would hold a server thread forever.
                raise MethodNotAllowed(f"{environ.get('REQUEST_METHOD')} is not served on "
                                       f"{MCP_PATH}: send each MCP message as a POST.",
                                       headers={"Allow": "POST"})
            bridge = self._ensure(environ)
        except EmulatorError as error:
            return _respond(error, start_response)
        return self._json_errors(bridge.wsgi, environ, start_response)

    def _ensure(self, environ: dict[str, Any]) -> _Bridge:
        with self._lock:
            if self._closed:
                raise McpRefused(503, "The emulator is stopping.")
            if self._bridge is None:
                try:
                    self._bridge = _Bridge(self.state.config, _self_url(self.state.config, environ))
                except ImportError as exc:
                    raise McpUnavailable(f"{McpUnavailable.message} ({exc})") from None
            return self._bridge

    def _json_errors(self, app: WSGIApp, environ: dict[str, Any],
                     start_response: Callable[..., Any]) -> Iterator[bytes]:
        """Pass the MCP app's answer through, except a refusal in plain text (a bad Origin,
        Host or content type), which becomes the emulator's JSON error body."""
        refused: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            code = int(status.split(" ", 1)[0])
            content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
            if code >= 400 and "json" not in content_type:
                refused.update(status=code, exc=exc_info)
                return lambda data: None
            return start_response(status, headers, exc_info)

        inner = app(environ, capture)
        text = []
        try:
            for chunk in inner:
                if refused:
                    text.append(chunk)
                else:
                    yield chunk
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()
        if refused:
            if refused["exc"] is not None:
                self.state.record_error(refused["exc"][1])
                error: EmulatorError = InternalError("Internal emulator error in /mcp.")
            else:
                message = b"".join(text).decode("utf-8", "replace").strip()[:200]
                error = McpRefused(refused["status"], f"{message or 'Refused'} (MCP transport).")
            yield from _respond(error, start_response)

    def close(self) -> None:
        """Stop the MCP server's loop (the emulator is closing)."""
        with self._lock:
            self._closed = True
            bridge, self._bridge = self._bridge, None
        if bridge is not None:
            bridge.close()
