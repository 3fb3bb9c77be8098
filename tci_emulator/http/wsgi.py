"""The emulator's HTTP server: waitress, tuned for a front door that meets hostile clients.

Why waitress: one event loop (``poll()``, not ``select()``, which fails past 1024 descriptors)
reads every connection and hands a request to the thread pool only once it has arrived whole,
so a client that stalls mid-request costs a descriptor and a buffer, never a thread. cheroot,
measured on the same work, ran the same keep-alive throughput but gives each connection a worker
thread while it reads the request: 1000 stalled connections starved every worker and a normal
client timed out. werkzeug's development server closed each connection and started a thread per
request.

What is added to waitress here:

- a *client timeout*: a request (line, headers and body) must arrive whole within
  ``client_timeout`` seconds of its first byte (a connection that sends nothing at all, of its
  accept), else it is answered 408 and closed, so a slow drip cannot hold a connection forever;
  idle keep-alive connections close after ``keep_alive_timeout``;
- a *connection limit*: at the limit the connection that has waited longest without a request
  in service is closed to make room; if every connection is serving a request the new one is
  answered 503 and closed at once;
- *no spin on EMFILE*: when the descriptor table is full, the connections open become the
  limit and the longest-waiting idle one is closed to make room; if none is idle, a spare
  descriptor kept for the purpose lets the loop accept the next connection, answer it 503 and
  close it (and accepting pauses briefly if even that fails), instead of the listening socket
  staying readable forever;
- *JSON bodies for protocol errors* (400, 408, 413, 414, 431, 505), as the app's own errors;
- *fewer hand-offs per request*: the worker thread sends a response's head and first body
  piece in one system call, and a connection stays in the loop's poll set while its request
  runs (one request of lookahead), so the loop is not woken after every answer to poll the
  connection again; a client that ends its side meanwhile still gets its answer;
- a way for the app to drop a connection without a response (``reset_connection`` faults).
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import resource
import socket
import threading
import time
from http import HTTPStatus
from typing import Any, Callable, Iterable

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask
from waitress.utilities import Error as WaitressError

from ..config import Config
from .logline import log_refusal
from ..errors import (
    EmulatorError,
    HeadersTooLarge,
    HttpVersionNotSupported,
    InternalError,
    MalformedHttpRequest,
    PayloadTooLarge,
    RequestTimeout,
    TooManyConnections,
    UriTooLong,
    render_error,
)

__all__ = ["HttpServer", "CLOSE_CONNECTION", "raise_descriptor_limit"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# In the WSGI environ: a callable that drops the connection with no response at all.
CLOSE_CONNECTION = "tci_emulator.close_connection"
MAX_LINE = 65536  # request line and each header line, as the standard library's parser
MAX_HEADERS = 100
MAX_HEADER_BYTES = 256 * 1024
LOOKAHEAD = 1  # requests read ahead on a connection while one runs (see _Channel.readable)
COALESCE_BYTES = 64 * 1024  # a first body piece up to this size is sent with the head
# A chunked body's framing counts against waitress's raw-byte limit; the app checks the exact
# decoded size against max_request_bytes, so the server's own limit leaves room for the framing.
CHUNK_SLACK = 1024 * 1024
# Descriptors kept free for kernels, journal and state files beyond the connection limit.
RESERVED_DESCRIPTORS = 512
logger = logging.getLogger("tci_emulator.http")
# The connection a worker thread has just answered in full (see _Server.pull_trigger).
_answered = threading.local()


def error_parts(error: EmulatorError) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status line, headers (without Content-Length) and JSON body of a front-door error."""
    status, body = render_error(error)  # not an API answer: never the SPEC's literal form
    payload = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), *error.headers.items()]
    return f"{status} {HTTPStatus(status).phrase}", headers, payload


def raw_response(error: EmulatorError) -> bytes:
    """A whole ``Connection: close`` HTTP/1.1 response, for answers written outside a task."""
    status, headers, payload = error_parts(error)
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers),
             f"Content-Length: {len(payload)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + payload


class _Refusal(WaitressError):  # type: ignore[misc]
    """A waitress parse error that carries the emulator error to answer with."""

    def __init__(self, error: EmulatorError) -> None:
        super().__init__(error.detail)
        self.error = error
        self.code = error.status_code


def _body_too_large() -> PayloadTooLarge:
    return PayloadTooLarge("The request body is larger than the emulator accepts.", param="body")


def _as_emulator_error(error: Any) -> EmulatorError:
    if isinstance(error, _Refusal):
        return error.error
    code = getattr(error, "code", 500)
    if code == 413:
        return _body_too_large()
    if code == 431:
        return HeadersTooLarge()
    if code >= 500 and code != 501:
        return InternalError()
    return MalformedHttpRequest(f"{getattr(error, 'reason', 'Bad Request')}: "
                                f"{str(getattr(error, 'body', ''))[:200]}.")


class _Parser(HTTPRequestParser):  # type: ignore[misc]
    """waitress's parser with the standard library's line limits and the emulator's body limit."""

    refusal: EmulatorError | None = None
    error: Any = None

    def _refuse(self, error: EmulatorError) -> None:
        self.refusal = error
        raise ParsingError(error.detail)

    def parse_header(self, header_plus: bytes) -> None:
        first, _, rest = header_plus.partition(b"\r\n")
        if len(first) > MAX_LINE:
            self._refuse(UriTooLong())
        lines = rest.split(b"\r\n") if rest else []
        if len(lines) > MAX_HEADERS or any(len(line) > MAX_LINE for line in lines):
            self._refuse(HeadersTooLarge())
        super().parse_header(header_plus)
        if self.version not in ("1.0", "1.1"):
            self._refuse(HttpVersionNotSupported())
        limit = getattr(self.adj, "tci_max_body", None)
        if limit is not None and self.content_length > limit:
            self._refuse(_body_too_large())

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        error: Any = self.error
        if self.refusal is not None and error is not None:
            self.error = _Refusal(self.refusal)
        return consumed


class _ErrorTask(ErrorTask):  # type: ignore[misc]
    """A protocol error answered with the contract's JSON error body, never text or HTML."""

    def execute(self) -> None:
        error = _as_emulator_error(self.request.error)
        self.channel.log_refusal(error, getattr(self.request, "command", None),
                                 getattr(self.request, "path", None))
        status, headers, payload = error_parts(error)
        self.status = status
        self.response_headers.extend(headers)
        self.set_close_on_finish()
        self.content_length = len(payload)
        self.write(payload)


@functools.lru_cache(maxsize=256)
def _capitalised(name: str) -> str:
    """A header name as waitress writes it (``retry-after`` -> ``Retry-After``)."""
    return "-".join(part.capitalize() for part in name.split("-"))


class _Pieces(list[bytes]):
    """Stands in for the channel while a task's first write is put together."""

    def write_soon(self, data: bytes) -> int:
        self.append(data)
        return len(data)


class _Task(WSGITask):  # type: ignore[misc]
    """A WSGI task whose app may drop the connection without answering."""

    channel: Any  # the connection (waitress's attribute), or _Pieces during a first write
    wrote_header: bool
    aborted = False

    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        environ[CLOSE_CONNECTION] = self.abort
        return environ

    def abort(self) -> None:
        """Shut the socket down; whatever the app then returns is dropped."""
        self.aborted = True
        self.close_on_finish = True
        try:
            self.channel.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def build_response_header(self) -> bytes:
        """waitress's head with each header name as the app wrote it: waitress capitalises
        names, but a fault rule's lower-case ``retry-after`` must stay lower-case (SDKv1 reads
        it case-sensitively, as HTTP/2 gateways send it)."""
        given = {_capitalised(name): name for name, _ in self.response_headers}
        head: bytes = super().build_response_header()
        if all(shown == name for shown, name in given.items()):
            return head  # the usual case: nothing to rename
        first, *lines = head.decode("latin-1").split("\r\n")
        renamed = [f"{given.get(name, name)}{sep}{value}" for name, sep, value in
                   (line.partition(": ") for line in lines)]
        return "\r\n".join([first, *renamed]).encode("latin-1")

    def write(self, data: bytes) -> None:
        if self.aborted:
            return
        if self.wrote_header or not self.complete or len(data) > COALESCE_BYTES:
            super().write(data)
            return
        # The head and the first piece of the body go out in one send (waitress sends each
        # at once: two system calls and two packets for every small JSON answer).
        pieces = _Pieces([self.build_response_header()])
        self.wrote_header = True
        channel, self.channel = self.channel, pieces
        try:
            super().write(data)  # the body piece, as waitress would cut it, lands in pieces
        finally:
            self.channel = channel
        channel.write_soon(b"".join(pieces))

    def finish(self) -> None:
        """Finish the response and send it from this thread at once: waitress would leave a
        small response to its event loop, one more thread hand-off per request."""
        if self.aborted:
            return
        super().finish()
        channel = self.channel
        with channel.outbuf_lock:
            if channel.total_outbufs_len and channel.connected:
                channel._flush_exception(channel._flush_some, do_close=False)
            channel.left_output = bool(channel.total_outbufs_len)
        _answered.channel = channel  # for _Server.pull_trigger, in this thread


class _Channel(HTTPChannel):  # type: ignore[misc]
    """One connection; knows since when it has been waiting for a whole request."""

    task_class = _Task
    error_task_class = _ErrorTask
    parser_class = _Parser
    request: Any = None  # the request being received, if any (waitress's own attribute)
    # Whether the loop's poll set (built from readable()) has this connection for reading: so
    # it sees the next request without being woken when the current one is answered.
    polled_for_read = False
    peer_closed = False  # the client ended its side while its request was in service
    left_output = False  # a worker left bytes unsent (a full socket buffer) for the loop

    def __init__(self, server: Any, sock: socket.socket, addr: Any, adj: Adjustments,
                 map: dict[int, Any] | None = None) -> None:
        # A new connection owes its first request within the client timeout, too.
        self.waiting_since: float | None = time.monotonic()
        super().__init__(server, sock, addr, adj, map)

    def received(self, data: bytes) -> bool:
        if self.waiting_since is None:
            self.waiting_since = time.monotonic()
        result: bool = super().received(data)
        if self.request is None:  # nothing partial left: idle (keep-alive) or serving
            self.waiting_since = None
        return result

    # readable() and writable() run for every connection on every turn of the loop (1000
    # stalled connections: 2000 calls a turn), so each is waitress's test written out whole.

    def readable(self) -> bool:
        """waitress's answer with one request of lookahead: the connection stays in the poll
        set while its request runs (not once the client has ended its side: end of file
        would wake the loop without end, nor while output waits to be sent)."""
        self.polled_for_read = not (
            self.will_close or self.close_when_flushed or self.peer_closed
            or len(self.requests) > LOOKAHEAD or self.total_outbufs_len)
        return self.polled_for_read

    def writable(self) -> bool:
        """waitress's answer, except while a worker runs this connection's request: the worker
        sends the answer itself, and the loop is asked to send only what the worker leaves
        unsent. Polled for output meanwhile, a loop woken by the client's next request would
        spin for as long as the worker is between a send and its bookkeeping."""
        if self.will_close or self.close_when_flushed:
            return True
        return bool(self.total_outbufs_len) and (self.left_output or not self.requests)

    def write_soon(self, data: bytes) -> int:
        """waitress's, noting whether bytes are left for the loop to send (see writable)."""
        written: int = super().write_soon(data)
        self.left_output = bool(self.total_outbufs_len)
        if self.left_output:
            self.server.pull_trigger()  # waitress's own wake-up came before the note
        return written

    def handle_read(self) -> None:
        """As waitress's, but an empty read leaves the connection as :meth:`recv` decided."""
        data = self.recv(self.adj.recv_bytes)
        if data:
            self.last_activity = time.time()
            self.received(data)

    def service(self) -> None:
        """Serve the next request; a client that ended its side meanwhile has its answer
        sent, then the connection closes."""
        try:
            super().service()
        finally:
            _answered.channel = None
        if self.peer_closed and self.connected and not self.requests:
            with self.requests_lock:
                self.close_when_flushed = True
            self.server.pull_trigger()

    def loop_has_it(self) -> bool:
        """Whether the loop will notice this connection's next request unprompted: it polls
        it for reading and has nothing to send or close."""
        return (self.polled_for_read and self.connected and not self.requests
                and not self.peer_closed and not self.will_close
                and not self.close_when_flushed and not self.total_outbufs_len)

    def recv(self, buffer_size: int) -> bytes:
        """As waitress's, but a client that ends its side mid-request is told why (400), and
        one that ends it while its request runs still gets the answer."""
        try:
            data: bytes = self.socket.recv(buffer_size)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            self.handle_close()
            return b""
        if data:
            return data
        if self.requests and self.connected:
            self.peer_closed = True  # answered, then closed (see service)
        elif self.request is not None and self.connected:
            self.answer_and_close(MalformedHttpRequest(
                "The connection was closed before the request was complete."))
        else:
            self.handle_close()
        return b""

    def log_refusal(self, error: EmulatorError, method: str | None, path: str | None) -> None:
        """One access log line for a request refused before the app saw it."""
        server = self.server
        if server.access_log:
            waited = time.monotonic() - (self.waiting_since or time.monotonic())
            log_refusal(method or "-", path or "-", error.status_code, waited * 1000,
                        server.log_format)

    def answer_and_close(self, error: EmulatorError) -> None:
        """Answer ``error`` now (from the loop thread), then close once it is sent."""
        request = self.request
        self.log_refusal(error, getattr(request, "command", None), getattr(request, "path", None))
        self.request = None
        self.waiting_since = None
        try:
            self.write_soon(raw_response(error))
        except Exception:  # the client is gone: nothing to tell it
            self.will_close = True
            return
        self.close_when_flushed = True

    def time_out(self) -> None:
        """The client timeout passed: a partial request gets a 408, a silent connection none."""
        if self.request is not None:
            self.answer_and_close(RequestTimeout(
                f"The request was not received whole within {self.server.client_timeout:g} s "
                "(--client-timeout)."))
        else:
            self.will_close = True
            self.waiting_since = None


class _Dispatcher(ThreadedTaskDispatcher):  # type: ignore[misc]
    """waitress's thread pool without its warning for every queued request (executions queue
    by design when every thread runs one)."""

    def add_task(self, task: Any) -> None:
        with self.lock:
            self.queue.append(task)
            self.queue_cv.notify()


def _spare_descriptor() -> int:
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return -1


class _Server(TcpWSGIServer):  # type: ignore[misc]
    """The listening socket: client timeout, connection limit, no spin when out of descriptors."""

    channel_class = _Channel
    next_channel_cleanup: float = 0.0

    def __init__(self, app: WSGIApp, adj: Adjustments, config: Config,
                 connection_limit: int) -> None:
        self.client_timeout = config.client_timeout
        self.access_log = config.access_log
        self.log_format = config.log_format
        self.connection_limit = connection_limit
        self.paused_until = 0.0
        self.last_warning = 0.0
        self.spare = _spare_descriptor()
        dispatcher = _Dispatcher()
        dispatcher.set_thread_count(config.threads)
        super().__init__(app, adj=adj, dispatcher=dispatcher)

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

    def pull_trigger(self) -> None:
        """Wake the loop, unless a worker thread that has just answered its connection in
        full would wake it for nothing: waitress wakes the loop after every request, so that
        it polls the connection again, which with one request of lookahead it does already.
        That wake-up was a thread hand-off, a pipe write and a loop turn per request."""
        channel = getattr(_answered, "channel", None)
        if channel is not None and channel.loop_has_it():
            return
        super().pull_trigger()

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
            self.spare = _spare_descriptor()
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


class HttpServer:
    """A bound waitress server for one WSGI app, served by :meth:`serve_forever` in a thread."""

    def __init__(self, app: WSGIApp, config: Config) -> None:
        soft = raise_descriptor_limit(config.connection_limit + RESERVED_DESCRIPTORS)
        limit = max(16, min(config.connection_limit, soft - RESERVED_DESCRIPTORS))
        tick = max(0.05, min(1.0, config.client_timeout / 4, config.keep_alive_timeout / 4))
        adj = Adjustments(host=config.host, port=config.port, threads=config.threads,
                          asyncore_use_poll=True, backlog=1024, ident="tci-emulator",
                          channel_request_lookahead=LOOKAHEAD,  # see _Channel.readable
                          log_socket_errors=False, expose_tracebacks=False,
                          clear_untrusted_proxy_headers=False,  # no proxy headers are read
                          connection_limit=1 << 30,  # enforced by _Server, not by not accepting
                          max_request_header_size=MAX_HEADER_BYTES,
                          max_request_body_size=config.max_request_bytes + CHUNK_SLACK)
        adj.channel_timeout = config.keep_alive_timeout  # waitress takes whole seconds only
        adj.cleanup_interval = tick
        adj.tci_max_body = config.max_request_bytes
        self.tick = tick
        self.server = _Server(app, adj, config, limit)
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
