"""One benchmark run: its plan, the raw kernels and emulators it started, the rows it measured.

The row modules (:mod:`.front_door`, :mod:`.memory`, :mod:`.in_process`, :mod:`.sandbox`,
:mod:`.fork`, :mod:`.gateway`) are functions of a :class:`Run`; everything they start is put on
the run's exit stack, so it is stopped whatever happens.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from contract_tests.process import ServeProcess

from .client import Client, stdout_of
from .harness import BenchError, Plan, Row, poll
from .raw import RawKernels

__all__ = ["Run", "POOL_SIZE"]

POOL_SIZE = 2


class Run:
    """What every measurement of one run shares; rows are appended to :attr:`rows` in order."""

    def __init__(self, plan: Plan, stack: ExitStack, kernel_name: str = "python3") -> None:
        self.plan = plan
        self.kernel_name = kernel_name
        workdir = Path(tempfile.mkdtemp(prefix="tci-bench-"))
        stack.callback(shutil.rmtree, workdir, True)
        self.raw = RawKernels(workdir, kernel_name)
        stack.callback(self.raw.stop)
        self.stack = stack
        self.rows: list[Row] = []
        self.cold_p50 = float("nan")  # set by the cold-start baseline, compared with after

    def serve(self, *extra: str) -> tuple[ServeProcess, Client]:
        """The emulator under test with this run's settings plus ``extra``, and a client of it
        (see :meth:`launch`). Stalled connections stay stalled for the length of the run."""
        return self.launch("--pool-size", str(POOL_SIZE), "--no-access-log", "--kernel-name",
                           self.kernel_name, "--max-sessions", "200", "--client-timeout", "300",
                           *extra)

    def launch(self, *args: str) -> tuple[ServeProcess, Client]:
        """A ``tci-emulator serve`` with exactly ``args`` and a client of it, both stopped at the
        end of the run (earlier if the caller stops them)."""
        server = ServeProcess(args)
        self.stack.callback(server.stop)
        server.start()
        return server, self.clients(server, 1)[0]

    def clients(self, server: ServeProcess, count: int) -> list[Client]:
        """``count`` clients of ``server`` (a connection each), closed at the end of the run."""
        made = [Client(server.url) for _ in range(count)]
        for client in made:
            self.stack.callback(client.close)
        return made

    @staticmethod
    def settle(client: Client, *, sessions: bool = True) -> None:
        """Wait until the pool is full and nothing is starting; with ``sessions``, also until no
        session is left and no kernel is stopping."""
        def settled() -> bool:
            health = client.health()
            pool = health["pool"]
            full = pool["ready"] == pool["size"] and not pool["starting"]
            idle = health["sessions"] == 0 and health["kernels"] == pool["size"]
            return bool(full and (idle or not sessions))
        poll(settled, 120, "the pool to refill")

    def new_session_times(self, client: Client, count: int) -> list[float]:
        """Seconds of ``count`` new sessions (``print(1)``), each on a settled emulator."""
        samples = []
        for _ in range(count):
            self.settle(client)
            start = time.perf_counter()
            data = client.execute("print(1)")
            samples.append(time.perf_counter() - start)
            if stdout_of(data) != "1\n":
                raise BenchError(f"unexpected output {data['outputs']}")
            client.reset()
        return samples
