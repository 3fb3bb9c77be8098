"""The session registry's pieces that need no kernel: the arrival-order lock."""

from __future__ import annotations

import threading

from tci_emulator.sessions import FairLock

from .helpers import wait_until


def test_fair_lock_is_granted_in_arrival_order() -> None:
    lock = FairLock()
    order: list[int] = []

    def worker(index: int) -> None:
        with lock:
            order.append(index)

    lock.__enter__()  # held, so every worker queues
    threads = []
    for index in range(8):
        thread = threading.Thread(target=worker, args=(index,))
        thread.start()
        threads.append(thread)
        # The next worker starts only once this one holds its ticket: arrival order is known.
        wait_until(lambda: lock._next_ticket == index + 2)  # noqa: B023 - waited for here
    lock.__exit__(None, None, None)
    for thread in threads:
        thread.join()
    assert order == list(range(8))
