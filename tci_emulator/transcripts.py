"""Session transcripts: what ran in a session, as a Jupyter notebook (nbformat v4).

Every execution of a session becomes one code cell: its source, its outputs in nbformat form, the
session's execution number, and metadata under ``tci_emulator`` (start and end time on the
emulator's clock, real duration, the kernel's status, and the files uploaded with the call: names
and sizes, plus the text of small text files). The reader can open the notebook in Jupyter to see
what an agent or a test ran, or re-run it in a fresh kernel.

Each execution's outputs are translated as :mod:`tci_emulator.notebooks` says (exactly what the
client saw; a value the notebook cannot hold is replaced by a note, never a failed call).

Memory is bounded. One transcript keeps at most :data:`MAX_CELLS` cells and :data:`MAX_BYTES`
bytes of cell JSON: an execution whose outputs would pass the byte cap keeps its source with a
note in place of its outputs, and executions past either cap are counted in a closing markdown
note instead of being kept. Transcripts of ended sessions stay in memory up to
:data:`MAX_ENDED`, oldest dropped first; with a state directory each one is also written there as
``<session id>.ipynb`` when its session ends, so it survives the server.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from . import __version__
from .clock import format_timestamp
from .files import UploadedFile
from .ids import ALPHABET, ID_LENGTH, PREFIX
from .kernels import ExecutionResult
from .notebooks import (
    cap_note,
    json_size,
    nb_outputs,
    nbformat_module,
    node,
    to_ipynb,
    unrecorded_note,
)

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = ["Execution", "Transcript", "TranscriptStore", "is_session_id", "MAX_CELLS",
           "MAX_BYTES", "MAX_ENDED", "SMALL_FILE_BYTES"]

MAX_CELLS = 1000  # code cells kept per transcript
MAX_BYTES = 8 * 1024 * 1024  # JSON bytes of cells kept per transcript (one full-size output)
MAX_ENDED = 32  # transcripts of ended sessions kept in memory
SMALL_FILE_BYTES = 4096  # uploaded text files up to this size are kept in the cell metadata

_SESSION_ID = re.compile(rf"^{PREFIX}[{ALPHABET}]{{{ID_LENGTH}}}$")
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


def _file_metadata(upload: UploadedFile) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": upload.name, "size": len(upload.content)}
    if len(upload.content) <= SMALL_FILE_BYTES:
        try:
            entry.update(encoding="string", content=upload.content.decode("utf-8"))
        except UnicodeDecodeError:
            pass  # small but binary: name and size only
    return entry


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
            cell["outputs"] = [unrecorded_note(exc)]
        cell["metadata"]["tci_emulator"] = {
            "started_at": format_timestamp(execution.started_at),
            "ended_at": format_timestamp(execution.ended_at),
            "duration_ms": round(execution.duration_s * 1000, 3),
            "status": result.status,
            "state_lost": result.state_lost,
            "output_truncated": result.truncated,
            "files": [_file_metadata(f) for f in execution.files],
        }
        size = json_size(cell)
        if self.size + size > self.max_bytes:
            cell["outputs"] = [cap_note(self.max_bytes)]
            size = json_size(cell)
            if self.size + size > self.max_bytes:
                self.omitted += 1
                return
        self.cells.append(cell)
        self.size += size

    def notebook(self) -> NotebookNode:
        """The transcript as a validated nbformat v4 notebook."""
        ended = (f", ended {format_timestamp(self.ended_at)} ({self.end_reason})"
                 if self.ended_at is not None else " (live)")
        header = nbformat_module().v4.new_markdown_cell(
            f"# TCI session `{self.session_id}`\n\n"
            f"Key fingerprint `{self.key_fp}`, started {format_timestamp(self.started_at)}"
            f"{ended}. Recorded by tci-emulator {__version__}: one code cell per execution.",
            id="tci-session")
        cells = [header, *map(node, self.cells)]
        if self.omitted:
            cells.append(nbformat_module().v4.new_markdown_cell(
                f"**tci-emulator:** {self.omitted} later execution(s) are not shown: a transcript "
                f"keeps at most {self.max_cells} cells and {self.max_bytes} bytes.",
                id="tci-omitted"))
        notebook = nbformat_module().v4.new_notebook(cells=cells, metadata={
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
        nbformat_module().validate(notebook)
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
        return cast("NotebookNode", nbformat_module().read(str(path), as_version=4))

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
