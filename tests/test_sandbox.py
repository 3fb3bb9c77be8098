"""The escape battery: with the sandbox on, each way out that worked on bare processes fails.

Each test tries what session code written by an attacker would, and checks from outside that
it did not work. These run with ``--sandbox namespaces`` (bubblewrap must be installed:
``make test`` installs it), and a few run the same attempt with the sandbox off first, to show
that the attempt itself is real and would succeed without it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from contract_tests.process import ServeProcess
from tci_emulator import Emulator
from tci_emulator.config import Config
from tci_emulator.kernels import Kernel
from tci_emulator.kernels.sandbox import Sandbox, resolve

from .helpers import Http, stdout_of, wait_until
from .processes import pids_where

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="namespaces are Linux-only; the sandbox is off elsewhere")


@pytest.fixture(scope="module")
def sandboxed() -> Iterator[Emulator]:
    """An emulator that refuses to run without namespaces (module scope: one pool)."""
    with Emulator(sandbox="namespaces", pool_size=1) as emulator:
        yield emulator


@pytest.fixture
def box(sandboxed: Emulator) -> Iterator[Http]:
    sandboxed.reset()
    yield Http(sandboxed)
    sandboxed.check()


def _outcome(http: Http, code: str, session_id: str | None = None) -> str:
    """stdout of ``code`` (which prints what it managed or the error it met)."""
    return stdout_of(http.run(code, session_id))


_TRY = """
def attempt(action):
    try:
        print("OK", action())
    except Exception as exc:
        print("FAILED", type(exc).__name__)
"""


def _kernel_of(emulator: Emulator, session_id: str) -> Kernel:
    [session] = [s for s in emulator.server.state.sessions.all_live() if s.id == session_id]
    return session.kernel


def test_health_reports_namespaces(box: Http) -> None:
    sandbox = box.get("/_emulator/health").json()["sandbox"]
    assert sandbox == {"mode": "namespaces", "requested": "namespaces", "network": "host",
                       "tool": "bubblewrap"}


def test_another_sessions_file_is_invisible(box: Http) -> None:
    victim = box.run("open('secret.txt', 'w').write('s3cret'); import os; print(os.getcwd())")
    path = stdout_of(victim).strip() + "/secret.txt"
    assert Path(path).read_text() == "s3cret"  # it is there, seen from outside
    out = _outcome(box, _TRY + f"attempt(lambda: open({path!r}).read())")
    assert out.startswith("FAILED"), out


def test_the_users_home_is_invisible(box: Http) -> None:
    marker = Path.home() / f".tci-sandbox-test-{uuid.uuid4().hex}"
    marker.write_text("private")
    try:
        out = _outcome(box, _TRY + f"attempt(lambda: open({str(marker)!r}).read())")
    finally:
        marker.unlink()
    assert out.startswith("FAILED"), out


def test_runtime_dir_and_pool_connection_files_are_invisible(box: Http,
                                                             sandboxed: Emulator) -> None:
    state = sandboxed.server.state
    session = box.run("pass")["session_id"]
    assert state.pool.wait_full(60)
    pooled = state.pool._state.ready[0]  # a kernel the next tenant will get
    connection = pooled.root / "connection.json"
    assert connection.exists()
    kernels = state.launcher.runtime / "kernels"
    out = _outcome(box, _TRY + f"attempt(lambda: open({str(connection)!r}).read())\n"
                               f"attempt(lambda: __import__('os').listdir({str(kernels)!r}))",
                   session)
    lines = out.splitlines()
    assert lines[0].startswith("FAILED"), out
    # Its own kernel directory is the only one it can list.
    assert lines[1].startswith("FAILED") or pooled.id not in lines[1], out


def test_no_signal_reaches_the_server_or_another_kernel(box: Http, sandboxed: Emulator) -> None:
    state = sandboxed.server.state
    session = box.run("pass")["session_id"]
    assert state.pool.wait_full(60)
    other = state.pool._state.ready[0].pid
    out = _outcome(box, _TRY + f"import os, signal\n"
                               f"attempt(lambda: os.kill({os.getpid()}, signal.SIGTERM))\n"
                               f"attempt(lambda: os.kill({other}, signal.SIGKILL))", session)
    assert out.splitlines() == ["FAILED ProcessLookupError"] * 2, out
    assert state.pool._state.ready[0].is_alive()


def test_proc_shows_only_the_sessions_own_processes(box: Http) -> None:
    pids = box.run("import os; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    seen = eval(stdout_of(pids))  # a list of ints printed by the kernel
    assert os.getpid() not in seen
    assert max(seen) < 100 and len(seen) < 10, seen


def test_upload_through_a_symlink_swapped_in_during_upload_stays_inside(
        box: Http, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    swapper = box.run(f"""
import os, threading
def swap():
    while not os.path.exists('stop'):
        try:
            os.makedirs('d', exist_ok=True)
            os.rename('d', 'd.real')
            os.symlink({str(outside)!r}, 'd')
            os.unlink('d')
            os.rename('d.real', 'd')
        except OSError:
            pass
threading.Thread(target=swap, daemon=True).start()
""")["session_id"]
    codes = set()
    for i in range(40):
        response = box.execute("pass", swapper,
                               files=[{"name": f"d/f{i}.txt", "encoding": "string",
                                       "content": "x"}])
        codes.add(response.status_code)
        if response.status_code == 400:
            assert response.json()["error"]["param"] == "files[0].name"
    box.run("open('stop', 'w')", swapper)
    assert codes <= {200, 400}
    assert list(outside.iterdir()) == []


def test_upload_onto_a_planted_hard_link_replaces_the_link(box: Http, sandboxed: Emulator,
                                                           tmp_path: Path) -> None:
    session = box.run("pass")["session_id"]
    outside = tmp_path / "victim.txt"
    outside.write_text("original")
    # Planted from outside: inside the sandbox no outside file can even be named.
    os.link(outside, _kernel_of(sandboxed, session).workdir / "h.txt")
    box.run("pass", session, files=[{"name": "h.txt", "encoding": "string", "content": "new"}])
    assert outside.read_text() == "original"
    assert _outcome(box, "print(open('h.txt').read())", session) == "new\n"


def test_upload_lands_in_the_session_root_after_chdir(box: Http) -> None:
    session = box.run("import os; os.makedirs('sub'); os.chdir('sub')")["session_id"]
    out = _outcome(box, "import os; print(os.path.exists(os.path.join(os.environ['HOME'], "
                        "'up.txt')), os.path.exists('up.txt'))", session)
    assert out == "False False\n"
    box.run("pass", session, files=[{"name": "up.txt", "encoding": "string", "content": "u"}])
    out = _outcome(box, "print(os.path.exists(os.path.join(os.environ['HOME'], 'up.txt')), "
                        "os.path.exists('up.txt'))", session)
    assert out == "True False\n"


def test_the_connection_file_cannot_be_changed_or_swapped_for_a_symlink(box: Http) -> None:
    out = _outcome(box, _TRY + "import json, os, sys\n"
                   "path = sys.argv[sys.argv.index('-f') + 1]\n"
                   "attempt(lambda: open(path, 'a').write(' '))\n"
                   "attempt(lambda: os.replace(os.path.join(os.environ['HOME'], '..', 'ipython'),"
                   " path))\n"
                   "attempt(lambda: os.unlink(path))\n"
                   "attempt(lambda: json.load(open(path))['transport'])")
    assert [line.split()[0] for line in out.splitlines()] == ["FAILED"] * 3 + ["OK"], out


def test_a_working_directory_swapped_for_a_symlink_takes_no_upload(box: Http,
                                                                   tmp_path: Path) -> None:
    session = box.run(f"import os\nhome = os.environ['HOME']\nos.rename(home, home + '.moved')\n"
                      f"os.symlink({str(tmp_path)!r}, home)")["session_id"]
    response = box.execute("pass", session, files=[{"name": "x.txt", "encoding": "string",
                                                    "content": "x"}])
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "files"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("plant,kind", [("os.mkfifo('p')", "FIFO"),
                                        ("socket.socket(socket.AF_UNIX).bind('p')", "socket")])
def test_upload_onto_a_fifo_or_socket_is_a_prompt_400(box: Http, plant: str, kind: str) -> None:
    session = box.run(f"import os, socket\n{plant}")["session_id"]
    response = box.execute("pass", session, files=[
        {"name": "ok.txt", "encoding": "string", "content": "1"},
        {"name": "p", "encoding": "string", "content": "2"}])
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "files[1].name" and kind in error["message"], error
    assert _outcome(box, "print(open('ok.txt').read())", session) == "1\n"


def test_a_colon_is_a_valid_file_name(box: Http) -> None:
    session = box.run("pass", files=[{"name": "a:b", "encoding": "string", "content": "c"}])
    assert _outcome(box, "print(open('a:b').read())", session["session_id"]) == "c\n"


def test_pip_says_already_satisfied_for_a_preinstalled_package(box: Http) -> None:
    out = _outcome(box, "!pip install --no-index numpy")
    assert "Requirement already satisfied: numpy" in out, out


# -- every process of a session dies with it ----------------------------------------------

_SURVIVORS = """
import os, subprocess, sys
marker = {marker!r}
sleeper = [sys.executable, "-c", "import time; time.sleep(600)", marker]
subprocess.Popen(sleeper, start_new_session=True)
subprocess.Popen(["setsid", "-f", *sleeper])
subprocess.Popen(["nohup", *sleeper], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if os.fork() == 0:
    if os.fork() == 0:
        os.setsid()
        os.execv(sys.executable, sleeper)
    os._exit(0)
os.wait()
print(os.getcwd())
"""


def _marked(marker: str) -> list[int]:
    return pids_where(lambda entry: marker.encode() in (entry / "cmdline").read_bytes()
                      and (entry / "stat").read_text().split()[2] not in ("Z", "X"))


def _plant_survivors(base_url: str) -> tuple[str, Path]:
    """Start four survivors in a new session; returns their marker and the server's runtime
    directory (a killed server cannot remove it)."""
    marker = f"tci-survivor-{uuid.uuid4().hex}"
    response = requests.post(base_url + "/tci/execute", json={
        "code": _SURVIVORS.format(marker=marker), "language": "python"},
        headers={"Authorization": "Bearer k"}, timeout=120)
    assert response.status_code == 200, response.text
    wait_until(lambda: len(_marked(marker)) == 4, timeout=30)
    workdir = Path(stdout_of(response.json()["data"]).strip())
    return marker, workdir.parents[2]


def test_survivors_die_at_reset(box: Http, sandboxed: Emulator) -> None:
    marker, _ = _plant_survivors(sandboxed.base_url)
    sandboxed.reset()
    wait_until(lambda: _marked(marker) == [], timeout=15)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_survivors_die_with_the_server(sig: int) -> None:
    server = ServeProcess(["--sandbox", "namespaces", "--pool-size", "0",
                           "--no-access-log"]).start()
    try:
        marker, runtime = _plant_survivors(server.base_url)
    finally:
        server.stop(sig, timeout=15)
    wait_until(lambda: _marked(marker) == [], timeout=10)
    assert runtime.name.startswith("tci-emulator-")
    shutil.rmtree(runtime, ignore_errors=True)


def test_a_double_forked_grandchild_counts_against_the_memory_cap() -> None:
    marker = f"tci-hog-{uuid.uuid4().hex}"
    hog = (f"import os, sys\nif os.fork() == 0:\n    if os.fork() == 0:\n        os.setsid()\n"
           f"        os.execv(sys.executable, [sys.executable, '-c', "
           f"'import time; x = b\"x\" * (400 * 2**20); time.sleep(600)', {marker!r}])\n"
           f"    os._exit(0)\nos.wait()")
    with Emulator(sandbox="namespaces", pool_size=0, kernel_memory_mb=200) as emulator:
        http = Http(emulator)
        session = http.run(hog)["session_id"]
        # The run returns before the grandchild has even started: wait until it has been seen,
        # or the kernel it counted against is dead, then until it is gone.
        [live] = [s for s in emulator.server.state.sessions.all_live() if s.id == session]
        wait_until(lambda: bool(_marked(marker)) or not live.kernel.is_alive(), timeout=60)
        wait_until(lambda: _marked(marker) == [], timeout=60)
        error = http.run("print(1)", session)["outputs"][0]
        assert error["type"] == "error" and "memory cap" in error["data"], error


def _connect_code(url: str) -> str:
    host, port = url.rsplit("/", 1)[1].split(":")
    return _TRY + (f"import socket\n"
                   f"attempt(lambda: socket.create_connection(({host!r}, {port}), 5).close())")


def test_no_network_reaches_even_the_emulator() -> None:
    with Emulator(sandbox="namespaces", session_network="none", pool_size=0) as closed, \
            Emulator(sandbox="namespaces", pool_size=0) as open_:
        assert _outcome(Http(open_), _connect_code(open_.url)).startswith("OK")
        out = _outcome(Http(closed), _connect_code(closed.url))
        assert out.startswith("FAILED"), out
        assert Http(closed).get("/_emulator/health").json()["sandbox"]["network"] == "none"


# -- settings ---------------------------------------------------------------------------

def test_namespaces_without_bwrap_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TCI_EMULATOR_")}
    env["PATH"] = str(tmp_path)  # no bwrap here
    done = subprocess.run([sys.executable, "-m", "tci_emulator", "serve", "--port", "0",
                           "--sandbox", "namespaces"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "bubblewrap" in done.stderr, done.stderr


def test_auto_without_bwrap_falls_back_to_off_with_a_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    sandbox = resolve("auto", "host")
    assert sandbox.describe()["mode"] == "off" and "bubblewrap" in sandbox.reason
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    with pytest.raises(ValueError, match="session-network none"):
        resolve("auto", "none")


def test_without_the_sandbox_the_same_attempts_succeed() -> None:
    """The control: the battery's attempts are real ones, which work on bare processes."""
    with Emulator(sandbox="off", pool_size=1) as emulator:
        http = Http(emulator)
        state = emulator.server.state
        assert http.get("/_emulator/health").json()["sandbox"]["mode"] == "off"
        victim = http.run("open('secret.txt', 'w').write('s3cret'); import os; print(os.getcwd())")
        path = stdout_of(victim).strip() + "/secret.txt"
        attacker = http.run("pass")["session_id"]
        assert state.pool.wait_full(60)
        connection = state.pool._state.ready[0].root / "connection.json"
        out = _outcome(http, _TRY + f"import os\n"
                                    f"attempt(lambda: open({path!r}).read())\n"
                                    f"attempt(lambda: len(open({str(connection)!r}).read()))\n"
                                    f"attempt(lambda: os.kill({os.getpid()}, 0))", attacker)
        assert [line.split()[0] for line in out.splitlines()] == ["OK"] * 3, out


def test_a_wrapped_kernels_exit_status_reads_as_a_bare_processes() -> None:
    on = Sandbox("namespaces", "auto", "host", bwrap="/usr/bin/bwrap")
    assert (on.exit_code(137), on.exit_code(139), on.exit_code(3), on.exit_code(None)) == \
        (-signal.SIGKILL, -signal.SIGSEGV, 3, None)
    assert Sandbox("off", "off", "host").exit_code(137) == 137


def test_wrapping_binds_only_the_kernels_own_directory_read_write(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", str(tmp_path / "c.json")]
    closed = Sandbox("namespaces", "auto", "none", bwrap="/usr/bin/bwrap")
    args = closed.wrap(argv, root=tmp_path, workdir=tmp_path / "work")
    assert args[-len(argv):] == argv and "--share-net" not in args
    writable = [args[i + 1] for i, a in enumerate(args) if a == "--bind"]
    assert writable == [str(tmp_path)]
    assert Sandbox("off", "off", "host").wrap(argv, root=tmp_path, workdir=tmp_path) == argv


@pytest.mark.parametrize("setting", [{"sandbox": "bogus"}, {"session_network": "lan"}])
def test_unknown_sandbox_settings_are_refused(setting: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=next(iter(setting))):
        Config(**setting)  # type: ignore[arg-type]
