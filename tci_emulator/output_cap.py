"""The output cap applied inside the kernel, before any output is sent to the server.

The server keeps at most ``--max-output-bytes`` of each execution's output
(:class:`~tci_emulator.outputs.OutputCollector`), but a cap applied only there comes too late: a
``print`` of 300 MB reaches the server as one 300 MB message, which is received, copied, decoded
and parsed before anything can be dropped; three such executions at once took the server to
2.4 GB. So every kernel also caps its own output at the source, on the messages it publishes:

- ``stream`` text past the execution's budget is cut (one character past the cap is let through,
  so the server sees that it must cut, and says so with its usual marker);
- a ``display_data``, ``update_display_data`` or ``execute_result`` bundle that does not fit is
  replaced by an empty bundle whose metadata carries :data:`DROPPED_KEY`, which the server reads
  as "dropped by the cap" (it would have dropped the bundle itself, by the same measure);
- an ``error``'s traceback longer than the cap keeps its head and tail, its message is cut.

The budget is the server's, per execution (per parent request). Sizes are counted in characters,
which never exceed the UTF-8 bytes the server counts, so the kernel never drops what the server
would keep. The code runs inside the kernel: this module imports nothing from the emulator, and
:func:`kernel_code` hands its source to IPython's ``exec_lines``. Session code could undo the
patch; it then only makes its own replies slower, never other sessions' (each kernel is its own
process).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

__all__ = ["DROPPED_KEY", "install", "kernel_code", "message_limit"]

DROPPED_KEY = "tci_emulator_dropped_bytes"
_BUNDLES = ("display_data", "update_display_data", "execute_result")


def install(limit: int) -> None:  # pragma: no cover - runs inside the kernel
    """Wrap the kernel session's ``send`` so that published outputs obey ``limit``."""
    shell: Any = get_ipython()  # type: ignore[name-defined]  # noqa: F821 - IPython's builtin
    session = shell.kernel.session
    original: Callable[..., Any] = session.send
    budget: dict[str, Any] = {"parent": None, "used": 0}

    def size_of(data: Any) -> int:
        if not isinstance(data, dict):
            return 0
        return sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in data.values())

    def capped(msg: dict[str, Any]) -> dict[str, Any]:
        parent = (msg.get("parent_header") or {}).get("msg_id")
        if parent != budget["parent"]:
            budget["parent"], budget["used"] = parent, 0
        msg_type = msg["header"]["msg_type"]
        content = dict(msg.get("content") or {})
        if msg_type == "stream":
            text = content.get("text") or ""
            room = limit + 1 - budget["used"]
            if len(text) > room:
                content["text"] = text[:max(room, 0)]
            budget["used"] += len(content["text"])
        elif msg_type in _BUNDLES:
            size = size_of(content.get("data"))
            if budget["used"] + size > limit:
                content["data"] = {}
                content["metadata"] = {DROPPED_KEY: size}
            else:
                budget["used"] += size
        elif msg_type == "error":
            content["evalue"] = str(content.get("evalue", ""))[:limit]
            joined = "\n".join(str(line) for line in content.get("traceback") or [])
            if len(joined) > limit:
                half = max(limit // 2, 1)
                content["traceback"] = [joined[:half], "[traceback cut by the output cap]",
                                        joined[-half:]]
        else:
            return msg
        return {**msg, "content": content}

    def send(stream: Any, msg_or_type: Any, content: Any = None, parent: Any = None,
             ident: Any = None, buffers: Any = None, track: bool = False, header: Any = None,
             metadata: Any = None) -> Any:
        try:
            if not isinstance(msg_or_type, dict) and msg_or_type in (
                    "stream", "error", *_BUNDLES):
                msg_or_type = session.msg(msg_or_type, content=content, parent=parent,
                                          header=header, metadata=metadata)
            if isinstance(msg_or_type, dict):
                msg_or_type = capped(msg_or_type)
        except Exception:  # noqa: BLE001 - never break the kernel's output over the cap
            pass
        return original(stream, msg_or_type, content=content, parent=parent, ident=ident,
                        buffers=buffers, track=track, header=header, metadata=metadata)

    session.send = send


def message_limit(max_output_bytes: int, max_code_bytes: int) -> int:
    """The largest kernel message the server accepts: the backstop, should session code undo
    the patch. A capped output or an echo of the code (``execute_input``) may grow up to six
    times in JSON (``\\u0000`` for each control character), plus room for the envelope."""
    return 6 * (max_output_bytes + max_code_bytes) + 2**20


def kernel_code(limit: int) -> str:
    """Python for IPython's ``exec_lines``: installs the cap in a namespace of its own, so the
    session's namespace gains no names."""
    source = f"{inspect.getsource(install)}\ninstall({int(limit)})\n"
    prelude = ("import json\nfrom typing import Any, Callable\n"
               f"DROPPED_KEY = {DROPPED_KEY!r}\n_BUNDLES = {_BUNDLES!r}\n")
    return f"exec({prelude + source!r}, {{'get_ipython': get_ipython}})"
