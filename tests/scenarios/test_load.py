"""Load: 16 concurrent clients over 8 sessions, 400 mixed executions, nothing lost or crossed.

Every request carries a unique token and every reply must hold that token and no other, so a
reply delivered to the wrong caller, or outputs leaking between concurrent executions, fails.
Each session keeps a log and a counter; two clients share each session, so the test also sees
that calls to one session run one at a time (the counter has no gaps or repeats) and that each
client's calls ran in the order it sent them.
"""

from __future__ import annotations

import ast
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from contract_tests.client import Client
from tci_emulator import Emulator, schema

SESSIONS = 8
CLIENTS = 16
REQUESTS_PER_CLIENT = 25
TOKEN = re.compile(r"T\d\dx\d{3}x[0-9a-f]{8}")
MARK = re.compile(r"(T\d\dx\d{3}x[0-9a-f]{8}) (\d+) (\d+)")


def code_for(client: int, seq: int, token: str) -> tuple[str, list[dict[str, str]] | None]:
    """A mixed workload: stdout, an expression, a user error, a file, stderr."""
    step = f"log.append(({client}, {seq})); n += 1; mark = f'{token} {{n}} {{len(log)}}'"
    kind = seq % 5
    if kind == 0:
        return f"{step}\nprint(mark)", None
    if kind == 1:
        return f"{step}\nmark", None
    if kind == 2:
        return f"{step}\nprint(mark)\nraise ValueError('{token}')", None
    if kind == 3:
        return (f"{step}\nprint(open('{token}.txt').read(), mark)",
                [{"name": f"{token}.txt", "encoding": "string", "content": token}])
    return f"{step}\nimport sys; print(mark, file=sys.stderr)", None


@dataclass
class ClientRun:
    """What one client saw: (seq, counter, log length) per reply, and any failures."""

    client: int
    session_id: str
    marks: list[tuple[int, int, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def run_client(emulator: Emulator, run: ClientRun, gate: threading.Barrier) -> None:
    with Client(emulator.url, emulator.api_key) as client:
        _send_all(client, run, gate)


def _send_all(client: Client, run: ClientRun, gate: threading.Barrier) -> None:
    gate.wait(timeout=120)
    for seq in range(REQUESTS_PER_CLIENT):
        token = f"T{run.client:02d}x{seq:03d}x{uuid.uuid4().hex[:8]}"
        code, files = code_for(run.client, seq, token)
        body: dict[str, Any] = {"code": code, "language": "python", "session_id": run.session_id}
        if files:
            body["files"] = files
        try:
            response = client.post("/v1/tci/execute", body)
            run.marks.append(check_reply(response, run.session_id, token, seq))
        except Exception as exc:  # noqa: BLE001 - collected and asserted in the test's thread
            run.failures.append(f"client {run.client} request {seq}: {exc!r}")


def check_reply(response: requests.Response, session_id: str, token: str,
                seq: int) -> tuple[int, int, int]:
    """The reply is a success in the right session holding only this request's outputs."""
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    schema.validate(body, "ExecuteSuccess")
    data = body["data"]
    assert data["session_id"] == session_id
    text = "\n".join(str(o["data"]) for o in data["outputs"])
    assert set(TOKEN.findall(text)) == {token}, text[:300]
    kinds = [o["type"] for o in data["outputs"]]
    expected = {0: ["stdout"], 1: ["execute_result"], 2: ["stdout", "error"], 3: ["stdout"],
                4: ["stderr"]}[seq % 5]
    assert kinds == expected, data["outputs"]
    if seq % 5 == 2:
        assert data["outputs"][-1]["data"].endswith(f"ValueError: {token}")
    if seq % 5 == 3:
        assert data["outputs"][0]["data"].startswith(f"{token} {token} ")
    [(found, counter, length)] = MARK.findall(text)
    return seq, int(counter), int(length)


@pytest.mark.tci_emulator(pool_size=2, max_sessions=SESSIONS)
def test_sixteen_clients_over_eight_sessions_get_exactly_their_own_outputs_in_order(
        tci_emulator: Emulator, request: pytest.FixtureRequest) -> None:
    client = Client(tci_emulator.url, tci_emulator.api_key)
    request.addfinalizer(client.close)

    def create(_: int) -> str:
        return str(client.run("log = []; n = 0")["session_id"])

    with ThreadPoolExecutor(SESSIONS) as pool:  # kernels start side by side
        session_ids = list(pool.map(create, range(SESSIONS)))
    runs = [ClientRun(c, session_ids[c % SESSIONS]) for c in range(CLIENTS)]
    gate = threading.Barrier(CLIENTS)
    threads = [threading.Thread(target=run_client, args=(tci_emulator, run, gate))
               for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads)

    failures = [f for run in runs for f in run.failures]
    assert failures == [], failures[:5]
    total = CLIENTS * REQUESTS_PER_CLIENT

    per_session = CLIENTS // SESSIONS * REQUESTS_PER_CLIENT
    for sid in session_ids:
        mine = [run for run in runs if run.session_id == sid]
        # One at a time: the session's counter went 1..50 with no gap or repeat.
        counters = sorted(counter for run in mine for _, counter, _ in run.marks)
        assert counters == list(range(1, per_session + 1))
        for run in mine:
            assert [seq for seq, _, _ in run.marks] == list(range(REQUESTS_PER_CLIENT))
            assert [c for _, c, _ in run.marks] == sorted(c for _, c, _ in run.marks)
            assert all(counter == length for _, counter, length in run.marks)
        # The session's own log holds each client's calls in the order the client sent them.
        reply = client.run("log", sid)
        log = ast.literal_eval(reply["outputs"][0]["data"]["text/plain"])
        assert len(log) == per_session
        for run in mine:
            assert [seq for client, seq in log if client == run.client] == list(
                range(REQUESTS_PER_CLIENT))

    listing = client.get("/v1/tci/sessions").json()
    schema.validate(listing, "SessionsListing")
    assert sorted(s["execute_count"] for s in listing["data"]["sessions"]) == [
        per_session + 2] * SESSIONS
    usage = tci_emulator.usage()["total"]
    assert usage["sessions"] == SESSIONS and usage["executions"] == total + 2 * SESSIONS
