"""The reset barrier's generation counter, without a server."""

from __future__ import annotations

import threading

import pytest

from tci_emulator.epoch import Epoch
from tci_emulator.errors import EmulatorReset

from .helpers import wait_until


def test_a_commit_of_an_earlier_generation_is_refused() -> None:
    epoch = Epoch()
    seen = epoch.enter()
    with epoch.advance():
        pass
    with pytest.raises(EmulatorReset):
        epoch.check(seen)
    with pytest.raises(EmulatorReset):
        with epoch.guard(seen):
            raise AssertionError("must not run")
    with epoch.guard(epoch.value):
        pass
    epoch.leave()
    assert epoch.in_flight == 0


def test_a_reset_waits_for_the_commit_under_way_and_later_commits_wait_for_it() -> None:
    epoch = Epoch()
    seen = epoch.value
    committing, release, reset_done = threading.Event(), threading.Event(), threading.Event()
    refused: list[bool] = []

    def commit() -> None:
        with epoch.guard(seen):
            committing.set()
            release.wait(30)

    def reset() -> None:
        with epoch.advance():
            pass
        reset_done.set()

    def late_commit() -> None:
        try:
            with epoch.guard(seen):
                refused.append(False)
        except EmulatorReset:
            refused.append(True)

    threads = [threading.Thread(target=commit)]
    threads[0].start()
    committing.wait(30)
    threads.append(threading.Thread(target=reset))
    threads[1].start()
    wait_until(lambda: epoch._writers_waiting == 1)
    threads.append(threading.Thread(target=late_commit))  # arrives while the reset waits
    threads[2].start()
    assert not reset_done.is_set()  # the commit under way holds the reset back
    release.set()
    for thread in threads:
        thread.join(30)
    assert reset_done.is_set() and refused == [True]  # the late commit came after the reset
