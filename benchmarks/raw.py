"""The baseline side: kernels the plain jupyter-client way, with the emulator's transport (IPC)
and IPython settings, so a difference from the emulator's figures is the emulator's doing."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tci_emulator.kernels import IPYTHON_SETTINGS

from .harness import BenchError, parallel

__all__ = ["RawKernel", "RawKernels", "cold_start"]

# Raw kernels get the emulator's IPython settings on their command line.
RAW_KERNEL_ARGS = [f"--{name}={value}" for name, value in IPYTHON_SETTINGS.items()]


class RawKernel:
    """A kernel the plain jupyter-client way: ``KernelManager`` + ``BlockingKernelClient``."""

    def __init__(self, workdir: Path, kernel_name: str) -> None:
        from jupyter_client.manager import KernelManager

        self.dir = Path(tempfile.mkdtemp(prefix="raw-", dir=workdir))
        self.manager: Any = KernelManager(kernel_name=kernel_name, transport="ipc",
                                          ip=str(self.dir / "ipc"),
                                          connection_file=str(self.dir / "connection.json"))
        self.client: Any = None

    def start(self) -> RawKernel:
        """Start the process, wait until ready (jupyter-client's own wait_for_ready)."""
        self.manager.start_kernel(extra_arguments=RAW_KERNEL_ARGS, cwd=str(self.dir))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)
        return self

    def execute(self, code: str) -> None:
        reply = self.client.execute_interactive(code, output_hook=lambda msg: None, timeout=120)
        if reply["content"]["status"] != "ok":
            raise BenchError(f"raw kernel failed to run {code!r}: {reply['content']}")

    @property
    def pid(self) -> int:
        return int(self.manager.provisioner.process.pid)

    def stop(self) -> None:
        try:
            if self.client is not None:
                self.client.stop_channels()
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=True)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class RawKernels:
    """Every raw kernel of the run, so that all of them are stopped whatever happens."""

    def __init__(self, workdir: Path, kernel_name: str) -> None:
        self.workdir = workdir
        self.kernel_name = kernel_name
        self._all: list[RawKernel] = []
        self._lock = threading.Lock()

    def new(self) -> RawKernel:
        kernel = RawKernel(self.workdir, self.kernel_name)
        with self._lock:
            self._all.append(kernel)
        return kernel

    def stop(self, kernels: Sequence[RawKernel] | None = None) -> None:
        """Stop ``kernels`` (default: all), in parallel; each stop costs about 0.1 s."""
        with self._lock:
            chosen = list(self._all if kernels is None else kernels)
            self._all = [k for k in self._all if k not in chosen]
        parallel([k.stop for k in chosen])


def cold_start(kernel: RawKernel) -> None:
    """Start ``kernel`` and run its first execute."""
    kernel.start().execute("print(1)")
