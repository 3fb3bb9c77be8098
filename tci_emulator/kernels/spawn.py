"""The spawn launcher: kernels started by jupyter-client from their kernel spec.

Kernel *processes* are managed by jupyter_client's ``AsyncKernelManager`` (so kernel specs and
provisioners decide how and where a kernel runs), driven on one private asyncio loop thread
(:mod:`~tci_emulator.kernels.loop`). Kernel *messages* go over plain synchronous ZeroMQ sockets
(:mod:`~tci_emulator.kernels.wire`): a request thread sends ``execute_request`` and polls shell
and iopub itself, which keeps the emulator's per-execution overhead to a fraction of a
millisecond.

Kernels connect over the IPC transport in a private (0700) runtime directory, so no TCP port is
opened; each kernel starts in its own fresh working directory with an environment built from an
allow-list, so the server's secrets (``TOGETHER_API_KEY`` and anything else) never reach it.
Local kernels run inside the launcher's sandbox (:mod:`tci_emulator.kernels.sandbox`): the
kernel's own directory, with its connection file, IPC sockets and working directory, is
bind-mounted at the same path, so the server reaches the sockets as before, even with no network
in the sandbox. ``pip install`` inside a kernel goes to that kernel's own directory, so other
sessions and the server do not see the package: in the sandbox to its own prefix
(``PIP_PREFIX``, on its ``PYTHONPATH``), so a package already installed is "already satisfied" as
on any machine; without the sandbox to a target directory (``PIP_TARGET``), because there pip
could otherwise uninstall a shared package in place to upgrade it.

:class:`KernelLauncher` is the :class:`~tci_emulator.kernels.kernel.KernelHost` of the kernels
it starts; the fork and gateway launchers are its subclasses.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from ..clock import Clock
from ..output_cap import kernel_code, message_limit
from ..packages import HINT_PREFIX as _HINT_PREFIX
from ..runtime import RuntimeDir, remove_dead_runtime_dirs
from ..watchdog import MemoryWatchdog
from .errors import KernelError, PreloadError
from .kernel import Kernel
from .loop import LoopThread
from .sandbox import Sandbox
from .wire import Channels

__all__ = ["IPYTHON_SETTINGS", "KernelLauncher", "provisioned_locally", "runs_locally"]

# Variables of the server's environment that a kernel may see. Everything else (API keys,
# tokens, cloud credentials) stays behind.
_ENV_ALLOW = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE",
    "TZ", "TERM", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "SYSTEMROOT",
)
# IPython settings of every kernel: plain tracebacks, no history database. They go into the
# profile's ipython_kernel_config.py, not onto the command line, because a kernel spec's argv
# may be a provisioner's launch script that refuses arguments it does not know.
IPYTHON_SETTINGS: Mapping[str, object] = {"HistoryManager.enabled": False,
                                          "InteractiveShell.colors": "nocolor"}


def _error_summary(text: str) -> str:
    """An error item's ``Name: message`` line (and the emulator's hint after it, if any), not
    the traceback: the text of a health reason and a log line."""
    *_, before, last = ["", *text.rstrip().split("\n")]
    if last.startswith(_HINT_PREFIX) and before:
        return f"{before} ({last[len(_HINT_PREFIX):]})"
    return last
def runs_locally(kernel_name: str) -> bool:
    """Whether the kernel spec's kernels are local processes (jupyter-client's own local
    provisioner), which the sandbox can wrap; a spec that cannot be read counts as local (its
    start will fail and say why)."""
    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except Exception:  # noqa: BLE001 - reported by the first kernel start instead
        return True
    return provisioned_locally(spec)


def provisioned_locally(spec: KernelSpec) -> bool:
    """Whether a kernel spec leaves its kernels to jupyter-client's own local provisioner."""
    provisioner = spec.metadata.get("kernel_provisioner", {}).get("provisioner_name")
    return provisioner in (None, "local-provisioner")


class _SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command runs inside the launcher's sandbox.

    ``format_kernel_cmd`` is where jupyter-client's local provisioner builds the command it
    starts, on every start and restart, so wrapping it there keeps kernel specs, connection
    files and restarts exactly as they are.
    """

    sandbox: Sandbox | None = None
    sandbox_root: Path | None = None

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        if self.sandbox is None or self.sandbox_root is None:
            return cmd
        # The spec's folder and the files its argv names (a launch script) are read-only.
        spec_dir = [self.kernel_spec.resource_dir] if self.kernel_spec is not None else []
        named = [arg for arg in cmd[1:] if os.path.isabs(arg) and os.path.exists(arg)
                 and not arg.startswith(str(self.sandbox_root) + os.sep)]
        return self.sandbox.wrap(cmd, root=self.sandbox_root, workdir=self.sandbox_root / "work",
                                 readonly=[*spec_dir, *named], sealed=[self.connection_file])


class KernelLauncher:
    """Starts kernels through jupyter_client's kernel specs and provisioners.

    Owns the private runtime directory (IPC sockets, connection files, per-kernel working
    directories), the ZeroMQ context and the asyncio loop thread.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        kernel_name: str = "python3",
        start_timeout: float = 60.0,
        memory_mb: int | None = None,
        preload: Iterable[str] = (),
        sandbox: Sandbox | None = None,
        max_output_bytes: int | None = None,
        max_code_bytes: int | None = None,
    ) -> None:
        self.clock = clock
        self.sandbox = sandbox or Sandbox("off", "off", "host", reason="not requested")
        self.max_message_bytes = (message_limit(max_output_bytes, max_code_bytes or 0)
                                  if max_output_bytes is not None else None)
        self.kernel_name = kernel_name
        self.start_timeout = start_timeout
        self.memory_mb = memory_mb
        self.preload = tuple(preload)
        remove_dead_runtime_dirs()  # what a killed server left behind
        self._runtime_dir = RuntimeDir()
        self.runtime = self._runtime_dir.path  # created 0700
        profile = self.runtime / "ipython" / "profile_default"
        profile.mkdir(mode=0o700, parents=True)
        settings = dict(IPYTHON_SETTINGS)
        if max_output_bytes is not None:  # the output cap, applied at the source as well
            settings["IPKernelApp.exec_lines"] = [kernel_code(max_output_bytes)]
        (profile / "ipython_kernel_config.py").write_text("".join(
            f"c.{name} = {value!r}\n" for name, value in settings.items()))
        self.zmq_context: zmq.Context[Any] = zmq.Context()
        self.loop = LoopThread()
        self._kernels: set[Kernel] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.watchdog = (MemoryWatchdog(memory_mb * 2**20)
                         if memory_mb is not None and MemoryWatchdog.supported() else None)

    def environment(self, root: Path) -> dict[str, str]:
        """The kernel's environment: an allow-list of the server's, plus per-kernel pip target."""
        env = {k: v for k, v in os.environ.items() if k in _ENV_ALLOW}
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([bindir, env.get("PATH", os.defpath)])
        site = str(root / "site-packages")
        if self.sandbox.enabled:
            prefix = root / "site-packages"
            version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
            env.update({
                "PIP_PREFIX": str(prefix),
                "PATH": os.pathsep.join([str(prefix / "bin"), env["PATH"]]),
            })
            sites = [prefix / lib / version / "site-packages" for lib in ("lib", "lib64")]
            for folder in sites:
                # Made now: Python caches a missing sys.path folder as having no modules, so a
                # package pip installs later would not be found until a restart.
                folder.mkdir(parents=True, exist_ok=True)
            site = os.pathsep.join(str(folder) for folder in sites)
        else:
            env["PIP_TARGET"] = site
        env.update({
            "PYTHONPATH": site,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            "TMPDIR": str(root / "tmp"),
            "IPYTHONDIR": str(root / "ipython"),
        })
        return env

    def start(self) -> Kernel:
        """Start one kernel and wait until it is ready (and preloaded): blocking."""
        if self._closed:
            raise KernelError("the emulator is shutting down")
        kernel_id = uuid.uuid4().hex[:12]
        root = self.runtime / "kernels" / kernel_id
        (self.runtime / "kernels").mkdir(mode=0o700, exist_ok=True)
        root.mkdir(mode=0o700)
        for sub in ("work", "site-packages", "tmp"):
            (root / sub).mkdir(mode=0o700)
        # A profile of its own: IPython needs it writable, and a kernel must not be able to
        # change another's start-up files.
        shutil.copytree(self.runtime / "ipython", root / "ipython")
        manager = self.new_manager(root)
        kernel = Kernel(self, manager, root)
        with self._lock:
            self._kernels.add(kernel)
        try:
            self.loop.run(manager.start_kernel(cwd=str(kernel.workdir), env=self.environment(root)),
                          timeout=self.start_timeout)
            kernel.connect(self.start_timeout)
            self.prepare(kernel)
        except Exception as exc:
            kernel.shutdown()
            if isinstance(exc, KernelError):
                raise
            raise KernelError(f"could not start kernel '{self.kernel_name}': {exc}") from exc
        return kernel

    def new_manager(self, root: Path) -> _SandboxedKernelManager:
        """The kernel manager of a kernel in ``root``: the seam where a launcher decides how
        the process starts (here: the kernel spec's command, wrapped by the sandbox)."""
        manager = _SandboxedKernelManager(kernel_name=self.kernel_name, transport="ipc",
                                          ip=str(root / "ipc"),
                                          connection_file=str(root / "connection.json"))
        if self.sandbox.enabled:
            manager.sandbox = self.sandbox
            manager.sandbox_root = root
        return manager

    def describe(self) -> dict[str, Any]:
        """What ``/_emulator/health`` says about how kernels are started."""
        return {"in_force": "spawn", "requested": "spawn"}

    def prepare(self, kernel: Kernel) -> None:
        """Put a fresh process under the memory cap and preload modules, before any user code."""
        if self.sandbox.enabled:
            kernel.aim_signals_inside_sandbox()
        if self.watchdog is not None and kernel.pid is not None:
            self.watchdog.watch(kernel.pid, lambda used: self._exceeded_memory(kernel, used))
        lines = [f"import {module}" for module in self.preload]
        if not lines:
            return
        result = kernel.execute("\n".join(lines), timeout=self.start_timeout, grace=1.0,
                                silent=True)
        if result.status != "ok":
            detail = "; ".join(_error_summary(o["data"])
                               for o in result.outputs if o["type"] == "error")
            raise PreloadError(f"--preload {','.join(self.preload)} does not import: "
                               f"{detail or result.status}")

    def _exceeded_memory(self, kernel: Kernel, used_bytes: int) -> None:
        """The memory watchdog's verdict: kill the kernel, naming the cap."""
        kernel.kill(f"the kernel used {used_bytes / 2**20:.0f} MB, over its memory cap of "
                    f"{self.memory_mb} MB (--kernel-memory-mb), and was killed")

    # -- what a kernel asks of its launcher (KernelHost) -----------------------------------

    def open_channels(self, info: Mapping[str, Any]) -> Channels:
        """Shell and iopub over ZeroMQ, on this launcher's context."""
        return Channels(self.zmq_context, info, self.max_message_bytes)

    def exit_status(self, status: int | None) -> int | None:
        """The kernel's own exit status: the sandbox's wrapper reports it as its own."""
        return self.sandbox.exit_code(status)

    def release(self, kernel: Kernel, *, final: bool) -> None:
        """Stop watching the kernel's current process; forget the kernel once it ended."""
        if self.watchdog is not None and kernel.pid is not None:
            self.watchdog.unwatch(kernel.pid)
        if final:
            with self._lock:
                self._kernels.discard(kernel)

    def close(self) -> None:
        """Shut down every kernel this launcher started and remove the runtime directory."""
        self._closed = True
        with self._lock:
            kernels = list(self._kernels)
            self._kernels.clear()
        for kernel in kernels:
            kernel.shutdown()  # each tells release(); the set is already empty
        if self.watchdog is not None:
            self.watchdog.close()
        self.loop.close()
        self.zmq_context.term()
        self._runtime_dir.remove()

    @property
    def live_kernels(self) -> int:
        """How many kernels are started and not yet shut down."""
        with self._lock:
            return len(self._kernels)
