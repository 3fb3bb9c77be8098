"""The Flask application factory.

``create_app`` builds an :class:`~tci_emulator.state.EmulatorState`, stores it on the app and
registers the API and control-plane blueprints plus the error handlers that make every failure a
JSON body of `docs/contract.md` section 8: the emulator never answers with HTML, not for 404, 405 or
413, and not for an unexpected exception (which is also recorded for the test that caused it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.exceptions import MethodNotAllowed as WzMethodNotAllowed

from . import admin, api, ui
from .clock import Clock, format_timestamp
from .config import Config
from .errors import (
    EmulatorError,
    InjectedError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    render_error,
)
from .http.context import (
    RequestContext,
    find_request_context,
    open_request_context,
    request_context,
)
from .http.fault_hook import apply_faults
from .http.jsonio import json_response
from .http.logline import AccessRecord, access_logger, log_access
from .journal import caller_fingerprint, clip
from .mcp.mount import McpMount
from .state import EmulatorState

__all__ = ["create_app", "access_logger"]

_SLASHES = re.compile(r"/{2,}")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _CollapseSlashes:
    """WSGI middleware: ``/v1//tci/execute`` (SDKv1) routes like ``/v1/tci/execute``.

    Werkzeug would otherwise answer a redirect, which a POST must not get.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if "//" in path:
            environ["PATH_INFO"] = _SLASHES.sub("/", path)
        return self.app(environ, start_response)


def _as_emulator_error(exc: HTTPException) -> EmulatorError:
    if isinstance(exc, NotFound):
        return RouteNotFound(f"No endpoint {request.method} {request.path}.")
    if isinstance(exc, WzMethodNotAllowed):
        allowed = ", ".join(sorted(exc.valid_methods or []))
        return MethodNotAllowed(f"{request.method} is not allowed on {request.path}"
                                + (f" (allowed: {allowed})." if allowed else "."),
                                headers={"Allow": allowed} if allowed else None)
    if isinstance(exc, RequestEntityTooLarge):
        return PayloadTooLarge("The request body is larger than the emulator accepts.",
                               param="body")
    if exc.code is not None and 400 <= exc.code < 500:
        return InvalidRequest(exc.description or "Bad request.")
    return InternalError()


def create_app(config: Config | None = None, *, clock: Clock | None = None) -> Flask:
    """Build an emulator app; ``app.extensions['tci_emulator']`` holds its state.

    The caller owns the state's kernels: call ``state.close()`` when done (the server object
    and the pytest plugin do).
    """
    config = config or Config()
    state = EmulatorState(config, clock=clock)
    app = Flask("tci_emulator")
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False  # OPTIONS is a 405 JSON body, not an empty 200
    app.extensions["tci_emulator"] = state
    app.url_map.strict_slashes = False
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(ui.bp)
    app.wsgi_app = _CollapseSlashes(app.wsgi_app)  # type: ignore[method-assign]
    app.wsgi_app = McpMount(app.wsgi_app, state)  # type: ignore[method-assign]

    def error_response(error: EmulatorError) -> Response:
        # The OpenAPI spec's literal HTTP 200 form is for the API's own failures; injected faults
        # keep the status their rule asks for, and the control plane its ordinary errors.
        literal = (config.spec_errors and request.blueprint == "api"
                   and not isinstance(error, InjectedError))
        status, body = render_error(error, spec_literal=literal)
        context = find_request_context(request.environ)
        # A literal (HTTP 200) error body is the 200 a malformed_body fault spoils.
        return json_response(body, status, headers=error.headers,
                             spoil=context.spoil if context is not None else None)

    @app.errorhandler(EmulatorError)
    def _emulator_error(error: EmulatorError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return error_response(_as_emulator_error(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        state.record_error(exc)
        app.logger.exception("unexpected error serving %s %s", request.method, clip(request.path))
        return error_response(InternalError(f"Internal emulator error: {type(exc).__name__}."))

    @app.before_request
    def _open_context() -> None:
        open_request_context(request.environ, RequestContext(
            started=state.clock.monotonic(), received_at=state.clock.now(),
            epoch=state.epoch.enter()))  # a reset after this ends the request (see epoch.py)

    @app.teardown_request
    def _leave_epoch(exc: BaseException | None) -> None:
        if find_request_context(request.environ) is not None:
            state.epoch.leave()

    @app.before_request
    def _faults() -> Response | None:
        return apply_faults(state.faults, state.clock)

    @app.after_request
    def _access_log(response: Response) -> Response:
        context = request_context()
        elapsed = (state.clock.monotonic() - context.started) * 1000
        quiet = ui.is_dashboard_traffic(request)  # the dashboard's own: neither log nor journal
        key_fp = context.key_fp or caller_fingerprint(request.path,
                                                      request.headers.get("Authorization"))
        received = format_timestamp(context.received_at)
        # Every client-supplied value is escaped and cut; no line is built that no one would see.
        if config.access_log and not quiet and access_logger.isEnabledFor(logging.INFO):
            log_access(access_logger, AccessRecord(
                time=received, method=request.method, path=clip(request.path),
                status=response.status_code, session=clip(context.session_id or "-"),
                key_fingerprint=key_fp, ms=elapsed, fault=context.fault_id), config.log_format)
        if request.endpoint != "admin.journal" and not quiet:  # reading it does not fill it
            state.journal.record(
                time=received, method=request.method, path=request.path,
                status=response.status_code, session_id=context.session_id, key_fp=key_fp,
                duration_ms=elapsed, fault=context.fault_id, headers=request.headers,
                epoch=context.epoch)
        return response

    return app
