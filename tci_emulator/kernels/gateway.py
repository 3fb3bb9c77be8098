"""Session kernels on a Jupyter Enterprise Gateway (or Kernel Gateway), not on this machine.

``--kernel-gateway URL`` swaps the local launcher for :class:`GatewayLauncher`, a sibling behind
the same interface: the pool, the sessions, faults, the ledger, the clock and transcripts do not
know where a kernel runs. Each session's kernel is started, interrupted, restarted and shut down
through the gateway's REST API (``/api/kernels``) by jupyter_server's own gateway client,
``GatewayKernelManager``, run on the launcher's asyncio loop thread like a local
``AsyncKernelManager``. Messages go over the gateway's WebSocket (``/api/kernels/ID/channels``,
the JSON protocol, one socket for every channel: :mod:`~tci_emulator.kernels.gateway_socket`)
and are read by the same execution loop as a local kernel's
(:class:`~tci_emulator.kernels.kernel.Kernel`), so interrupts at the time limit, output caps,
error items and the replacement of a dead kernel behave the same.

What changes for a remote kernel:

- Files and ``pip install`` happen where the kernel runs. Every kernel first moves into a private
  working directory of its own (``tci-emulator-<id>`` under its temporary directory), so two
  sessions on one gateway host never see each other's files, and a replaced kernel goes back to
  the same directory; the directory is removed before the kernel is shut down.
- A kernel the gateway lost (its process died and the gateway restarted it, the gateway itself
  restarted, or the socket closed) is a dying kernel as for a local one: the execution ends with
  an error item and the session continues in a fresh kernel. While the gateway cannot be
  reached, new sessions and sessions whose kernel was lost answer 503 ``kernel_unavailable``;
  service comes back when the gateway does.
- The memory cap, the sandbox and kill-by-pid rest on a local process and do not apply; an
  injected ``kernel_crash`` kills the remote process from inside (``os.kill`` of its own pid)
  and waits for the gateway to report it.
- jupyter_server configures its gateway client once per process (``GatewayClient.instance()``),
  so all emulators of one process share one gateway: a second, different one is refused.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import websocket

from ..clock import Clock
from ..outputs import OutputCollector
from .errors import KernelError
from .gateway_socket import WebSocketChannels, auth_headers
from .kernel import ExecutionResult, Kernel
from .spawn import IPYTHON_SETTINGS, KernelLauncher
from .wire import Channels

__all__ = ["GatewayKernel", "GatewayLauncher", "gateway_kernel_ids", "public_url"]

# Runs in a namespace of its own (the session's variables are untouched): plain tracebacks (a
# gateway's kernels do not read the emulator's IPython profile), then the kernel's private
# working directory, created on first use and entered again after a restart.
_SETUP = """
import os, tempfile
from IPython import get_ipython
_shell = get_ipython()
if _shell is not None:
    for _name, _value in SETTINGS.items():
        if _name == "InteractiveShell.colors":
            _shell.run_line_magic("colors", _value)
        elif _name == "HistoryManager.enabled" and not _value:
            _shell.history_manager.enabled = False
_dir = os.path.join(tempfile.gettempdir(), DIRNAME)
os.makedirs(_dir, mode=0o700, exist_ok=True)
os.chdir(_dir)
"""
_CLEANUP = """
import os, shutil
_dir = os.getcwd()
if os.path.basename(_dir) == DIRNAME:
    os.chdir(os.path.dirname(_dir))
    shutil.rmtree(_dir, ignore_errors=True)
"""
_CRASH = f"import os; os.kill(os.getpid(), {int(signal.SIGKILL)})"


def _run_in_own_namespace(source: str, **names: object) -> str:
    """Python source that runs ``source`` with ``names`` in a namespace of its own."""
    return (f"exec(compile({source!r}, '<tci-emulator gateway>', 'exec'), "
            f"{{'__name__': '__tci_gateway__', **{names!r}}})")


def public_url(url: str) -> str:
    """``url`` without the user and password it may carry (for health and logs)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def gateway_kernel_ids(url: str, token: str | None = None, *, timeout: float = 10.0) -> set[str]:
    """The ids of the kernels a gateway lists (``GET /api/kernels``; Enterprise Gateway needs
    ``--EnterpriseGatewayApp.list_kernels=True``). Raises ``OSError`` when it cannot be reached."""
    request = urllib.request.Request(url.rstrip("/") + "/api/kernels",
                                     headers=auth_headers(token))
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
        return {str(kernel["id"]) for kernel in json.load(response)}


async def _start_or_clean_up(manager: Any, kernel_name: str) -> None:
    """Start a kernel on the gateway; if the caller stops waiting (the start timed out), the
    request still completes, and a kernel the gateway started late is shut down at once
    rather than left running there unknown to anyone."""
    start = asyncio.ensure_future(manager.start_kernel(kernel_name=kernel_name))

    async def shut_down() -> None:
        try:
            await manager.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001 - the gateway's culling is the backstop
            pass

    def clean_up(done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            asyncio.ensure_future(shut_down())

    try:
        await asyncio.shield(start)
    except asyncio.CancelledError:
        start.add_done_callback(clean_up)
        raise


class GatewayKernel(Kernel):
    """A session's kernel on the gateway: the local kernel's execution loop, the gateway's
    lifecycle (REST through ``GatewayKernelManager``) and channels (its WebSocket)."""

    _manager: Any  # jupyter_server's GatewayKernelManager

    def __init__(self, launcher: GatewayLauncher, manager: Any, root: Path) -> None:
        super().__init__(launcher, manager, root)
        self._gateway = launcher  # where it runs: the URL, the token, a replacement's start
        self.dirname = f"tci-emulator-{root.name}"  # its working directory on the gateway host

    @property
    def local(self) -> bool:
        """Never: the kernel runs where the gateway puts it, so it writes its own files."""
        return False

    @property
    def gateway_id(self) -> str | None:
        """The kernel's id on the gateway (a replacement gets a new one)."""
        kernel_id = self._manager.kernel_id
        return str(kernel_id) if kernel_id else None

    def _open_channels(self) -> Channels:
        launcher = self._gateway
        path = "/api/kernels/" + urllib.parse.quote(self.gateway_id or "", safe="") + "/channels"
        try:
            return WebSocketChannels(launcher.ws_url + path, launcher.token,
                                     launcher.start_timeout)
        except (websocket.WebSocketException, OSError) as exc:
            raise KernelError(f"cannot open the channels of gateway kernel {self.gateway_id}: "
                              f"{exc}") from exc

    def _lost(self) -> str | None:
        channels = self._channels
        return channels.lost if isinstance(channels, WebSocketChannels) else None

    def is_alive(self) -> bool:
        """Whether the gateway still has this kernel and it was not restarted under us."""
        if self.closed or self._lost() is not None:
            return False
        try:
            model = self._host.loop.run(self._manager.refresh_model(), timeout=10)
        except Exception:  # noqa: BLE001 - a gateway that cannot answer has lost it for us
            return False
        return model is not None

    def exit_code(self) -> int | None:
        """Remote processes have no exit status here."""
        return None

    def _death_message(self) -> str:
        self.kill_reason = self.kill_reason or self._lost() or "the kernel gateway lost the kernel"
        return super()._death_message()

    def execute(self, code: str, *, timeout: float, grace: float,
                max_output_bytes: int | None = None, silent: bool = False) -> ExecutionResult:
        """Run ``code``; a kernel lost since the last call is replaced first (503 while the
        gateway cannot replace it), and the result says the state was lost."""
        with self._io_lock:
            if self._lost() is not None and not self.closed:
                message = self._death_message()
                try:
                    self.restart()
                except Exception as exc:  # noqa: BLE001 - the caller answers 503
                    raise KernelError(f"the session's kernel was lost and the kernel gateway "
                                      f"could not replace it: {exc}") from exc
                collector = OutputCollector(max_output_bytes)
                collector.add_error(message)
                return ExecutionResult(collector.outputs, "died", state_lost=True)
            return super().execute(code, timeout=timeout, grace=grace,
                                   max_output_bytes=max_output_bytes, silent=silent)

    def restart(self) -> None:
        """Restart on the gateway; a kernel the gateway no longer has is replaced by a new one
        (a new gateway id) in the same working directory."""
        try:
            super().restart()
        except Exception:  # noqa: BLE001 - e.g. 404: the gateway restarted and forgot it
            self._gateway.replace_remote(self)

    def _send_quietly(self, code: str, *, until_lost: bool, timeout: float) -> None:
        """Run ``code`` without the execution loop (no interrupt, no restart) and wait up to
        ``timeout`` for its reply, or with ``until_lost`` for the kernel to be reported lost."""
        channels = self._channels
        if not isinstance(channels, WebSocketChannels) or channels.lost is not None:
            return
        msg_id = channels.send("execute_request", {
            "code": code, "silent": True, "store_history": False, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True})
        clock = self._host.clock
        deadline = clock.monotonic() + timeout
        while channels.lost is None and (remaining := deadline - clock.monotonic()) > 0:
            for channel, msg in channels.receive(remaining):
                replied = (msg.get("parent_header") or {}).get("msg_id") == msg_id
                if channel == "shell" and replied and not until_lost:
                    return

    def kill(self, reason: str | None = None) -> None:
        """Kill the remote process from inside and wait until the gateway has noticed."""
        with self._io_lock:
            if reason is not None:
                self.kill_reason = reason
            self._send_quietly(_CRASH, until_lost=True, timeout=self._host.start_timeout)
            if isinstance(self._channels, WebSocketChannels):
                self._channels.lost = self._channels.lost or "the kernel process was killed"

    def shutdown(self) -> None:
        """Remove the kernel's working directory on the gateway host (unless the kernel is busy
        or lost: the gateway's host keeps it then), then shut the kernel down there."""
        if not self.closed and self._io_lock.acquire(blocking=False):
            try:
                self._send_quietly(_run_in_own_namespace(_CLEANUP, DIRNAME=self.dirname),
                                   until_lost=False, timeout=2.0)
            finally:
                self._io_lock.release()
        super().shutdown()


class GatewayLauncher(KernelLauncher):
    """Starts session kernels on a Jupyter (Enterprise) Gateway.

    The local launcher's bookkeeping is reused (the set of live kernels, ``release``,
    ``close``, the asyncio loop thread, preloads); processes, connection files and the memory
    watchdog are not: nothing runs on this machine.
    """

    _configured: tuple[str, str | None] | None = None  # the process's GatewayClient settings
    _users = 0
    _class_lock = threading.Lock()

    def __init__(
        self,
        clock: Clock,
        url: str,
        *,
        token: str | None = None,
        kernel_name: str = "python3",
        start_timeout: float = 60.0,
        preload: Iterable[str] = (),
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        parts = urllib.parse.urlsplit(self.url)
        self.ws_url = urllib.parse.urlunsplit(
            ("wss" if parts.scheme == "https" else "ws", parts.netloc, parts.path, "", ""))
        self._configure_client(start_timeout)
        try:
            self._check_reachable(kernel_name, start_timeout)
            super().__init__(clock, kernel_name=kernel_name, start_timeout=start_timeout,
                             memory_mb=None, preload=preload)
        except BaseException:
            self._release_client()
            raise
        self._client_released = False

    # -- the gateway ---------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Kernels are started by the gateway: neither forked nor spawned here."""
        return {"in_force": "gateway", "requested": "gateway"}

    def _check_reachable(self, kernel_name: str, timeout: float) -> None:
        """Refuse to start against a gateway that does not answer or lacks the kernel spec
        (``ValueError``: the CLI prints it as one line and exits 2)."""
        request = urllib.request.Request(self.url + "/api/kernelspecs",
                                         headers=auth_headers(self.token))
        try:
            with urllib.request.urlopen(request, timeout=min(timeout, 10.0)) as response:  # noqa: S310
                specs: Mapping[str, Any] = json.load(response).get("kernelspecs", {})
        except urllib.error.HTTPError as exc:
            raise ValueError(f"kernel gateway {public_url(self.url)} refused the request: "
                             f"HTTP {exc.code} {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise ValueError(f"kernel gateway {public_url(self.url)} is not reachable: "
                             f"{getattr(exc, 'reason', exc)}") from None
        if kernel_name not in specs:
            raise ValueError(f"kernel gateway {public_url(self.url)} has no kernel spec "
                             f"'{kernel_name}' (it has: {', '.join(sorted(specs)) or 'none'})")

    def _configure_client(self, start_timeout: float) -> None:
        """Point jupyter_server's process-wide gateway client at this gateway."""
        from jupyter_server.gateway.gateway_client import GatewayClient

        wanted = (self.url, self.token)
        with GatewayLauncher._class_lock:
            configured = GatewayLauncher._configured
            if GatewayLauncher._users and configured != wanted:
                shown = public_url(configured[0]) if configured else "?"
                raise ValueError(f"this process already runs kernels on the gateway {shown}: "
                                 f"jupyter_server's gateway client serves one gateway per process")
            client = GatewayClient.instance()
            client.url = self.url
            client.ws_url = self.ws_url
            client.auth_token = self.token or ""
            # The gateway is asked to give a kernel as long to start as the emulator waits for it.
            GatewayClient.KERNEL_LAUNCH_TIMEOUT = max(int(start_timeout), 1)
            client.request_timeout = float(GatewayClient.KERNEL_LAUNCH_TIMEOUT
                                           + client.launch_timeout_pad)
            client.connect_timeout = min(start_timeout, 10.0)
            client._connection_args = {}  # built again from the settings above on next use
            GatewayLauncher._configured = wanted
            GatewayLauncher._users += 1

    def _release_client(self) -> None:
        with GatewayLauncher._class_lock:
            GatewayLauncher._users -= 1

    # -- kernels ---------------------------------------------------------------------------

    def _new_manager(self) -> Any:
        from jupyter_server.gateway.managers import GatewayKernelManager

        return GatewayKernelManager()  # type: ignore[no-untyped-call]

    def _start_remote(self, kernel: GatewayKernel) -> None:
        """Ask the gateway for a kernel (on ``kernel``'s manager) and make it ready."""
        manager: Any = kernel._manager
        self.loop.run(_start_or_clean_up(manager, self.kernel_name), timeout=self.start_timeout)
        kernel.id = kernel.gateway_id or kernel.id
        kernel.connect(self.start_timeout)
        self.prepare(kernel)

    def start(self) -> Kernel:
        """Start one kernel on the gateway and wait until it is ready (and preloaded)."""
        if self._closed:
            raise KernelError("the emulator is shutting down")
        kernel = GatewayKernel(self, self._new_manager(),
                               self.runtime / "kernels" / uuid.uuid4().hex[:12])
        with self._lock:
            self._kernels.add(kernel)
        try:
            self._start_remote(kernel)
        except Exception as exc:
            kernel.shutdown()
            if isinstance(exc, KernelError):
                raise
            raise KernelError(f"could not start kernel '{self.kernel_name}' on the kernel "
                              f"gateway {public_url(self.url)}: {exc}") from exc
        return kernel

    def replace_remote(self, kernel: GatewayKernel) -> None:
        """Give ``kernel`` a new kernel on the gateway, the old one shut down if it still is
        there (a restart the gateway could not do)."""
        try:
            self.loop.run(kernel._manager.shutdown_kernel(now=True), timeout=10)
        except Exception:  # noqa: BLE001 - usually: the gateway no longer has it
            pass
        kernel._manager = self._new_manager()
        self._start_remote(kernel)
        kernel.kill_reason = None

    def prepare(self, kernel: Kernel) -> None:
        """Plain tracebacks and the kernel's private working directory, then the preloads."""
        if isinstance(kernel, GatewayKernel):
            setup = _run_in_own_namespace(_SETUP, DIRNAME=kernel.dirname,
                                          SETTINGS=dict(IPYTHON_SETTINGS))
            result = Kernel.execute(kernel, setup, timeout=self.start_timeout, grace=1.0,
                                    silent=True)
            if result.status != "ok":
                detail = "; ".join(o["data"] for o in result.outputs if o["type"] == "error")
                raise KernelError(f"preparing a gateway kernel failed: {detail or result.status}")
        super().prepare(kernel)

    def close(self) -> None:
        """Shut down every kernel started on the gateway, then release the client."""
        try:
            super().close()
        finally:
            if not self._client_released:
                self._client_released = True
                self._release_client()
