"""A gateway kernel's channels: shell and iopub over the gateway's one WebSocket.

Why not jupyter_server's ``GatewayKernelClient`` for the messages: its channel queues wait by
spinning on ``asyncio.sleep(0)`` (a busy core per waiting execution), it sends no authorization
header on the WebSocket, and a queue per channel loses the order between shell and iopub that one
socket keeps. Messages are still built by jupyter_client's ``Session``, and read by the same
execution loop as a local kernel's (:class:`~tci_emulator.kernels.kernel.Kernel`).
"""

from __future__ import annotations

import json
from typing import Any

import websocket
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session

from .wire import USERNAME, Channels

__all__ = ["WebSocketChannels", "auth_headers"]

# Status messages the gateway publishes (with no parent) when a kernel's process ended: it is
# being restarted (state lost), or could not be and is dead.
_LOST_STATES = {
    "restarting": "the kernel process ended and the gateway restarted it",
    "dead": "the kernel process ended and the gateway could not restart it",
}


def auth_headers(token: str | None) -> dict[str, str]:
    """The headers that carry a gateway token, if there is one."""
    return {"Authorization": f"token {token}"} if token else {}


class WebSocketChannels(Channels):
    """Shell and iopub of one gateway kernel over its WebSocket, in arrival order.

    ``lost`` says why the kernel can no longer be reached through this socket (the gateway
    restarted the kernel, the socket closed); it is set by whichever call noticed.
    """

    def __init__(self, url: str, token: str | None, timeout: float) -> None:  # noqa: D107
        # The base class's ZeroMQ sockets are not opened: this socket carries every channel.
        self.session = Session(username=USERNAME)
        self.lost: str | None = None
        self._socket = websocket.create_connection(
            url, timeout=timeout, header=auth_headers(token), enable_multithread=True)

    def send(self, msg_type: str, content: dict[str, Any]) -> str:
        """Send a shell request; returns its msg_id (a closed socket marks the kernel lost)."""
        message = self.session.msg(msg_type, content)
        message["channel"] = "shell"
        try:
            self._socket.send(json.dumps(message, default=json_default))
        except (websocket.WebSocketException, OSError) as exc:
            self.lost = self.lost or f"the connection to the kernel gateway was lost ({exc})"
        return str(message["header"]["msg_id"])

    def receive(self, timeout_s: float) -> list[tuple[str, dict[str, Any]]]:
        """Wait up to ``timeout_s`` for the next message; shell and iopub ones are returned.

        Binary frames (messages with buffers, as widgets send) carry no output the emulator
        reports and are skipped.
        """
        if self.lost is not None:
            return []
        try:
            self._socket.settimeout(max(timeout_s, 0.001))
            raw = self._socket.recv()
        except websocket.WebSocketTimeoutException:
            return []
        except (websocket.WebSocketException, OSError) as exc:
            self.lost = f"the connection to the kernel gateway was lost ({exc or 'closed'})"
            return []
        if not isinstance(raw, str) or not raw:
            if not raw:
                self.lost = "the kernel gateway closed the connection"
            return []
        try:
            message = json.loads(raw)
        except ValueError:
            return []  # not a message: nothing to report
        if not isinstance(message, dict):
            return []
        channel = message.get("channel")
        content = message.get("content") or {}
        if channel == "iopub" and message.get("msg_type") == "status" \
                and content.get("execution_state") in _LOST_STATES:
            self.lost = _LOST_STATES[content["execution_state"]]
            return []
        if channel not in ("shell", "iopub"):
            return []
        return [(str(channel), message)]

    def close(self) -> None:
        try:
            self._socket.close(timeout=1)
        except (websocket.WebSocketException, OSError):
            pass
