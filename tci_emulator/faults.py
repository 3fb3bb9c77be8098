"""Fault injection: make the emulator fail the way a hosted service fails, on purpose.

A *rule* says which requests it matches, when it fires, and what it does. Rules are tried in
order; the first that fires applies, and nothing else does. Only the real API's routes are
subject to faults: the control plane (``/_emulator/...``) never is, so a test can always clear them.

Rule fields (JSON; the same dicts are accepted by :meth:`FaultSet.add`):

================ =========================================================================
``action``       required: ``http_error``, ``latency``, ``hang``, ``reset_connection``,
                 ``malformed_body``, ``kernel_crash`` or ``expire_session``
``operation``    ``execute``, ``sessions`` or ``any`` (default; ``execute`` for
                 ``kernel_crash`` and ``expire_session``); every path form matches
``method``       e.g. ``POST``; default any
``session_id``   match execute calls naming this session
``key``          match this bearer key (kept only as its fingerprint), or ``key_fingerprint``
``times``        fire this many times, then retire (default: unlimited)
``after``        let the first N matching requests through first (default 0)
``probability``  fire with this probability (default 1), drawn from ``random.Random(seed)``
``seed``         makes a probabilistic rule reproducible (default 0)
================ =========================================================================

Action parameters:

- ``http_error``: ``status`` (400-599, required), ``code``, ``message``, ``headers`` (e.g.
  ``{"Retry-After": "1"}``, sent with lower-case names); the body is the contract's error body.
- ``latency``: ``seconds``, a number or ``[min, max]`` (uniform, from the rule's seeded
  generator); then the request proceeds normally.
- ``hang``: ``seconds`` (default 30): hold the request, then proceed normally. Deleting the
  rules releases held requests at once and they are served; a reset releases them with a 503
  ``emulator_reset`` (they are from before it); stopping the emulator releases them with a 503.
- ``reset_connection``: the TCP connection is shut down with no response at all (the request
  journal shows status 444, as nginx logs such a close).
- ``malformed_body``: the request is served (and billed) as usual, but the 200 body that goes
  back is ``mode`` ``truncated`` (default: cut mid-JSON) or ``not_json``.
- ``kernel_crash``: the session's kernel process is killed as the execution starts; the reply's
  ``error`` item names the crash, and the session continues in a fresh kernel (state lost).
- ``expire_session``: the targeted session expires just before the execution (410, recorded in
  the ledger as ``expired``); calls without ``session_id`` are never matched.

Any other field is refused (400 naming it), so a misspelt ``time`` cannot leave a rule that never
retires; so is a header name or value that could not be sent (a line break), and a header that
belongs to the connection, the framing or CORS (``Connection``, ``Transfer-Encoding``,
``Content-Length``, ``Upgrade``, ``Access-Control-*``, ...).
"""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from flask import Response, g, request

from .auth import fingerprint, presented_fingerprint
from .clock import Clock, format_timestamp
from .errors import InjectedError, InvalidRequest
from .http.wsgi import CLOSE_CONNECTION
from .ids import MAX_SESSION_ID_CHARS
from .journal import clip
from .ranges import checked_number

__all__ = ["ACTIONS", "FaultRule", "FaultSet", "apply_faults", "mangle_body", "load_rules",
           "NO_RESPONSE_STATUS"]

ACTIONS = ("http_error", "latency", "hang", "reset_connection", "malformed_body",
           "kernel_crash", "expire_session")
OPERATIONS = ("any", "execute", "sessions")
# Actions that act on the session's execution: they apply to execute calls only.
_EXECUTION_ACTIONS = ("kernel_crash", "expire_session")
_MATCH_FIELDS = ("operation", "method", "session_id", "key_fingerprint")
_RULE_FIELDS = frozenset({"action", "operation", "method", "session_id", "key", "key_fingerprint",
                          "times", "after", "probability", "seed"})
_ACTION_FIELDS = {"http_error": ("status", "code", "message", "headers"),
                  "latency": ("seconds",), "hang": ("seconds",), "malformed_body": ("mode",)}
# RFC 9110 token characters: what a header name (or a method) may consist of.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_JOURNAL_SIZE = 1000
NO_RESPONSE_STATUS = 444
Listing = list[dict[str, Any]]  # rules or journal entries (``list`` is a method of FaultSet)


_MAX_COUNT = 2**31 - 1  # times, after: more than any test will send
_MAX_HOLD_S = 3600.0  # latency and hang, scalars and both ends of a range
_MAX_HEADER_NUMBER = 10**15


# Headers that belong to the connection, the message framing or the CORS decision, never to a
# fault: RFC 9110's hop-by-hop list plus framing, and every Access-Control-* name.
_FORBIDDEN_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                                "transfer-encoding", "upgrade", "content-length", "host",
                                "proxy-authenticate", "proxy-authorization"})


def forbidden_header(name: str) -> bool:
    """Whether a fault rule may not set the response header ``name``."""
    lowered = name.lower()
    return lowered in _FORBIDDEN_HEADERS or lowered.startswith("access-control-")


def _number(spec: Mapping[str, Any], name: str, *, low: float, high: float,
            integer: bool = False) -> Any:
    return checked_number(spec[name], name, low=low, high=high, integer=integer)


@dataclass(eq=False)
class FaultRule:
    """One validated rule with its counters."""

    id: str
    action: str
    operation: str = "any"
    method: str | None = None
    session_id: str | None = None
    key_fingerprint: str | None = None
    times: int | None = None
    after: int = 0
    probability: float = 1.0
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    matched: int = 0
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def parse(cls, rule_id: str, spec: Any) -> FaultRule:
        """Validate a rule; raises :class:`InvalidRequest` naming the bad field."""
        if not isinstance(spec, dict):
            raise InvalidRequest("A fault rule must be a JSON object.", param="body")
        action = spec.get("action")
        if action not in ACTIONS:
            raise InvalidRequest(f"'action' must be one of {', '.join(ACTIONS)}.", param="action")
        for name in spec:
            if name not in _RULE_FIELDS and name not in _ACTION_FIELDS.get(action, ()):
                # A misspelt field ("time") would otherwise give a rule that never retires.
                raise InvalidRequest(f"Unknown field '{name}' in a {action} rule.", param=str(name))
        operation = spec.get("operation", "any")
        if operation not in OPERATIONS:
            raise InvalidRequest("'operation' must be 'execute', 'sessions' or 'any'.",
                                 param="operation")
        if action in _EXECUTION_ACTIONS:
            if operation == "sessions":
                raise InvalidRequest(f"A {action} rule applies to execute calls only.",
                                     param="operation")
            operation = "execute"  # so that a listing call never uses the rule up
        rule = cls(rule_id, action, operation)
        for name in ("method", "session_id", "key_fingerprint", "key"):
            if spec.get(name) is not None and not isinstance(spec[name], str):
                raise InvalidRequest(f"'{name}' must be a string.", param=name)
        if spec.get("method") and not set(spec["method"]) <= _TOKEN:
            raise InvalidRequest("'method' must be an HTTP method such as POST.", param="method")
        rule.method = spec["method"].upper() if spec.get("method") else None
        rule.session_id = spec.get("session_id")
        rule.key_fingerprint = (fingerprint(spec["key"]) if spec.get("key")
                                else spec.get("key_fingerprint"))
        if spec.get("times") is not None:
            rule.times = _number(spec, "times", low=1, high=_MAX_COUNT, integer=True)
        if "after" in spec:
            rule.after = _number(spec, "after", low=0, high=_MAX_COUNT, integer=True)
        if "probability" in spec:
            rule.probability = float(_number(spec, "probability", low=0, high=1))
        if "seed" in spec:
            rule.seed = _number(spec, "seed", low=-(2**63), high=2**63 - 1, integer=True)
        rule.rng = random.Random(rule.seed)
        rule.params = _action_params(action, spec)
        return rule

    def matches(self, operation: str, method: str, session_id: str | None,
                key_fp: str | None) -> bool:
        if self.action == "expire_session" and session_id is None:
            return False  # a call that creates its session has none to expire yet
        return ((self.operation == "any" or self.operation == operation)
                and (self.method is None or self.method == method)
                and (self.session_id is None or self.session_id == session_id)
                and (self.key_fingerprint is None or self.key_fingerprint == key_fp))

    def fires(self) -> bool:
        """Count one matching request and decide whether the rule fires for it."""
        self.matched += 1
        if self.matched <= self.after:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        if self.probability < 1.0 and self.rng.random() >= self.probability:
            return False
        self.fired += 1
        return True

    def delay(self) -> float:
        """Seconds a latency or hang rule holds a request."""
        seconds = self.params["seconds"]
        if isinstance(seconds, list):
            return self.rng.uniform(seconds[0], seconds[1])
        return float(seconds)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "action": self.action, "operation": self.operation}
        for name in ("method", "session_id", "key_fingerprint", "times"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        body.update({"after": self.after, "probability": self.probability, "seed": self.seed,
                     **self.params, "matched": self.matched, "fired": self.fired,
                     "retired": self.times is not None and self.fired >= self.times})
        return body


def _action_params(action: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if action == "http_error":
        if "status" not in spec:
            raise InvalidRequest("An http_error rule needs 'status'.", param="status")
        params["status"] = _number(spec, "status", low=400, high=599, integer=True)
        for name in ("code", "message"):
            if spec.get(name) is not None:
                if not isinstance(spec[name], str):
                    raise InvalidRequest(f"'{name}' must be a string.", param=name)
                params[name] = spec[name]
        headers = spec.get("headers", {})
        if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in headers.items()):
            raise InvalidRequest("'headers' must be an object of header names to values.",
                                 param="headers")
        for name, value in headers.items():
            if not isinstance(value, str):  # 10**5000 has no text form: str() would raise
                checked_number(value, "headers", low=-_MAX_HEADER_NUMBER, high=_MAX_HEADER_NUMBER)
            # Checked here, or the rule would make the emulator fail (500) at every firing.
            if not name or not set(name) <= _TOKEN or any(c in str(value) for c in "\r\n\0"):
                raise InvalidRequest(f"'headers': {name!r} is not a valid header name and value.",
                                     param="headers")
            if forbidden_header(name):
                # Framing and hop-by-hop headers would corrupt the response (a chunked
                # Transfer-Encoding on a plain body leaves curl with nothing); CORS headers
                # would open the emulator to web pages.
                raise InvalidRequest(f"'headers': {name!r} may not be set by a fault rule "
                                     "(hop-by-hop, framing and CORS headers are the server's).",
                                     param="headers")
        # Lower-case names, as HTTP/2 gateways send them: SDKv1 copies the headers into a plain
        # dict and looks up "retry-after" case-sensitively.
        params["headers"] = {k.lower(): str(v) for k, v in headers.items()}
    elif action in ("latency", "hang"):
        seconds = spec.get("seconds", 30 if action == "hang" else None)
        if isinstance(seconds, list):
            # A range obeys the scalar's cap at both ends: [3600, 1e9] must not hold for days.
            if len(seconds) != 2:
                raise InvalidRequest("'seconds' range must be [min, max] with 0 <= min <= max.",
                                     param="seconds")
            low, high = (float(checked_number(s, "seconds", low=0, high=_MAX_HOLD_S))
                         for s in seconds)
            if low > high:
                raise InvalidRequest("'seconds' range must be [min, max] with 0 <= min <= max.",
                                     param="seconds")
            params["seconds"] = [low, high]
        elif seconds is None:
            raise InvalidRequest(f"A {action} rule needs 'seconds'.", param="seconds")
        else:
            params["seconds"] = float(checked_number(seconds, "seconds", low=0, high=_MAX_HOLD_S))
    elif action == "malformed_body":
        mode = spec.get("mode", "truncated")
        if mode not in ("truncated", "not_json"):
            raise InvalidRequest("'mode' must be 'truncated' or 'not_json'.", param="mode")
        params["mode"] = mode
    return params


@dataclass(frozen=True)
class Firing:
    """A rule that fired for the current request."""

    rule: FaultRule

    @property
    def action(self) -> str:
        return self.rule.action


class FaultSet:
    """The rules of one emulator, the journal of fired faults, and held requests' release."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._journal: deque[dict[str, Any]] = deque(maxlen=_JOURNAL_SIZE)
        self._ids = itertools.count(1)
        self._release = threading.Event()
        self._closed = False

    # -- management (control plane and the Python handle) ------------------------------------

    def add(self, spec: Any) -> list[dict[str, Any]]:
        """Add one rule or a list of rules (all or nothing); returns them with their ids."""
        specs = spec if isinstance(spec, list) else [spec]
        if not specs:
            raise InvalidRequest("Send a rule or a non-empty list of rules.", param="body")
        with self._lock:
            rules = [FaultRule.parse(f"fault_{next(self._ids)}", s) for s in specs]
            self._rules.extend(rules)
            return [r.as_json() for r in rules]

    def rules(self) -> list[dict[str, Any]]:
        """Every rule with how often it matched and fired."""
        with self._lock:
            return [r.as_json() for r in self._rules]

    def list(self) -> Listing:
        """The same as :meth:`rules` (the name the handle's other listings use)."""
        return self.rules()

    def journal(self) -> Listing:
        """Fired faults, oldest first: time, rule id, action, method, path, session."""
        with self._lock:
            return list(self._journal)

    def listing(self) -> dict[str, Any]:
        """The body of ``GET /_emulator/faults``: rules and the journal of fired faults."""
        return {"rules": self.rules(), "journal": self.journal()}

    def remove(self, rule_id: str) -> bool:
        """Delete one rule; returns whether it existed."""
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) < before

    def clear(self) -> int:
        """Delete every rule and the journal, and release held requests; returns rules deleted."""
        with self._lock:
            count = len(self._rules)
            self._rules = []
            self._journal.clear()
            release, self._release = self._release, threading.Event()
        release.set()
        return count

    def load(self, source: str | Path) -> Listing:
        """Add rules from a JSON file, or from inline JSON text starting with ``[`` or ``{``.

        Raises :class:`ValueError` naming the source and what is wrong with it, for a start-up
        to report in one line.
        """
        shown = "inline JSON" if str(source).lstrip().startswith(("[", "{")) else str(source)
        try:
            return self.add(load_rules(source))
        except InvalidRequest as exc:
            raise ValueError(f"fault rules ({shown}): {exc.detail}") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"fault rules ({shown}): {exc}") from None
        except RecursionError:  # json.loads of "[[[[...": exit 2 with one line, not a traceback
            raise ValueError(f"fault rules ({shown}): nested too deeply to be rules") from None

    def close(self) -> None:
        """Release held requests for good: the emulator is stopping, so they answer 503."""
        self._closed = True
        self._release.set()

    # -- the hook --------------------------------------------------------------------------

    def select(self, operation: str, method: str, path: str,
               session_id: Callable[[], str | None], key_fp: Callable[[], str | None]) -> Firing | None:
        """The rule that fires for this request, if any (cheap when there are no rules).

        ``session_id`` and ``key_fp`` are computed only if a rule asks for them.
        """
        if not self._rules:
            return None
        with self._lock:
            need_session = any(r.session_id is not None or r.action == "expire_session"
                               for r in self._rules)
            need_key = any(r.key_fingerprint is not None for r in self._rules)
        sid = session_id() if need_session else None
        fp = key_fp() if need_key else None
        with self._lock:
            for rule in self._rules:
                if rule.matches(operation, method, sid, fp) and rule.fires():
                    if not need_session:
                        sid = session_id()
                    self._journal.append({
                        "time": format_timestamp(self._clock.now()), "rule_id": rule.id,
                        "action": rule.action, "method": clip(method), "path": clip(path),
                        "session_id": sid})
                    return Firing(rule)
        return None

    def hold(self, seconds: float) -> None:
        """Hold the calling request for ``seconds`` of real time, or until released.

        Released by a stop, the request is not served (the emulator is closing under it).
        """
        self._release.wait(seconds)
        if self._closed:
            raise InjectedError(503, "emulator_stopping",
                                "The emulator stopped while a fault rule held this request.")


def load_rules(source: str | Path) -> Any:
    """Parse rules from a file path or from inline JSON text."""
    text = str(source)
    if text.lstrip().startswith(("[", "{")):
        return json.loads(text)
    return json.loads(Path(text).read_text(encoding="utf-8"))


def _body_session_id() -> str | None:
    body = request.get_json(force=True, silent=True, cache=True)  # curl -d sends a form type
    value = body.get("session_id") if isinstance(body, dict) else None
    # An over-long "id" is refused by the route; it must not be kept in the faults journal.
    return value if isinstance(value, str) and len(value) <= MAX_SESSION_ID_CHARS else None


def _caller_fingerprint() -> str | None:
    return presented_fingerprint(request.headers.get("Authorization"))


def apply_faults(faults: FaultSet, clock: Clock) -> Response | None:
    """The request hook: find the rule that fires and act on it (a response ends the request).

    Sets ``g.fault_id`` for the journal, ``g.before_run`` for faults that act inside the
    session (kernel_crash, expire_session) and ``g.malformed`` for :func:`mangle_body`.
    """
    endpoint = request.endpoint or ""
    if not endpoint.startswith("api."):
        return None  # the control plane never fails on purpose
    firing = faults.select(endpoint[len("api."):], request.method, request.path,
                           _body_session_id, _caller_fingerprint)
    if firing is None:
        return None
    rule = firing.rule
    g.fault_id = rule.id
    if rule.action == "http_error":
        raise InjectedError(rule.params["status"], rule.params.get("code"),
                            rule.params.get("message"), headers=rule.params["headers"])
    if rule.action in ("latency", "hang"):
        faults.hold(rule.delay())
    elif rule.action == "reset_connection":
        close_connection = request.environ.get(CLOSE_CONNECTION)
        if close_connection is not None:
            close_connection()
        # Never reaches the client (the socket is shut): the status is for the request journal,
        # 444 as nginx logs a connection closed without a response.
        return Response(b"", status=NO_RESPONSE_STATUS)
    elif rule.action == "malformed_body":
        g.malformed = rule.params["mode"]
    elif rule.action == "kernel_crash":
        def crash(session: Any) -> None:
            session.kernel.kill(f"fault rule {rule.id} (kernel_crash) killed the kernel process")

        g.before_run = crash
    elif rule.action == "expire_session":
        now = clock.now()

        def expire(session: Any) -> None:
            session.expires_at = min(session.expires_at, now)

        g.before_run = expire
    return None


def mangle_body(response: Response) -> Response:
    """Spoil a successful response's body as a ``malformed_body`` rule asked."""
    mode = g.get("malformed")
    if mode is None or response.status_code != 200:
        return response
    body = response.get_data()
    response.set_data(body[: max(len(body) // 2, 1)] if mode == "truncated"
                      else b"<html><body>502 Bad Gateway</body></html>")
    return response
