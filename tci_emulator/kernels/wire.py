"""The Jupyter messaging protocol as the emulator speaks it: signed frames over ZeroMQ.

Messages are built, signed and checked here by hand rather than by ``Session.send`` and
``Session.recv``: those handle every case (tracking, version adaptation, date parsing through
dateutil) and cost over a third of the server's CPU time per execution. What is kept of
jupyter-client's ``Session`` is its key, signature scheme and JSON packing, so a message signed
here verifies there and the other way round (``tests/test_wire.py`` holds both to that).
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, cast

import zmq
from jupyter_client.session import Session

from .errors import KernelError

__all__ = ["PROTOCOL_VERSION", "Channels", "decode", "encode", "msg_type", "parent_id"]

# Version sent in headers, and the frame between routing identities and the signature.
PROTOCOL_VERSION = "5.3"
DELIMITER = b"<IDS|MSG>"
USERNAME = "tci-emulator"
# Kernel messages are UTF-8 JSON; decoding str directly skips json.loads's encoding sniffing.
_json_decode = json.JSONDecoder().decode
_EVENTS, _RCVMORE = int(zmq.EVENTS), int(zmq.RCVMORE)  # socket options, as plain ints
_POLLIN, _NOBLOCK = int(zmq.POLLIN), int(zmq.NOBLOCK)


def encode(session: Session, msg_type: str, content: Mapping[str, Any],
           buffers: Sequence[bytes] = ()) -> tuple[str, list[bytes]]:
    """A request's msg_id and its frames (delimiter, signature, header, parent, metadata,
    content, buffers), signed with ``session``'s key as ``Session.send`` would sign them."""
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": msg_type, "username": USERNAME,
              "session": session.session, "version": PROTOCOL_VERSION,
              "date": datetime.now(timezone.utc).isoformat()}
    pack = session.pack  # jupyter-client's own JSON packing, edge cases included
    parts = [pack(header), b"{}", b"{}", pack(content)]
    return msg_id, [DELIMITER, session.sign(parts), *parts, *buffers]


def decode(session: Session, frames: list[bytes]) -> dict[str, Any]:
    """Check a message's signature and parse the JSON parts the emulator reads.

    Raises :class:`KernelError` for a signature that does not match. Nothing here reads the
    header dates (``Session.recv`` would parse each one), the metadata, or the content of
    ``execute_input`` (an echo of the code, up to megabytes), so they are not parsed.
    """
    _, received = session.feed_identities(frames, copy=True)
    parts = cast("list[bytes]", received)  # copy=True gives bytes, not zmq Frames
    if len(parts) < 5:
        raise KernelError("a kernel message had too few parts")
    signature, header, parent, _metadata, content = parts[:5]
    if session.auth is not None and not hmac.compare_digest(signature, session.sign(parts[1:5])):
        raise KernelError("a kernel message had an invalid signature")
    head = _json_decode(header.decode())
    kind = head.get("msg_type")
    return {"header": head, "msg_id": head.get("msg_id"), "msg_type": kind,
            "parent_header": _json_decode(parent.decode()), "metadata": {},
            # ipykernel packs lone surrogates (print('\udcff')) with surrogateescape, so
            # content may be invalid UTF-8: replace those bytes, as jupyter_client does.
            "content": ({} if kind == "execute_input"
                        else _json_decode(content.decode("utf-8", "replace"))),
            "buffers": parts[5:]}


def parent_id(msg: Mapping[str, Any]) -> str | None:
    """The msg_id of the request a message answers, if any."""
    parent = msg.get("parent_header") or {}
    return parent.get("msg_id")


def msg_type(msg: Mapping[str, Any]) -> str:
    """A decoded message's type, from its header."""
    return str(msg.get("header", {}).get("msg_type", ""))


class Channels:
    """Synchronous shell and iopub sockets to one kernel, signed with its key."""

    def __init__(self, context: zmq.Context[Any], info: Mapping[str, Any],
                 max_message_bytes: int | None = None) -> None:
        key = info["key"]
        self.session = Session(key=key if isinstance(key, bytes) else str(key).encode(),
                               signature_scheme=str(info["signature_scheme"]),
                               username=USERNAME)

        def address(port_name: str) -> str:
            port = info[port_name]
            if info["transport"] == "ipc":
                return f"ipc://{info['ip']}-{port}"
            return f"tcp://{info['ip']}:{port}"

        self.shell = context.socket(zmq.DEALER)
        self.shell.linger = 0
        self.shell.setsockopt(zmq.IDENTITY, self.session.bsession)
        self.shell.connect(address("shell_port"))
        self.iopub = context.socket(zmq.SUB)
        self.iopub.linger = 0
        if max_message_bytes is not None:
            # The backstop of the kernel-side output cap, which session code could undo: a
            # larger message is never received (libzmq drops the connection, which reconnects).
            self.iopub.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.connect(address("iopub_port"))
        self.poller = zmq.Poller()
        self.poller.register(self.shell, zmq.POLLIN)
        self.poller.register(self.iopub, zmq.POLLIN)

    def send(self, msg_type: str, content: dict[str, Any]) -> str:
        """Send a shell request; returns its msg_id."""
        msg_id, frames = encode(self.session, msg_type, content)
        self.shell.send_multipart(frames)
        return msg_id

    def receive(self, timeout_s: float) -> list[tuple[str, dict[str, Any]]]:
        """Wait up to ``timeout_s`` and return every message then waiting, tagged by channel."""
        ready = dict(self.poller.poll(int(max(timeout_s, 0) * 1000)))
        messages: list[tuple[str, dict[str, Any]]] = []
        for name, sock in (("iopub", self.iopub), ("shell", self.shell)):
            if sock not in ready:
                continue
            # recv_multipart's own way (enum flags and options, a zmq.Again to end the drain)
            # cost more than the messages of an `x = 1` execution: plain ints instead.
            while sock.getsockopt(_EVENTS) & _POLLIN:
                frames = [sock.recv(_NOBLOCK)]
                while sock.getsockopt(_RCVMORE):
                    frames.append(sock.recv(_NOBLOCK))
                messages.append((name, decode(self.session, frames)))
        return messages

    def close(self) -> None:
        """Close both sockets at once (nothing queued is worth waiting for)."""
        self.shell.close(linger=0)
        self.iopub.close(linger=0)
