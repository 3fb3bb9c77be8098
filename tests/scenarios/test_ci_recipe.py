"""docs/ci.md's second recipe, run here: its shell steps as GitHub Actions would run them.

The steps are read from the document itself (so the recipe cannot drift from what is tested)
and run with bash the way Actions does (``bash -eo pipefail``, ``RUNNER_TEMP``, variables
appended to ``GITHUB_ENV`` visible to later steps, ``if: always()`` steps run after a failure).
The two install steps and the ``uses:`` actions are left out: the emulator and the TypeScript
SDK are already installed here (``.sdk/ts``), and the project under test is a small one made
here whose ``npm test`` calls the SDK.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..helpers import wait_until
from ..processes import process_gone
from ..sdks import sdk_dir

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"
SMOKE = """\
import Together from "together-ai";
const client = new Together();  // TOGETHER_BASE_URL and TOGETHER_API_KEY, as the recipe sets them
const r = await client.codeInterpreter.execute({ code: "print(6 * 7)", language: "python" });
if (r.data.outputs[0].data !== "42\\n") {
  console.error(JSON.stringify(r));
  process.exit(1);
}
const listed = await client.codeInterpreter.sessions.list();
console.log("ts sdk ok", r.data.session_id, listed.data.sessions.length);
"""


def recipe(number: int) -> dict[str, Any]:
    """The ``number``-th (1-based) YAML workflow of docs/ci.md, parsed."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    workflow: dict[str, Any] = yaml.safe_load(blocks[number - 1])
    return workflow


def github_env(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines steps appended to ``$GITHUB_ENV``."""
    lines = path.read_text().splitlines() if path.exists() else []
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_second_recipe_serves_waits_runs_the_ts_sdk_and_stops(tmp_path: Path) -> None:
    node_modules = sdk_dir() / "ts" / "node_modules"
    if not (node_modules / "together-ai").is_dir():
        pytest.fail(f"the TypeScript SDK is not installed under {sdk_dir()} (run `make sdks`)")
    project = tmp_path / "project"
    project.mkdir()
    (project / "node_modules").symlink_to(node_modules)
    (project / "package.json").write_text(
        '{"name": "ci-recipe-check", "private": true, "type": "module", '
        '"scripts": {"test": "node smoke.mjs"}}\n')
    (project / "smoke.mjs").write_text(SMOKE)
    runner_temp, env_file = tmp_path / "runner-temp", tmp_path / "github-env"
    runner_temp.mkdir()

    job = recipe(2)["jobs"]["test"]
    steps = [s for s in job["steps"] if "run" in s and not s["name"].startswith("Install")]
    assert [s["name"] for s in steps] == ["Start the TCI emulator",
                                          "Wait until it can serve sessions", "Test",
                                          "Stop the TCI emulator"]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TCI_EMULATOR_", "TOGETHER_"))}
    base["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "")])
    base.update(RUNNER_TEMP=str(runner_temp), GITHUB_ENV=str(env_file), CI="true")
    base.update({k: str(v) for k, v in job.get("env", {}).items()})

    outputs: dict[str, str] = {}
    failed: str | None = None
    try:
        for step in steps:
            if failed is not None and step.get("if") != "always()":
                continue
            result = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                cwd=project, env={**base, **github_env(env_file)}, capture_output=True,
                text=True, timeout=300, stdin=subprocess.DEVNULL)
            outputs[step["name"]] = result.stdout + result.stderr
            if result.returncode != 0 and failed is None:
                failed = (f"step {step['name']!r} exited {result.returncode}:\n"
                          f"{outputs[step['name']]}")
    finally:
        pid = int(github_env(env_file).get("TCI_EMULATOR_PID", "0"))
        if pid and not process_gone(pid):  # the recipe's stop step did not run or did not stop it
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: process_gone(pid), timeout=60)
    assert failed is None, failed
    assert pid and process_gone(pid)
    ready = (runner_temp / "tci-url")
    assert not ready.exists()  # the server removed its ready file as it stopped
    url = github_env(env_file)["TOGETHER_BASE_URL"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url), url
    assert outputs["Wait until it can serve sessions"] == \
        f"tci-emulator: {url.removesuffix('/v1')} is ready\n"
    assert re.search(r"^ts sdk ok ses_\w{21} 1$", outputs["Test"], flags=re.M), outputs["Test"]
    log = outputs["Stop the TCI emulator"]
    assert f"listening on {url.removesuffix('/v1')}" in log
    assert "settings: --port 0\n" in log
    assert "POST /v1/tci/execute 200" in log
