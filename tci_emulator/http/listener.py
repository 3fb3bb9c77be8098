"""The listening socket: the connection limit, and no spin when out of file descriptors.

At the connection limit the connection that has waited longest without a request in service is
closed to make room; if every connection is serving a request, the new one is answered 503 and
closed at once. When the descriptor table is full, the connections open become the limit and the
longest-waiting idle one is closed; if none is idle, a spare descriptor kept for the purpose lets
the loop accept the next connection, answer it 503 and close it (and accepting pauses briefly if
even that fails), instead of the listening socket staying readable forever. The listener's
periodic maintenance also times out connections past the client timeout.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from waitress.adjustments import Adjustments
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from ..config import Config
from ..errors import TooManyConnections
from .connection import Channel, answered
from .protocol import raw_response

__all__ = ["Listener", "Dispatcher", "raise_descriptor_limit", "spare_descriptor"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
logger = logging.getLogger("tci_emulator.http")


class Dispatcher(ThreadedTaskDispatcher):  # type: ignore[misc]
    """waitress's thread pool without its warning for every queued request (executions queue
    by design when every thread runs one)."""

    def add_task(self, task: Any) -> None:
        with self.lock:
            self.queue.append(task)
            self.queue_cv.notify()


def spare_descriptor() -> int:
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return -1


class Listener(TcpWSGIServer):  # type: ignore[misc]
    """The listening socket: client timeout, connection limit, no spin when out of descriptors."""

    channel_class = Channel
    next_channel_cleanup: float = 0.0

    def __init__(self, app: WSGIApp, adj: Adjustments, config: Config,
                 connection_limit: int) -> None:
        self.client_timeout = config.client_timeout
        self.access_log = config.access_log
        self.log_format = config.log_format
        self.connection_limit = connection_limit
        self.paused_until = 0.0
        self.last_warning = 0.0
        self.spare = spare_descriptor()
        dispatcher = Dispatcher()
        dispatcher.set_thread_count(config.threads)
        super().__init__(app, adj=adj, dispatcher=dispatcher)

    def pull_trigger(self) -> None:
        """Wake the loop, unless a worker thread that has just answered its connection in
        full would wake it for nothing: waitress wakes the loop after every request, so that
        it polls the connection again, which with one request of lookahead it does already.
        That wake-up was a thread hand-off, a pipe write and a loop turn per request."""
        channel = getattr(answered, "channel", None)
        if channel is not None and channel.loop_has_it():
            return
        super().pull_trigger()

    def readable(self) -> bool:
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return bool(self.accepting) and time.monotonic() >= self.paused_until

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle keep-alive connections past keep_alive_timeout
        cutoff = time.monotonic() - self.client_timeout
        for channel in list(self.active_channels.values()):
            since = getattr(channel, "waiting_since", None)
            if (since is not None and since < cutoff and not channel.requests
                    and not channel.will_close and not channel.close_when_flushed):
                channel.time_out()

    def _warn(self, message: str) -> None:
        if time.monotonic() - self.last_warning > 10:
            self.last_warning = time.monotonic()
            logger.warning("%s", message)

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest without a request in service."""
        candidates = [c for c in self.active_channels.values()
                      if not c.requests and not c.will_close and not c.close_when_flushed]
        if not candidates:
            return False
        stalled = [c for c in candidates if getattr(c, "waiting_since", None) is not None]
        victim = (min(stalled, key=lambda c: c.waiting_since) if stalled
                  else min(candidates, key=lambda c: c.last_activity))
        victim.handle_close()
        return True

    def _refuse(self, conn: socket.socket) -> None:
        try:
            conn.setblocking(False)
            conn.send(raw_response(TooManyConnections(headers={"Retry-After": "1"})))
        except OSError:
            pass
        finally:
            conn.close()

    def _shed(self) -> None:
        """Out of descriptors: the connections open now are the limit from here on. Close the
        longest-waiting idle one to make room (the pending connection is accepted on the next
        turn); if every one is serving a request, free the spare descriptor to accept, answer
        503 and close, then take the spare back. If even that fails, stop accepting for a
        moment rather than spin."""
        self._warn("out of file descriptors: the connection limit is lowered to "
                   f"{max(16, len(self.active_channels) - 1)} (raise `ulimit -n`)")
        self.connection_limit = max(16, min(self.connection_limit,
                                            len(self.active_channels) - 1))
        if self._evict_one():
            return
        if self.spare >= 0:
            os.close(self.spare)
            self.spare = -1
            try:
                conn, _ = self.socket.accept()
            except OSError:
                pass
            else:
                self._refuse(conn)
            self.spare = spare_descriptor()
        if self.spare < 0:
            self.paused_until = time.monotonic() + 0.1

    def handle_accept(self) -> None:
        try:
            pair = self.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self._shed()
            return
        if pair is None:
            return
        conn, addr = pair
        if len(self.active_channels) >= self.connection_limit and not self._evict_one():
            self._warn(f"{self.connection_limit} connections are all serving requests "
                       "(--connection-limit): new connections are answered 503")
            self._refuse(conn)
            return
        try:
            self.set_socket_options(conn)
        except OSError:
            conn.close()
            return
        self.channel_class(self, conn, addr, self.adj, map=self._map)

    def close(self) -> None:
        super().close()
        if self.spare >= 0:
            os.close(self.spare)
            self.spare = -1


def raise_descriptor_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (never past the hard limit,
    never lowering it); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else wanted
