"""``tci-emulator serve`` as a child process: start it, learn its URL, stop it.

For whoever needs the real command rather than an in-process server: the contract suite's
``serve`` target, the benchmark's start-up figures, and tests of signals and restarts. The
server prints ``... listening on URL`` as its first line on stdout once it accepts requests.

Tooling of the repository, not of the installed package (nothing in ``tci_emulator`` starts
itself as a child): it lives with the contract suite, which needs it wherever the suite runs (an
unpacked sdist included) and which the tests and the benchmark may import.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

from tci_emulator.lifecycle import Lifecycle

__all__ = ["ServeProcess"]


class ServeProcess(Lifecycle[int]):
    """A ``python -m tci_emulator serve --port 0 ...`` child process on loopback, started and
    stopped as every :class:`~tci_emulator.lifecycle.Lifecycle` is; :meth:`stop` takes the
    signal to send and reports the exit code."""

    def __init__(self, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None,
                 settings_env: Mapping[str, str] | None = None,
                 start_timeout: float = 60.0) -> None:
        super().__init__()
        self.args = ["--port", "0", *args]
        base = dict(os.environ if env is None else env)
        # The child is configured by its arguments (and ``settings_env``, for tests of the
        # variables themselves) only, not by the caller's TCI_EMULATOR_*.
        self.env = {k: v for k, v in base.items() if not k.startswith("TCI_EMULATOR_")}
        self.env.update(settings_env or {})
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def _start(self) -> None:
        """Start the server and wait for its ``listening on`` line."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tci_emulator", "serve", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            text=True, env=self.env)
        assert self.process.stdout is not None
        # The first line comes once the server accepts requests (or the pipe closes if it dies);
        # a server that does neither within start_timeout is killed.
        ready, _, _ = select.select([self.process.stdout], [], [], self.start_timeout)
        line = self.process.stdout.readline() if ready else ""
        if "listening on" not in line:
            self._terminate(signal.SIGKILL)
            raise RuntimeError(f"tci-emulator serve did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[1].strip()

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit code (killing it if it does not exit in time);
        0 when it was not running."""
        return self._terminate(sig, timeout) if self._claim_stop() else 0

    def _stop(self) -> int:
        return self._terminate(signal.SIGTERM)

    def _terminate(self, sig: int, timeout: float = 30.0) -> int:
        process, self.process = self.process, None
        if process is None:
            return 0
        try:
            if process.poll() is None:
                process.send_signal(sig)
            try:
                return process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                return process.wait()
        finally:
            if process.stdout is not None:
                process.stdout.close()
