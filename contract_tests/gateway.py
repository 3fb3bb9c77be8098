"""A real Jupyter Enterprise Gateway as a child process: the contract suite's ``gateway`` target
and the tests of ``--kernel-gateway``.

Enterprise Gateway lives in an environment of its own, ``TCI_GATEWAY_DIR`` (the Makefile's
``.gateway/``; ``<repo>/.gateway`` when unset), not in the project's. It listens on 127.0.0.1 and
a port the system picks (``--port=0``; the port is read back from ``/proc``), requires a token,
lists kernels (``--EnterpriseGatewayApp.list_kernels=True``) and runs as whoever runs the tests,
root included (root is on Enterprise Gateway's default list of refused users).

Its kernels are started from a kernel spec, ``tci_python``, that runs ipykernel with this
project's interpreter, so sessions find the packages TCI had; everything of the gateway (its
home, runtime and data directories) is in a private temporary directory. :meth:`kill` ends the
gateway with SIGKILL and its kernels with it, as when a gateway's host is lost, and
:meth:`start` brings it back on the same port.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

import requests

from .procfs import listening_port, pids_where, process_gone

_REPO = Path(__file__).resolve().parent.parent
KERNEL_NAME = "tci_python"


def gateway_dir() -> Path:
    """Where Enterprise Gateway is installed: ``$TCI_GATEWAY_DIR``, else ``<repo>/.gateway``."""
    return Path(os.environ.get("TCI_GATEWAY_DIR") or _REPO / ".gateway")


class EnterpriseGateway:
    """``jupyter enterprisegateway`` on 127.0.0.1, started and stopped by the tests."""

    def __init__(self, start_timeout: float = 60.0) -> None:
        self.start_timeout = start_timeout
        self.token = uuid.uuid4().hex
        self.home = Path(tempfile.mkdtemp(prefix="tci-gateway-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        spec = self.home / "share" / "kernels" / KERNEL_NAME
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python (tci-emulator)", "language": "python",
            # `!python` in a session finds the same interpreter, as in a kernel image
            "env": {"PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                             os.environ.get("PATH", os.defpath)])}}))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EnterpriseGateway:
        """Start the gateway (on its previous port after :meth:`kill`) and wait until it
        answers."""
        executable = gateway_dir() / "bin" / "jupyter-enterprisegateway"
        if not executable.exists():
            raise AssertionError(f"Enterprise Gateway is not installed at {executable}: run "
                                 "`make setup` (or set TCI_GATEWAY_DIR)")
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(self.home),
               "LANG": "C.UTF-8", "JUPYTER_PATH": str(self.home / "share"),
               "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
               "JUPYTER_DATA_DIR": str(self.home / "data"),
               "JUPYTER_CONFIG_DIR": str(self.home / "config")}
        log = open(self.home / "gateway.log", "ab")  # noqa: SIM115 - the child holds it
        try:
            self.process = subprocess.Popen(
                [str(executable), "--ip=127.0.0.1", f"--port={self.port}",
                 "--port_retries=0",
                 "--EnterpriseGatewayApp.list_kernels=True",
                 f"--EnterpriseGatewayApp.auth_token={self.token}",
                 "--EnterpriseGatewayApp.unauthorized_users={'tci-nobody'}"],
                cwd=self.home, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"Enterprise Gateway exited: {self.log()[-2000:]}")
            port = self.port or listening_port(self.process.pid)
            if port:
                self.port = port
                try:
                    self.kernel_ids()
                    return self
                except OSError:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"Enterprise Gateway did not answer within "
                                     f"{self.start_timeout} s: {self.log()[-2000:]}")
            time.sleep(0.05)  # polling for the server to answer, with a deadline

    def kernel_ids(self) -> set[str]:
        """The ids of the kernels the gateway runs (``GET /api/kernels``), asked directly
        rather than through the emulator's gateway client, which is what is under test."""
        response = requests.get(self.url + "/api/kernels", timeout=30,
                                headers={"Authorization": f"token {self.token}"})
        response.raise_for_status()
        return {str(kernel["id"]) for kernel in response.json()}

    def log(self) -> str:
        """What the gateway wrote to its log so far."""
        return (self.home / "gateway.log").read_text(errors="replace")

    def _kernel_pids(self) -> list[int]:
        """Kernel processes of this gateway (their connection files are in its runtime dir)."""
        marker = str(self.home / "runtime").encode()
        found = pids_where(lambda entry: marker in (entry / "cmdline").read_bytes())
        return [pid for pid in found if not process_gone(pid)]

    def _wait_kernels_gone(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (left := self._kernel_pids()) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.05)  # polling for the killed processes to go, with a deadline
        assert not self._kernel_pids(), "kernels of the gateway survived it"

    def kill(self) -> None:
        """SIGKILL the gateway and its kernels: the gateway (and its host) is gone."""
        process, self.process = self.process, None
        if process is None:
            return
        process.kill()
        process.wait(timeout=30)
        self._wait_kernels_gone()

    def stop(self) -> None:
        """SIGTERM (the gateway shuts its kernels down), then make sure none is left."""
        process, self.process = self.process, None
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._wait_kernels_gone()

    def close(self) -> None:
        """Stop the gateway and remove its directories."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> EnterpriseGateway:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
