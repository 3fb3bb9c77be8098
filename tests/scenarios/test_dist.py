"""The sdist and the wheel, as a user gets them: built from this checkout, installed into a fresh
venv, and used there the documented ways.

Slow by nature, so built once and installed once per run (module-scoped fixtures; pip's own
cache keeps a second run quick); every subprocess has a deadline. The venv gets the wheel with
its dependencies, the official SDK v2 and the contract suite's test tools, but not the
``packages`` extra: so it also shows what a user without the extra sees (the hint on
``import pandas``, the note at ``serve``, the contract tests that skip).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SDK_V2 = "together==2.42.0"
# Left out of the copy that is built: local environments, caches and earlier builds.
JUNK = shutil.ignore_patterns(".git", ".venv", ".sdk", ".state", "__pycache__", "*.egg-info",
                              ".pytest_cache", ".mypy_cache", ".hypothesis", "build", "dist",
                              "node_modules", "bench.json")
INSTALL_TIMEOUT = 900  # a cold pip cache downloads jupyter, flask and the SDK

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 600)


def run(argv: list[str], *, timeout: float, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, failing the test with its output if it fails."""
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (f"{argv} exited {result.returncode}:\n"
                                    f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def user_env() -> dict[str, str]:
    """The environment of a user's shell: no TCI_EMULATOR_* settings, and no PYTHONPATH that
    would import this checkout instead of what was installed."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("TCI_EMULATOR_", "TOGETHER_")) and k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Module scope: ``{"sdist": path, "wheel": path}`` built by ``python -m build`` from a copy
    of this checkout (the wheel is built from the sdist, so the sdist must be complete)."""
    root = tmp_path_factory.mktemp("dist")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=JUNK, symlinks=True)
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(root / "out"),
         str(source)], timeout=300)
    [sdist] = (root / "out").glob("*.tar.gz")
    [wheel] = (root / "out").glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def venv(built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Module scope: a fresh venv with the wheel and its dependencies, SDK v2, requests and
    pytest-timeout (the contract suite's tools), and not the ``packages`` extra."""
    path = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(path)], timeout=120)
    run([str(path / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off",
         str(built["wheel"]), SDK_V2, "requests", "pytest-timeout"],
        timeout=INSTALL_TIMEOUT, env=user_env())
    return path


def test_twine_check_passes_on_the_sdist_and_the_wheel(built: dict[str, Path]) -> None:
    result = run([sys.executable, "-m", "twine", "check", "--strict",
                  str(built["sdist"]), str(built["wheel"])], timeout=120)
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_sdist_holds_the_whole_project(built: dict[str, Path]) -> None:
    with tarfile.open(built["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    expected = {"LICENSE", "README.md", "MANIFEST.in", "Makefile", "setup.cfg", "pyproject.toml",
                "tox.ini", "ruff.toml",
                "conftest.py", "tests/helpers.py", "tests/conftest.py", "tests/processes.py",
                "tests/sdk/ts_driver.mjs",
                "contract_tests/conftest.py", "contract_tests/client.py",
                "contract_tests/README.md",
                "benchmarks/__main__.py", "benchmarks/harness.py",
                "fixtures/cookbook/examples.json", "fixtures/cookbook/tiny.png",
                "examples/agent_tool/pyproject.toml", "docs/ci.md", ".ci/run",
                "tci_emulator/schema/responses.json", "tci_emulator/py.typed"}
    assert expected <= names, sorted(expected - names)
    assert {p.relative_to(REPO).as_posix() for p in (REPO / "tests").rglob("test_*.py")} <= names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_wheel_holds_the_package_and_not_the_repository_tooling(built: dict[str, Path]) -> None:
    with zipfile.ZipFile(built["wheel"]) as wheel:
        tops = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert "tci_emulator" in tops
    assert not [top for top in tops if top != "tci_emulator" and not top.endswith(".dist-info")]


def test_wheel_declares_its_extras_and_the_pytest_it_needs(built: dict[str, Path]) -> None:
    with zipfile.ZipFile(built["wheel"]) as wheel:
        [metadata] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        lines = wheel.read(metadata).decode().splitlines()
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel.namelist())
    requires = {line.split(": ", 1)[1] for line in lines if line.startswith("Requires-Dist: ")}
    assert {"pytest>=8.0", "pluggy>=1.3", "pandas; extra == \"packages\"",
            "tci-emulator[packages]; extra == \"sandbox\""} <= requires
    assert {"Provides-Extra: packages", "Provides-Extra: sandbox", "License: MIT"} <= set(lines)


SDK_CALL = """\
import os
from together import Together
client = Together()
r = client.code_interpreter.execute(code="print(6 * 7)", language="python")
assert r.data.outputs[0].data == "42\\n", r
r = client.code_interpreter.execute(code="import pandas", language="python")
print(r.data.outputs[-1].data.splitlines()[-1])
"""

FIXTURE_TEST = """\
def test_plugin_fixture_serves_the_sdk(tci_emulator):
    client = tci_emulator.client()
    r = client.code_interpreter.execute(code="print(6 * 7)", language="python")
    assert r.data.outputs[0].data == "42\\n"
    assert tci_emulator.usage()["total"]["cost_usd"] == 0.03
"""


@pytest.fixture(params=["wheel", "sdist"])
def installed(request: pytest.FixtureRequest, built: dict[str, Path], venv: Path) -> Iterator[Path]:
    """The venv with tci-emulator installed from the wheel or from the sdist (built by pip)."""
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off",
         "--no-deps", "--force-reinstall", str(built[request.param])],
        timeout=INSTALL_TIMEOUT, env=user_env())
    yield venv


def test_installed_package_serves_waits_answers_the_sdk_and_runs_the_fixture(
        installed: Path, tmp_path: Path) -> None:
    bindir = installed / "bin"
    env = user_env()
    where = run([str(bindir / "python"), "-c", "import tci_emulator; print(tci_emulator.__file__)"],
                timeout=60, cwd=tmp_path, env=env).stdout
    assert where.startswith(str(installed)), where  # the installed copy, not this checkout

    ready_file, log = tmp_path / "url", tmp_path / "serve.log"
    with log.open("w") as log_stream:
        server = subprocess.Popen([str(bindir / "tci-emulator"), "serve", "--port", "0",
                                   "--pool-size", "1", "--ready-file", str(ready_file)],
                                  cwd=tmp_path, env=env, stdout=log_stream, stderr=log_stream,
                                  stdin=subprocess.DEVNULL)
    try:
        run([str(bindir / "tci-emulator"), "wait", "--ready-file", str(ready_file),
             "--timeout", "180"], timeout=240, cwd=tmp_path, env=env)
        base_url = ready_file.read_text().strip() + "/v1"
        sdk = run([str(bindir / "python"), "-c", SDK_CALL], timeout=300, cwd=tmp_path,
                  env={**env, "TOGETHER_BASE_URL": base_url, "TOGETHER_API_KEY": "smoke-key"})
    finally:
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=60)
    assert exit_code == 0
    assert sdk.stdout == ("tci-emulator: pandas is one of the packages TCI has pre-installed; "
                          "install them where the emulator runs with: "
                          "pip install 'tci-emulator[packages]'\n")
    assert "are not installed here (" in log.read_text()  # serve said so at start
    assert not ready_file.exists()

    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "test_uses_fixture.py").write_text(FIXTURE_TEST)
    result = run([str(bindir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                 timeout=300, cwd=tmp_path / "project", env=env)
    assert "1 passed" in result.stdout


def test_unpacked_sdist_runs_the_contract_suite_in_process(
        built: dict[str, Path], venv: Path, tmp_path: Path) -> None:
    with tarfile.open(built["sdist"]) as archive:
        archive.extractall(tmp_path, filter="data")
    [unpacked] = [p for p in tmp_path.iterdir() if p.is_dir()]
    result = run([str(venv / "bin" / "python"), "-m", "pytest", "contract_tests", "-k",
                  "inprocess", "-q", "-rs", "-p", "no:cacheprovider"],
                 timeout=900, cwd=unpacked, env=user_env())
    assert " passed" in result.stdout and " failed" not in result.stdout
    # Without the packages extra, what needs it skips, saying why.
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skips) == 2, result.stdout
    assert all("install tci-emulator[packages] where the target runs" in line
               for line in skips), skips
