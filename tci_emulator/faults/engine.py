"""The rule engine: rules, their matching and seeded draws, and the :class:`FaultSet` of one
emulator (the rules, the journal of fired faults, the release of held requests).

No Flask here: the app's request hook (:mod:`tci_emulator.http.fault_hook`) asks
:meth:`FaultSet.select` for the rule that fires and lets the rule's action act on the request.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..auth import fingerprint
from ..clock import Clock, format_timestamp
from ..errors import InjectedError, InvalidRequest
from ..journal import clip
from ..ranges import checked_number
from .actions import REGISTRY, TOKEN, Action

__all__ = ["ACTIONS", "FaultRule", "FaultSet", "load_rules"]

ACTIONS = tuple(REGISTRY)  # every action's name, in the order they are defined
OPERATIONS = ("any", "execute", "sessions")
_RULE_FIELDS = frozenset({"action", "operation", "method", "session_id", "key", "key_fingerprint",
                          "times", "after", "probability", "seed"})
_JOURNAL_SIZE = 1000
_MAX_COUNT = 2**31 - 1  # times, after: more than any test will send


def _number(spec: Mapping[str, Any], name: str, *, low: float, high: float,
            integer: bool = False) -> Any:
    return checked_number(spec[name], name, low=low, high=high, integer=integer)


@dataclass(eq=False)
class FaultRule:
    """One validated rule with its counters and its own seeded generator."""

    id: str
    action: str
    handler: Action = field(repr=False)
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
        handler = REGISTRY.get(action) if isinstance(action, str) else None
        if handler is None:
            raise InvalidRequest(f"'action' must be one of {', '.join(REGISTRY)}.", param="action")
        for name in spec:
            if name not in _RULE_FIELDS and name not in handler.param_names:
                # A misspelt field ("time") would otherwise give a rule that never retires.
                raise InvalidRequest(f"Unknown field '{name}' in a {action} rule.", param=str(name))
        operation = spec.get("operation", "any")
        if operation not in OPERATIONS:
            raise InvalidRequest("'operation' must be 'execute', 'sessions' or 'any'.",
                                 param="operation")
        if handler.on_execution:
            if operation == "sessions":
                raise InvalidRequest(f"A {action} rule applies to execute calls only.",
                                     param="operation")
            operation = "execute"  # so that a listing call never uses the rule up
        rule = cls(rule_id, handler.name, handler, operation)
        for name in ("method", "session_id", "key_fingerprint", "key"):
            if spec.get(name) is not None and not isinstance(spec[name], str):
                raise InvalidRequest(f"'{name}' must be a string.", param=name)
        if spec.get("method") and not set(spec["method"]) <= TOKEN:
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
        rule.params = handler.parse(spec)
        return rule

    def matches(self, operation: str, method: str, session_id: str | None,
                key_fp: str | None) -> bool:
        if self.handler.needs_session and session_id is None:
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

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "action": self.action, "operation": self.operation}
        for name in ("method", "session_id", "key_fingerprint", "times"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        body.update({"after": self.after, "probability": self.probability, "seed": self.seed,
                     **self.params, "matched": self.matched, "fired": self.fired,
                     "retired": self.times is not None and self.fired >= self.times})
        return body


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

    def journal(self) -> list[dict[str, Any]]:
        """Fired faults, oldest first: time, rule id, action, method, path, session."""
        with self._lock:
            return list(self._journal)

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

    def load(self, source: str | Path) -> list[dict[str, Any]]:
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
               session_id: Callable[[], str | None],
               key_fp: Callable[[], str | None]) -> FaultRule | None:
        """The rule that fires for this request, if any (cheap when there are no rules).

        ``session_id`` and ``key_fp`` are computed only if a rule asks for them.
        """
        if not self._rules:
            return None
        with self._lock:
            need_session = any(r.session_id is not None or r.handler.needs_session
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
                    return rule
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
