"""One client connection: the app's task on it, and the client timeout it owes a request by.

A connection notes since when it has been waiting for a whole request (from its accept, or from
the first byte of a request); the listener times it out after ``--client-timeout`` with a 408
(:meth:`Channel.time_out`). The app may drop the connection with no response at all through the
callable at :data:`CLOSE_CONNECTION` in the WSGI environ (``reset_connection`` faults).

Fewer hand-offs per request: the worker thread sends a response's head and first body piece in
one system call, and a connection stays in the loop's poll set while its request runs (one
request of lookahead), so the loop is not woken after every answer to poll the connection
again; a client that ends its side meanwhile still gets its answer.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.task import WSGITask

from ..errors import EmulatorError, MalformedHttpRequest, RequestTimeout
from .logline import log_refusal
from .protocol import ProtocolErrorTask, RequestParser, raw_response

__all__ = ["AppTask", "Channel", "CLOSE_CONNECTION", "LOOKAHEAD", "answered"]

# In the WSGI environ: a callable that drops the connection with no response at all.
CLOSE_CONNECTION = "tci_emulator.close_connection"
LOOKAHEAD = 1  # requests read ahead on a connection while one runs (see Channel.readable)
COALESCE_BYTES = 64 * 1024  # a first body piece up to this size is sent with the head
# The connection a worker thread has just answered in full (see Listener.pull_trigger).
answered = threading.local()


@functools.lru_cache(maxsize=256)
def _capitalised(name: str) -> str:
    """A header name as waitress writes it (``retry-after`` -> ``Retry-After``)."""
    return "-".join(part.capitalize() for part in name.split("-"))


class _Pieces(list[bytes]):
    """Stands in for the channel while a task's first write is put together."""

    def write_soon(self, data: bytes) -> int:
        self.append(data)
        return len(data)


class AppTask(WSGITask):  # type: ignore[misc]
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
        answered.channel = channel  # for Listener.pull_trigger, in this thread


class Channel(HTTPChannel):  # type: ignore[misc]
    """One connection; knows since when it has been waiting for a whole request."""

    task_class = AppTask
    error_task_class = ProtocolErrorTask
    parser_class = RequestParser
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
        if self.request is not None and self._ending():
            # Bytes after a request that ends the connection (a protocol error's answer closes
            # it) are never served: left as a partial request, the client's end of file would
            # be answered too, a second response on the same connection.
            self.request = None
        if self.request is None:  # nothing partial left: idle (keep-alive) or serving
            self.waiting_since = None
        return result

    def _ending(self) -> bool:
        """Whether this connection closes once what is queued is answered."""
        return bool(self.will_close or self.close_when_flushed
                    or any(getattr(r, "error", None) is not None for r in self.requests))

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
            answered.channel = None
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
        elif self.request is not None and self.connected and self._ending():
            self.request = None  # it closes once its answer is sent: nothing more to say
            self.peer_closed = True
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
