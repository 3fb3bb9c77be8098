"""The private runtime directory of one server, and the clean-up of those whose server died.

Each server keeps its kernels' sockets, connection files and working directories in one
``tci-emulator-*`` directory under the system's temporary directory, removed when it stops. A
server killed by SIGKILL (or the OOM killer) cannot remove its own, and session files there can be
hundreds of megabytes; so each directory holds an ``.owner`` file that its server keeps locked
(``flock``) for its whole life, and every start removes the directories whose ``.owner`` nobody
holds any more. The lock dies with its process, whatever killed it; a pid written in a file would
not tell a dead server from a new process that got the same pid.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["PREFIX", "RuntimeDir", "remove_dead_runtime_dirs"]

PREFIX = "tci-emulator-"
OWNER = ".owner"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class RuntimeDir:
    """A fresh 0700 runtime directory, owned (locked) until :meth:`remove`."""

    def __init__(self, parent: str | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))  # created 0700
        # Locked before it gets its name, so no other start ever sees it unlocked.
        fd, temp = tempfile.mkstemp(dir=self.path, prefix=".owner-")
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.rename(temp, self.path / OWNER)
        self._fd: int | None = fd

    def remove(self) -> None:
        """Delete the directory and let go of it."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def remove_dead_runtime_dirs(parent: str | None = None) -> list[Path]:
    """Remove this user's runtime directories whose server is gone; returns those removed.

    Only directories that are ours (same uid, not a symlink) and carry an ``.owner`` file that
    can be locked are touched: one still being created has no ``.owner`` yet, and a live
    server's is locked.
    """
    removed: list[Path] = []
    root = Path(parent or tempfile.gettempdir())
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return removed
    for path in candidates:
        try:
            info = path.lstat()
            if not path.is_dir() or path.is_symlink() or info.st_uid != os.getuid():
                continue
            fd = os.open(path / OWNER, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if _try_lock(fd):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        finally:
            os.close(fd)
    return removed
