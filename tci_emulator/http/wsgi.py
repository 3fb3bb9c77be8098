"""The emulator's HTTP server: waitress, tuned for a front door that meets hostile clients.

Why waitress: one event loop (``poll()``, not ``select()``, which fails past 1024 descriptors)
reads every connection and hands a request to the thread pool only once it has arrived whole,
so a client that stalls mid-request costs a descriptor and a buffer, never a thread. cheroot,
measured on the same work, ran the same keep-alive throughput but gives each connection a worker
thread while it reads the request: 1000 stalled connections starved every worker and a normal
client timed out. werkzeug's development server closed each connection and started a thread per
request.

What is added to waitress, one module each:

- :mod:`.connection`: a *client timeout*: a request (line, headers and body) must arrive whole
  within ``client_timeout`` seconds of its first byte (a connection that sends nothing at all, of
  its accept), else it is answered 408 and closed, so a slow drip cannot hold a connection
  forever (idle keep-alive connections close after ``keep_alive_timeout``); and a way for the app
  to drop a connection without a response (``reset_connection`` faults);
- :mod:`.listener`: a *connection limit*, and *no spin on EMFILE* when the descriptor table is
  full;
- :mod:`.protocol`: *JSON bodies for protocol errors* (400, 408, 413, 414, 431, 505), as the
  app's own errors;
- :mod:`.connection` and :mod:`.listener` also cut the hand-offs per request: a worker sends the
  head and first body piece in one system call, and a connection stays polled while its request
  runs, so the loop is not woken after every answer.

This module ties them together: waitress's settings and the loop run in the server's thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments

from ..config import Config
from .connection import CLOSE_CONNECTION, LOOKAHEAD
from .listener import Listener, raise_descriptor_limit

__all__ = ["HttpServer", "CLOSE_CONNECTION", "raise_descriptor_limit"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
MAX_HEADER_BYTES = 256 * 1024
# A chunked body's framing counts against waitress's raw-byte limit; the app checks the exact
# decoded size against max_request_bytes, so the server's own limit leaves room for the framing.
CHUNK_SLACK = 1024 * 1024
# Descriptors kept free for kernels, journal and state files beyond the connection limit.
RESERVED_DESCRIPTORS = 512


class HttpServer:
    """A bound waitress server for one WSGI app, served by :meth:`serve_forever` in a thread."""

    def __init__(self, app: WSGIApp, config: Config) -> None:
        soft = raise_descriptor_limit(config.connection_limit + RESERVED_DESCRIPTORS)
        limit = max(16, min(config.connection_limit, soft - RESERVED_DESCRIPTORS))
        tick = max(0.05, min(1.0, config.client_timeout / 4, config.keep_alive_timeout / 4))
        adj = Adjustments(host=config.host, port=config.port, threads=config.threads,
                          asyncore_use_poll=True, backlog=1024, ident="tci-emulator",
                          log_socket_errors=False, expose_tracebacks=False,
                          clear_untrusted_proxy_headers=False,  # no proxy headers are read
                          connection_limit=1 << 30,  # enforced by Listener, not by not accepting
                          max_request_header_size=MAX_HEADER_BYTES,
                          max_request_body_size=config.max_request_bytes + CHUNK_SLACK,
                          channel_request_lookahead=LOOKAHEAD)  # see Channel.readable
        adj.channel_timeout = config.keep_alive_timeout  # waitress takes whole seconds only
        adj.cleanup_interval = tick
        adj.tci_max_body = config.max_request_bytes
        self.tick = tick
        self.server = Listener(app, adj, config, limit)
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    @property
    def connections(self) -> int:
        """Client connections open right now."""
        return len(self.server.active_channels)

    def serve_forever(self) -> None:
        """Run the event loop until :meth:`close` (in the server's own thread)."""
        while not self._stopping.is_set():
            wasyncore.loop(timeout=self.tick, map=self.server._map, use_poll=True, count=1)

    def stop_accepting(self) -> None:
        """Close the listening socket (in the loop's thread); open connections keep going."""
        done = threading.Event()

        def close_listener() -> None:
            self.server.accepting = False
            self.server.del_channel()
            self.server.socket.close()
            done.set()

        self.server.trigger.pull_trigger(close_listener)
        done.wait(5)

    def close(self, grace: float = 5.0) -> None:
        """Let running requests finish and their answers go out (up to ``grace`` seconds each),
        then close every connection and stop the loop. Call after :meth:`stop_accepting`."""
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=grace)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(
                getattr(c, "total_outbufs_len", 0) for c in list(self.server._map.values())):
            time.sleep(0.01)  # output still being sent by the loop thread
        self._stopping.set()
        self.server.pull_trigger()

    def release(self) -> None:
        """Close whatever the stopped loop left open (call after its thread has ended)."""
        wasyncore.close_all(self.server._map)
        if self.server.spare >= 0:
            os.close(self.server.spare)
            self.server.spare = -1
