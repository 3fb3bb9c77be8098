"""The pytest plugin, driven the way a downstream project uses it, and the ``Emulator`` handle.

Plugin tests write a small test project with ``pytester`` (no ``conftest.py``: the plugin comes
from the ``pytest11`` entry point) and run it. Runs that start emulators or kernels go through a
subprocess, so each has its own process, environment and threads; runs that only parse options
stay in-process. The inner projects are strict (``--strict-markers``, warnings as errors), as a
careful downstream project would be.
"""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from tci_emulator import Emulator
from tci_emulator.watchdog import first_descendants

from .processes import process_running

INNER_INI = """
[pytest]
addopts = --strict-markers --strict-config -p no:cacheprovider
filterwarnings = error
"""

# Helpers the inner test files share: raw HTTP through the project's test client (the inner
# projects find it on PYTHONPATH, see `project`), since `together` is not installed in this venv.
INNER_HELPERS = '''
from contract_tests.client import Client

def execute(emu, code, session_id=None):
    with Client(emu.url, emu.api_key) as client:
        return client.execute(code, session_id)

def run(emu, code, session_id=None):
    with Client(emu.url, emu.api_key) as client:
        return client.run(code, session_id)
'''
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A downstream test project: strict ini and the HTTP helpers, and no conftest.py; this
    checkout on ``PYTHONPATH`` so its inner runs find the test client."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    pytester.makeini(INNER_INI)
    pytester.makepyfile(inner_http=INNER_HELPERS)
    return pytester


def run_subprocess(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=240)


# -- the fixture in a downstream project --------------------------------------------------------


def test_fixture_works_without_conftest_and_points_the_environment_at_it(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHER_BASE_URL", "https://api.example.invalid/v1")
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    project.makepyfile(test_agent="""
        import os
        from inner_http import run

        def test_environment_before_is_the_runners():
            assert os.environ["TOGETHER_BASE_URL"] == "https://api.example.invalid/v1"
            assert "TOGETHER_API_KEY" not in os.environ

        def test_code_runs_against_the_emulator_named_by_the_environment(tci_emulator):
            assert tci_emulator.base_url.startswith("http://127.0.0.1:")
            assert tci_emulator.base_url.endswith("/v1")
            assert tci_emulator.config.pool_size == 1              # the plugin's default
            assert tci_emulator.config.session_lifespan == 3600    # the emulator's
            assert os.environ["TOGETHER_BASE_URL"] == tci_emulator.base_url
            assert os.environ["TOGETHER_API_KEY"] == tci_emulator.api_key
            data = run(tci_emulator, "print(6 * 7)")
            assert data["outputs"] == [{"type": "stdout", "data": "42\\n"}]
            assert [s["id"] for s in tci_emulator.sessions()] == [data["session_id"]]

        def test_environment_after_is_restored():
            assert os.environ["TOGETHER_BASE_URL"] == "https://api.example.invalid/v1"
            assert "TOGETHER_API_KEY" not in os.environ
    """)
    assert not list(project.path.rglob("conftest.py"))
    result = run_subprocess(project, "-v")
    result.assert_outcomes(passed=3)


def test_state_does_not_leak_from_one_test_to_the_next(project: pytest.Pytester) -> None:
    project.makepyfile(test_leak="""
                from datetime import datetime, timezone
        import requests
        from inner_http import run

        def test_leaves_sessions_usage_clock_and_faults_behind(tci_emulator):
            sid = run(tci_emulator, "x = 1")["session_id"]
            run(tci_emulator, "x += 1", sid)
            tci_emulator.clock.advance(600)
            tci_emulator.clock.freeze()
            tci_emulator.faults.add({"action": "http_error", "status": 503, "times": 5,
                                     "operation": "sessions"})
            assert len(tci_emulator.faults.rules()) == 1
            assert len(tci_emulator.sessions()) == 1
            assert tci_emulator.usage()["total"]["executions"] == 2

        def test_starts_clean(tci_emulator):
            assert tci_emulator.sessions() == []
            assert tci_emulator.usage()["total"] == {"sessions": 0, "executions": 0,
                                                     "cost_usd": 0.0}
            assert not tci_emulator.clock.frozen
            drift = tci_emulator.clock.now() - datetime.now(timezone.utc)
            assert abs(drift.total_seconds()) < 5
            assert tci_emulator.faults.rules() == []
            listing = requests.get(tci_emulator.base_url + "/tci/sessions", timeout=30,
                                   headers={"Authorization": "Bearer " + tci_emulator.api_key})
            assert listing.status_code == 200
            assert listing.json()["data"]["sessions"] == []
    """)
    run_subprocess(project).assert_outcomes(passed=2)


def test_options_ini_values_and_the_marker_configure_the_emulator(
        project: pytest.Pytester) -> None:
    project.makeini(INNER_INI + "tci_session_lifespan = 120\ntci_pool_size = 0\n"
                    "tci_price_per_session = 0.02\ntci_api_key = k1, k2\ntci_mcp = off\n")
    project.makepyfile(test_settings="""
        from datetime import datetime, timedelta
        from decimal import Decimal
        import pytest
        import requests
        from inner_http import execute, run

        SHARED = []

        def lifespan_of(emu, session_id):
            [entry] = [s for s in emu.sessions() if s["id"] == session_id]
            started = datetime.fromisoformat(entry["started_at"])
            return datetime.fromisoformat(entry["expires_at"]) - started

        def test_options_and_ini_values_apply(tci_emulator):
            SHARED.append(tci_emulator.base_url)
            config = tci_emulator.config
            assert config.session_lifespan == 120                  # ini
            assert config.pool_size == 0                           # ini
            assert config.price_per_session == Decimal("0.05")     # option beats ini
            assert config.budget_usd == Decimal("0.10")            # option
            assert config.execution_timeout == 1                   # option
            assert config.api_keys == ("k1", "k2") and tci_emulator.api_key == "k1"  # ini list
            assert config.mcp is False                             # ini on/off
            assert config.allowed_hosts == ("a.test", "b.test")    # repeated option
            health = requests.get(tci_emulator.url + "/_emulator/health", timeout=30).json()
            assert health["pool"]["size"] == 0
            data = run(tci_emulator, "import time\\ntime.sleep(30)")
            assert data["outputs"][-1]["data"].startswith("ExecutionTimeout")
            assert lifespan_of(tci_emulator, data["session_id"]) == timedelta(seconds=120)
            run(tci_emulator, "1")
            assert tci_emulator.usage()["total"]["cost_usd"] == 0.1
            assert execute(tci_emulator, "1").status_code == 402   # past the budget

        @pytest.mark.tci_emulator(session_lifespan=30, price_per_session="0.01")
        def test_the_marker_gives_an_emulator_of_its_own(tci_emulator):
            assert tci_emulator.base_url not in SHARED
            assert tci_emulator.config.budget_usd == Decimal("0.10")   # options still apply
            data = run(tci_emulator, "1")
            assert lifespan_of(tci_emulator, data["session_id"]) == timedelta(seconds=30)
            assert tci_emulator.usage()["total"]["cost_usd"] == 0.01

        def test_unmarked_tests_get_the_shared_emulator_back(tci_emulator):
            assert tci_emulator.base_url == SHARED[0]
            assert tci_emulator.config.session_lifespan == 120
    """)
    result = run_subprocess(project, "--tci-price-per-session=0.05", "--tci-budget-usd", "0.10",
                            "--tci-execution-timeout=1", "--tci-allowed-host=a.test",
                            "--tci-allowed-host", "b.test")
    result.assert_outcomes(passed=3)


def test_bad_option_and_ini_values_stop_the_run_with_a_usage_error(
        project: pytest.Pytester) -> None:
    project.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = project.runpytest("--tci-session-lifespan=soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tci-session-lifespan: invalid float value: 'soon'*"])
    result = project.runpytest("--tci-budget-usd=lots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tci-budget-usd: invalid decimal value: 'lots'*"])
    project.makeini(INNER_INI + "tci_pool_size = many\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini value tci_pool_size = 'many'*"])
    project.makeini(INNER_INI + "tci_pool_size = -1\n")   # parses, but would break the emulator
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pool_size must be >= 0 (got -1)*"])


def test_a_marker_with_unknown_settings_fails_its_test_with_the_valid_names(
        project: pytest.Pytester) -> None:
    project.makepyfile(test_marker="""
        import pytest

        @pytest.mark.tci_emulator(lifespan=60)
        def test_misspelt(tci_emulator):
            pass

        @pytest.mark.tci_emulator(60)
        def test_positional(tci_emulator):
            pass
    """)
    result = project.runpytest()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        "*@pytest.mark.tci_emulator: unknown emulator setting(s) lifespan; *session_lifespan*",
        "*@pytest.mark.tci_emulator takes settings as keywords only*",
    ])


def test_help_lists_the_options_group_ini_values_fixtures_and_marker(
        project: pytest.Pytester) -> None:
    result = project.runpytest("--help")
    result.stdout.fnmatch_lines([
        "TCI emulator (fixture tci_emulator; session scope):",
        "*--tci-session-lifespan=SECONDS*",
        "*--tci-price-per-session=USD*",
        "*--tci-budget-usd=USD*",
        "*--tci-pool-size=N*",
        "*--tci-execution-timeout=SECONDS*",
    ])
    result.stdout.fnmatch_lines(["*--tci-api-key=KEY*", "*--tci-mcp, --no-tci-mcp*"])
    result.stdout.fnmatch_lines(["*tci_session_lifespan (string):*", "*tci_pool_size (string):*"])
    result = project.runpytest("--fixtures")
    result.stdout.fnmatch_lines([
        "tci_emulator_server [[]session scope[]]*",
        "*Session scope, ``tci_emulator.Emulator``*",
        "tci_emulator*",
        "*Function scope, ``tci_emulator.Emulator``*",
    ])
    result = project.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.tci_emulator(**settings):*"])


def test_p_no_tci_emulator_disables_the_plugin(project: pytest.Pytester) -> None:
    project.makepyfile(test_uses="def test_uses(tci_emulator):\n    pass\n")
    result = project.runpytest("-p", "no:tci_emulator")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'tci_emulator' not found*"])
    helped = project.runpytest("-p", "no:tci_emulator", "--help").stdout.str()
    assert "--tci-pool-size" not in helped


# -- server-side exceptions -------------------------------------------------------------------


def test_a_server_side_exception_fails_the_test_that_caused_it_with_its_traceback(
        project: pytest.Pytester) -> None:
    """The emulator's ledger database is closed under it (as a broken disk would), so the next
    execute raises a real ``sqlite3.ProgrammingError`` inside the request handler: the client
    gets a 500 and the test, which passes by itself, must be failed by the plugin."""
    project.makepyfile(test_server_error="""
        import pytest
        from inner_http import execute

        def test_before_runs_clean(tci_emulator):
            assert execute(tci_emulator, "1").status_code == 200

        @pytest.mark.tci_emulator(pool_size=0)
        def test_breaks_the_emulator(tci_emulator):
            tci_emulator.server.state.ledger.close()
            response = execute(tci_emulator, "1")
            assert response.status_code == 500
            assert response.json()["error"]["code"] == "internal_error"

        @pytest.fixture
        def breaks_it_in_teardown(tci_emulator):
            yield tci_emulator
            tci_emulator.server.state.ledger.close()
            execute(tci_emulator, "1")

        @pytest.mark.tci_emulator(pool_size=0)
        def test_fine_itself(breaks_it_in_teardown):
            pass

        def test_after_runs_clean(tci_emulator):
            assert execute(tci_emulator, "1").status_code == 200
    """)
    result = run_subprocess(project, "-rfE")
    result.assert_outcomes(passed=3, failed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*_ test_breaks_the_emulator _*",
        "*ServerError: the emulator raised while serving:",
        "*Traceback (most recent call last):",
        "*ledger.py*in open_session",
        "*sqlite3.ProgrammingError: Cannot operate on a closed database.",
    ])
    result.stdout.fnmatch_lines(["*_ ERROR at teardown of test_fine_itself _*"])
    result.stdout.fnmatch_lines(["FAILED test_server_error.py::test_breaks_the_emulator*",
                                 "ERROR test_server_error.py::test_fine_itself*"])


# -- xdist ------------------------------------------------------------------------------------


def test_xdist_workers_each_get_their_own_emulator(project: pytest.Pytester) -> None:
    seen = project.path / "seen"
    seen.mkdir()
    project.makepyfile(test_parallel=f"""
        import json, os
        import pytest
        from inner_http import run

        @pytest.mark.parametrize("n", range(6))
        def test_runs(tci_emulator, n):
            data = run(tci_emulator, f"print({{n}} * 2)")
            assert data["outputs"] == [{{"type": "stdout", "data": f"{{n * 2}}\\n"}}]
            record = {{"worker": os.environ["PYTEST_XDIST_WORKER"], "url": tci_emulator.base_url}}
            with open(os.path.join({str(seen)!r}, f"{{n}}.json"), "w") as handle:
                json.dump(record, handle)
    """)
    result = run_subprocess(project, "-n", "2")
    result.assert_outcomes(passed=6)
    records = [json.loads(p.read_text()) for p in seen.iterdir()]
    urls = {(r["worker"], r["url"]) for r in records}
    assert {worker for worker, _ in urls} == {"gw0", "gw1"}
    assert len({url for _, url in urls}) == 2  # one emulator per worker, on its own port


# -- the Emulator handle without pytest -------------------------------------------------------


def test_emulator_runs_code_and_its_stop_waits_for_every_kernel() -> None:
    with Emulator(pool_size=0) as emu:
        url = emu.base_url
        key = {"Authorization": f"Bearer {emu.api_key}"}
        pids = []
        for _ in range(2):
            response = requests.post(url + "/tci/execute", headers=key, timeout=60, json={
                "code": "1", "language": "python"})
            assert response.status_code == 200, response.text
            # The kernel's processes as this machine sees them (in the sandbox, bubblewrap,
            # the namespace's init and the kernel).
            [session] = emu.server.state.sessions.all_live()
            assert session.kernel.pid is not None
            pids += [session.kernel.pid, *first_descendants(session.kernel.pid, depth=2)]
            emu.reset()
            assert emu.sessions() == []  # gone from the registry at once
    assert not any(process_running(pid) for pid in pids)  # stopped before stop() returned
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/tci/sessions", headers=key, timeout=5)


def test_emulator_rejects_unknown_settings_naming_the_valid_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown emulator setting\(s\) lifespan; .*"
                                        r"session_lifespan"):
        Emulator(lifespan=60)


def test_emulator_hands_out_the_first_allowed_key() -> None:
    emu = Emulator(api_keys=("k-one", "k-two"), price_per_session="0.05")
    assert emu.api_key == "k-one"
    assert emu.config.price_per_session == Decimal("0.05")
    assert Emulator(api_key="mine").api_key == "mine"


def test_client_without_the_sdk_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "together", None)  # import together -> ImportError
    emu = Emulator()
    for make in (emu.client, emu.async_client):
        with pytest.raises(ImportError, match=r"pip install 'together>=2,<3'"):
            make()


def test_emulator_env_names_what_the_sdks_read_and_leaves_os_environ_alone() -> None:
    with Emulator(api_key="k", pool_size=0) as emu:
        assert emu.env() == {"TOGETHER_BASE_URL": emu.url + "/v1", "TOGETHER_API_KEY": "k"}
        assert os.environ.get("TOGETHER_BASE_URL") != emu.base_url

