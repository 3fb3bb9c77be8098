"""The command line as CI scripts use it: settings from the environment, the start-up banner,
``serve --ready-file`` and ``tci-emulator wait``."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from contract_tests.process import ServeProcess
from tci_emulator.cli import main

from .helpers import wait_until


def banner_lines(server: ServeProcess, count: int) -> list[str]:
    """The next ``count`` lines the server printed after its ``listening on`` line."""
    assert server.process is not None and server.process.stdout is not None
    return [server.process.stdout.readline().rstrip("\n") for _ in range(count)]


def sessions_status(url: str, key: str) -> int:
    return requests.get(url + "/v1/tci/sessions", timeout=30,
                        headers={"Authorization": f"Bearer {key}"}).status_code


def test_api_key_variable_locks_the_server_and_the_banner_shows_its_fingerprint() -> None:
    with ServeProcess(["--pool-size", "0", "--no-access-log"],
                      settings_env={"TCI_EMULATOR_API_KEY": "s3cret-key"}) as server:
        export_url, key_line, settings = banner_lines(server, 3)
        assert sessions_status(server.url, "s3cret-key") == 200
        assert sessions_status(server.url, "any-other-key") == 401
    assert export_url == f"export TOGETHER_BASE_URL={server.url}/v1"
    assert key_line.startswith("# TOGETHER_API_KEY: one of the --api-key keys")
    digest = hashlib.sha256(b"s3cret-key").hexdigest()
    assert settings == (f"settings: --port 0 --api-key sha256:{digest} --pool-size 0 "
                        "--no-access-log")
    assert "s3cret-key" not in settings


def test_default_banner_prints_both_export_lines() -> None:
    with ServeProcess(["--pool-size", "0"]) as server:
        lines = banner_lines(server, 3)
    assert lines == [f"export TOGETHER_BASE_URL={server.url}/v1",
                     "export TOGETHER_API_KEY=any-non-empty-key  # each distinct key is its own "
                     "tenant",
                     "settings: --port 0 --pool-size 0"]


def test_unknown_variable_stops_the_start_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TCI_EMULATOR_")}
    env["TCI_EMULATOR_API_KEYZ"] = "secret"
    result = subprocess.run([sys.executable, "-m", "tci_emulator", "serve", "--port", "0"],
                            env=env, capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("tci-emulator: unknown variable TCI_EMULATOR_API_KEYZ; "
                                    "did you mean TCI_EMULATOR_API_KEY?")


def test_ready_file_gets_the_url_once_ready_and_wait_exits_0(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ready_file = tmp_path / "ready" / "url"
    ready_file.parent.mkdir()
    ready_file.write_text("http://127.0.0.1:9\n")  # a previous run's, removed at start
    with ServeProcess(["--pool-size", "1", "--no-access-log",
                       "--ready-file", str(ready_file)]) as server:
        assert main(["wait", "--url", server.url + "/v1", "--timeout", "120"]) == 0
        assert capsys.readouterr().out == f"tci-emulator: {server.url} is ready\n"
        wait_until(ready_file.exists)  # written by the server as it turns ready
        assert ready_file.read_text() == server.url + "\n"
        assert requests.get(server.url + "/_emulator/health", timeout=30).json()["status"] \
            == "ready"
    assert not ready_file.exists()  # removed when the server stops
    assert list(ready_file.parent.iterdir()) == []


def test_preload_that_does_not_import_makes_wait_exit_1_saying_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ready_file = tmp_path / "url"
    with ServeProcess(["--pool-size", "1", "--no-access-log", "--preload", "no_such_module",
                       "--ready-file", str(ready_file)]) as server:
        health_url = server.url + "/_emulator/health"
        wait_until(lambda: requests.get(health_url, timeout=30).json()["status"] == "degraded",
                   timeout=120)
        body = requests.get(health_url, timeout=30).json()
        reason = ("preload: --preload no_such_module does not import: "
                  "ModuleNotFoundError: No module named 'no_such_module'")
        assert body["reasons"] == [reason]
        monkeypatch.setenv("TCI_EMULATOR_URL", server.url)  # as a CI job would set it
        assert main(["wait", "--timeout", "0.5"]) == 1
        assert not ready_file.exists()
    err = capsys.readouterr().err
    assert err == f"tci-emulator: {server.url} not ready after 0.5 s: degraded ({reason})\n"


def test_wait_for_a_server_that_is_not_there_exits_1_saying_so(
        capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        assert main(["wait", "--url", url, "--timeout", "0.3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"tci-emulator: {url} not ready after 0.3 s: not answering: ")
    assert "refused" in err.lower()


def test_wait_on_a_ready_file_that_never_appears_exits_1_saying_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "url"
    assert main(["wait", "--ready-file", str(path), "--timeout", "0.3"]) == 1
    assert capsys.readouterr().err == (
        f"tci-emulator: the server not ready after 0.3 s: no URL in {path} yet (serve writes it "
        "once ready; its log says why not)\n")


def test_ready_file_in_a_missing_directory_stops_the_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "missing" / "url"
    assert main(["serve", "--port", "0", "--ready-file", str(path)]) == 2
    assert capsys.readouterr().err == (f"tci-emulator: --ready-file {path}: its directory does "
                                       "not exist\n")
