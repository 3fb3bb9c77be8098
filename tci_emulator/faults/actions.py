"""What a fault rule does when it fires: one class per action, registered by being defined.

Each action names itself, declares its parameters (each a :class:`Param` with its default and
its check, so a bad rule is refused with a 400 naming the field before it is kept) and says what
it does to the request its rule fired for, through the narrow :class:`FaultedRequest` that the
app side implements. Adding an action is one subclass of :class:`Action` here (plus its test):
the rule engine, the control plane and the ``--faults`` file pick it up from :data:`REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..errors import InjectedError, InvalidRequest
from ..ranges import checked_number

if TYPE_CHECKING:
    import random

    from ..sessions import Hook, Session

__all__ = ["Action", "FaultedRequest", "Param", "REGISTRY", "NO_RESPONSE_STATUS", "FiredRule",
           "forbidden_header"]

# The status a dropped connection is journalled with, as nginx logs a close without a response.
NO_RESPONSE_STATUS = 444
_MAX_HOLD_S = 3600.0  # latency and hang, scalars and both ends of a range
_MAX_HEADER_NUMBER = 10**15
# RFC 9110 token characters: what a header name (or a method) may consist of.
TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Headers that belong to the connection, the message framing or the CORS decision, never to a
# fault: RFC 9110's hop-by-hop list plus framing, and every Access-Control-* name.
_FORBIDDEN_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                                "transfer-encoding", "upgrade", "content-length", "host",
                                "proxy-authenticate", "proxy-authorization"})

BodyFilter = Callable[[bytes], bytes]


def forbidden_header(name: str) -> bool:
    """Whether a fault rule may not set the response header ``name``."""
    lowered = name.lower()
    return lowered in _FORBIDDEN_HEADERS or lowered.startswith("access-control-")


class FiredRule(Protocol):
    """What an action reads of the rule that fired (the engine's rule has it all): its id, its
    own parsed parameters and its own seeded generator."""

    id: str
    params: dict[str, Any]
    rng: random.Random


class FaultedRequest(Protocol):
    """What an action may do to the request its rule fired for (the app's fault hook
    implements it; the engine and the actions never see Flask)."""

    def hold(self, seconds: float) -> None:
        """Hold the request for ``seconds`` of real time, or until the rules are cleared."""

    def drop_connection(self) -> None:
        """Close the connection with no response at all."""

    def run_before(self, hook: Hook) -> None:
        """Call ``hook`` with the session held, just before its code runs."""

    def spoil_body(self, spoil: BodyFilter) -> None:
        """Pass the 200 body that goes back through ``spoil``."""

    def now(self) -> datetime:
        """The emulator's time (its clock, which tests move)."""


class _Missing(Exception):
    """Raised by a check for a value that counts as not given (the rule then needs it)."""


REQUIRED: Any = object()  # a Param default: the rule must give the value


@dataclass(frozen=True)
class Param:
    """One parameter of an action: its name, the value used when absent, and its check.

    ``check`` takes the JSON value (or the default) and returns it normalised, or ``None`` to
    leave it out of the rule; it raises :class:`InvalidRequest` naming the field, or
    :class:`_Missing` where the value counts as not given.
    """

    name: str
    check: Callable[[Any], Any]
    default: Any = None

    def read(self, action: str, spec: Mapping[str, Any]) -> Any:
        value = spec.get(self.name, self.default)
        try:
            if value is REQUIRED:
                raise _Missing
            return self.check(value)
        except _Missing:
            article = "An" if action[0] in "aeiou" else "A"
            raise InvalidRequest(f"{article} {action} rule needs '{self.name}'.",
                                 param=self.name) from None


def _text(name: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"'{name}' must be a string.", param=name)
        return value

    return check


def _integer(name: str, low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        number: int = checked_number(value, name, low=low, high=high, integer=True)
        return number

    return check


def _choice(name: str, *choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise InvalidRequest(f"'{name}' must be {' or '.join(repr(c) for c in choices)}.",
                                 param=name)
        return str(value)

    return check


def _seconds(value: Any) -> float | list[float]:
    """A number of seconds, or a ``[min, max]`` range drawn from uniformly; both capped."""
    if value is None:
        raise _Missing
    if isinstance(value, list):
        # A range obeys the scalar's cap at both ends: [3600, 1e9] must not hold for days.
        if len(value) != 2:
            raise InvalidRequest("'seconds' range must be [min, max] with 0 <= min <= max.",
                                 param="seconds")
        low, high = (float(checked_number(s, "seconds", low=0, high=_MAX_HOLD_S)) for s in value)
        if low > high:
            raise InvalidRequest("'seconds' range must be [min, max] with 0 <= min <= max.",
                                 param="seconds")
        return [low, high]
    return float(checked_number(value, "seconds", low=0, high=_MAX_HOLD_S))


def _headers(value: Any) -> dict[str, str]:
    """Response headers a rule sends: sendable, and none of the connection's or CORS's."""
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in value.items()):
        raise InvalidRequest("'headers' must be an object of header names to values.",
                             param="headers")
    for name, item in value.items():
        if not isinstance(item, str):  # 10**5000 has no text form: str() would raise
            checked_number(item, "headers", low=-_MAX_HEADER_NUMBER, high=_MAX_HEADER_NUMBER)
        # Checked here, or the rule would make the emulator fail (500) at every firing.
        if not name or not set(name) <= TOKEN or any(c in str(item) for c in "\r\n\0"):
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
    return {k.lower(): str(v) for k, v in value.items()}


class Action:
    """One fault action. A subclass with a ``name`` registers itself in :data:`REGISTRY`."""

    name: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    # Acts on the session's execution: the rule applies to execute calls only.
    on_execution: ClassVar[bool] = False
    # Matches only calls that name their session (a call that creates one has none yet).
    needs_session: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            REGISTRY[cls.name] = cls()

    @property
    def param_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params)

    def parse(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The rule's parameters, checked and normalised, in declaration order."""
        values = ((p.name, p.read(self.name, spec)) for p in self.params)
        return {name: value for name, value in values if value is not None}

    def apply(self, rule: FiredRule, request: FaultedRequest) -> None:
        """Act on the request ``rule`` fired for; raising an error answers it with that."""
        raise NotImplementedError


REGISTRY: dict[str, Action] = {}  # name -> action, in definition order


class HttpError(Action):
    """Answer with the contract's error body, the rule's status, code, message and headers."""

    name = "http_error"
    params = (Param("status", _integer("status", 400, 599), REQUIRED),
              Param("code", _text("code")), Param("message", _text("message")),
              Param("headers", _headers, {}))

    def apply(self, rule: FiredRule, request: FaultedRequest) -> None:
        raise InjectedError(rule.params["status"], rule.params.get("code"),
                            rule.params.get("message"), headers=rule.params["headers"])


class Latency(Action):
    """Hold the request (a number of seconds, or a seeded draw from a range), then serve it."""

    name = "latency"
    params = (Param("seconds", _seconds, REQUIRED),)

    def apply(self, rule: FiredRule, request: FaultedRequest) -> None:
        seconds = rule.params["seconds"]
        if isinstance(seconds, list):
            request.hold(rule.rng.uniform(seconds[0], seconds[1]))
        else:
            request.hold(seconds)


class Hang(Latency):
    """A latency of 30 s by default, long enough to trip a client's timeout."""

    name = "hang"
    params = (Param("seconds", _seconds, 30),)


class ResetConnection(Action):
    """Shut the TCP connection down with no response at all."""

    name = "reset_connection"

    def apply(self, rule: FiredRule, request: FaultedRequest) -> None:
        request.drop_connection()


def _truncated(body: bytes) -> bytes:
    return body[: max(len(body) // 2, 1)]


def _not_json(body: bytes) -> bytes:
    return b"<html><body>502 Bad Gateway</body></html>"


class MalformedBody(Action):
    """Serve (and bill) the request as usual, then spoil the 200 body that goes back."""

    name = "malformed_body"
    params = (Param("mode", _choice("mode", "truncated", "not_json"), "truncated"),)

    def apply(self, rule: FiredRule, request: FaultedRequest) -> None:
        request.spoil_body(_truncated if rule.params["mode"] == "truncated" else _not_json)


class KernelCrash(Action):
    """Kill the session's kernel process as the execution starts."""

    name = "kernel_crash"
    on_execution = True

    def apply(self, rule: FiredRule, request: FaultedRequest) -> None:
        def crash(session: Session) -> None:
            session.kernel.kill(f"fault rule {rule.id} (kernel_crash) killed the kernel process")

        request.run_before(crash)


class ExpireSession(Action):
    """Expire the targeted session just before the execution (a 410)."""

    name = "expire_session"
    on_execution = True
    needs_session = True

    def apply(self, rule: FiredRule, request: FaultedRequest) -> None:
        now = request.now()

        def expire(session: Session) -> None:
            session.expires_at = min(session.expires_at, now)

        request.run_before(expire)
