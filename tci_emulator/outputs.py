"""Pure translation of Jupyter iopub messages into TCI output items.

No kernel is needed to use or test this module: it takes message dicts as jupyter_client returns
them and builds the ``outputs`` list of ``docs/contract.md`` section 4.

- ``stream`` messages become ``stdout``/``stderr`` items; consecutive chunks of one stream are
  merged into one item (the recorded service returned several ``print`` calls as one item).
- ``display_data``/``update_display_data`` and ``execute_result`` keep their MIME bundle.
- ``error`` becomes one ``error`` item: the traceback as plain text (ANSI codes removed) ending
  with ``Name: message``; a ``ModuleNotFoundError`` for one of TCI's pre-installed packages gets
  one more line naming the extra that installs it (as a Python exception note would).
- ``clear_output`` drops what came before it (at once, or at the next output with ``wait``).

:class:`OutputCollector` also enforces the per-execution output cap, so a flood of output never
grows the server's memory beyond the cap: text past it is dropped and a visible marker says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .output_cap import DROPPED_KEY
from .packages import missing_hint

__all__ = ["OutputCollector", "strip_ansi", "error_text", "TRUNCATION_MARKER"]

Output = dict[str, Any]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
TRUNCATION_MARKER = "\n[tci-emulator: output truncated after {limit} bytes]\n"


def strip_ansi(text: str) -> str:
    """Remove ANSI colour and cursor sequences."""
    return _ANSI.sub("", text)


def error_text(ename: str, evalue: str, traceback: list[str] | None) -> str:
    """The traceback as plain text, guaranteed to end with the line ``Name: message``."""
    text = strip_ansi("\n".join(traceback or [])).rstrip("\n")
    last = f"{ename}: {evalue}" if evalue else ename
    if not text.endswith(last):
        text = f"{text}\n{last}" if text else last
    return text


def _bundle_size(bundle: Mapping[str, Any]) -> int:
    return sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in bundle.values())


class OutputCollector:
    """Accumulates the outputs of one execution, merging streams and capping total size."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.outputs: list[Output] = []
        self._max = max_bytes
        self._size = 0
        self._truncated = False
        self._clear_pending = False

    @property
    def truncated(self) -> bool:
        """Whether output was dropped because of the cap."""
        return self._truncated

    def add_message(self, msg: Mapping[str, Any]) -> None:
        """Fold one iopub message into the outputs; other message types are ignored."""
        msg_type = msg.get("header", {}).get("msg_type") or msg.get("msg_type")
        content = msg.get("content", {})
        if msg_type == "stream":
            self.add_stream(content.get("name", "stdout"), content.get("text", ""))
        elif msg_type in ("display_data", "update_display_data", "execute_result"):
            kind = "execute_result" if msg_type == "execute_result" else "display_data"
            if (content.get("metadata") or {}).get(DROPPED_KEY) is not None:
                self._apply_pending_clear()
                self._mark_truncated()  # the kernel dropped it under the same cap
            else:
                self.add_bundle(kind, content.get("data", {}))
        elif msg_type == "error":
            ename, evalue = content.get("ename", "Error"), content.get("evalue", "")
            text = error_text(ename, evalue, content.get("traceback"))
            hint = missing_hint(ename, evalue)
            self.add_error(f"{text}\n{hint}" if hint else text)
        elif msg_type == "clear_output":
            if content.get("wait"):
                self._clear_pending = True
            else:
                self._clear()

    def add_stream(self, name: str, text: str) -> None:
        """Append stream text, merged into the previous item when it is the same stream."""
        if not text:
            return
        self._apply_pending_clear()
        kind = "stderr" if name == "stderr" else "stdout"
        admitted = self._admit_text(text)
        if admitted:
            if self.outputs and self.outputs[-1]["type"] == kind:
                self.outputs[-1]["data"] += admitted
            else:
                self.outputs.append({"type": kind, "data": admitted})
        if len(admitted) < len(text):
            self._mark_truncated()

    def add_bundle(self, kind: str, bundle: Mapping[str, Any]) -> None:
        """Append a display_data/execute_result item, unless it would pass the cap."""
        self._apply_pending_clear()
        size = _bundle_size(bundle)
        if self._max is not None and self._size + size > self._max:
            self._mark_truncated()
            return
        self._size += size
        self.outputs.append({"type": kind, "data": dict(bundle)})

    def add_error(self, text: str) -> None:
        """Append an ``error`` item; errors are always kept, even past the cap, but one error's
        text is itself held to the cap (its head and tail, so the ``Name: message`` line's end
        survives)."""
        self._apply_pending_clear()
        if self._max is not None and len(text) > self._max:
            half = max(self._max // 2, 1)
            text = text[:half] + TRUNCATION_MARKER.format(limit=self._max) + text[-half:]
        self.outputs.append({"type": "error", "data": text})

    def _admit_text(self, text: str) -> str:
        """The part of ``text`` whose UTF-8 fits under the cap (all of it without a cap).

        Only a prefix of at most ``room`` characters is ever encoded, so a 100 MB chunk costs
        no more than the cap to measure; a character cut in half at the cap is dropped whole.
        """
        if self._max is None:
            return text
        room = max(self._max - self._size, 0)
        admitted = text[:room]
        if admitted.isascii():  # one byte per character: no need to hold an encoded copy
            self._size += len(admitted)
            return admitted
        encoded = admitted.encode("utf-8", "surrogatepass")
        if len(encoded) > room:
            admitted = encoded[:room].decode("utf-8", "ignore")
            encoded = admitted.encode("utf-8")
        self._size += len(encoded)
        return admitted

    def _mark_truncated(self) -> None:
        if self._truncated:
            return
        self._truncated = True
        marker = TRUNCATION_MARKER.format(limit=self._max)
        if self.outputs and self.outputs[-1]["type"] in ("stdout", "stderr"):
            self.outputs[-1]["data"] += marker
        else:
            self.outputs.append({"type": "stderr", "data": marker})

    def _apply_pending_clear(self) -> None:
        if self._clear_pending:
            self._clear_pending = False
            self._clear()

    def _clear(self) -> None:
        self.outputs = [o for o in self.outputs if o["type"] == "error"]
        self._size = 0
