"""Readiness: /_emulator/health says ready only when a new session could be served now."""

from __future__ import annotations

import logging
import threading

import pytest
import requests

from tci_emulator import Emulator
from tci_emulator.readiness import Readiness

from .helpers import wait_until

READINESS_LOG = "tci_emulator.readiness"


def health(emulator: Emulator) -> dict[str, object]:
    response = requests.get(emulator.url + "/_emulator/health", timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_starting_until_marked_started_then_ready() -> None:
    readiness = Readiness()
    assert readiness.snapshot() == {"status": "starting", "reasons": []}
    readiness.mark_started()
    assert readiness.snapshot() == {"status": "ready", "reasons": []}


def test_a_reported_problem_degrades_until_its_component_recovers() -> None:
    readiness = Readiness()
    readiness.mark_started()
    readiness.degrade("sandbox", "bubblewrap is not installed")
    readiness.degrade("gateway", "unreachable")
    assert readiness.snapshot() == {"status": "degraded", "reasons": [
        "gateway: unreachable", "sandbox: bubblewrap is not installed"]}
    readiness.recover("sandbox")
    readiness.recover("sandbox")  # twice is harmless
    assert readiness.status == "degraded"
    readiness.recover("gateway")
    assert readiness.status == "ready"  # type: ignore[comparison-overlap]  # recover() moved it


def test_degraded_wins_over_starting() -> None:
    readiness = Readiness()
    readiness.degrade("kernels", "no kernel spec")
    assert readiness.status == "degraded"


def test_each_problem_is_logged_once_and_its_recovery_once(
        caplog: pytest.LogCaptureFixture) -> None:
    readiness = Readiness()
    with caplog.at_level(logging.INFO, logger=READINESS_LOG):
        for _ in range(5):
            readiness.degrade("kernels", "cannot start: boom")
        readiness.degrade("kernels", "cannot start: another cause")
        readiness.recover("kernels")
        readiness.recover("kernels")
    assert [r.getMessage() for r in caplog.records if r.name == READINESS_LOG] == [
        "not ready: kernels: cannot start: boom",
        "not ready: kernels: cannot start: another cause",
        "kernels recovered"]


def test_wait_ready_returns_when_another_thread_makes_it_ready() -> None:
    readiness = Readiness()
    assert readiness.wait_ready(timeout=0.01) is False
    threading.Timer(0.05, readiness.mark_started).start()
    assert readiness.wait_ready(timeout=30) is True


def test_health_is_ready_once_the_pool_has_a_warm_kernel() -> None:
    with Emulator(pool_size=1) as emulator:
        wait_until(lambda: health(emulator)["status"] != "starting")
        body = health(emulator)
        assert body["status"] == "ready" and body["reasons"] == []
        assert emulator.server.state.pool.status()["ready"] == 1


def test_without_a_pool_nothing_is_started_ahead_so_it_is_ready_at_once() -> None:
    with Emulator(pool_size=0) as emulator:
        assert health(emulator)["status"] == "ready"
        assert emulator.server.state.launcher.live_kernels == 0


def test_preload_that_does_not_import_degrades_with_its_cause_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=READINESS_LOG), \
            Emulator(pool_size=1, preload=("no_such_module_tci",)) as emulator:
        state = emulator.server.state
        wait_until(lambda: health(emulator)["status"] == "degraded")
        assert health(emulator)["reasons"] == [
            "preload: --preload no_such_module_tci does not import: "
            "ModuleNotFoundError: No module named 'no_such_module_tci'"]
        # The pool retries (after 1 s, then 2 s): the same cause is not logged again.
        wait_until(lambda: len(state.server_errors) >= 2)
        logged = [r for r in caplog.records if r.name == READINESS_LOG]
        assert [r.levelno for r in logged] == [logging.ERROR]
        assert "No module named 'no_such_module_tci'" in logged[0].getMessage()
        assert state.take_errors()  # the pool's failures, kept for a test that wants them


def test_a_session_start_that_fails_without_a_pool_degrades_health() -> None:
    with Emulator(pool_size=0, preload=("no_such_module_tci",)) as emulator:
        response = requests.post(emulator.base_url + "/tci/execute", timeout=120,
                                 json={"code": "1", "language": "python"},
                                 headers={"Authorization": f"Bearer {emulator.api_key}"})
        assert response.status_code == 503, response.text
        body = health(emulator)
        assert body["status"] == "degraded"
        assert body["reasons"] == [
            "preload: --preload no_such_module_tci does not import: "
            "ModuleNotFoundError: No module named 'no_such_module_tci'"]
