"""A "run Python" tool for an LLM agent, backed by the Together Code Interpreter (TCI).

The agent hands the tool some code (and, to continue where it left off, the session id the tool
gave it last time); the tool runs it through the official ``together`` SDK and answers with a
:class:`ToolResult` whose :meth:`~ToolResult.summary` is the text the model reads: what was
printed, the value of the last expression, how many images were drawn, the error if any, and the
session id to pass back.

Failures that are not the code's fault are reported, not raised, because an agent loop should
be able to read them and decide: a session that expired or vanished is replaced by a fresh one
(and the agent is told that earlier variables are gone); a rate limit that outlasts the SDK's own
retries, a spent budget or an unreachable service become the result's ``error``.

The client is built from the environment (``TOGETHER_API_KEY``, ``TOGETHER_BASE_URL``) on every
call, as production code would; in tests the ``tci_emulator`` fixture points both at a local
emulator, so this module has no test hooks at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import together

__all__ = ["ToolResult", "run_python", "arun_python"]

_IMAGE_FIELDS = ("image_png", "image_jpeg", "image_gif", "image_svg_xml")
_GONE = (404, 410)  # the session is unknown, or expired


@dataclass(frozen=True)
class ToolResult:
    """What one call of the tool produced, and the session to continue in."""

    session_id: str | None
    stdout: str = ""
    stderr: str = ""
    result: str | None = None  # text/plain of the last expression's value
    error: str | None = None  # the code's exception (last line), or why nothing ran
    images: int = 0
    notes: tuple[str, ...] = ()  # things the agent should know (e.g. "state was lost")

    @property
    def ok(self) -> bool:
        """Whether the code ran to the end."""
        return self.error is None

    def summary(self) -> str:
        """The text handed back to the model."""
        parts = [f"note: {note}" for note in self.notes]
        if self.stdout:
            parts.append("stdout:\n" + self.stdout.rstrip("\n"))
        if self.stderr:
            parts.append("stderr:\n" + self.stderr.rstrip("\n"))
        if self.result is not None:
            parts.append(f"result: {self.result}")
        if self.images:
            parts.append(f"images: {self.images}")
        parts.append(f"error: {self.error}" if self.error else "status: ok")
        parts.append(f"session_id: {self.session_id}")
        return "\n".join(parts)


def run_python(code: str, session_id: str | None = None) -> ToolResult:
    """Run ``code`` on TCI (in ``session_id`` if given) and summarise what happened."""
    notes: list[str] = []
    # Closed on the way out: the client keeps its HTTP connection open between calls.
    with together.Together() as client:
        try:
            try:
                response = client.code_interpreter.execute(code=code, language="python",
                                                           **_session(session_id))
            except together.APIStatusError as exc:
                if session_id is None or exc.status_code not in _GONE:
                    raise
                notes.append(_replaced(session_id, exc))
                response = client.code_interpreter.execute(code=code, language="python")
        except together.APIError as exc:
            return _refused(exc, session_id, notes)
    return _summarise(response, notes)


async def arun_python(code: str, session_id: str | None = None) -> ToolResult:
    """:func:`run_python` for agents built on asyncio (``together.AsyncTogether``)."""
    client = together.AsyncTogether()
    notes: list[str] = []
    try:
        try:
            response = await client.code_interpreter.execute(code=code, language="python",
                                                             **_session(session_id))
        except together.APIStatusError as exc:
            if session_id is None or exc.status_code not in _GONE:
                raise
            notes.append(_replaced(session_id, exc))
            response = await client.code_interpreter.execute(code=code, language="python")
    except together.APIError as exc:
        return _refused(exc, session_id, notes)
    finally:
        await client.close()
    return _summarise(response, notes)


def _session(session_id: str | None) -> dict[str, str]:
    return {} if session_id is None else {"session_id": session_id}


def _replaced(session_id: str, exc: together.APIStatusError) -> str:
    reason = "expired" if exc.status_code == 410 else "no longer exists"
    return (f"session {session_id} {reason}; the code ran in a new session, so variables and "
            "files from earlier calls are gone")


def _message(exc: together.APIError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    return str(error.get("message") or exc.message)


def _refused(exc: together.APIError, session_id: str | None, notes: list[str]) -> ToolResult:
    if isinstance(exc, together.RateLimitError):
        error = "rate limited by the code interpreter; wait a little and call the tool again"
    elif isinstance(exc, together.APIStatusError):
        error = f"the code interpreter refused the call (HTTP {exc.status_code}): {_message(exc)}"
    else:
        error = f"the code interpreter could not be reached: {exc}"
    return ToolResult(session_id=session_id, error=error, notes=tuple(notes))


def _summarise(response: Any, notes: list[str]) -> ToolResult:
    if response.errors:  # a FailedExecution envelope: nothing ran
        return ToolResult(session_id=None, error=f"execution failed: {response.errors}",
                          notes=tuple(notes))
    streams = {"stdout": "", "stderr": ""}
    result = error = None
    images = 0
    for output in response.data.outputs:
        if output.type in streams:
            streams[output.type] += output.data
        elif output.type == "error":
            error = output.data.strip().splitlines()[-1]
        else:  # display_data / execute_result: a MIME bundle
            images += sum(getattr(output.data, name) is not None for name in _IMAGE_FIELDS)
            if output.type == "execute_result":
                result = output.data.text_plain
    return ToolResult(session_id=response.data.session_id, stdout=streams["stdout"],
                      stderr=streams["stderr"], result=result, error=error, images=images,
                      notes=tuple(notes))
