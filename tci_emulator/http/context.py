"""What the app knows of the request it is serving: one typed object instead of loose keys.

Each request the app serves gets one :class:`RequestContext`, opened by the app's first
``before_request`` hook and kept in the WSGI environ under a key of its own. The fault hook, the
routes and the access log read and fill it through :func:`request_context`: when the request
arrived, the reset generation it arrived in, the caller's key fingerprint once authenticated,
the session it named or got, the fault rule that fired, and what that rule asked for (a hook run
before the execution, a spoiled 200 body).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import current_app, request

if TYPE_CHECKING:
    from ..sessions import Hook
    from ..state import EmulatorState

__all__ = ["RequestContext", "open_request_context", "request_context", "find_request_context",
           "current_state"]

_KEY = "tci_emulator.request_context"


@dataclass(slots=True, eq=False)
class RequestContext:
    """One request as the app sees it, from its first hook to its journal entry."""

    started: float  # the clock's monotonic reading at arrival, for the duration
    received_at: datetime  # the clock's time at arrival, for the log and the journal
    epoch: int  # the reset generation the request arrived in (see epoch.py)
    key_fp: str | None = None  # the caller's key fingerprint, once authenticated
    session_id: str | None = None  # the session it named, then the one that served it
    fault_id: str | None = None  # the fault rule that fired for it
    before_run: Hook | None = None  # called with the session held, before the code runs
    spoil: Callable[[bytes], bytes] | None = None  # applied to the 200 body that goes back


def open_request_context(environ: MutableMapping[str, Any], context: RequestContext) -> None:
    """Attach ``context`` to the request whose WSGI environ is ``environ``."""
    environ[_KEY] = context


def find_request_context(environ: MutableMapping[str, Any]) -> RequestContext | None:
    """The context of this request, or ``None`` if none was opened (a hook before it failed)."""
    context: RequestContext | None = environ.get(_KEY)
    return context


def request_context() -> RequestContext:
    """The context of the request being served (opened by the app's first hook)."""
    context: RequestContext = request.environ[_KEY]
    return context


def current_state() -> EmulatorState:
    """The emulator state of the app serving this request."""
    state: EmulatorState = current_app.extensions["tci_emulator"]
    return state
