"""TCI output items as Jupyter notebook (nbformat v4) outputs, and the notes a transcript puts in
their place when it cannot keep them.

Outputs are translated from the TCI output items the call answered, so the notebook shows exactly
what the client saw: ``stdout``/``stderr`` become ``stream`` outputs, ``display_data`` and
``execute_result`` keep their MIME bundles, and an ``error`` item becomes an ``error`` output
whose ``traceback`` is the item's lines and whose ``ename``/``evalue`` are read back from the
``Name: message`` the text ends with (a message whose last line is one bare word reads as a name).

A structured value nested deeper than :data:`MAX_JSON_DEPTH` (a JSON document 490 levels deep)
is kept as its JSON text, and an output the notebook cannot hold at all is replaced by a note
saying so: the call has already run and answered, so recording it must never fail it (a 5xx
would make the SDKs run the code again). Pure functions: testable without a kernel or a server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = ["nb_outputs", "split_error", "node", "to_ipynb", "json_size", "unrecorded_note",
           "cap_note", "nbformat_module", "MAX_JSON_DEPTH", "NOTEBOOK_MIMETYPE"]

MAX_JSON_DEPTH = 100  # deeper structured values are kept as JSON text (nbformat recurses)
NOTEBOOK_MIMETYPE = "application/x-ipynb+json"


def nbformat_module() -> Any:
    """nbformat, imported on first use: it costs about 40 ms, which ``import tci_emulator`` (and
    so every pytest run with the plugin installed) need not pay. It ships without annotations."""
    import nbformat

    return nbformat


_NAMED_LINE = re.compile(r"^([A-Za-z_][\w.]*): (.*)$")  # "ValueError: message"
_BARE_NAME = re.compile(r"^[A-Za-z_][\w.]*$")  # "KeyboardInterrupt"


def split_error(text: str) -> tuple[str, str, list[str]]:
    """``ename``, ``evalue`` and ``traceback`` lines of a TCI ``error`` item's text.

    The item ends with ``Name: message`` (or a bare ``Name``), where the message may span several
    lines: the last line of that form names the error, the rest of the text is its value. A text
    without one is named ``Error``, with its last line as the value.
    """
    lines = text.split("\n")
    if _BARE_NAME.match(lines[-1]):
        return lines[-1], "", lines
    for index in range(len(lines) - 1, -1, -1):
        match = _NAMED_LINE.match(lines[index])
        if match is not None:
            return match.group(1), "\n".join([match.group(2), *lines[index + 1:]]), lines
    return "Error", lines[-1], lines


def _bundle(data: Any) -> dict[str, Any]:
    """A MIME bundle nbformat accepts: only JSON types (``application/json``, ``...+json``)
    may hold structured values; anything else a kernel sent as an object becomes JSON text."""
    if not isinstance(data, dict):
        return {"text/plain": str(data)}
    bundle: dict[str, Any] = {}
    for mime, value in data.items():
        structured = mime == "application/json" or mime.endswith("+json")
        textual = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value))
        keep = (structured and not _deeper_than(value, MAX_JSON_DEPTH)) or textual
        bundle[mime] = value if keep else _json_text(value)
    return bundle


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (item.values() if isinstance(item, dict)
                    else item if isinstance(item, list) else None)
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value)
    except (RecursionError, TypeError, ValueError) as exc:
        return f"[tci-emulator: this value cannot be kept in the transcript ({type(exc).__name__})]"


def nb_outputs(outputs: Iterable[dict[str, Any]],
               execution_count: int | None) -> list[NotebookNode]:
    """TCI output items as nbformat v4 outputs."""
    converted = []
    for item in outputs:
        kind, data = item.get("type"), item.get("data")
        if kind in ("stdout", "stderr"):
            converted.append(node({"output_type": "stream", "name": kind, "text": data}))
        elif kind == "display_data":
            converted.append(node({"output_type": "display_data", "data": _bundle(data),
                                    "metadata": {}}))
        elif kind == "execute_result":
            converted.append(node({"output_type": "execute_result", "data": _bundle(data),
                                    "metadata": {},
                                    "execution_count": execution_count}))
        elif kind == "error":
            ename, evalue, traceback = split_error(str(data))
            converted.append(node({"output_type": "error", "ename": ename, "evalue": evalue,
                                    "traceback": traceback}))
    return converted


def node(fields: dict[str, Any]) -> NotebookNode:
    """A notebook node built without nbformat's per-node schema check.

    The ``nbformat.v4.new_*`` helpers validate every cell and output they build, which was about
    a quarter of the server's CPU per execution; the notebook is validated as a whole when it
    is read out (:meth:`tci_emulator.transcripts.Transcript.notebook`).
    """
    return cast("NotebookNode", nbformat_module().from_dict(fields))


def to_ipynb(notebook: NotebookNode) -> str:
    """The notebook as ``.ipynb`` text."""
    return str(nbformat_module().writes(notebook))


def json_size(value: Any) -> int:
    text = json.dumps(value, ensure_ascii=False)
    # ASCII text is its own UTF-8: measured without holding a second, encoded copy.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def unrecorded_note(exc: BaseException) -> NotebookNode:
    return node({"output_type": "stream", "name": "stderr", "text": (
        f"[tci-emulator: the outputs of this execution cannot be kept in the transcript "
        f"({type(exc).__name__}); the call answered them in full]\n")})


def cap_note(max_bytes: int) -> NotebookNode:
    return cast("NotebookNode", nbformat_module().v4.new_output("stream", name="stderr", text=(
        f"[tci-emulator: the outputs of this execution are left out of the transcript, which "
        f"keeps at most {max_bytes} bytes]\n")))
