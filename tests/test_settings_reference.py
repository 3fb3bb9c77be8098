"""The generated settings reference: current, and complete."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from tci_emulator.config import Config, env_names, flag_name
from tci_emulator.settings_reference import render

PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_docs_settings_md_is_what_make_docs_writes() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/settings.md is stale: run `make docs` and commit it")


def test_every_setting_has_a_row_with_its_flag_variables_and_default() -> None:
    rows = [line for line in render().splitlines() if line.startswith("| `--")]
    assert len(rows) == len(dataclasses.fields(Config))
    for f, row in zip(dataclasses.fields(Config), rows, strict=True):
        assert row.startswith(f"| `{flag_name(f)}"), row
        assert all(f"`{name}`" in row for name in env_names(f)), row


def test_check_exits_1_on_a_stale_page_and_0_on_a_current_one(tmp_path: Path) -> None:
    page = tmp_path / "settings.md"
    command = [sys.executable, "-m", "tci_emulator.settings_reference"]
    subprocess.run([*command, "--write", str(page)], check=True, timeout=60)
    assert subprocess.run([*command, "--check", str(page)], timeout=60).returncode == 0
    page.write_text(page.read_text().replace("3600", "1800"))
    stale = subprocess.run([*command, "--check", str(page)], capture_output=True, text=True,
                           timeout=60)
    assert stale.returncode == 1 and "make docs" in stale.stderr
