"""The Host and Origin checks: no web page may drive the emulator.

*DNS rebinding*: a page on ``http://rebind.attacker.example:8787`` re-points its own name at
127.0.0.1; the browser then treats the emulator as that page's own origin and lets it send any
request, ``Authorization`` included. Its requests still carry ``Host: rebind.attacker.example``,
so only the names the emulator is known by are served: ``localhost``, ``127.0.0.1``, ``[::1]``
(any port), the bound ``--host`` and the ``--allowed-host`` names (as Jupyter Server and Vite do).

*Cross-site requests*: any page may POST to ``http://127.0.0.1:8787`` (a form, or ``fetch`` with
``text/plain``, needs no CORS preflight). Browsers send ``Origin`` on every such request, so a
state-changing request (any method but GET, HEAD and OPTIONS) whose ``Origin`` is not the
emulator's own, ``http://<an allowed name>:<its port>``, is refused before anything runs (as
Django's and Go's ``CrossOriginProtection`` do). Tools such as curl and the SDKs send no
``Origin`` and are unaffected. ``Sec-Fetch-Site: cross-site`` without an ``Origin`` is refused too.

Both checks wrap the whole WSGI app, so every route, including ones added later, is covered;
neither ever answers with CORS headers.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from ..config import Config
from ..errors import CrossOriginRefused, EmulatorError, HostNotAllowed
from .logline import log_refusal
from .protocol import error_parts

__all__ = ["FrontDoor", "HostNames", "host_name"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")


def host_name(value: str) -> str | None:
    """The name part of a ``Host`` value (``[::1]:8787`` -> ``[::1]``), lower-case without a
    trailing dot; ``None`` if the value is not a host and optional port."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, port = value.partition("]")
        name += bracket
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit())):
            return None
    else:
        name, colon, port = value.partition(":")
        if colon and not port.isdigit():
            return None
    name = name.rstrip(".")
    return name or None


def _as_name(host: str) -> str:
    """A configured host as it appears in a Host header (IPv6 literals in brackets)."""
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            return f"[{host.strip('[]').lower()}]"
    except ValueError:
        pass
    return host.lower().rstrip(".")


class HostNames:
    """The names the emulator answers to: the local ones, ``--host`` and ``--allowed-host``."""

    def __init__(self, config: Config) -> None:
        allowed = [name.strip() for name in config.allowed_hosts if name.strip()]
        self.any = "*" in allowed
        self.suffixes = tuple(name.lower().rstrip(".") for name in allowed
                              if name.startswith(".") and len(name) > 1)
        named = (_as_name(n) for n in allowed if n != "*" and not n.startswith("."))
        self.exact = frozenset([*LOCAL_NAMES, _as_name(config.host), *named])

    def named(self, name: str | None) -> bool:
        """Whether ``name`` is one of ours by name: the wildcard ``*`` does not count."""
        return name is not None and (name in self.exact or any(
            name == suffix[1:] or name.endswith(suffix) for suffix in self.suffixes))

    def serves(self, host_header: str) -> bool:
        """Whether a request with this ``Host`` header is served."""
        return self.any or self.named(host_name(host_header))


def _origin_is_own(origin: str, names: HostNames, port: str) -> bool:
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port or 80
    except ValueError:
        return False
    hostname = parts.hostname or ""
    shown = f"[{hostname}]" if ":" in hostname else hostname
    return (parts.scheme == "http" and not parts.path and names.named(shown.rstrip("."))
            and str(origin_port) == port)


class FrontDoor:
    """WSGI middleware that refuses a foreign ``Host`` and a cross-site state change (403 JSON)."""

    def __init__(self, app: WSGIApp, config: Config) -> None:
        self.app = app
        self.config = config
        self.names = HostNames(config)

    def refusal(self, environ: dict[str, Any]) -> EmulatorError | None:
        """Why this request is refused, or ``None`` to serve it."""
        host = environ.get("HTTP_HOST")
        if host is not None and not self.names.serves(host):
            return HostNotAllowed(f"Host {host[:100]!r} is not served here (DNS rebinding "
                                  "protection); start the emulator with --allowed-host NAME to "
                                  "serve it.", param="Host")
        if environ.get("REQUEST_METHOD", "GET").upper() in SAFE_METHODS:
            return None
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None:
            if not _origin_is_own(origin, self.names, str(environ.get("SERVER_PORT", ""))):
                return CrossOriginRefused(f"Origin {origin[:100]!r} may not send "
                                          f"{environ.get('REQUEST_METHOD')} requests here "
                                          "(cross-site request protection).", param="Origin")
        elif environ.get("HTTP_SEC_FETCH_SITE", "").lower() in ("cross-site", "same-site"):
            return CrossOriginRefused("A cross-site browser request may not change anything "
                                      "here (cross-site request protection).",
                                      param="Sec-Fetch-Site")
        return None

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.monotonic()
        error = self.refusal(environ)
        if error is None:
            return self.app(environ, start_response)
        status, headers, payload = error_parts(error)
        start_response(status, [*headers, ("Content-Length", str(len(payload)))])
        if self.config.access_log:
            log_refusal(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""),
                        error.status_code, (time.monotonic() - started) * 1000,
                        self.config.log_format)
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [payload]
