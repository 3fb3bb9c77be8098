"""Runtime directories: a dead server's is removed by the next start, a live one's never."""

from __future__ import annotations

import os
from pathlib import Path

from tci_emulator.runtime import OWNER, PREFIX, RuntimeDir, remove_dead_runtime_dirs


def test_only_directories_whose_owner_is_gone_are_removed(tmp_path: Path) -> None:
    live = RuntimeDir(str(tmp_path))
    dead = tmp_path / f"{PREFIX}dead"
    (dead / "kernels").mkdir(parents=True)
    (dead / OWNER).write_text("4242\n")  # nobody holds its lock: its server is gone
    (dead / "kernels" / "big.bin").write_bytes(b"\0" * 1024)
    starting = tmp_path / f"{PREFIX}starting"  # no owner file yet: being created right now
    starting.mkdir()
    other = tmp_path / "unrelated"
    other.mkdir()
    try:
        assert remove_dead_runtime_dirs(str(tmp_path)) == [dead]
        assert not dead.exists()
        assert live.path.exists() and starting.exists() and other.exists()
        assert (live.path / OWNER).read_text().strip() == str(os.getpid())
    finally:
        live.remove()
    assert not live.path.exists()


def test_a_symlink_named_like_a_runtime_dir_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / OWNER).write_text("")
    (tmp_path / f"{PREFIX}link").symlink_to(target)
    assert remove_dead_runtime_dirs(str(tmp_path)) == []
    assert (target / OWNER).exists()
