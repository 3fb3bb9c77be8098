"""The benchmark's harness: its figures, its table and its exit code (the measurements themselves
run with ``make bench``, which prints them; their timings are never asserted here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.harness import QUICK, Row, percentile, render, report
from benchmarks.suite import main


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)
    assert math.isnan(percentile([], 0.5))


def test_latency_rows_are_scaled_to_their_unit_and_rendered_with_their_verdict() -> None:
    row = Row.latency("same session", [0.001, 0.002, 0.003], target="<= 2 ms", passed=True)
    assert row.p50 == pytest.approx(2.0)
    assert (row.n, row.result) == (3, "PASS")
    table = render([row, Row("memory", "MB", value=48.25, note="info")]).splitlines()
    assert table[0].startswith("| measurement | p50 | p95 |")
    assert table[2] == "| same session | 2.00 | 2.90 | - | ms | 3 | - | <= 2 ms | PASS |"
    assert table[3] == "| memory | - | - | 48.2 | MB | - | - | - | info |"


@pytest.mark.parametrize(("passed", "code"), [(True, 0), (None, 0), (False, 1)])
def test_report_exits_1_only_when_a_row_missed_its_target_and_writes_every_row_as_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], passed: bool | None,
        code: int) -> None:
    rows = [Row("a", "ms", p50=1.0, passed=True), Row("b", "exec/s", value=3.0, passed=passed)]
    about = {"cpus": 2, "load_average": (0.5, 0.5, 0.5), "python": "3.11",
             "jupyter_client": "8", "ipykernel": "7"}
    path = tmp_path / "bench.json"
    assert report(rows, about=about, plan=QUICK, quick=True, duration=1.0, json_path=path) == code
    assert "| b |" in capsys.readouterr().out
    written = json.loads(path.read_text())
    assert [r["name"] for r in written["rows"]] == ["a", "b"]
    assert written["rows"][1]["result"] == {True: "PASS", None: "", False: "FAIL"}[passed]
    assert written["plan"]["cold"] == QUICK.cold and written["quick"] is True


def test_the_command_line_refuses_an_unknown_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--no-such-flag"])
    assert exited.value.code == 2
    assert "python -m benchmarks" in capsys.readouterr().err
