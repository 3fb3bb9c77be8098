"""The real API's routes: parse and validate, authenticate, call the registry, serialise.

Every path form the SDKs use is routed: ``/tci/...``, ``/v1/tci/...`` and SDKv1's
``/v1//tci/...`` (the app collapses repeated slashes before routing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, request

from .auth import authenticate
from .config import Config
from .errors import InvalidRequest, PayloadTooLarge
from .files import UploadedFile, parse_files, utf8
from .http.context import RequestContext, current_state, request_context
from .http.jsonio import json_response, read_json_body
from .ids import MAX_SESSION_ID_CHARS
from .state import EmulatorState

__all__ = ["bp", "ExecuteRequest", "parse_execute"]

bp = Blueprint("api", __name__)

EXECUTE_PATHS = ("/tci/execute", "/v1/tci/execute")
SESSIONS_PATHS = ("/tci/sessions", "/v1/tci/sessions")
LANGUAGES = ("python",)


@dataclass(frozen=True)
class ExecuteRequest:
    """A validated ExecuteRequest body."""

    code: str
    language: str
    session_id: str | None
    files: list[UploadedFile]


def parse_execute(body: Any, config: Config) -> ExecuteRequest:
    """Validate an ExecuteRequest; raises :class:`InvalidRequest` naming the bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", param="body")
    code = body.get("code")
    if "code" not in body or not isinstance(code, str):
        raise InvalidRequest("'code' is required and must be a string.", param="code")
    if len(utf8(code, "code")) > config.max_code_bytes:
        raise PayloadTooLarge(f"'code' exceeds {config.max_code_bytes} bytes.", param="code")
    language = body.get("language")
    if language not in LANGUAGES:
        raise InvalidRequest("'language' is required and must be 'python'.", param="language")
    session_id = body.get("session_id")
    if session_id is not None and (not isinstance(session_id, str) or not session_id):
        raise InvalidRequest("'session_id' must be a non-empty string or null.", param="session_id")
    if session_id is not None and len(session_id) > MAX_SESSION_ID_CHARS:
        # Never echoed: the length says what is wrong.
        raise InvalidRequest(f"'session_id' is {len(session_id)} characters long; a session id "
                             f"has at most {MAX_SESSION_ID_CHARS}.", param="session_id")
    if session_id is not None:
        utf8(session_id, "session_id")
    files = parse_files(body.get("files"), max_files=config.max_files,
                        max_bytes=config.max_files_bytes)
    return ExecuteRequest(code, language, session_id, files)


def _tenant(context: RequestContext) -> str:
    key_fp = authenticate(request.headers.get("Authorization"), current_state().config.api_keys)
    context.key_fp = key_fp
    return key_fp


def _arrived(state: EmulatorState) -> RequestContext:
    """This request's context, once sure no reset came since it arrived (else a 503)."""
    context = request_context()
    state.epoch.check(context.epoch)
    return context


def _execute() -> Response:
    state = current_state()
    context = _arrived(state)
    key_fp = _tenant(context)
    req = parse_execute(read_json_body(), state.config)
    context.session_id = req.session_id
    session, result = state.sessions.execute(key_fp, req.code, session_id=req.session_id,
                                             before_run=context.before_run,
                                             files=req.files, epoch=context.epoch)
    context.session_id = session.id
    return json_response({
        "data": {"outputs": result.outputs, "session_id": session.id, "status": "success"},
        "errors": None,
    }, spoil=context.spoil)


def _list_sessions() -> Response:
    state = current_state()
    context = _arrived(state)
    key_fp = _tenant(context)
    sessions = [s.listing() for s in state.sessions.active(key_fp)]
    return json_response({"data": {"sessions": sessions}, "errors": None}, spoil=context.spoil)


for _path in EXECUTE_PATHS:
    bp.add_url_rule(_path, "execute", _execute, methods=["POST"])
for _path in SESSIONS_PATHS:
    bp.add_url_rule(_path, "sessions", _list_sessions, methods=["GET"])
