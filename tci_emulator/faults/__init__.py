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

The package: :mod:`.engine` holds rules, their matching, seeded draws and the :class:`FaultSet`
(no Flask); :mod:`.actions` holds one class per action, each declaring its parameters and what it
does (a new action is one class there). The request hook that applies a firing rule lives with
the app, in :mod:`tci_emulator.http.fault_hook`.
"""

from __future__ import annotations

from .actions import NO_RESPONSE_STATUS, REGISTRY, Action, FaultedRequest, forbidden_header
from .engine import ACTIONS, FaultRule, FaultSet, load_rules

__all__ = ["ACTIONS", "REGISTRY", "Action", "FaultRule", "FaultSet", "FaultedRequest",
           "NO_RESPONSE_STATUS", "forbidden_header", "load_rules"]
