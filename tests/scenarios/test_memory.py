"""Bounded server memory for any one request, measured on a real ``tci-emulator serve`` child
process (its peak resident memory read from ``/proc``). The exact figures are printed by the
benchmark (``make bench``, rows "memory: server peak ..."); these tests hold the behaviour plus a
bound that the old behaviour broke by far (715 MB kept for the session ids, a 2.4 GB peak for the
prints)."""

from __future__ import annotations

import json

import requests

from benchmarks.memory import concurrent_prints, huge_session_ids
from benchmarks.procfs import peak_rss_mb, reset_peak, rss_mb
from contract_tests.process import ServeProcess
from tci_emulator.outputs import TRUNCATION_MARKER

CAP = 8 * 2**20


def test_a_20_mb_session_id_sent_25_times_is_refused_and_not_kept() -> None:
    with ServeProcess(["--pool-size", "0", "--no-access-log"]) as server:
        idle = rss_mb(server.pid)
        reset_peak(server.pid)
        replies = huge_session_ids(server.url)
        kept, peak = rss_mb(server.pid) - idle, peak_rss_mb(server.pid) - idle
        journal = requests.get(server.url + "/_emulator/requests", timeout=30).json()["requests"]
    for status, body in replies:
        assert status == 400 and len(body) < 1024  # the id is never echoed
        assert json.loads(body)["error"]["param"] == "session_id"
    assert len(journal) == 25 and all(len(json.dumps(entry)) < 2000 for entry in journal)
    assert kept < 100, kept  # nothing of the ids is kept
    assert peak < 300, peak  # one request's worth at a time


def test_three_concurrent_300_mb_prints_stay_near_the_output_cap() -> None:
    with ServeProcess(["--pool-size", "3", "--no-access-log",
                       "--max-output-bytes", str(CAP)]) as server:
        # Three sessions first, so the peak measured is the prints', not the kernels' starts.
        for _ in range(3):
            requests.post(server.base_url + "/tci/execute", timeout=120,
                          headers={"Authorization": "Bearer warm-up"},
                          json={"code": "1", "language": "python"}).raise_for_status()
        idle = rss_mb(server.pid)
        reset_peak(server.pid)
        replies = concurrent_prints(server.url)
        peak = peak_rss_mb(server.pid) - idle
    for status, body in replies:
        assert status == 200
        [item] = json.loads(body)["data"]["outputs"]
        assert item["data"].endswith(TRUNCATION_MARKER.format(limit=CAP))
        assert len(item["data"]) < CAP + 200
    assert peak < 600, peak  # a few caps per execution, not 300 MB or more each


def test_session_code_that_undoes_the_kernel_side_cap_cannot_flood_the_server() -> None:
    mib = 2**20
    with ServeProcess(["--pool-size", "1", "--no-access-log", "--max-output-bytes", str(mib),
                       "--max-code-bytes", str(mib), "--execution-timeout", "5",
                       "--interrupt-grace", "1"]) as server:
        headers = {"Authorization": "Bearer hostile"}
        url = server.base_url + "/tci/execute"
        session_id = requests.post(url, headers=headers, timeout=120, json={
            "code": "1", "language": "python"}).json()["data"]["session_id"]
        idle = rss_mb(server.pid)
        reset_peak(server.pid)
        undo = ("s = get_ipython().kernel.session\n"
                "s.send = type(s).send.__get__(s)\n"  # the session's own, uncapped send
                "print('x' * 100_000_000)")
        reply = requests.post(url, headers=headers, timeout=120, json={
            "code": undo, "language": "python", "session_id": session_id})
        peak = peak_rss_mb(server.pid) - idle
        after = requests.post(url, headers=headers, timeout=120, json={
            "code": "print(2)", "language": "python", "session_id": session_id})
    # The 100 MB message is never received: the execution ends at its time limit, in a fresh
    # kernel, and the server holds nothing of it.
    assert reply.status_code == 200
    assert reply.json()["data"]["outputs"][-1]["data"].startswith("ExecutionTimeout")
    assert peak < 50, peak
    assert after.json()["data"]["outputs"] == [{"type": "stdout", "data": "2\n"}]
