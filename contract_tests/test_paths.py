"""Contract section 1: every path form the SDKs and the DOCS use reaches the same operation."""

from __future__ import annotations

import pytest

from .client import stdout_of
from .conftest import Wire

EXECUTE_PATHS = ["/tci/execute", "/v1/tci/execute", "/v1//tci/execute"]
SESSIONS_PATHS = ["/tci/sessions", "/v1/tci/sessions", "/v1//tci/sessions"]


@pytest.mark.parametrize("path", EXECUTE_PATHS)
def test_execute_runs_code_on_every_path_form(shared: tuple[Wire, str], path: str) -> None:
    tenant, session_id = shared
    data = tenant.run(f"print('via {path}')", session_id, path=path)
    assert data["session_id"] == session_id
    assert data["outputs"] == [{"type": "stdout", "data": f"via {path}\n"}]


@pytest.mark.parametrize("path", EXECUTE_PATHS)
def test_execute_without_session_id_creates_a_session_on_every_path_form(wire: Wire,
                                                                          path: str) -> None:
    created = wire.run("print(6 * 7)", path=path)
    assert stdout_of(created) == "42\n"
    listed = [s["id"] for s in wire.sessions()]
    assert created["session_id"] in listed
    if wire.target.accepts_any_key:  # a tenant of its own: nothing else is listed
        assert listed == [created["session_id"]]


@pytest.mark.parametrize("path", SESSIONS_PATHS)
def test_sessions_are_listed_on_every_path_form(shared: tuple[Wire, str], path: str) -> None:
    tenant, session_id = shared
    assert session_id in [s["id"] for s in tenant.sessions(path)]
