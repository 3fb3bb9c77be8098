"""One kernel's life against its launcher: a kernel ends only by its own ``shutdown``, and it
tells whatever launched it through ``KernelHost`` (real kernels, spawned unsandboxed)."""

from __future__ import annotations

from typing import Any

from tci_emulator.clock import Clock
from tci_emulator.kernels import Kernel, KernelLauncher

from .helpers import wait_until
from .processes import process_gone


class RecordingLauncher(KernelLauncher):
    """The spawn launcher, noting each call a kernel makes back to it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Clock(), **kwargs)
        self.calls: list[tuple[str, bool | None]] = []

    def prepare(self, kernel: Kernel) -> None:
        self.calls.append(("prepare", None))
        super().prepare(kernel)

    def release(self, kernel: Kernel, *, final: bool) -> None:
        self.calls.append(("release", final))
        super().release(kernel, final=final)


def test_a_shut_down_kernel_is_gone_and_forgotten_by_its_launcher() -> None:
    launcher = KernelLauncher(Clock())
    try:
        ended, kept = launcher.start(), launcher.start()
        pid = ended.pid
        assert pid is not None and launcher.live_kernels == 2
        ended.shutdown()
        ended.shutdown()  # a second call (a reset racing the reaper) changes nothing
        assert launcher.live_kernels == 1 and ended.closed and not ended.is_alive()
        assert not ended.root.exists()
        wait_until(lambda: process_gone(pid), timeout=30)
        assert kept.execute("print(6 * 7)", timeout=60, grace=1).outputs[0]["data"] == "42\n"
    finally:
        launcher.close()
    assert kept.closed and launcher.live_kernels == 0  # the launcher's close ends the rest


def test_a_kernel_tells_its_launcher_of_each_fresh_process_and_of_its_end() -> None:
    launcher = RecordingLauncher()
    try:
        kernel = launcher.start()
        assert launcher.calls == [("prepare", None)]
        kernel.restart()
        assert launcher.calls[1:] == [("release", False), ("prepare", None)]
        kernel.shutdown()
        kernel.shutdown()
        assert launcher.calls[3:] == [("release", True)]
    finally:
        launcher.close()
    assert launcher.calls[4:] == []  # nothing left for close to end
