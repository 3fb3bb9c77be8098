"""One lifecycle for ``Emulator``, ``EmulatorServer`` and ``ServeProcess``: start returns the
object and runs once, a failed start leaves nothing running, stop runs once however often and
from however many threads it is called, and a stopped object starts again.

The rules are shown on a small recording subclass, then on the real objects (real servers,
real child processes, no kernels: ``--pool-size 0``)."""

from __future__ import annotations

import threading

import pytest
import requests

from contract_tests.process import ServeProcess
from tci_emulator import Emulator
from tci_emulator.lifecycle import Lifecycle

from .helpers import wait_until
from .processes import process_gone


class Recorder(Lifecycle[str]):
    """Records what the base asks of it; ``fail`` makes the next start raise half-way."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.fail = fail
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def _start(self) -> None:
        self.calls.append("start")
        if self.fail:
            raise OSError("could not bind")

    def _stop(self) -> str:
        self.entered.set()
        self.release.wait(30)
        self.calls.append("stop")
        return "stopped"


def test_start_returns_the_object_and_a_second_start_does_nothing() -> None:
    thing = Recorder()
    assert thing.start() is thing and thing.start() is thing
    assert thing.running and thing.calls == ["start"]


def test_stop_runs_once_and_reports_nothing_when_there_was_nothing_to_stop() -> None:
    thing = Recorder()
    assert thing.stop() is None and thing.calls == []
    thing.start()
    assert thing.stop() == "stopped"
    assert thing.stop() is None
    assert thing.calls == ["start", "stop"] and not thing.running


def test_a_failed_start_stops_what_it_started_and_raises() -> None:
    thing = Recorder(fail=True)
    with pytest.raises(OSError, match="could not bind"):
        thing.start()
    assert thing.calls == ["start", "stop"] and not thing.running
    assert thing.stop() is None  # nothing left to stop
    thing.fail = False
    assert thing.start().running  # and it can be started once the cause is gone


def test_stops_racing_from_many_threads_stop_once() -> None:
    thing = Recorder().start()
    thing.release.clear()  # the stop that runs is held until the other seven have returned
    results: list[str | None] = []
    threads = [threading.Thread(target=lambda: results.append(thing.stop())) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert thing.entered.wait(30)
    wait_until(lambda: len(results) == 7, timeout=30)
    assert results == [None] * 7  # returned at once, while the first stop was still running
    thing.release.set()
    for thread in threads:
        thread.join(30)
    assert results == [None] * 7 + ["stopped"]
    assert thing.calls == ["start", "stop"]


def test_with_stops_also_when_the_block_raises() -> None:
    thing = Recorder()
    with pytest.raises(KeyError):
        with thing as entered:
            assert entered is thing and thing.running
            raise KeyError("inside")
    assert thing.calls == ["start", "stop"] and not thing.running


def test_a_stopped_object_starts_again() -> None:
    thing = Recorder()
    with thing:
        pass
    with thing:
        pass
    assert thing.calls == ["start", "stop", "start", "stop"]


def _health(url: str) -> int:
    return requests.get(url + "/_emulator/health", timeout=30).status_code


def test_emulator_stops_once_and_serves_again_after_a_restart() -> None:
    emulator = Emulator(pool_size=0)
    with emulator:
        first = emulator.url
        assert _health(first) == 200
    emulator.stop()  # a second stop (a finalizer after ``with``) is harmless
    assert not emulator.running
    with pytest.raises(requests.ConnectionError):
        requests.get(first + "/_emulator/health", timeout=30)
    with emulator:
        assert _health(emulator.url) == 200


def test_serve_process_reports_its_exit_code_once_and_a_failed_start_leaves_no_child() -> None:
    server = ServeProcess(["--pool-size", "0", "--no-access-log"]).start()
    pid = server.pid
    assert _health(server.url) == 200
    assert server.stop() == 0 and process_gone(pid)
    assert server.stop() == 0  # nothing left to stop
    broken = ServeProcess(["--pool-size", "0", "--no-such-flag"])
    with pytest.raises(RuntimeError, match="did not start"):
        broken.start()
    assert broken.process is None and not broken.running
