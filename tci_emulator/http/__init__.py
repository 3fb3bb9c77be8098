"""The front door: what every request meets before the app, and how each one is logged.

- :mod:`.guard`: the Host check (DNS rebinding) and the Origin check (cross-site requests),
  as WSGI middleware around the whole app, so every route, present or added later, is covered.
- :mod:`.wsgi`: the production WSGI server (waitress, tuned): keep-alive, a bounded thread pool,
  a client timeout, an idle timeout, a connection limit and JSON bodies for protocol errors.
- :mod:`.logline`: access log lines as text or JSON, with client-supplied values escaped.
"""

from __future__ import annotations
