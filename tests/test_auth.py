"""Tenancy: a key's tenant is the whole SHA-256 of the key, never a short prefix of it."""

from __future__ import annotations

import hashlib

from tci_emulator.auth import fingerprint

from .helpers import Http

# Two keys whose digests share their first 48 bits: found in seconds of hashing, and with a
# 12-character fingerprint as the tenant, the second listed and used the first one's session.
KEY_A, KEY_B = "key-3220980", "key-39077805"


def test_the_colliding_pair_shares_a_48_bit_prefix_but_not_a_fingerprint() -> None:
    prefix = {hashlib.sha256(k.encode()).hexdigest()[:12] for k in (KEY_A, KEY_B)}
    assert prefix == {"2a4e9fd93278"}
    assert fingerprint(KEY_A) != fingerprint(KEY_B)
    assert fingerprint(KEY_A) == hashlib.sha256(KEY_A.encode()).hexdigest()


def test_keys_sharing_a_short_prefix_are_separate_tenants(http: Http) -> None:
    session_id = http.run("secret = 'of A'", key=KEY_A)["session_id"]
    assert http.get("/v1/tci/sessions", key=KEY_B).json()["data"]["sessions"] == []
    used = http.execute("print(secret)", session_id, key=KEY_B)
    assert used.status_code == 404 and "of A" not in used.text
    mine = http.get("/v1/tci/sessions", key=KEY_A).json()["data"]["sessions"]
    assert [s["id"] for s in mine] == [session_id]
    by_key = http.get("/_emulator/usage").json()["by_key"]
    assert by_key == {fingerprint(KEY_A): {"sessions": 1, "executions": 1, "cost_usd": 0.03}}
