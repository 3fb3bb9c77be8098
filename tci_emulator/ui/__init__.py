"""The dashboard: a browser page at ``/_emulator/ui/`` over the control plane's JSON.

The page is static (HTML, CSS and ES modules shipped in the package, no build step, no CDN) and
reads everything through the existing ``/_emulator/...`` endpoints with the admin token, if one
is set, as a Bearer header; the files themselves hold no data, so they are served without one.
``--no-admin`` switches the page off with the rest of the control plane.

Session output is hostile, so every response of the page carries a strict Content-Security-Policy:
scripts and styles only from the emulator itself (no inline script, no ``eval``), no frames,
images only from the emulator or ``data:``/``blob:`` URLs, and Trusted Types with no policy at
all, so that no string can ever reach an HTML or script sink (``innerHTML``, ``eval``, ...): the
page builds every element by name, and shows ``text/html`` outputs through its own allow-list
sanitiser, which never hands markup to the browser's parser.

The page polls while open; its reads carry :data:`POLL_HEADER` so that they, like the page's own
files, neither fill the request journal nor the access log (a journal made of the dashboard's
own traffic would hide the requests it is there to show).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Request, Response, send_from_directory

from ..errors import AdminForbidden
from ..http.context import current_state

__all__ = ["bp", "STATIC", "CSP", "POLL_HEADER", "is_dashboard_traffic"]

STATIC = Path(__file__).parent / "static"
POLL_HEADER = "X-TCI-Dashboard"
CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "font-src 'self'",
    "frame-src 'none'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
])
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

bp = Blueprint("ui", __name__, url_prefix="/_emulator/ui")


def is_dashboard_traffic(request: Request) -> bool:
    """Whether a request is the dashboard's own: a file of the page, or one of its periodic reads
    (a GET of the control plane marked with :data:`POLL_HEADER`). Those are kept out of the
    journal and the log; whatever the page changes (a fault, the clock, a reset) is not."""
    if request.method != "GET":
        return False
    marked = request.headers.get(POLL_HEADER) == "poll"
    return request.blueprint == bp.name or (request.path.startswith("/_emulator/") and marked)


@bp.before_request
def _guard() -> None:
    if not current_state().config.admin:
        raise AdminForbidden("The dashboard is switched off with the control plane (--no-admin).")


@bp.after_request
def _protect(response: Response) -> Response:
    response.headers.update(_HEADERS)
    return response


@bp.get("/assets/<path:name>")
def asset(name: str) -> Response:
    """A static file of the page (``send_from_directory`` refuses paths that leave it)."""
    return send_from_directory(STATIC, name, max_age=0)


@bp.get("/")
@bp.get("/<path:view>")
def page(view: str = "") -> Response:
    """The page itself, for every view's address: the script reads the path and shows that
    view, so ``/_emulator/ui/sessions/<id>`` can be bookmarked and shared."""
    return send_from_directory(STATIC, "index.html", max_age=0)
