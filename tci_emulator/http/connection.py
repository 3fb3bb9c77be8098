"""One client connection: the app's task on it, and the client timeout it owes a request by.

A connection notes since when it has been waiting for a whole request (from its accept, or from
the first byte of a request); the listener times it out after ``--client-timeout`` with a 408
(:meth:`Channel.time_out`). The app may drop the connection with no response at all through the
callable at :data:`CLOSE_CONNECTION` in the WSGI environ (``reset_connection`` faults), and a
response is sent from the task's own thread at once.
"""

from __future__ import annotations

import functools
import socket
import time
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.task import WSGITask

from ..errors import EmulatorError, MalformedHttpRequest, RequestTimeout
from .logline import log_refusal
from .protocol import ProtocolErrorTask, RequestParser, raw_response

__all__ = ["AppTask", "Channel", "CLOSE_CONNECTION"]

# In the WSGI environ: a callable that drops the connection with no response at all.
CLOSE_CONNECTION = "tci_emulator.close_connection"


@functools.lru_cache(maxsize=256)
def _capitalised(name: str) -> str:
    """A header name as waitress writes it (``retry-after`` -> ``Retry-After``)."""
    return "-".join(part.capitalize() for part in name.split("-"))


class AppTask(WSGITask):  # type: ignore[misc]
    """A WSGI task whose app may drop the connection without answering."""

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
        if not self.aborted:
            super().write(data)

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


class Channel(HTTPChannel):  # type: ignore[misc]
    """One connection; knows since when it has been waiting for a whole request."""

    task_class = AppTask
    error_task_class = ProtocolErrorTask
    parser_class = RequestParser
    request: Any = None  # the request being received, if any (waitress's own attribute)

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

    def recv(self, buffer_size: int) -> bytes:
        """As waitress's, but a client that ends its side mid-request is told why (400)."""
        try:
            data: bytes = self.socket.recv(buffer_size)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            self.handle_close()
            return b""
        if data:
            return data
        if self.request is not None and not self.requests and self.connected:
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
