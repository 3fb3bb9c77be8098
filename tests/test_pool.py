"""The warm kernel pool and kernel spec selection, against real kernels over real HTTP.

Timings belong to the benchmark (``python -m benchmarks``); these tests check behaviour:
a pooled kernel serves one session only, the pool refills, preloads happen before user code,
only live, ready kernels are handed out, and ``kernel_name`` picks the kernel spec (and so the
provisioner and the spec's environment).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tci_emulator import Emulator
from tci_emulator.clock import Clock
from tci_emulator.kernels import KernelError, KernelLauncher
from tci_emulator.watchdog import first_descendants

from .helpers import Http, stdout_of, wait_until
from .processes import kernel_pids_in, process_gone

WHO_AM_I = "import os\nprint(os.getcwd())"


def pool_of(http: Http) -> dict[str, Any]:
    response = http.get("/_emulator/health")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def host_pid(http: Http, session_id: str) -> int:
    """The pid of the session's kernel process on this machine (in the sandbox, bubblewrap's:
    inside, every kernel is pid 2 of its own namespace)."""
    [session] = [s for s in http.emulator.server.state.sessions.all_live() if s.id == session_id]
    assert session.kernel.pid is not None
    return session.kernel.pid


def whoami(http: Http) -> tuple[str, int, str]:
    """Create a session; returns its id, its kernel's pid and its working directory."""
    data = http.run(WHO_AM_I)
    return data["session_id"], host_pid(http, data["session_id"]), stdout_of(data).strip()


@pytest.mark.tci_emulator(pool_size=2)
def test_two_sessions_never_share_a_kernel_or_a_working_directory(http: Http) -> None:
    first, pid1, cwd1 = whoami(http)
    second, pid2, cwd2 = whoami(http)
    assert first != second
    assert pid1 != pid2 and cwd1 != cwd2
    # Each session keeps its own kernel across calls.
    http.run("x = 1", first)
    http.run("x = 2", second)
    assert (host_pid(http, first), host_pid(http, second)) == (pid1, pid2)


@pytest.mark.tci_emulator(pool_size=1)
def test_an_ended_sessions_kernel_is_stopped_not_returned_to_the_pool(http: Http) -> None:
    _, pid, cwd = whoami(http)
    http.emulator.reset()  # ends the session; its kernel stops in the background
    wait_until(lambda: process_gone(pid) and not Path(cwd).exists())
    later = {whoami(http)[1] for _ in range(3)}
    assert pid not in later and len(later) == 3


@pytest.mark.tci_emulator(pool_size=2)
def test_pool_refills_after_a_session_takes_a_kernel(http: Http) -> None:
    wait_until(lambda: pool_of(http)["pool"]["ready"] == 2)
    whoami(http)
    # One kernel serves the session, two are warm again: three in all.
    wait_until(lambda: pool_of(http)["pool"]["ready"] == 2 and pool_of(http)["kernels"] == 3)
    health = pool_of(http)
    assert health["sessions"] == 1
    assert health["pool"]["size"] == 2 and health["pool"]["starting"] == 0


@pytest.mark.tci_emulator(pool_size=1)
def test_concurrent_new_sessions_beyond_the_pool_all_get_their_own_kernel(http: Http) -> None:
    wait_until(lambda: pool_of(http)["pool"]["ready"] == 1)
    results: list[tuple[str, int, str]] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(whoami(Http(http.emulator)))
        except BaseException as exc:  # noqa: BLE001 - re-raised below in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len({sid for sid, _, _ in results}) == 5
    assert len({pid for _, pid, _ in results}) == 5
    assert len({cwd for _, _, cwd in results}) == 5
    wait_until(lambda: pool_of(http)["pool"]["ready"] == 1)


@pytest.mark.tci_emulator(pool_size=1)
def test_pool_discards_a_warm_kernel_that_died_and_hands_out_a_live_one(http: Http) -> None:
    wait_until(lambda: pool_of(http)["pool"]["ready"] == 1)
    (warm,) = kernel_pids_in(http.emulator.server.state.launcher.runtime)
    os.kill(warm, signal.SIGKILL)
    wait_until(lambda: process_gone(warm))
    data = http.run("import os; print(os.getpid())")
    assert [o["type"] for o in data["outputs"]] == ["stdout"], data  # no KernelDied item
    host = host_pid(http, data["session_id"])
    assert warm not in (host, *first_descendants(host, depth=2))


@pytest.mark.tci_emulator(pool_size=1, preload=("tabnanny",))
def test_preloaded_module_is_imported_before_the_session_imports_it(http: Http) -> None:
    data = http.run("import sys\nprint('tabnanny' in sys.modules)\n"
                    "print(sys.modules['tabnanny'].__name__)")
    assert stdout_of(data) == "True\ntabnanny\n"


@pytest.mark.tci_emulator(pool_size=1)
def test_without_preload_the_same_module_is_not_imported(http: Http) -> None:
    data = http.run("import sys\nprint('tabnanny' in sys.modules)")
    assert stdout_of(data) == "False\n"


def test_a_preload_that_cannot_be_imported_fails_the_kernel_start() -> None:
    launcher = KernelLauncher(Clock(), preload=("tci_no_such_module_anywhere",))
    try:
        with pytest.raises(KernelError, match="tci_no_such_module_anywhere"):
            launcher.start()
        assert launcher.live_kernels == 0
    finally:
        launcher.close()


# -- kernel specs ---------------------------------------------------------------------------

IPYKERNEL_ARGV = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]

# A launch script in the manner of remote provisioners' (launch_kubernetes.py, launch_docker.py):
# it takes only its own arguments and exits on any other.
STRICT_LAUNCHER = """
import argparse, runpy, sys
parser = argparse.ArgumentParser()
parser.add_argument("connection_file")
args = parser.parse_args()
sys.argv = ["ipykernel_launcher", "-f", args.connection_file]
runpy.run_module("ipykernel_launcher", run_name="__main__")
"""


def install_spec(root: Path, name: str, env: dict[str, str],
                 argv: list[str] | None = None) -> None:
    """A kernel spec in ``root/kernels/name`` running this Python's ipykernel, with ``env``,
    naming jupyter_client's local provisioner explicitly (as a remote one would be named)."""
    spec_dir = root / "kernels" / name
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": argv or IPYKERNEL_ARGV,
        "display_name": f"Python ({name})",
        "language": "python",
        "env": env,
        "metadata": {"kernel_provisioner": {"provisioner_name": "local-provisioner"}},
    }))


def test_kernel_name_selects_the_kernel_spec_and_its_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_spec(tmp_path, "tci-marked", {"TCI_SPEC_MARKER": "from-the-spec",
                                          "TCI_SPEC_TEMPLATED": "home=${HOME}"})
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with Emulator(kernel_name="tci-marked", pool_size=1) as emulator:
        http = Http(emulator)
        data = http.run("import os\nprint(os.environ.get('TCI_SPEC_MARKER'))\n"
                        "print(os.environ.get('TCI_SPEC_TEMPLATED'))")
        assert stdout_of(data) == f"from-the-spec\nhome={os.environ['HOME']}\n"
        assert pool_of(http)["kernel_name"] == "tci-marked"
        emulator.check()


def test_kernel_spec_with_a_strict_launch_script_starts_with_the_emulators_ipython_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launcher = tmp_path / "launch_strict.py"
    launcher.write_text(STRICT_LAUNCHER)
    install_spec(tmp_path, "tci-strict", {},
                 argv=[sys.executable, str(launcher), "{connection_file}"])
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with Emulator(kernel_name="tci-strict", pool_size=0) as emulator:
        data = Http(emulator).run("ip = get_ipython()\n"
                                  "print(ip.history_manager.enabled, ip.colors)")
        assert stdout_of(data).lower() == "false nocolor\n"  # IPython 8 spells it NoColor
        emulator.check()


def test_kernel_spec_env_cannot_pull_the_servers_secrets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_spec(tmp_path, "tci-leaky", {"TCI_SPEC_LEAK": "${TOGETHER_API_KEY}"})
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("TOGETHER_API_KEY", "server-secret-key")
    with Emulator(kernel_name="tci-leaky", pool_size=0) as emulator:
        data = Http(emulator).run("import os\nprint(os.environ.get('TCI_SPEC_LEAK'))\n"
                                  "print(os.environ.get('TOGETHER_API_KEY'))")
        assert stdout_of(data) == "${TOGETHER_API_KEY}\nNone\n"
        emulator.check()


def test_unknown_kernel_name_answers_kernel_unavailable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with Emulator(kernel_name="tci-no-such-spec", pool_size=0) as emulator:
        response = Http(emulator).execute("print(1)")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "kernel_unavailable"
        assert "tci-no-such-spec" in error["message"]
        emulator.check()
