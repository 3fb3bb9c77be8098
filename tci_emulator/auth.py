"""Bearer-key authentication and tenants.

Every distinct key is its own tenant. The raw key is used only to authenticate and is then
reduced to a fingerprint, the whole SHA-256 of the key in hex, which is all that the registry,
the ledger, the journal and the logs ever hold. The whole digest, not a prefix: with 48 bits two
keys sharing a fingerprint were found in seconds of hashing, and the second key then listed and
used the first one's sessions.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from .errors import InvalidApiKey

__all__ = ["fingerprint", "bearer_token", "authenticate", "presented_fingerprint"]


def fingerprint(key: str) -> str:
    """The tenant id of a key: ``sha256(key)`` in hex (64 characters)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None``."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def presented_fingerprint(header: str | None) -> str | None:
    """The fingerprint of whatever bearer key a request presented, valid or not (``None``
    without one): what the journal and fault rules match on, before authentication."""
    token = bearer_token(header)
    return fingerprint(token) if token else None


def authenticate(header: str | None, allowed: Iterable[str] = ()) -> str:
    """Check the header and return the caller's fingerprint; raises :class:`InvalidApiKey`.

    With no ``allowed`` keys configured any non-empty key is accepted.
    """
    token = bearer_token(header)
    if token is None:
        raise InvalidApiKey("Missing API key. Send 'Authorization: Bearer <key>'.")
    keys = tuple(allowed)
    if keys and not any(hmac.compare_digest(token.encode("utf-8", "surrogatepass"),
                                            k.encode("utf-8", "surrogatepass")) for k in keys):
        raise InvalidApiKey()
    return fingerprint(token)
