"""The control plane under ``/_emulator/``: health, reset, clock, usage, sessions and their
notebooks, and the request journal.

Deterministic and test-oriented, in the manner of moto's ``/moto-api/`` and LocalStack's
``/_localstack/``. ``/_emulator/health`` is always served; the rest can be switched off
(``--no-admin``) or guarded by ``--admin-token``.
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, request

from .auth import bearer_token
from .clock import MAX_ADVANCE_SECONDS, format_timestamp, parse_timestamp
from .errors import (
    AdminForbidden,
    AdminUnauthorized,
    InvalidRequest,
    RouteNotFound,
    SessionNotFound,
)
from .http.context import current_state, request_context
from .http.jsonio import json_response, read_json_body
from .journal import clip
from .notebooks import NOTEBOOK_MIMETYPE, to_ipynb
from .ranges import checked_number

__all__ = ["bp"]

bp = Blueprint("admin", __name__, url_prefix="/_emulator")
_LIMIT_DIGITS = 9  # ?limit= is parsed only this long: 5000 digits are refused, not converted


@bp.before_request
def _guard() -> None:
    config = current_state().config
    if request.endpoint == "admin.health":
        return
    if not config.admin:
        raise AdminForbidden("The control plane is switched off (--no-admin).")
    if config.admin_token is not None:
        token = bearer_token(request.headers.get("Authorization")) or ""
        if not hmac.compare_digest(token.encode(), config.admin_token.encode()):
            raise AdminUnauthorized(
                "Wrong admin token: the control plane needs 'Authorization: Bearer <admin token>'."
                if token else None)


@bp.get("/health")
def health() -> Response:
    return json_response(current_state().health())


@bp.post("/reset")
def reset() -> Response:
    state = current_state()
    body = state.reset()
    # The reset's own journal entry is the first of the new epoch.
    request_context().epoch = state.epoch.value
    return json_response(body)


def _clock_body() -> dict[str, Any]:
    clock = current_state().clock
    return {"now": format_timestamp(clock.now()), "frozen": clock.frozen}


@bp.get("/clock")
def get_clock() -> Response:
    return json_response(_clock_body())


@bp.post("/clock")
def move_clock() -> Response:
    """Body: any of ``{"frozen": bool, "advance_seconds": N, "set": "<RFC 3339>"}``."""
    body = read_json_body()
    if not isinstance(body, dict) or not {"frozen", "advance_seconds", "set"} & body.keys():
        raise InvalidRequest("Send {\"advance_seconds\": N}, {\"set\": \"<RFC 3339>\"} or "
                             "{\"frozen\": true|false}.", param="body")
    clock = current_state().clock
    if "frozen" in body:
        if not isinstance(body["frozen"], bool):
            raise InvalidRequest("'frozen' must be true or false.", param="frozen")
        clock.freeze(body["frozen"])
    if "advance_seconds" in body:
        seconds = checked_number(body["advance_seconds"], "advance_seconds", low=0,
                                 high=MAX_ADVANCE_SECONDS)
        try:
            clock.advance(float(seconds))
        except ValueError as exc:
            raise InvalidRequest(f"'advance_seconds' is too far: {exc}.",
                                 param="advance_seconds") from None
    if "set" in body:
        try:
            clock.set(parse_timestamp(str(body["set"])))
        except ValueError as exc:
            raise InvalidRequest(f"'set' must be an RFC 3339 time not in the past: {exc}",
                                 param="set") from None
    return json_response(_clock_body())


@bp.get("/usage")
def usage() -> Response:
    include = request.args.get("sessions", "").lower() in {"1", "true", "yes"}
    return json_response(current_state().ledger.usage(include_sessions=include))


@bp.get("/sessions")
def sessions() -> Response:
    """Every session the emulator knows, live or ended, with its notebook's availability."""
    return json_response({"sessions": current_state().known_sessions()})


@bp.get("/sessions/<session_id>/notebook")
def notebook(session_id: str) -> Response:
    """The session's transcript as a Jupyter notebook (live, ended, or from the state dir)."""
    found = current_state().transcripts.notebook(session_id)
    if found is None:
        raise SessionNotFound(f"No transcript of session {clip(session_id)} (unknown, or no longer "
                              "kept: use --state-dir to keep every one).", param="session_id")
    return Response(to_ipynb(found), mimetype=NOTEBOOK_MIMETYPE, headers={
        "Content-Disposition": f'attachment; filename="{session_id}.ipynb"'})


@bp.get("/requests")
def journal() -> Response:
    """The recent requests, newest last; ``?limit=N`` keeps the last N."""
    raw = request.args.get("limit")
    if raw is not None and not (raw.isascii() and raw.isdigit() and len(raw) <= _LIMIT_DIGITS):
        raise InvalidRequest(f"'limit' must be a whole number from 0 to {10**_LIMIT_DIGITS - 1}.",
                             param="limit")
    entries = current_state().journal
    return json_response({"requests": entries.entries(int(raw) if raw is not None else None),
                          "capacity": entries.capacity})


@bp.post("/faults")
def add_faults() -> Response:
    """Add one rule or a list of rules; answers them with their ids."""
    return json_response({"rules": current_state().faults.add(read_json_body())})


@bp.get("/faults")
def list_faults() -> Response:
    """Rules with how often each matched and fired, and the journal of fired faults."""
    faults = current_state().faults
    return json_response({"rules": faults.rules(), "journal": faults.journal()})


@bp.delete("/faults")
def clear_faults() -> Response:
    return json_response({"deleted": current_state().faults.clear()})


@bp.delete("/faults/<rule_id>")
def delete_fault(rule_id: str) -> Response:
    if not current_state().faults.remove(rule_id):
        raise RouteNotFound(f"No fault rule {rule_id}.")
    return json_response({"deleted": 1})
