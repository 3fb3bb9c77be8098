"""The forking kernel launcher: kernels forked from a template share nothing with each other.

Real kernels forked by a real template, through the real HTTP API. The escape battery
(``test_sandbox.py``) runs with this launcher too, since it is the default.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from contract_tests.process import ServeProcess
from tci_emulator import Emulator
from tci_emulator.clock import Clock
from tci_emulator.config import Config
from tci_emulator.kernels import KernelLauncher, launcher_for
from tci_emulator.kernels.fork import ForkingKernelLauncher
from tci_emulator.kernels.sandbox import Sandbox

from .helpers import Http, checked_handle, stdout_of, wait_until
from .processes import pids_where, process_gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the forking launcher is Linux-only")


@pytest.fixture(scope="module", params=["off", "namespaces"], ids=["bare", "sandboxed"])
def forking(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """An emulator forking its kernels, bare and in the sandbox; numpy is preloaded, so its
    global random state is one the template seeded."""
    with Emulator(kernel_launcher="fork", sandbox=request.param, pool_size=1,
                  preload=("numpy",)) as emulator:
        yield emulator


@pytest.fixture
def http(forking: Emulator) -> Iterator[Http]:
    yield from checked_handle(forking)


def test_health_says_the_fork_launcher_is_in_force(http: Http, forking: Emulator) -> None:
    assert forking.server.state.pool.wait_full(60)  # the template starts with the first kernel
    launcher = http.get("/_emulator/health").json()["launcher"]
    assert launcher["in_force"] == "fork" and launcher["requested"] == "fork", launcher
    assert isinstance(launcher["template_pid"], int), launcher


_CHANGE_EVERYTHING = """
import builtins, tabnanny, string
planted = "mine"
builtins.abs = lambda number: "patched"
string.digits = "changed"
get_ipython().planted = True  # the shell the template built for every kernel
get_ipython().register_magic_function(lambda line: "mine", magic_name="planted")
print(abs(-2), string.digits, "tabnanny" in __import__("sys").modules)
"""

_LOOK_FOR_IT = """
import string, sys
print("planted" in globals(), abs(-2), string.digits, "tabnanny" in sys.modules,
      hasattr(get_ipython(), "planted"), "planted" in get_ipython().magics_manager.magics["line"])
"""


def test_nothing_one_session_changes_appears_in_the_next(http: Http) -> None:
    assert stdout_of(http.run(_CHANGE_EVERYTHING)) == "patched changed True\n"
    for _ in range(2):  # the warm one from the pool, then one forked on demand
        assert stdout_of(http.run(_LOOK_FOR_IT)) == "False 2 0123456789 False False False\n"


_DRAW = """
import random, secrets, tempfile, uuid, numpy
print(random.random(), numpy.random.random(), uuid.uuid4(), secrets.token_hex(8),
      tempfile.NamedTemporaryFile().name)
"""


def test_random_states_differ_across_twenty_back_to_back_sessions(http: Http) -> None:
    draws = [stdout_of(http.run(_DRAW)).split() for _ in range(20)]
    for column, name in enumerate(["random", "numpy.random", "uuid4", "secrets", "tempfile"]):
        values = [row[column] for row in draws]
        assert len(set(values)) == 20, (name, values)


def test_no_descriptor_of_the_template_is_open_in_a_kernel(http: Http,
                                                           forking: Emulator) -> None:
    template = forking.server.state.launcher.template.pid  # type: ignore[attr-defined]
    assert template is not None
    ours = {os.readlink(f"/proc/{template}/fd/{fd}") for fd in os.listdir(f"/proc/{template}/fd")}
    code = ("import os\nfor fd in os.listdir('/proc/self/fd'):\n    try:\n"
            "        print(os.readlink('/proc/self/fd/' + fd))\n    except OSError:\n        pass")
    seen = set(stdout_of(http.run(code)).split())
    pipes = {target for target in ours if target.startswith("pipe:")}
    assert pipes and not pipes & seen, (pipes, seen)


def test_a_killed_template_is_replaced_and_sessions_keep_coming(http: Http,
                                                                forking: Emulator) -> None:
    assert stdout_of(http.run("print(1)")) == "1\n"
    before = http.get("/_emulator/health").json()["launcher"]
    os.kill(before["template_pid"], signal.SIGKILL)
    wait_until(lambda: process_gone(before["template_pid"]), timeout=15)
    for _ in range(3):
        assert stdout_of(http.run("print(2)")) == "2\n"
    after = http.get("/_emulator/health").json()["launcher"]
    assert after["template_pid"] not in (None, before["template_pid"]), after
    assert after["template_starts"] > before["template_starts"], after


# What a kernel's shell knows of the kernel it serves and of the session it runs in. The
# template builds the shell before there is a session or a kernel; a forked kernel must not
# show it.
_SHELL_FACTS = """
import os, sys
ip = get_ipython()
home = os.environ["IPYTHONDIR"]
print(type(ip).__name__, type(ip.kernel).__name__, ip.parent is ip.kernel,
      ip.displayhook.session is ip.kernel.session, type(sys.stdout).__name__,
      ip.starting_dir == os.getcwd(), [str(d) for d in _dh] == [os.getcwd()],
      ip.ipython_dir == home, ip.profile_dir.location == os.path.join(home, "profile_default"),
      ip.home_dir == os.path.expanduser("~"), os.environ.get("PAGER"), os.environ.get("TERM"))
"""
_FRESH_SHELL = ("ZMQInteractiveShell IPythonKernel True True OutStream" + " True" * 5
                + " cat xterm-color\n")
_STARTUP_FILE = """
import os
folder = os.path.join(os.environ["IPYTHONDIR"], "profile_default", "startup")
os.makedirs(folder, exist_ok=True)
with open(os.path.join(folder, "00-mark.py"), "w") as handle:
    handle.write("STARTED_FROM_MY_PROFILE = 42")
"""


@pytest.mark.parametrize("sandbox", ["off", "namespaces"])
def test_a_forked_kernel_is_set_up_as_a_spawned_one(sandbox: str) -> None:
    seen: dict[str, list[str]] = {}
    for launcher in ("spawn", "fork"):
        with Emulator(kernel_launcher=launcher, sandbox=sandbox, pool_size=0) as emulator:
            http = Http(emulator)
            try:
                first = http.run(_SHELL_FACTS)
                session = first["session_id"]
                http.run(_STARTUP_FILE, session)
                died = http.execute("import os; os._exit(3)", session)  # restarted, same profile
                assert died.status_code == 200 and "KernelDied" in died.text, died.text
                seen[launcher] = [stdout_of(first),
                                  stdout_of(http.run("print(STARTED_FROM_MY_PROFILE)", session)),
                                  stdout_of(http.run(_SHELL_FACTS, session))]
            finally:
                http.session.close()
    facts = _FRESH_SHELL
    assert seen["spawn"] == [facts, "42\n", facts], seen["spawn"]
    assert seen["fork"] == seen["spawn"], seen


def test_a_kernel_spec_with_arguments_of_its_own_is_forked_with_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The template configured its kernel application for the usual command line; a kernel
    whose command line says more is configured by it, as a spawned one would be."""
    spec = tmp_path / "kernels" / "python3-colors"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--InteractiveShell.colors=linux"],
        "display_name": "Python 3 (colors)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with Emulator(kernel_name="python3-colors", sandbox="off", pool_size=0) as emulator:
        http = Http(emulator)
        try:
            launcher = http.get("/_emulator/health").json()["launcher"]
            assert launcher["in_force"] == "fork", launcher
            facts = stdout_of(http.run(_SHELL_FACTS))
            # IPython 8 (the last for Python 3.10) spells the scheme "Linux", 9 "linux".
            assert stdout_of(http.run("print(get_ipython().colors)")).lower() == "linux\n"
            parent = int(stdout_of(http.run("import os; print(os.getppid())")))
            assert parent == http.get("/_emulator/health").json()["launcher"]["template_pid"]
        finally:
            http.session.close()
    assert facts == _FRESH_SHELL, facts


def _children_of(pid: int) -> list[int]:
    return pids_where(lambda entry: (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                      == str(pid))


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if not process_gone(pid)]


@pytest.mark.parametrize("sandbox", ["off", "namespaces"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_template_or_kernel_outlives_the_server(sig: int, sandbox: str) -> None:
    server = ServeProcess(["--kernel-launcher", "fork", "--sandbox", sandbox, "--pool-size", "2",
                           "--no-access-log"]).start()
    try:
        for _ in range(2):
            response = requests.post(server.base_url + "/tci/execute", json={
                "code": "print(1)", "language": "python"},
                headers={"Authorization": "Bearer k"}, timeout=120)
            assert response.status_code == 200, response.text
        health = requests.get(server.url + "/_emulator/health", timeout=30).json()
        template = health["launcher"]["template_pid"]
        wait_until(lambda: len(_children_of(template)) >= 4, timeout=60)  # 2 sessions, 2 warm
        family = [template, *_children_of(template)]
        family += [grandchild for child in family[1:] for grandchild in _children_of(child)]
    finally:
        server.stop(sig, timeout=15)
    wait_until(lambda: _alive(family) == [], timeout=10)


@pytest.mark.parametrize(("settings", "kind", "reason"), [
    ({"kernel_launcher": "spawn"}, KernelLauncher, None),
    ({"kernel_name": "no-such-spec"}, KernelLauncher, "no-such-spec"),
    ({}, ForkingKernelLauncher, None),
], ids=["asked-for", "spec-cannot-be-forked", "fork"])
def test_spawn_is_used_when_asked_for_or_when_the_spec_cannot_be_forked(
        settings: dict[str, Any], kind: type[KernelLauncher], reason: str | None) -> None:
    launcher, fallback = launcher_for(Config(**settings), Clock(), Sandbox("off", "off", "host"))
    try:
        assert type(launcher) is kind
        assert fallback is None if reason is None else fallback is not None and reason in fallback
    finally:
        launcher.close()


def test_an_unknown_launcher_is_refused() -> None:
    with pytest.raises(ValueError, match="kernel_launcher must be one of fork, spawn"):
        Config(kernel_launcher="vfork")
