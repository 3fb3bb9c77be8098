"""The real API's routes: parse and validate, authenticate, call the registry, serialise.

Every path form the SDKs use is routed: ``/tci/...``, ``/v1/tci/...`` and SDKv1's
``/v1//tci/...`` (the app collapses repeated slashes before routing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from .auth import authenticate
from .config import Config
from .errors import InvalidRequest, PayloadTooLarge
from .files import UploadedFile, parse_files, utf8
from .ids import MAX_SESSION_ID_CHARS
from .state import EmulatorState

__all__ = ["bp", "ExecuteRequest", "parse_execute", "json_response", "current_state",
           "read_json_body"]

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


def current_state() -> EmulatorState:
    """The emulator state of the app serving this request."""
    state: EmulatorState = current_app.extensions["tci_emulator"]
    return state


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response; the one place bodies are serialised."""
    return Response(json.dumps(body, ensure_ascii=False), status=status, headers=headers,
                    mimetype="application/json")


def read_json_body() -> Any:
    """The request body parsed as JSON, whatever the content type (curl -d sends a form type)."""
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    if (request.content_length is None and limit is not None and len(raw) >= limit
            and request.environ["wsgi.input"].read(1)):
        # A chunked body is cut at the limit without a word from werkzeug: look one byte on.
        raise RequestEntityTooLarge()
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", param="body")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}", param="body") from None
    except RecursionError:
        raise InvalidRequest("The request body is not valid JSON: nested too deeply.",
                             param="body") from None


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


def _tenant() -> str:
    key_fp = authenticate(request.headers.get("Authorization"), current_state().config.api_keys)
    g.key_fp = key_fp
    return key_fp


def arrival_epoch(state: EmulatorState) -> int:
    """The generation this request arrived in; a reset since then ends it with a 503."""
    seen: int = g.get("epoch", state.epoch.value)
    state.epoch.check(seen)
    return seen


def _execute() -> Response:
    state = current_state()
    seen = arrival_epoch(state)
    key_fp = _tenant()
    req = parse_execute(read_json_body(), state.config)
    g.session_id = req.session_id
    session, result = state.sessions.execute(key_fp, req.code, session_id=req.session_id,
                                             before_run=g.get("before_run"),
                                             files=req.files, epoch=seen)
    g.session_id = session.id
    return json_response({
        "data": {"outputs": result.outputs, "session_id": session.id, "status": "success"},
        "errors": None,
    })


def _list_sessions() -> Response:
    state = current_state()
    arrival_epoch(state)
    key_fp = _tenant()
    sessions = [s.listing() for s in state.sessions.active(key_fp)]
    return json_response({"data": {"sessions": sessions}, "errors": None})


for _path in EXECUTE_PATHS:
    bp.add_url_rule(_path, "execute", _execute, methods=["POST"])
for _path in SESSIONS_PATHS:
    bp.add_url_rule(_path, "sessions", _list_sessions, methods=["GET"])
