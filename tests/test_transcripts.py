"""Session transcripts as Jupyter notebooks: content, validity, re-execution, listing of ended
sessions, the state directory across restarts, the CLI, and the pytest plugin's failure reports."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests
from nbclient import NotebookClient

from contract_tests.process import ServeProcess
from tci_emulator import Emulator
from tci_emulator.clock import parse_timestamp
from tci_emulator.files import UploadedFile
from tci_emulator.kernels import ExecutionResult
from tci_emulator.transcripts import Execution, Transcript

from .helpers import Http, wait_until
from .processes import process_gone

# A 1x1 PNG of 68 bytes; its bytes are not valid UTF-8, so only its name and size are kept.
TINY_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8"
            "AAAAASUVORK5CYII=")
DATA_TXT = "Sanguine is the colour of night.\n"

CELLS = [
    'print("reading data.txt")\nprint(open("data.txt").read(), end="")\nimport os\n'
    'print("tiny.png", os.path.getsize("tiny.png"))',
    'import matplotlib.pyplot as plt\nprint("plotting")\nplt.plot([1, 2, 3], [1, 4, 9])\n'
    'plt.show()',
    'import sys\nprint("to stderr", file=sys.stderr)\nx = 6 * 7\nx',
    'print("before the error")\n1 / 0',
]


def _stream_text(cell: Any) -> dict[str, str]:
    """All stream text of a code cell, per stream name."""
    text: dict[str, str] = {}
    for output in cell.outputs:
        if output.output_type == "stream":
            text[output.name] = text.get(output.name, "") + output.text
    return text


def _code_cells(notebook: Any) -> list[Any]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _run_cells(http: Http) -> str:
    files = [{"name": "data.txt", "encoding": "string", "content": DATA_TXT},
             {"name": "tiny.png", "encoding": "base64", "content": TINY_PNG}]
    session_id = http.run(CELLS[0], files=files)["session_id"]
    for code in CELLS[1:]:
        http.run(code, session_id)
    return str(session_id)


def _fetch_notebook(url: str, session_id: str, **kw: Any) -> Any:
    response = requests.get(f"{url}/_emulator/sessions/{session_id}/notebook", timeout=60, **kw)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/x-ipynb+json"
    notebook = nbformat.reads(response.text, as_version=4)
    nbformat.validate(notebook)
    return notebook


def _reexecute(notebook: Any, workdir: Path) -> Any:
    """Run ``notebook`` in a fresh kernel with ``workdir`` as its cwd; the kernel is stopped
    after."""
    pids: list[int] = []
    client: Any = None

    def remember_kernel(**_: Any) -> None:
        pids.append(client.km.provisioner.process.pid)

    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", allow_errors=True,
        resources={"metadata": {"path": str(workdir)}}, on_notebook_start=remember_kernel)
    try:
        executed = client.execute()
    finally:
        for pid in pids:  # nbclient shuts its kernel down; make sure, and never leave it running
            if not process_gone(pid):
                try:
                    wait_until(lambda: process_gone(pid), timeout=15)  # noqa: B023 - here
                except AssertionError:
                    subprocess.run(["kill", "-9", str(pid)], check=False)
                    raise
    assert len(pids) == 1
    return executed


# -- the notebook of a session ------------------------------------------------------------------


def test_notebook_records_sources_outputs_counts_and_file_metadata(http: Http) -> None:
    session_id = _run_cells(http)
    notebook = _fetch_notebook(http.emulator.url, session_id)
    cells = _code_cells(notebook)
    assert [cell.source for cell in cells] == CELLS
    assert [cell.execution_count for cell in cells] == [1, 2, 3, 4]
    reading, plotting, result, failing = cells
    assert _stream_text(reading) == {"stdout": f"reading data.txt\n{DATA_TXT}tiny.png 68\n"}
    assert [o.output_type for o in plotting.outputs] == ["stream", "display_data"]
    assert set(plotting.outputs[1].data) == {"image/png", "text/plain"}
    base64.b64decode(plotting.outputs[1].data["image/png"], validate=True)
    assert _stream_text(result) == {"stderr": "to stderr\n"}
    [execute_result] = [o for o in result.outputs if o.output_type == "execute_result"]
    assert execute_result.data == {"text/plain": "42"} and execute_result.execution_count == 3
    assert _stream_text(failing) == {"stdout": "before the error\n"}
    [error] = [o for o in failing.outputs if o.output_type == "error"]
    assert (error.ename, error.evalue) == ("ZeroDivisionError", "division by zero")
    assert error.traceback[-1] == "ZeroDivisionError: division by zero"
    assert any("1 / 0" in line for line in error.traceback)

    meta = reading.metadata["tci_emulator"]
    assert meta["files"] == [
        {"name": "data.txt", "size": len(DATA_TXT), "encoding": "string", "content": DATA_TXT},
        {"name": "tiny.png", "size": 68},  # binary: name and size only
    ]
    assert [c.metadata["tci_emulator"]["status"] for c in cells] == ["ok", "ok", "ok", "error"]
    assert all(c.metadata["tci_emulator"]["files"] == [] for c in cells[1:])
    for cell in cells:
        timing = cell.metadata["tci_emulator"]
        started, ended = parse_timestamp(timing["started_at"]), parse_timestamp(timing["ended_at"])
        assert started <= ended and timing["duration_ms"] > 0
    top = notebook.metadata["tci_emulator"]
    assert (top["session_id"], top["key_fingerprint"], top["end_reason"]) == \
        (session_id, http.emulator.sessions()[0]["key_fingerprint"], None)
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_notebook_reexecuted_in_a_fresh_kernel_gives_the_same_stream_text(
        http: Http, tmp_path: Path) -> None:
    session_id = _run_cells(http)
    notebook = _fetch_notebook(http.emulator.url, session_id)
    # The files the session had: text ones from the transcript itself, the binary one by hand.
    for upload in _code_cells(notebook)[0].metadata["tci_emulator"]["files"]:
        if "content" in upload:
            (tmp_path / upload["name"]).write_text(upload["content"])
    (tmp_path / "tiny.png").write_bytes(base64.b64decode(TINY_PNG))

    executed = _reexecute(nbformat.from_dict(notebook), tmp_path)
    recorded, replayed = _code_cells(notebook), _code_cells(executed)
    assert [_stream_text(c) for c in replayed] == [_stream_text(c) for c in recorded]
    assert "image/png" in [o for o in replayed[1].outputs
                           if o.output_type == "display_data"][0].data
    assert [o.ename for o in replayed[3].outputs if o.output_type == "error"] == \
        ["ZeroDivisionError"]


def test_unknown_session_notebook_is_a_404_contract_error(http: Http) -> None:
    response = http.get("/_emulator/sessions/ses_CVtmHZWnVBdtZnwbZNosk/notebook")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"
    assert http.get("/_emulator/sessions/..%2F..%2Fetc/notebook").status_code == 404


# -- ended sessions -----------------------------------------------------------------------------


def _listed(url: str) -> dict[str, dict[str, Any]]:
    response = requests.get(url + "/_emulator/sessions", timeout=60)
    assert response.status_code == 200, response.text
    return {row["id"]: row for row in response.json()["sessions"]}


def test_expired_session_stays_listed_with_its_reason_and_notebook(http: Http) -> None:
    session_id = http.run("print('old')")["session_id"]
    http.emulator.clock.advance(http.emulator.config.session_lifespan)
    row = _listed(http.emulator.url)[session_id]
    assert (row["live"], row["end_reason"], row["executions"], row["cost_usd"]) == \
        (False, "expired", 1, 0.03)
    assert row["ended_at"] is not None and row["expires_at"] is None and row["notebook"]
    notebook = _fetch_notebook(http.emulator.url, session_id)
    assert notebook.metadata["tci_emulator"]["end_reason"] == "expired"
    assert _stream_text(_code_cells(notebook)[0]) == {"stdout": "old\n"}


def test_ended_sessions_keep_their_reason_and_transcript_in_the_state_dir(tmp_path: Path) -> None:
    with Emulator(state_dir=tmp_path, pool_size=1) as emulator:
        http = Http(emulator)
        expired = http.run("print('expired')")["session_id"]
        emulator.clock.advance(emulator.config.session_lifespan)
        reset = http.run("print('reset')")["session_id"]
        assert http.post("/_emulator/reset").status_code == 200
        live = http.run("print('live')")["session_id"]
        rows = _listed(emulator.url)
        assert [(rows[s]["end_reason"], rows[s]["live"]) for s in (expired, reset, live)] == \
            [("expired", False), ("reset", False), (None, True)]
        assert rows[live]["expires_at"] is not None
        for session_id, text in ((expired, "expired"), (reset, "reset")):
            written = nbformat.read(str(tmp_path / f"{session_id}.ipynb"), as_version=4)
            nbformat.validate(written)
            assert _stream_text(_code_cells(written)[0]) == {"stdout": f"{text}\n"}
            assert written.metadata["tci_emulator"]["end_reason"] == text
        assert not (tmp_path / f"{live}.ipynb").exists()  # written when it ends
    assert (tmp_path / f"{live}.ipynb").exists()  # the server stopped: it ended


def _serve(state_dir: Path, *extra: str) -> ServeProcess:
    return ServeProcess(["--pool-size", "1", "--state-dir", str(state_dir), "--no-access-log",
                         *extra]).start()


def test_transcripts_survive_a_server_restart_with_state_dir(tmp_path: Path) -> None:
    headers = {"Authorization": "Bearer persistent"}
    server = _serve(tmp_path)
    try:
        reply = requests.post(server.url + "/v1/tci/execute", headers=headers, timeout=60,
                              json={"code": "print('kept')", "language": "python"})
        session_id = reply.json()["data"]["session_id"]
    finally:
        assert server.stop() == 0
    server = _serve(tmp_path)
    try:
        row = _listed(server.url)[session_id]
        assert (row["end_reason"], row["live"], row["notebook"]) == ("server_stopped", False, True)
        notebook = _fetch_notebook(server.url, session_id)
        assert [c.source for c in _code_cells(notebook)] == ["print('kept')"]
        assert _stream_text(_code_cells(notebook)[0]) == {"stdout": "kept\n"}
        assert notebook.metadata["tci_emulator"]["end_reason"] == "server_stopped"
    finally:
        assert server.stop() == 0


# -- the command line ---------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tci_emulator", "transcript", *args],
                          capture_output=True, timeout=60, check=False)


def test_cli_transcript_fetches_the_notebook_from_a_running_server(tmp_path: Path) -> None:
    server = ServeProcess(["--pool-size", "1", "--no-access-log", "--admin-token", "s3cret"])
    with server:
        reply = requests.post(server.base_url + "/tci/execute", timeout=60,
                              headers={"Authorization": "Bearer k"},
                              json={"code": "print(6 * 7)", "language": "python"})
        session_id = reply.json()["data"]["session_id"]

        fetched = _cli(session_id, "--url", server.base_url, "--admin-token", "s3cret")
        assert fetched.returncode == 0, fetched.stderr
        notebook = nbformat.reads(fetched.stdout.decode(), as_version=4)
        nbformat.validate(notebook)
        assert _stream_text(_code_cells(notebook)[0]) == {"stdout": "42\n"}

        saved = tmp_path / "out.ipynb"
        assert _cli(session_id, "--url", server.url, "--admin-token", "s3cret",
                    "-o", str(saved)).returncode == 0
        assert nbformat.read(str(saved), as_version=4) == notebook

        refused = _cli(session_id, "--url", server.url)
        assert refused.returncode == 1 and b"HTTP 401" in refused.stderr
        unknown = _cli("ses_CVtmHZWnVBdtZnwbZNosk", "--url", server.url, "--admin-token", "s3cret")
        assert unknown.returncode == 1 and b"HTTP 404" in unknown.stderr
        assert unknown.stdout == b""


# -- bounds and translation (no kernel needed) --------------------------------------------------


def _execution(number: int, outputs: list[dict[str, Any]], code: str = "pass") -> Execution:
    now = datetime(2025, 12, 8, 6, 42, tzinfo=timezone.utc)
    return Execution(number, code, (UploadedFile("a.bin", b"\xff" * 10),),
                     ExecutionResult(outputs, "ok"), now, now, 0.001)


def test_transcript_past_its_cell_cap_counts_the_rest_in_a_visible_note() -> None:
    transcript = Transcript("ses_CVtmHZWnVBdtZnwbZNosk", "abc", datetime.now(timezone.utc),
                            max_cells=2)
    for number in range(1, 6):
        transcript.add(_execution(number, [{"type": "stdout", "data": f"{number}\n"}]))
    notebook = transcript.notebook()
    assert [c.execution_count for c in _code_cells(notebook)] == [1, 2]
    assert "3 later execution(s) are not shown" in notebook.cells[-1].source
    assert notebook.metadata["tci_emulator"]["executions_omitted"] == 3


def test_transcript_past_its_byte_cap_keeps_sources_and_notes_the_dropped_outputs() -> None:
    transcript = Transcript("ses_CVtmHZWnVBdtZnwbZNosk", "abc", datetime.now(timezone.utc),
                            max_bytes=20_000)
    transcript.add(_execution(1, [{"type": "stdout", "data": "small\n"}]))
    transcript.add(_execution(2, [{"type": "stdout", "data": "x" * 50_000}]))
    transcript.add(_execution(3, [], code="y" * 50_000))
    notebook = transcript.notebook()  # validates
    first, second = _code_cells(notebook)
    assert _stream_text(first) == {"stdout": "small\n"}
    assert "left out of the transcript" in _stream_text(second)["stderr"]
    assert "1 later execution(s) are not shown" in notebook.cells[-1].source
    assert len(nbformat.writes(notebook)) < 25_000


# -- the pytest plugin --------------------------------------------------------------------------

INNER_TESTS = '''
import requests

def run(emu, code):
    response = requests.post(emu.base_url + "/tci/execute", timeout=60,
                             json={"code": code, "language": "python"},
                             headers={"Authorization": "Bearer " + emu.api_key})
    assert response.status_code == 200, response.text
    return response.json()["data"]

def test_passes(tci_emulator):
    run(tci_emulator, "print('fine')")

def test_agent_answer(tci_emulator):
    data = run(tci_emulator, "print(6 * 9)")
    assert data["outputs"] == [{"type": "stdout", "data": "42\\n"}]
'''
INNER_INI = """
[pytest]
addopts = --strict-markers --strict-config -p no:cacheprovider
filterwarnings = error
"""


def _transcript_lines(result: pytest.RunResult) -> list[Path]:
    text = result.stdout.str()
    assert "tci-emulator transcripts" in text, text
    return [Path(line.strip()) for line in result.stdout.lines if line.strip().endswith(".ipynb")]


def _inner_project(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_agent=INNER_TESTS)


def test_failing_test_report_names_its_transcript_in_the_given_dir(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    _inner_project(pytester)
    target = tmp_path / "transcripts"
    result = pytester.runpytest_subprocess("--tci-transcripts-dir", str(target), timeout=240)
    result.assert_outcomes(passed=1, failed=1)
    [path] = _transcript_lines(result)
    assert path.parent.parent == target and "test_agent_answer" in path.parent.name
    notebook = nbformat.read(str(path), as_version=4)
    [cell] = _code_cells(notebook)
    assert (cell.source, _stream_text(cell)) == ("print(6 * 9)", {"stdout": "54\n"})
    assert [p.parent.name for p in target.glob("*/*.ipynb")] == [path.parent.name]  # not the pass


def test_failing_test_transcript_defaults_to_the_temporary_base_without_a_cache(
        pytester: pytest.Pytester) -> None:
    _inner_project(pytester)
    basetemp = pytester.path / "basetemp"
    result = pytester.runpytest_subprocess(f"--basetemp={basetemp}", timeout=240)
    result.assert_outcomes(passed=1, failed=1)
    [path] = _transcript_lines(result)
    assert path.is_relative_to(basetemp / "tci-transcripts")
    nbformat.validate(nbformat.read(str(path), as_version=4))


def test_structured_output_of_a_custom_mime_type_still_makes_a_valid_notebook(
        http: Http) -> None:
    # Not http.run: its check of the answer to the letter of the contract (a non-JSON MIME
    # type's data is a string) would refuse the dict the kernel sent; the notebook is the point.
    answer = http.execute("display({'application/x-custom': {'a': 1}, 'text/plain': 'c'}, "
                          "raw=True)")
    assert answer.status_code == 200, answer.text
    sid = answer.json()["data"]["session_id"]
    response = http.get(f"/_emulator/sessions/{sid}/notebook")
    assert response.status_code == 200, response.text
    notebook = nbformat.reads(response.text, as_version=4)
    nbformat.validate(notebook)
    [cell] = [c for c in notebook.cells if c.cell_type == "code"]
    [output] = cell.outputs
    assert output.data["application/x-custom"] == '{"a": 1}'


def test_an_output_nested_490_deep_answers_200_and_is_recorded_in_a_fallback_form(
        http: Http) -> None:
    code = ("from IPython.display import display\n"
            "doc = {}\n"
            "for _ in range(490):\n"
            "    doc = {'a': doc}\n"
            "display({'application/json': doc, 'text/plain': 'deep'}, raw=True)\n")
    data = http.run(code)
    [item] = data["outputs"]
    depth, value = 0, item["data"]["application/json"]
    while value:
        depth, value = depth + 1, value["a"]
    assert depth == 490  # the reply carries the document whole
    notebook = http.get(f"/_emulator/sessions/{data['session_id']}/notebook").json()
    [output] = notebook["cells"][1]["outputs"]
    kept = output["data"]["application/json"]
    assert isinstance(kept, str) and json.loads(kept) == item["data"]["application/json"]
    http.emulator.check()  # nothing raised on the server either
