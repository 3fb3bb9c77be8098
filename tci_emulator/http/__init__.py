"""The front door: what every request meets before the app, how the app sees each request, and
how each one is logged.

- :mod:`.guard`: the Host check (DNS rebinding) and the Origin check (cross-site requests),
  as WSGI middleware around the whole app, so every route, present or added later, is covered.
- :mod:`.wsgi`: the production WSGI server (waitress, tuned), made of :mod:`.listener` (the
  connection limit, no spin when out of descriptors), :mod:`.connection` (one connection: the
  client timeout, dropping it without a response) and :mod:`.protocol` (the parser's limits and
  JSON bodies for protocol errors).
- :mod:`.context`: the one typed :class:`~.context.RequestContext` of each request the app serves.
- :mod:`.jsonio`: JSON request and response bodies, for the API and the control plane.
- :mod:`.fault_hook`: the request hook that lets a fault rule's action act on a request.
- :mod:`.logline`: access log lines as text or JSON, with client-supplied values escaped.
"""

from __future__ import annotations
