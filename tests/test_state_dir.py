"""The state directory cannot be lost in silence: one server per directory, a ledger checked at
start, a refused start that says why in one line with exit status 2; and what a dead server left
in its runtime directory is removed by the next start."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from contract_tests.process import ServeProcess
from tci_emulator.ledger import Ledger
from tci_emulator.runtime import OWNER, PREFIX

from .helpers import wait_until
from .processes import kernels_launched_by, process_gone

PAGE = 4096


def serve_fails(*args: str) -> tuple[int, list[str]]:
    """Run ``tci-emulator serve`` that is expected not to start: its exit status and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TCI_EMULATOR_")}
    done = subprocess.run([sys.executable, "-m", "tci_emulator", "serve", "--port", "0",
                           "--pool-size", "0", "--no-access-log", *args],
                          capture_output=True, text=True, timeout=120, env=env)
    return done.returncode, done.stderr.splitlines()


def assert_refused(state_dir: Path, *words: str) -> None:
    status, lines = serve_fails("--state-dir", str(state_dir))
    assert status == 2, lines
    assert len(lines) == 1 and lines[0].startswith("tci-emulator: "), lines
    assert "Traceback" not in lines[0] and all(w in lines[0] for w in words), lines


def a_ledger(directory: Path, sessions: int = 500) -> bytes:
    """A real ledger file with ``sessions`` rows (many pages), as bytes."""
    directory.mkdir(exist_ok=True)
    ledger = Ledger(Decimal("0.03"), path=directory / "ledger.sqlite3")
    now = datetime.now(timezone.utc)
    for index in range(sessions):
        ledger.open_session(f"ses_{index:021d}", "f" * 64, now)
        ledger.count_execution(f"ses_{index:021d}")  # answered: kept open rows are not withdrawn
    ledger.close()
    return (directory / "ledger.sqlite3").read_bytes()


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "garbage_header": lambda data: b"this is not a database" + data[22:],
    "cut_to_8_KiB": lambda data: data[:2 * PAGE],
    "one_zeroed_page": lambda data: data[:5 * PAGE] + bytes(PAGE) + data[6 * PAGE:],
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_ledger_stops_the_start_with_one_line(tmp_path: Path, damage: str) -> None:
    data = a_ledger(tmp_path / "made")
    assert len(data) > 6 * PAGE
    state = tmp_path / "state"
    state.mkdir()
    (state / "ledger.sqlite3").write_bytes(DAMAGE[damage](data))
    assert_refused(state, str(state / "ledger.sqlite3"))


def test_an_empty_ledger_file_is_refused_not_started_empty(tmp_path: Path) -> None:
    (tmp_path / "ledger.sqlite3").write_bytes(b"")
    assert_refused(tmp_path, "empty", "lost")


def test_a_database_of_another_program_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "ledger.sqlite3")
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    db.commit()
    db.close()
    assert_refused(tmp_path, "other program")


def test_a_second_server_on_the_same_state_dir_exits_2_naming_the_holder(
        tmp_path: Path) -> None:
    with ServeProcess(["--pool-size", "0", "--state-dir", str(tmp_path),
                       "--no-access-log"]) as first:
        assert_refused(tmp_path, "in use", f"pid {first.pid}")
        # The first server is untouched by the attempt.
        assert requests.get(first.url + "/_emulator/health", timeout=10).status_code == 200


def test_a_healthy_ledger_still_opens_after_a_restart(tmp_path: Path) -> None:
    a_ledger(tmp_path, sessions=3)
    with ServeProcess(["--pool-size", "0", "--state-dir", str(tmp_path),
                       "--no-access-log"]) as server:
        usage = requests.get(server.url + "/_emulator/usage", timeout=10).json()
        assert usage["total"]["sessions"] == 3


@pytest.mark.parametrize("content", [
    "[" * 100_000,  # nested too deeply for the JSON parser
    "{\"action\": \"latency\", \"seconds\": [0, 1" + "0" * 400 + "]}",
    "not json at all",
    "\udcff",
])
def test_a_bad_faults_file_is_exit_2_with_one_line(tmp_path: Path, content: str) -> None:
    rules = tmp_path / "rules.json"
    rules.write_bytes(content.encode("utf-8", "surrogateescape"))
    status, lines = serve_fails("--faults", str(rules))
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"tci-emulator: fault rules ({rules})"), lines


def _runtime_dir_of(pid: int) -> Path:
    """The runtime directory whose owner file names ``pid``."""
    for directory in Path(os.environ.get("TMPDIR", "/tmp")).glob(PREFIX + "*"):
        try:
            if (directory / OWNER).read_text().strip() == str(pid):
                return directory
        except OSError:
            continue
    raise AssertionError(f"no runtime directory of pid {pid}")


def test_the_runtime_dir_of_a_killed_server_is_removed_at_the_next_start() -> None:
    killed = ServeProcess(["--pool-size", "1", "--no-access-log"]).start()
    runtime = _runtime_dir_of(killed.pid)
    leftover = runtime / "kernels" / "session-file.bin"
    leftover.parent.mkdir(exist_ok=True)
    leftover.write_bytes(b"\0" * (1 << 20))
    kernels = kernels_launched_by(killed.pid)
    killed.stop(signal.SIGKILL)
    assert runtime.exists()  # a killed server cannot clean up after itself
    wait_until(lambda: all(process_gone(p) for p in kernels), timeout=30)
    with ServeProcess(["--pool-size", "0", "--no-access-log"]) as next_server:
        assert not runtime.exists()
        assert _runtime_dir_of(next_server.pid).exists()  # its own is kept
