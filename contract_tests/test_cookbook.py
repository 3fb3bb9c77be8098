"""Contract section 9: the real recorded examples (COOKBOOK) reproduced against the target.

The examples, their files and the outputs the hosted service returned live in
``fixtures/cookbook/`` (see its README for the source). Each example runs as the notebook ran it:
a new session per call, unless the call continues the previous call's session.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from .conftest import FIXTURES, Wire

COOKBOOK = FIXTURES / "cookbook"
RECORDING = json.loads((COOKBOOK / "examples.json").read_text(encoding="utf-8"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _upload(spec: dict[str, str]) -> dict[str, str]:
    """The ExecuteRequest ``files`` item for a fixture file, in the example's encoding."""
    raw = (COOKBOOK / spec["fixture"]).read_bytes()
    text = spec["encoding"] == "string"
    content = raw.decode("utf-8") if text else base64.b64encode(raw).decode()
    return {"name": spec["name"], "encoding": spec["encoding"], "content": content}


def _compare(how: str, outputs: list[dict[str, Any]], recorded: list[dict[str, Any]]) -> None:
    if how == "exact":
        assert outputs == recorded
    elif how == "stdout_exact_then_png":
        assert [item["type"] for item in outputs] == ["stdout", "display_data"]
        assert outputs[0] == recorded[0]
        bundle = outputs[1]["data"]
        assert base64.b64decode(bundle["image/png"], validate=True).startswith(PNG_SIGNATURE)
        assert bundle["text/plain"].startswith("<Figure size ")
    else:
        raise AssertionError(f"examples.json: unknown comparison {how!r}")


def test_recording_names_its_source() -> None:
    assert RECORDING["source"] == ("togethercomputer/together-cookbook "
                                   "Together_Code_Interpreter.ipynb")
    assert all(example["source"].startswith(RECORDING["source"])
               for example in RECORDING["examples"])


# Examples that import packages of TCI's pre-installed set (skipped where the target lacks them).
NEEDS = {"csv_regression_plot": ("pandas", "matplotlib", "scipy")}


@pytest.mark.parametrize("example", [
    pytest.param(example, id=example["id"],
                 marks=[pytest.mark.needs_packages(*NEEDS[example["id"]])]
                 if example["id"] in NEEDS else [])
    for example in RECORDING["examples"]])
def test_cookbook_example_reproduces_its_recorded_output(wire: Wire,
                                                         example: dict[str, Any]) -> None:
    session_id: str | None = None
    for step in example["steps"]:
        continues = bool(step.get("same_session"))
        files = [_upload(spec) for spec in step["files"]] or None
        data = wire.run(step["code"], session_id if continues else None, files=files)
        if continues:
            assert data["session_id"] == session_id
        session_id = data["session_id"]
        if step["recorded"] is not None:
            _compare(example["compare"], data["outputs"], step["recorded"]["outputs"])
