"""Session transcripts: what ran in a session, as a Jupyter notebook (nbformat v4).

Every execution of a session becomes one code cell: its source, its outputs in nbformat form, the
session's execution number, and metadata under ``tci_emulator`` (start and end time on the
emulator's clock, real duration, the kernel's status, and the files uploaded with the call: names
and sizes, plus the text of small text files). The reader can open the notebook in Jupyter to see
what an agent or a test ran, or re-run it in a fresh kernel.

Outputs are translated from the TCI output items the call answered, so the notebook shows exactly
what the client saw: ``stdout``/``stderr`` become ``stream`` outputs, ``display_data`` and
``execute_result`` keep their MIME bundles, and an ``error`` item becomes an ``error`` output
whose ``traceback`` is the item's lines and whose ``ename``/``evalue`` are read back from the
``Name: message`` the text ends with (a message whose last line is one bare word reads as a name).

A structured value nested deeper than :data:`MAX_JSON_DEPTH` (a JSON document 490 levels deep)
is kept as its JSON text, and an output the notebook cannot hold at all is replaced by a note
saying so: the call has already run and answered, so recording it must never fail it (a 5xx
would make the SDKs run the code again).

Memory is bounded. One transcript keeps at most :data:`MAX_CELLS` cells and :data:`MAX_BYTES`
bytes of cell JSON: an execution whose outputs would pass the byte cap keeps its source with a
note in place of its outputs, and executions past either cap are counted in a closing markdown
note instead of being kept. Transcripts of ended sessions stay in memory up to
:data:`MAX_ENDED`, oldest dropped first; with a state directory each one is also written there as
``<session id>.ipynb`` when its session ends, so it survives the server.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol, cast

from . import __version__
from .clock import format_timestamp
from .files import UploadedFile
from .ids import ALPHABET, ID_LENGTH, PREFIX
from .kernels import ExecutionResult

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = ["Execution", "Transcript", "TranscriptStore", "nb_outputs", "split_error",
           "is_session_id", "to_ipynb", "MAX_CELLS", "MAX_BYTES", "MAX_ENDED", "SMALL_FILE_BYTES",
           "NOTEBOOK_MIMETYPE"]

MAX_CELLS = 1000  # code cells kept per transcript
MAX_BYTES = 8 * 1024 * 1024  # JSON bytes of cells kept per transcript (one full-size output)
MAX_ENDED = 32  # transcripts of ended sessions kept in memory
SMALL_FILE_BYTES = 4096  # uploaded text files up to this size are kept in the cell metadata
MAX_JSON_DEPTH = 100  # deeper structured values are kept as JSON text (nbformat recurses)
NOTEBOOK_MIMETYPE = "application/x-ipynb+json"


def _nbformat() -> Any:
    """nbformat, imported on first use: it costs about 40 ms, which ``import tci_emulator`` (and
    so every pytest run with the plugin installed) need not pay. It ships without annotations."""
    import nbformat

    return nbformat


_SESSION_ID = re.compile(rf"^{PREFIX}[{ALPHABET}]{{{ID_LENGTH}}}$")
_NAMED_LINE = re.compile(r"^([A-Za-z_][\w.]*): (.*)$")  # "ValueError: message"
_BARE_NAME = re.compile(r"^[A-Za-z_][\w.]*$")  # "KeyboardInterrupt"
_KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def is_session_id(text: str) -> bool:
    """Whether ``text`` has the shape of a session id (so it is safe as a file name)."""
    return bool(_SESSION_ID.match(text))


class SessionInfo(Protocol):
    """What a transcript needs to know of its session (a ``sessions.Session`` has it)."""

    @property
    def id(self) -> str: ...

    @property
    def key_fp(self) -> str: ...

    @property
    def started_at(self) -> datetime: ...


@dataclass(frozen=True)
class Execution:
    """One finished execution of a session, as the registry saw it."""

    number: int  # the session's execute_count after this call (1 for the creating call)
    code: str
    files: tuple[UploadedFile, ...]
    result: ExecutionResult
    started_at: datetime  # emulator clock
    ended_at: datetime  # emulator clock
    duration_s: float  # real seconds (monotonic), whatever the clock did meanwhile


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
            converted.append(_node({"output_type": "stream", "name": kind, "text": data}))
        elif kind == "display_data":
            converted.append(_node({"output_type": "display_data", "data": _bundle(data),
                                    "metadata": {}}))
        elif kind == "execute_result":
            converted.append(_node({"output_type": "execute_result", "data": _bundle(data),
                                    "metadata": {},
                                    "execution_count": execution_count}))
        elif kind == "error":
            ename, evalue, traceback = split_error(str(data))
            converted.append(_node({"output_type": "error", "ename": ename, "evalue": evalue,
                                    "traceback": traceback}))
    return converted


def _node(fields: dict[str, Any]) -> NotebookNode:
    """A notebook node built without nbformat's per-node schema check.

    The ``nbformat.v4.new_*`` helpers validate every cell and output they build, which was about
    a quarter of the server's CPU per execution; the notebook is validated as a whole when it
    is read out (:meth:`Transcript.notebook`).
    """
    return cast("NotebookNode", _nbformat().from_dict(fields))


def to_ipynb(notebook: NotebookNode) -> str:
    """The notebook as ``.ipynb`` text."""
    return str(_nbformat().writes(notebook))


def _file_metadata(upload: UploadedFile) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": upload.name, "size": len(upload.content)}
    if len(upload.content) <= SMALL_FILE_BYTES:
        try:
            entry.update(encoding="string", content=upload.content.decode("utf-8"))
        except UnicodeDecodeError:
            pass  # small but binary: name and size only
    return entry


def _json_size(value: Any) -> int:
    text = json.dumps(value, ensure_ascii=False)
    # ASCII text is its own UTF-8: measured without holding a second, encoded copy.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _unrecorded_note(exc: BaseException) -> NotebookNode:
    return _node({"output_type": "stream", "name": "stderr", "text": (
        f"[tci-emulator: the outputs of this execution cannot be kept in the transcript "
        f"({type(exc).__name__}); the call answered them in full]\n")})


def _cap_note(max_bytes: int) -> NotebookNode:
    return cast("NotebookNode", _nbformat().v4.new_output("stream", name="stderr", text=(
        f"[tci-emulator: the outputs of this execution are left out of the transcript, which "
        f"keeps at most {max_bytes} bytes]\n")))


@dataclass
class Transcript:
    """The cells of one session, bounded by ``max_cells`` and ``max_bytes``."""

    session_id: str
    key_fp: str
    started_at: datetime
    max_cells: int = MAX_CELLS
    max_bytes: int = MAX_BYTES
    ended_at: datetime | None = None
    end_reason: str | None = None
    cells: list[dict[str, Any]] = field(default_factory=list)  # made nodes when read
    size: int = 0
    omitted: int = 0

    def add(self, execution: Execution) -> None:
        """Append one execution as a code cell (or count it, past the caps)."""
        if len(self.cells) >= self.max_cells:
            self.omitted += 1
            return
        result = execution.result
        # A plain dict: the cell becomes a NotebookNode only when the notebook is read, so
        # the execution does not pay for nbformat's node building.
        cell: dict[str, Any] = {
            "cell_type": "code", "id": f"execution-{execution.number}", "metadata": {},
            "execution_count": execution.number, "source": execution.code, "outputs": []}
        try:
            cell["outputs"] = nb_outputs(result.outputs, execution.number)
        except Exception as exc:  # noqa: BLE001 - the fallback form; the call already answered
            cell["outputs"] = [_unrecorded_note(exc)]
        cell["metadata"]["tci_emulator"] = {
            "started_at": format_timestamp(execution.started_at),
            "ended_at": format_timestamp(execution.ended_at),
            "duration_ms": round(execution.duration_s * 1000, 3),
            "status": result.status,
            "state_lost": result.state_lost,
            "output_truncated": result.truncated,
            "files": [_file_metadata(f) for f in execution.files],
        }
        size = _json_size(cell)
        if self.size + size > self.max_bytes:
            cell["outputs"] = [_cap_note(self.max_bytes)]
            size = _json_size(cell)
            if self.size + size > self.max_bytes:
                self.omitted += 1
                return
        self.cells.append(cell)
        self.size += size

    def notebook(self) -> NotebookNode:
        """The transcript as a validated nbformat v4 notebook."""
        ended = (f", ended {format_timestamp(self.ended_at)} ({self.end_reason})"
                 if self.ended_at is not None else " (live)")
        header = _nbformat().v4.new_markdown_cell(
            f"# TCI session `{self.session_id}`\n\n"
            f"Key fingerprint `{self.key_fp}`, started {format_timestamp(self.started_at)}"
            f"{ended}. Recorded by tci-emulator {__version__}: one code cell per execution.",
            id="tci-session")
        cells = [header, *map(_node, self.cells)]
        if self.omitted:
            cells.append(_nbformat().v4.new_markdown_cell(
                f"**tci-emulator:** {self.omitted} later execution(s) are not shown: a transcript "
                f"keeps at most {self.max_cells} cells and {self.max_bytes} bytes.",
                id="tci-omitted"))
        notebook = _nbformat().v4.new_notebook(cells=cells, metadata={
            "kernelspec": dict(_KERNELSPEC),
            "language_info": {"name": "python"},
            "tci_emulator": {
                "session_id": self.session_id,
                "key_fingerprint": self.key_fp,
                "started_at": format_timestamp(self.started_at),
                "ended_at": format_timestamp(self.ended_at) if self.ended_at else None,
                "end_reason": self.end_reason,
                "executions_recorded": len(self.cells),
                "executions_omitted": self.omitted,
                "version": __version__,
            },
        })
        _nbformat().validate(notebook)
        return cast("NotebookNode", notebook)


def _write_atomically(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class TranscriptStore:
    """The transcripts of one emulator: live sessions', and recently ended ones'.

    The session registry calls :meth:`open` when a session starts, :meth:`record` after each
    execution and :meth:`close` when the session ends. With a ``directory`` every ended session's
    notebook is written there, and :meth:`notebook` falls back to it for sessions no longer held
    in memory (including those of an earlier server run). Thread-safe.
    """

    def __init__(self, directory: Path | None = None, *, max_cells: int = MAX_CELLS,
                 max_bytes: int = MAX_BYTES, max_ended: int = MAX_ENDED,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.directory = directory
        self.max_cells = max_cells
        self.max_bytes = max_bytes
        self.max_ended = max_ended
        self._on_error = on_error
        self._lock = threading.Lock()
        self._live: dict[str, Transcript] = {}
        self._ended: OrderedDict[str, Transcript] = OrderedDict()

    def open(self, session: SessionInfo) -> None:
        """Start the transcript of a new session."""
        with self._lock:
            self._live[session.id] = Transcript(session.id, session.key_fp, session.started_at,
                                                max_cells=self.max_cells, max_bytes=self.max_bytes)

    def record(self, session: SessionInfo, execution: Execution) -> None:
        """Add one execution to its session's transcript.

        An execution that finishes after its session ended (a reset during a run) still joins the
        ended transcript, which is written again; one of a session never opened here is ignored.
        """
        with self._lock:
            transcript = self._live.get(session.id) or self._ended.get(session.id)
            if transcript is None:
                return
            try:
                transcript.add(execution)
            except Exception as exc:  # noqa: BLE001 - never a 5xx for a call whose code ran
                if self._on_error is None:
                    raise
                self._on_error(exc)
                return
            late = transcript.ended_at is not None
        if late:
            self._save(transcript)

    def close(self, session: SessionInfo, reason: str, at: datetime) -> None:
        """Mark a session's transcript ended, keep it among the ended, write it to the directory.

        A session that never ran anything (it failed while starting) leaves no transcript.
        """
        with self._lock:
            transcript = self._live.pop(session.id, None)
            if transcript is None or not transcript.cells:
                return
            transcript.ended_at, transcript.end_reason = at, reason
            self._ended[session.id] = transcript
            while len(self._ended) > self.max_ended:
                self._ended.popitem(last=False)
        self._save(transcript)

    def _save(self, transcript: Transcript) -> None:
        if self.directory is None:
            return
        try:
            text = self._serialise(transcript)
            _write_atomically(self.directory / f"{transcript.session_id}.ipynb", text)
        except Exception as exc:  # noqa: BLE001 - the session ends even if this write fails
            if self._on_error is None:
                raise
            self._on_error(exc)

    def _serialise(self, transcript: Transcript) -> str:
        with self._lock:
            notebook = transcript.notebook()
        return to_ipynb(notebook)

    def notebook(self, session_id: str) -> NotebookNode | None:
        """The notebook of a session, from memory or the directory; ``None`` if unknown."""
        with self._lock:
            transcript = self._live.get(session_id) or self._ended.get(session_id)
            if transcript is not None:
                return transcript.notebook()
        path = self.path_of(session_id)
        if path is None or not path.is_file():
            return None
        return cast("NotebookNode", _nbformat().read(str(path), as_version=4))

    def has_notebook(self, session_id: str) -> bool:
        """Whether :meth:`notebook` would find this session's transcript."""
        with self._lock:
            if session_id in self._live or session_id in self._ended:
                return True
        path = self.path_of(session_id)
        return path is not None and path.is_file()

    def path_of(self, session_id: str) -> Path | None:
        """Where the directory keeps this session's notebook (``None`` without a directory, or
        for text that is not a session id)."""
        if self.directory is None or not is_session_id(session_id):
            return None
        return self.directory / f"{session_id}.ipynb"

    def session_ids(self) -> list[str]:
        """Sessions held in memory (live and recently ended), oldest first."""
        with self._lock:
            return sorted([*self._live, *self._ended])

    def save_all(self, directory: Path) -> list[Path]:
        """Write every transcript held in memory to ``directory`` as ``<id>.ipynb``."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for session_id in self.session_ids():
            notebook = self.notebook(session_id)
            if notebook is None:
                continue
            path = directory / f"{session_id}.ipynb"
            _write_atomically(path, to_ipynb(notebook))
            paths.append(path)
        return paths

    def clear(self) -> None:
        """Forget every transcript held in memory (reset); files already written stay."""
        with self._lock:
            self._live.clear()
            self._ended.clear()
