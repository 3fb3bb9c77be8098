"""The fault rules' request hook: the app side of :mod:`tci_emulator.faults`.

Before each request of the real API the app asks the rules which one fires (the control plane
never fails on purpose, so a test can always clear the rules) and lets that rule's action act on
the request through :class:`_Target`, the Flask side of
:class:`~tci_emulator.faults.FaultedRequest`: what it records goes into the request's
:class:`~tci_emulator.http.context.RequestContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import Response, request

from ..auth import presented_fingerprint
from ..clock import Clock
from ..faults import NO_RESPONSE_STATUS, FaultSet
from ..ids import MAX_SESSION_ID_CHARS
from .connection import CLOSE_CONNECTION
from .context import RequestContext, request_context

if TYPE_CHECKING:
    from ..sessions import Hook

__all__ = ["apply_faults"]


def _body_session_id() -> str | None:
    body = request.get_json(force=True, silent=True, cache=True)  # curl -d sends a form type
    value = body.get("session_id") if isinstance(body, dict) else None
    # An over-long "id" is refused by the route; it must not be kept in the faults journal.
    return value if isinstance(value, str) and len(value) <= MAX_SESSION_ID_CHARS else None


def _caller_fingerprint() -> str | None:
    return presented_fingerprint(request.headers.get("Authorization"))


class _Target:
    """The request a rule fired for, as its action may change it."""

    def __init__(self, faults: FaultSet, clock: Clock, context: RequestContext,
                 environ: dict[str, Any]) -> None:
        self._faults = faults
        self._clock = clock
        self._context = context
        self._environ = environ
        self.dropped = False

    def hold(self, seconds: float) -> None:
        self._faults.hold(seconds)

    def drop_connection(self) -> None:
        close_connection = self._environ.get(CLOSE_CONNECTION)
        if close_connection is not None:
            close_connection()
        self.dropped = True

    def run_before(self, hook: Hook) -> None:
        self._context.before_run = hook

    def spoil_body(self, spoil: Callable[[bytes], bytes]) -> None:
        self._context.spoil = spoil

    def now(self) -> datetime:
        return self._clock.now()


def apply_faults(faults: FaultSet, clock: Clock) -> Response | None:
    """The request hook: find the rule that fires and let its action act (a response, or an
    error raised by the action, ends the request; ``None`` serves it)."""
    endpoint = request.endpoint or ""
    if not endpoint.startswith("api."):
        return None  # the control plane never fails on purpose
    rule = faults.select(endpoint[len("api."):], request.method, request.path,
                         _body_session_id, _caller_fingerprint)
    if rule is None:
        return None
    context = request_context()
    context.fault_id = rule.id
    target = _Target(faults, clock, context, request.environ)
    rule.handler.apply(rule, target)
    if target.dropped:
        # Never reaches the client (the socket is shut): the status is for the request journal.
        return Response(b"", status=NO_RESPONSE_STATUS)
    return None
