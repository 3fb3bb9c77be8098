"""The MCP face of the emulator: TCI sessions as tools and resources for agents in MCP clients.

Built on the official MCP Python SDK's ``MCPServer``. Every tool and resource reaches the
emulator only through its HTTP API (:class:`~tci_emulator.api_client.ApiClient`), with the
caller's own key and a ``User-Agent`` naming the MCP client, so an MCP call *is* an API call by
construction: the ledger charges it, the budget refuses it, fault rules fire on it and the
request journal shows it, exactly as for an SDK. The same server runs over stdio (``tci-emulator
mcp``, see :func:`run_stdio`) and over streamable HTTP at ``/mcp`` (:mod:`tci_emulator.mcp.mount`).

Who is calling: over stdio, the one key the command was started with; over HTTP, the bearer key
of each request (checked at the door). A server middleware puts the caller in a context
variable for the duration of each MCP request, so tools and resources (static ones included)
act for the right tenant.

Tools: ``execute`` (TCI outputs become MCP content: stream text as text, stderr marked, images
as image blocks, ``text/plain`` results as text; an ``error`` output sets ``isError``; the
structured result is the TCI ``data`` unchanged) and ``list_sessions``. Resources: each of the
caller's sessions as a notebook (``tci://sessions/{session_id}/notebook``) and the caller's usage
(``tci://usage``). A failure of the emulator itself (402, 410, 429, an injected fault, a dropped
connection) is a tool error that says what happened, never a crashed server.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import json
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

import anyio.to_thread
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, Field
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from .. import __version__
from ..api_client import ApiClient, ApiFailure
from ..auth import bearer_token, fingerprint

__all__ = ["Caller", "Endpoint", "Pricing", "build_server", "caller_usage", "failure_text",
           "to_content", "user_agent"]

NOTEBOOK_MIMETYPE = "application/x-ipynb+json"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
STDERR_MARK = "[stderr]\n"
_UNSAFE = re.compile(r"[^\x20-\x7e]")  # a client's name goes into an HTTP header: printable ASCII


@dataclass(frozen=True)
class Caller:
    """Who an MCP request acts for: the API key, and the MCP client that sent it."""

    api_key: str | None
    client: str | None = None


@dataclass
class Endpoint:
    """The emulator the tools call: its root URL (set once it is known) and admin token."""

    url: str | None = None
    admin_token: str | None = None

    def client(self, caller: Caller) -> ApiClient:
        """An API client acting for ``caller``; :class:`ApiFailure` if there is none to make."""
        if self.url is None:
            raise ApiFailure("The emulator is not running yet.")
        if not caller.api_key:
            raise ApiFailure("No API key: send 'Authorization: Bearer <key>'.")
        return ApiClient(self.url, caller.api_key, user_agent(caller.client),
                         admin_token=self.admin_token)


@dataclass(frozen=True)
class Pricing:
    """What the tool descriptions tell a model about cost; ``None`` where the emulator did not
    say (a server reached by URL whose control plane is closed)."""

    price_usd: Decimal | None = None
    lifespan_seconds: float | None = None

    def price(self) -> str:
        return f"${self.price_usd}" if self.price_usd is not None else "$0.03 by default"

    def lifespan(self) -> str:
        if self.lifespan_seconds is None:
            return "60 minutes by default"
        minutes = self.lifespan_seconds / 60
        return f"{minutes:g} minutes" if minutes >= 1 else f"{self.lifespan_seconds:g} seconds"


def user_agent(client: str | None) -> str:
    """The ``User-Agent`` of the API calls made for an MCP client (shown by the journal)."""
    name = _UNSAFE.sub("?", client or "unknown")[:120]
    return f"tci-emulator-mcp/{__version__} (client {name})"


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("tci_mcp_caller",
                                                                        default=None)


def _client_name(ctx: ServerRequestContext[Any, Any], http_agent: str | None) -> str | None:
    """The MCP client's own name and version (``clientInfo``), else its HTTP User-Agent."""
    params = ctx.session.client_params
    if params is not None:
        info = params.client_info
        return f"{info.name}/{info.version}" if info.version else info.name
    return http_agent


def _identify(default_key: str | None) -> ServerMiddleware[Any]:
    """Server middleware: the caller of each MCP request, in a context variable."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext
                         ) -> HandlerResult:
        key, agent = default_key, None
        headers = getattr(ctx.request, "headers", None)  # a Starlette request over HTTP
        if headers is not None:
            key = bearer_token(headers.get("authorization"))
            agent = headers.get("user-agent")
        token = _caller.set(Caller(key, _client_name(ctx, agent)))
        try:
            return await call_next(ctx)
        finally:
            _caller.reset(token)

    return middleware


def _current_caller() -> Caller:
    caller = _caller.get()
    if caller is None:
        raise ApiFailure("No caller: this runs only inside an MCP request.")
    return caller


# -- what a tool returns ---------------------------------------------------------------------


class FileUpload(BaseModel):
    """A file written into the session's working directory before the code runs."""

    name: str = Field(description="Path relative to the session's working directory, e.g. "
                                  "'data.csv' or 'inputs/a.txt' (folders are created).")
    encoding: Literal["string", "base64"] = Field(
        description="'string' for text (written as UTF-8), 'base64' for binary content.")
    content: str = Field(description="The file's content, as text or base64.")


class ExecuteResult(TypedDict):
    """The TCI ``data`` of a successful execute call, unchanged."""

    session_id: str
    status: str
    outputs: list[dict[str, Any]]


class SessionList(TypedDict):
    """The caller's live sessions, as ``GET /v1/tci/sessions`` lists them."""

    sessions: list[dict[str, Any]]


def to_content(outputs: list[dict[str, Any]]) -> tuple[list[ContentBlock], bool]:
    """TCI output items as MCP content blocks, and whether the code failed.

    Stream text becomes text (stderr marked with a first line ``[stderr]``); a display or
    result bundle becomes an image block per image type it holds, or else its ``text/plain``
    as text (a plot's ``text/plain`` is only its placeholder, ``<Figure ...>``); an ``error``
    item becomes its traceback text and makes the result an error. Other MIME types stay in
    the structured result only.
    """
    blocks: list[ContentBlock] = []
    failed = False
    for item in outputs:
        kind, data = item.get("type"), item.get("data")
        if kind in ("stdout", "stderr", "error") and isinstance(data, str):
            blocks.append(TextContent(text=STDERR_MARK + data if kind == "stderr" else data))
            failed = failed or kind == "error"
        elif kind in ("display_data", "execute_result") and isinstance(data, dict):
            images = [mime for mime in IMAGE_TYPES if isinstance(data.get(mime), str)]
            blocks.extend(_image(data[mime], mime) for mime in images)
            if not images and isinstance(data.get("text/plain"), str):
                blocks.append(TextContent(text=data["text/plain"]))
    return blocks, failed


def _image(data: str, mime: str) -> ContentBlock:
    """An image block, if ``data`` really is base64: session code chooses what it displays,
    and a client must not be handed an image it cannot decode."""
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return TextContent(text=f"[an {mime} output was left out: its data is not base64]")
    return ImageContent(data=data, mime_type=mime)


# Per machine code: what the model can do about it (appended to the emulator's own message).
_HINTS = {
    "budget_exceeded": "This key's budget allows no new session: keep using an existing "
                       "session_id (list_sessions shows them).",
    "session_expired": "Start a new session by leaving out session_id (it is billed); files "
                       "and variables of the expired one are gone.",
    "session_not_found": "Use a session_id returned by execute or list_sessions, or leave it "
                         "out to start a new session.",
    "too_many_sessions": "Keep using an existing session_id (list_sessions shows them) "
                         "instead of starting another.",
    "invalid_api_key": "The API key was refused.",
    "kernel_unavailable": "No kernel could be started; try again later.",
}


def failure_text(failure: ApiFailure) -> str:
    """A tool error's text: what the emulator answered, and what to do about it."""
    if failure.status is None:
        return f"The code interpreter call failed: {failure.message}"
    code = f" {failure.code}" if failure.code else ""
    text = f"The code interpreter refused the call: HTTP {failure.status}{code}: {failure.message}"
    if failure.param:
        text += f" (parameter: {failure.param})"
    hint = _HINTS.get(failure.code or "")
    if hint:
        text += f" {hint}"
    elif failure.status == 429 or failure.status >= 500:
        text += " This looks temporary: the call may be retried"
        text += (f" after {failure.retry_after} seconds." if failure.retry_after else ".")
    return text


def _tool_failure(failure: ApiFailure) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=failure_text(failure))], is_error=True)


def _resource_failure(failure: ApiFailure) -> ResourceError:
    if failure.code == "admin_forbidden":
        return ResourceError(f"The emulator's control plane refused the read: {failure.message} "
                             "(usage and transcripts are read there).")
    return ResourceError(failure_text(failure))


# -- the server ------------------------------------------------------------------------------


def build_server(endpoint: Endpoint, pricing: Pricing, *, default_key: str | None = None,
                 start: Callable[[], Any] | None = None,
                 stop: Callable[[], Any] | None = None) -> MCPServer[Any]:
    """The MCP server over ``endpoint``.

    ``default_key`` is the caller's key when the transport has no headers (stdio).
    ``start``/``stop`` run (in a worker thread) when the server starts and stops: the stdio
    command starts its in-process emulator there, so kernels are started after the MCP SDK
    has moved the process's standard output away from the wire.
    """

    @asynccontextmanager
    async def lifespan(server: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        if start is not None:
            await anyio.to_thread.run_sync(start)
        try:
            yield {}
        finally:
            if stop is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(stop)

    # MCPServer() calls logging.basicConfig(): a handler in place for that moment leaves the
    # logging of whatever hosts the emulator as it was.
    root, guard = logging.getLogger(), logging.NullHandler()
    root.addHandler(guard)
    try:
        server: MCPServer[Any] = MCPServer(
            "tci-emulator", version=__version__, title="Together Code Interpreter (emulator)",
            instructions=(
                "Runs Python in stateful code-interpreter sessions (Jupyter kernels). Each call to "
                f"execute without a session_id starts and bills a new session ({pricing.price()}); "
                "pass the session_id it returns to keep variables, imports and files for free. "
                f"Sessions expire {pricing.lifespan()} after they start."),
            lifespan=lifespan, middleware=[_identify(default_key)], log_level="WARNING")
    finally:
        root.removeHandler(guard)

    @server.tool(
        title="Run Python",
        description=(
            "Run Python code in a stateful Jupyter session and return its output: stdout and "
            "stderr text (stderr marked), the value of the last expression, plots and images "
            "as images, and the traceback if the code raised (the result is then an error). "
            f"COST: leaving out session_id starts a NEW session, billed {pricing.price()}; "
            "pass the session_id returned by an earlier call to reuse it at no extra cost, "
            "keeping its variables, imports and files. Sessions expire "
            f"{pricing.lifespan()} after they start. `!pip install pkg` and `!cmd` shell "
            "escapes work."),
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                    idempotent_hint=False, open_world_hint=True))
    async def execute(
        code: Annotated[str, Field(description="Python source to run (IPython syntax).")],
        session_id: Annotated[str | None, Field(
            description="A session_id returned by an earlier call, to run in that session. "
                        "Leave out to start a new, billed session.")] = None,
        files: Annotated[list[FileUpload] | None, Field(
            description="Files to write into the session's working directory first.")] = None,
    ) -> Annotated[CallToolResult, ExecuteResult]:
        uploads = [f.model_dump() for f in files] if files is not None else None
        try:
            client = endpoint.client(_current_caller())
            data = await anyio.to_thread.run_sync(client.execute, code, session_id, uploads)
        except ApiFailure as failure:
            return _tool_failure(failure)
        outputs: list[dict[str, Any]] = [
            item for item in data.get("outputs") or [] if isinstance(item, dict)]
        blocks, failed = to_content(outputs)
        blocks.append(TextContent(text=f"[session_id: {data.get('session_id')}]"))
        return CallToolResult(content=blocks, is_error=failed, structured_content={
            "session_id": data.get("session_id"), "status": data.get("status", "success"),
            "outputs": outputs})

    @server.tool(
        title="List sessions",
        description=("List your live code-interpreter sessions: id, execute_count, started_at, "
                     "last_execute_at and expires_at. Reuse one with execute's session_id "
                     "instead of starting a new, billed session."),
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True,
                                    open_world_hint=False))
    async def list_sessions() -> SessionList:
        try:
            client = endpoint.client(_current_caller())
            return {"sessions": await anyio.to_thread.run_sync(client.sessions)}
        except ApiFailure as failure:
            raise ToolError(failure_text(failure)) from None

    @server.resource(
        "tci://usage", name="usage", title="Your usage and budget", mime_type="application/json",
        description="Sessions started, executions and cost of your key, its budget and what is "
                    "left of it, and one row per session.")
    async def usage() -> str:
        try:
            client = endpoint.client(_current_caller())
            body = await anyio.to_thread.run_sync(client.control, "/_emulator/usage?sessions=1")
        except ApiFailure as failure:
            raise _resource_failure(failure) from None
        return json.dumps(caller_usage(body, fingerprint(client.api_key)), indent=1)

    @server.resource(
        "tci://sessions/{session_id}/notebook", name="notebook", title="Session transcript",
        mime_type=NOTEBOOK_MIMETYPE,
        description="Everything a session of yours ran, as a Jupyter notebook (nbformat 4): one "
                    "code cell per execute call, with its outputs.")
    async def notebook(session_id: str) -> str:
        path = f"/_emulator/sessions/{urllib.parse.quote(session_id, safe='')}/notebook"
        try:
            client = endpoint.client(_current_caller())
            own = fingerprint(client.api_key)
            known = await anyio.to_thread.run_sync(client.control, "/_emulator/sessions")
            rows = known.get("sessions", []) if isinstance(known, dict) else []
            # Another key's session is as unknown as a session that never existed.
            if not any(r.get("id") == session_id and r.get("key_fingerprint") == own
                       for r in rows if isinstance(r, dict)):
                raise ResourceNotFoundError(f"No session {session_id} of yours is known.")
            raw = await anyio.to_thread.run_sync(client.control_raw, path)
        except ApiFailure as failure:
            if failure.code == "session_not_found":
                raise ResourceNotFoundError(failure.message) from None
            raise _resource_failure(failure) from None
        return raw.decode("utf-8")

    return server


def caller_usage(body: Any, key_fp: str) -> dict[str, Any]:
    """One key's part of ``GET /_emulator/usage?sessions=1``, with what its budget leaves."""
    body = body if isinstance(body, dict) else {}
    mine = (body.get("by_key") or {}).get(key_fp) or {"sessions": 0, "executions": 0,
                                                       "cost_usd": 0}
    budget = body.get("budget_usd")
    left = (float(Decimal(str(budget)) - Decimal(str(mine.get("cost_usd", 0))))
            if budget is not None else None)
    return {
        "key_fingerprint": key_fp,
        "price_per_session_usd": body.get("price_per_session_usd"),
        "budget_usd": budget,
        "budget_left_usd": left,
        **mine,
        "session_rows": [row for row in body.get("sessions", [])
                         if isinstance(row, dict) and row.get("key_fingerprint") == key_fp],
    }
