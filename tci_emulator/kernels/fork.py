"""The forking kernel launcher: kernels forked from a template that imported ipykernel once.

A cold kernel (``python -m ipykernel_launcher``) spends about half a second importing before it
reads its connection file; sessions created at the rate RL and evaluation suites create them
cannot wait for that. :class:`ForkingKernelLauncher` keeps one template process
(:mod:`.fork_template`) that has imported ipykernel, IPython and the ``--preload``
modules and built the kernel's application and shell (from this launcher's profile, whose
directory it gets as ``IPYTHONDIR``), and asks it for an ``os.fork()`` per kernel.

It is a sibling of :class:`~.spawn.KernelLauncher` behind the same interface, and
it changes only *how the process starts*: jupyter-client still writes the connection file, and
the session still talks to the kernel over its own IPC sockets, interrupts it through its
process group, restarts it, caps its memory and notices its death, because the forked process
is handed to jupyter-client's local provisioner as if ``Popen`` had started it
(:class:`ForkedProcess`). Whatever the template cannot fork (a kernel spec whose command is not
this interpreter's ``ipykernel_launcher``) is spawned as before, and so is everything when the
template cannot run at all.

The server never forks itself (it holds threads and kernels): the template is a child process
started with ``subprocess``, whose stdin is the server's end of the line. When the server dies,
even by SIGKILL, the template reads end of file, kills every kernel it forked and exits; a
kernel whose template died is killed by the kernel (``PR_SET_PDEATHSIG``). A template that dies
is started again on the next launch.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import zmq
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from ..clock import Clock
from ..watchdog import first_descendants
from .errors import KernelError
from .kernel import Kernel
from .sandbox import Sandbox
from .spawn import KernelLauncher, _SandboxedKernelManager

__all__ = ["LAUNCHERS", "ForkTemplate", "ForkedProcess", "ForkingKernelLauncher", "TemplateError"]

_log = logging.getLogger(__name__)

LAUNCHERS = ("fork", "spawn")
_RECONNECT_IVL_MS = 5
_TEMPLATE_ENV = {
    # One BLAS/OpenMP thread: a library that starts a thread pool at import would leave the
    # template multi-threaded, and a multi-threaded process cannot be forked safely.
    "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
}


class TemplateError(Exception):
    """The template could not be started or could not fork."""


class _TemplateDied(TemplateError):
    """The template died between two requests (killed, crashed): worth one retry."""


_REPORT_WAIT_S = 1.0


def _exited(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (ended, not yet reaped by its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


class ForkedProcess:
    """A kernel the template forked, with the part of ``subprocess.Popen``'s interface that
    jupyter-client's local provisioner and the emulator use.

    The process is the template's child, not the server's, so its exit status arrives from the
    template (:meth:`ForkTemplate._read_forever`) instead of from ``waitpid``.
    """

    stdin: IO[Any] | None = None
    stdout: IO[Any] | None = None
    stderr: IO[Any] | None = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.has_init = False  # sandboxed: ``pid`` is the namespace's init, the kernel its child
        self._kernel: int | None = None  # that child, once seen
        self._ended = threading.Event()

    def ended(self, status: int) -> None:
        """Record the exit status the template reported."""
        if self.returncode is None:
            self.returncode = status
        self._ended.set()

    def poll(self) -> int | None:
        if self.returncode is None and not self._running():
            # Dead already; the template's report of the status is moments away.
            self._ended.wait(_REPORT_WAIT_S)
        return self.returncode

    def _running(self) -> bool:
        """What /proc says now, ahead of the template's report: whether the kernel (below the
        init, in a sandbox) is still a running process. A pool must not hand out a kernel that
        was killed while it waited, only because its exit has not been reported yet."""
        if _exited(self.pid):
            return False
        if not self.has_init:
            return True
        below = first_descendants(self.pid, depth=1)
        if below:
            self._kernel = below[0]
            return not _exited(below[0])
        return self._kernel is None  # not forked below the init yet; else it is gone

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # never signal a pid that may have been reused
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkTemplate:
    """The template process, started lazily and again after it dies; thread-safe."""

    def __init__(self, runtime: Path, preload: Iterable[str], start_timeout: float) -> None:
        self._runtime = runtime
        self._preload = tuple(preload)
        self._start_timeout = start_timeout
        self._lock = threading.Lock()  # one request written at a time; start/stop
        self._cond = threading.Condition()
        self._process: subprocess.Popen[bytes] | None = None
        # Answers by request id; -generation marks a template that died.
        self._answers: dict[int, tuple[dict[str, Any], ForkedProcess | None]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._next_id = 0
        self._generation = 0
        self.broken: str | None = None  # why no template can run here, once one failed
        self._closed = False
        self.starts = 0  # how many templates were started (health, tests)

    @property
    def pid(self) -> int | None:
        """The running template's pid, if one runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def _start(self) -> subprocess.Popen[bytes]:
        """Start a template and wait for its ``ready`` line (called with ``_lock`` held)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TCI_EMULATOR_")}
        env.update(_TEMPLATE_ENV)
        # The profile every kernel's own is copied from: the template reads its configuration.
        env["IPYTHONDIR"] = str(self._runtime / "ipython")
        process = subprocess.Popen(
            [sys.executable, "-m", "tci_emulator.kernels.fork_template", *self._preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(self._runtime), env=env,
            start_new_session=True)  # a Ctrl-C meant for the server is the server's to handle
        assert process.stdout is not None
        first = _read_line(process.stdout, self._start_timeout)
        if first.get("op") != "ready":
            process.kill()
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
            raise TemplateError(first.get("error") or "the fork template did not start")
        with self._cond:
            self._generation += 1
            generation = self._generation
        self.starts += 1
        threading.Thread(target=self._read_forever, args=(process, generation),
                         name="tci-fork-template", daemon=True).start()
        return process

    def _read_forever(self, process: subprocess.Popen[bytes], generation: int) -> None:
        """Dispatch the template's answers and exit reports until it ends."""
        assert process.stdout is not None
        for line in process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                if message.get("op") == "exited":
                    child = self._children.pop(int(message["pid"]), None)
                    if child is not None:
                        child.ended(int(message["status"]))
                elif "id" in message:
                    child = None
                    if message.get("op") == "started":
                        child = self._children[int(message["pid"])] = ForkedProcess(
                            int(message["pid"]))
                    self._answers[int(message["id"])] = (message, child)
                self._cond.notify_all()
        process.wait()
        process.stdout.close()
        with self._cond:
            # Its kernels die with it (PR_SET_PDEATHSIG); their status is no longer reported.
            orphans = [c for c in self._children.values()]
            self._children.clear()
            if self._generation == generation:
                self._answers[-generation] = ({"op": "failed"}, None)
            self._cond.notify_all()
        for child in orphans:
            child.ended(-signal.SIGKILL)

    def fork(self, argv: list[str], env: dict[str, str], cwd: str,
             sandbox: list[str] | None = None) -> ForkedProcess:
        """Fork one kernel (in the namespaces the bubblewrap arguments ``sandbox`` describe,
        if any); starts the template first when needed, and again once if it died meanwhile."""
        request = {"op": "fork", "argv": argv, "env": env, "cwd": cwd, "sandbox": sandbox or []}
        try:
            child = self._fork_once(request)
        except _TemplateDied:
            child = self._fork_once(request)
        child.has_init = bool(sandbox)
        return child

    def _fork_once(self, request: dict[str, Any]) -> ForkedProcess:
        with self._lock:
            if self._closed:
                raise TemplateError("the emulator is shutting down")
            if self.broken is not None:
                raise TemplateError(self.broken)
            if self._process is None or self._process.poll() is not None:
                if self._process is not None and self._process.stdin is not None:
                    self._process.stdin.close()  # the dead one's pipe
                try:
                    self._process = self._start()
                except (OSError, TemplateError) as exc:
                    self.broken = str(exc)
                    raise TemplateError(self.broken) from exc
            process = self._process
            generation = self._generation
            self._next_id += 1
            request_id = self._next_id
            assert process.stdin is not None
            try:
                process.stdin.write((json.dumps({**request, "id": request_id}) + "\n").encode())
                process.stdin.flush()
            except OSError as exc:
                raise _TemplateDied(str(exc)) from exc
        with self._cond:
            self._cond.wait_for(lambda: request_id in self._answers
                                or -generation in self._answers, self._start_timeout)
            answer = self._answers.pop(request_id, None)
            if answer is None:
                if -generation in self._answers:
                    raise _TemplateDied("the fork template died")
                raise TemplateError("the fork template did not answer")
        message, child = answer
        if child is None:
            raise TemplateError(f"fork failed: {message.get('error')}")
        return child

    def close(self) -> None:
        """Stop the template; it kills every kernel it forked on the way out."""
        with self._lock:
            self._closed = True
            process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        try:
            process.stdin.close()  # end of file: kill the kernels, exit
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()


def _read_line(stream: IO[bytes], timeout: float) -> dict[str, Any]:
    """The template's first line, or an error if it says nothing within ``timeout``."""
    import select
    ready, _, _ = select.select([stream], [], [], timeout)
    line = stream.readline() if ready else b""
    try:
        message = json.loads(line) if line else {}
    except ValueError:
        message = {}
    return message if isinstance(message, dict) else {}


def forkable(cmd: list[str]) -> bool:
    """Whether a kernel command is this interpreter's ipykernel, which the template can fork."""
    return (len(cmd) >= 3 and cmd[1:3] == ["-m", "ipykernel_launcher"]
            and os.path.realpath(cmd[0]) == os.path.realpath(sys.executable))


class _ForkProvisioner(LocalProvisioner):  # type: ignore[misc]
    """jupyter-client's local provisioner, with the process forked by the template."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        template: ForkTemplate | None = getattr(self.parent, "template", None)
        if template is None or not forkable(cmd):
            return await super().launch_kernel(cmd, **kwargs)
        env = {str(k): str(v) for k, v in (kwargs.get("env") or {}).items()}
        sandbox: Sandbox | None = getattr(self.parent, "fork_sandbox", None)
        root: Path | None = getattr(self.parent, "sandbox_root", None)
        plan: list[str] = []
        # The connection file is sealed as for a spawned kernel (see _SandboxedKernelManager).
        sealed = [str(getattr(self.parent, "connection_file", ""))]
        if sandbox is not None and root is not None:
            # The very arguments bubblewrap would get; the child enacts them itself.
            wrapped = sandbox.wrap(cmd, root=root, workdir=root / "work", sealed=sealed)
            plan = wrapped[1:wrapped.index("--")]
        try:
            process = template.fork(cmd, env, str(kwargs.get("cwd") or os.getcwd()), plan)
        except TemplateError as exc:
            if template.broken is None:
                raise
            # No template can run here: spawn instead (in bubblewrap when sandboxed).
            _log.warning("kernel spawned, not forked: %s", exc)
            wrapped = cmd if sandbox is None or root is None else sandbox.wrap(
                cmd, root=root, workdir=root / "work", sealed=sealed)
            return await super().launch_kernel(wrapped, **kwargs)
        self.process = process  # type: ignore[assignment]  # Popen-like
        self.pid = process.pid
        self.pgid = process.pid  # the child called setsid: its pid is its group
        self.cwd = kwargs.get("cwd")
        return self.connection_info


class _ForkingKernelManager(_SandboxedKernelManager):
    """A kernel manager whose local provisioner forks from the template."""

    template: ForkTemplate | None = None
    fork_sandbox: Sandbox | None = None

    async def _async_pre_start_kernel(self, **kw: Any) -> Any:
        if self.provisioner is None and self.template is not None:
            self.provisioner = _ForkProvisioner(kernel_id=self.kernel_id or "",
                                                kernel_spec=self.kernel_spec, parent=self)
        return await super()._async_pre_start_kernel(**kw)


class ForkingKernelLauncher(KernelLauncher):
    """Starts session kernels by forking a template; see the module docstring."""

    name = "fork"
    # A forked start is mostly waiting, not CPU: the pool may run two at once.
    concurrent_refills = 2

    def __init__(self, clock: Clock, *, kernel_name: str = "python3", start_timeout: float = 60.0,
                 memory_mb: int | None = None, preload: Iterable[str] = (),
                 sandbox: Sandbox | None = None, max_output_bytes: int | None = None,
                 max_code_bytes: int | None = None) -> None:
        super().__init__(clock, kernel_name=kernel_name, start_timeout=start_timeout,
                         memory_mb=memory_mb, preload=preload, sandbox=sandbox,
                         max_output_bytes=max_output_bytes, max_code_bytes=max_code_bytes)
        self.template = ForkTemplate(self.runtime, self.preload, start_timeout)
        # The server connects to a forked kernel's sockets before the kernel has bound them
        # (tens of milliseconds later); ZeroMQ's default 100 ms between attempts to connect
        # was then most of a start.
        self.zmq_context.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_IVL_MS)

    def new_manager(self, root: Path) -> _SandboxedKernelManager:
        manager = _ForkingKernelManager(kernel_name=self.kernel_name, transport="ipc",
                                        ip=str(root / "ipc"),
                                        connection_file=str(root / "connection.json"))
        manager.template = self.template
        if self.sandbox.enabled:
            manager.fork_sandbox = self.sandbox
            manager.sandbox_root = root
        return manager

    def start(self) -> Kernel:
        """Start one kernel; once more if the template died under it (a kernel dies with its
        template, so a start in flight when the template was killed fails through no fault of
        its own)."""
        template_pid = self.template.pid
        try:
            return super().start()
        except KernelError:
            if self.template.pid == template_pid:
                raise
            return super().start()

    def describe(self) -> dict[str, Any]:
        info = {"in_force": "fork", "requested": "fork", "template_pid": self.template.pid,
                "template_starts": self.template.starts}
        if self.template.broken is not None:
            info.update(in_force="spawn", reason=self.template.broken)
        return info

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.template.close()

