"""The request journal: the emulator's recent requests, for whoever wonders what a client sent.

One entry per request the app answered (the reads of the journal itself excepted, so reading it
does not fill it): when it arrived, method, path, status, session, the caller's key fingerprint
(never the key), how long it took, the fault rule that fired if any, and who sent it: the SDK's
identity as its ``User-Agent`` and ``X-Stainless-*`` headers (SDKv2, TypeScript) or
``X-Together-Client-User-Agent`` (SDKv1) tell it, with ``x-stainless-retry-count`` as a number,
so a retry is told apart from a second call.

The journal is a ring of the last :data:`CAPACITY` entries (newest last); every text it keeps
(path, session id, header values) is cut to :data:`MAX_VALUE_CHARS`, so its memory is bounded
whatever the clients send. A reset clears it, and a request that arrived before the reset leaves
no entry after it.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from typing import Any, Protocol

from .auth import presented_fingerprint

__all__ = ["Headers", "RequestJournal", "sdk_headers", "sdk_identity", "caller_fingerprint",
           "clip", "CAPACITY", "MAX_VALUE_CHARS", "MAX_HEADER_CHARS"]

CAPACITY = 1000
MAX_VALUE_CHARS = 200  # the most of any client-sent text kept in the journal or written to a log
MAX_HEADER_CHARS = MAX_VALUE_CHARS
_USER_AGENT = re.compile(r"^(?P<name>[^/\s]+)/(?P<lang>[A-Za-z]+) (?P<version>\S+)$")  # Stainless


class Headers(Protocol):
    """Request headers looked up by name, ignoring case (werkzeug's ``Headers``)."""

    def get(self, key: str, /) -> str | None: ...


def clip(text: str) -> str:
    """``text`` cut to :data:`MAX_VALUE_CHARS`, with a mark saying how long it was."""
    if len(text) <= MAX_VALUE_CHARS:
        return text
    mark = f"...[{len(text)} chars]"
    return text[:MAX_VALUE_CHARS - len(mark)] + mark


# The headers that say who sent a request, in the order :func:`_identity` reads them.
_SDK_HEADERS = ("User-Agent", "X-Stainless-Package-Version", "X-Stainless-Lang",
                "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-OS",
                "X-Stainless-Arch", "X-Stainless-Retry-Count")
_LEGACY_HEADER = "X-Together-Client-User-Agent"  # SDKv1: a JSON object
# The values of _SDK_HEADERS (each clipped, or None), then what the legacy header says (its
# bindings_version, lang and lang_version) or None: what a journal entry keeps of the headers.
SdkHeaders = tuple[Any, ...]


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def sdk_headers(headers: Headers) -> SdkHeaders:
    """What :func:`sdk_identity` needs of ``headers``, small and bounded: kept per request, so
    the identity itself is worked out only when the journal is read."""
    values = [headers.get(name) for name in _SDK_HEADERS]
    legacy: tuple[str | None, ...] | None = None
    described_text = headers.get(_LEGACY_HEADER)
    if described_text:
        try:
            described = json.loads(described_text)
        except ValueError:
            described = None
        if isinstance(described, dict):
            legacy = tuple(_text(described.get(name))
                           for name in ("bindings_version", "lang", "lang_version"))
    return (*(v[:MAX_HEADER_CHARS] if v else None for v in values), legacy)


def sdk_identity(headers: Headers) -> dict[str, Any]:
    """Who sent a request, from its headers (``headers.get`` must ignore case, as HTTP does).

    Keys: ``user_agent``, ``package_version``, ``language``, ``runtime``, ``runtime_version``,
    ``os``, ``arch`` (strings or ``None``) and ``retry_count`` (an int, or ``None`` when the
    client does not say: SDKv1 does not).
    """
    return _identity(sdk_headers(headers))


def _identity(values: SdkHeaders) -> dict[str, Any]:
    """:func:`sdk_identity` from what :func:`sdk_headers` kept."""
    (user_agent, package_version, language, runtime, runtime_version, os_name, arch, retries,
     legacy) = values
    identity: dict[str, Any] = {
        "user_agent": user_agent, "package_version": package_version, "language": language,
        "runtime": runtime, "runtime_version": runtime_version, "os": os_name, "arch": arch,
        "retry_count": _int_or_none(retries),
    }
    if legacy is not None and package_version is None:
        identity["package_version"], identity["language"], identity["runtime_version"] = legacy
    match = _USER_AGENT.match(user_agent or "")
    if match and identity["package_version"] is None:
        identity["package_version"] = match["version"]
        identity["language"] = identity["language"] or match["lang"].lower()
    return identity


def _text(value: Any) -> str | None:
    return str(value)[:MAX_HEADER_CHARS] if value is not None else None


def caller_fingerprint(path: str, authorization: str | None) -> str | None:
    """The fingerprint of the API key a request presented, valid or not; ``None`` for the control
    plane, whose bearer token is the admin token and names no tenant."""
    if path.startswith("/_emulator"):
        return None
    return presented_fingerprint(authorization)


class RequestJournal:
    """A bounded, thread-safe ring of request entries, newest last."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._seq = 0
        self._epoch = 0  # entries of requests that arrived before this generation are dropped

    def record(self, *, time: str, method: str, path: str, status: int, session_id: str | None,
               key_fp: str | None, duration_ms: float, fault: str | None,
               headers: Headers, epoch: int | None = None) -> int | None:
        """Add one request; returns its ``seq`` (entries are numbered since the last clear), or
        ``None`` when the request arrived in generation ``epoch``, before the last reset.

        Runs once per request: the entry keeps only the SDK's header values, and who sent the
        request is worked out from them when the journal is read.
        """
        entry = {
            "seq": 0, "time": time, "method": clip(method), "path": clip(path), "status": status,
            "session_id": clip(session_id) if session_id is not None else None,
            "key_fingerprint": key_fp,
            "duration_ms": round(duration_ms, 3), "fault": fault,
            "sdk": sdk_headers(headers),
        }
        with self._lock:
            if epoch is not None and epoch < self._epoch:
                return None
            self._seq += 1
            entry["seq"] = seq = self._seq
            self._entries.append(entry)
        return seq

    def entries(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The last ``limit`` entries (all without one), oldest first."""
        with self._lock:
            entries = list(self._entries)
        if limit is not None:
            entries = entries[max(len(entries) - limit, 0):] if limit > 0 else []
        return [dict(e, sdk=_identity(e["sdk"])) for e in entries]

    def clear(self, epoch: int | None = None) -> None:
        """Forget every entry (reset); numbering starts again at 1. With ``epoch``, requests
        that arrived in an earlier generation are not recorded from now on."""
        with self._lock:
            self._entries.clear()
            self._seq = 0
            if epoch is not None:
                self._epoch = epoch
