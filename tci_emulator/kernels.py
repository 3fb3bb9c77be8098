"""Jupyter kernels for sessions: start, execute, interrupt, restart, shut down.

(Keeping kernels warm ahead of demand is :mod:`tci_emulator.pool`.)

This is the only module that imports jupyter_client. Kernel *processes* are managed by
jupyter_client's ``AsyncKernelManager`` (so kernel specs and provisioners decide how and where a
kernel runs), driven on one private asyncio loop thread: jupyter_client's synchronous wrappers
create an event loop per calling thread, which does not suit a threaded HTTP server. Kernel
*messages* go over plain synchronous ZeroMQ sockets signed by jupyter_client's ``Session``: a
request thread sends ``execute_request`` and polls shell and iopub itself, which keeps the
emulator's per-execution overhead to a fraction of a millisecond.

Kernels connect over the IPC transport in a private (0700) runtime directory, so no TCP port is
opened; each kernel starts in its own fresh working directory with an environment built from an
allow-list, so the server's secrets (``TOGETHER_API_KEY`` and anything else) never reach it.
Local kernels run inside the launcher's sandbox (:mod:`tci_emulator.sandbox`): the kernel's own
directory, with its connection file, IPC sockets and working directory, is bind-mounted at the
same path, so the server reaches the sockets as before, even with no network in the sandbox.
``pip install`` inside a kernel goes to that kernel's own directory, so other sessions and the
server do not see the package: in the sandbox (:mod:`tci_emulator.sandbox`) to its own prefix
(``PIP_PREFIX``, on its ``PYTHONPATH``), so a package already installed is "already satisfied" as
on any machine; without the sandbox to a target directory (``PIP_TARGET``), because there pip
could otherwise uninstall a shared package in place to upgrade it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import json
import os
import shutil
import signal
import sys
import threading
import uuid
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Iterable, Literal, Mapping, TypeVar, cast

import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from jupyter_client.session import Session

from .clock import Clock
from .output_cap import kernel_code, message_limit
from .outputs import Output, OutputCollector
from .packages import HINT_PREFIX as _HINT_PREFIX
from .runtime import RuntimeDir, remove_dead_runtime_dirs
from .sandbox import Sandbox
from .watchdog import MemoryWatchdog, first_descendants

__all__ = [
    "IPYTHON_SETTINGS",
    "runs_locally",
    "ExecutionResult",
    "Kernel",
    "KernelError",
    "KernelLauncher",
    "PreloadError",
]

T = TypeVar("T")

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
_LIVENESS_POLL_S = 0.2
# Kernel messages are UTF-8 JSON; decoding str directly skips json.loads's encoding sniffing.
_json_decode = json.JSONDecoder().decode
# The Jupyter messaging protocol: version sent in headers, and the frame before the signature.
_PROTOCOL_VERSION = "5.3"
_DELIMITER = b"<IDS|MSG>"
# How soon a starting kernel that answered on shell is asked again when iopub missed it.
_READY_NUDGE_S = 0.05


class KernelError(Exception):
    """A kernel could not be started or reached (infrastructure, not the user's code)."""


class PreloadError(KernelError):
    """A kernel started, but the ``--preload`` modules did not import in it."""


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


@dataclass
class ExecutionResult:
    """What one execution produced.

    ``status`` is ``ok`` or ``error`` as the kernel replied, ``timeout`` when the time limit
    interrupted it, or ``died`` when the kernel process ended. ``state_lost`` is true when the
    kernel had to be replaced, so the session's variables and imports are gone.
    """

    outputs: list[Output]
    status: Literal["ok", "error", "timeout", "died"]
    state_lost: bool = False
    truncated: bool = False


class _LoopThread:
    """One asyncio loop in a daemon thread, for jupyter_client's async kernel management."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="tci-kernel-loop",
                                        daemon=True)
        self._thread.start()

    def run(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        """Run ``awaitable`` on the loop and wait for its result from any other thread."""
        async def wrapper() -> T:
            return await awaitable
        future = asyncio.run_coroutine_threadsafe(wrapper(), self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:  # not the builtin TimeoutError before 3.11
            future.cancel()  # a start that timed out must not go on to launch a process
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


class _Channels:
    """Synchronous shell and iopub sockets to one kernel, signed with its key."""

    def __init__(self, context: zmq.Context[Any], info: Mapping[str, Any],
                 max_message_bytes: int | None = None) -> None:
        key = info["key"]
        self.session = Session(key=key if isinstance(key, bytes) else str(key).encode(),
                               signature_scheme=str(info["signature_scheme"]),
                               username="tci-emulator")

        def address(port_name: str) -> str:
            port = info[port_name]
            if info["transport"] == "ipc":
                return f"ipc://{info['ip']}-{port}"
            return f"tcp://{info['ip']}:{port}"

        self.shell = context.socket(zmq.DEALER)
        self.shell.linger = 0
        self.shell.setsockopt(zmq.IDENTITY, self.session.bsession)
        self.shell.connect(address("shell_port"))
        self.iopub = context.socket(zmq.SUB)
        self.iopub.linger = 0
        if max_message_bytes is not None:
            # The backstop of the kernel-side output cap, which session code could undo: a
            # larger message is never received (libzmq drops the connection, which reconnects).
            self.iopub.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.connect(address("iopub_port"))
        self.poller = zmq.Poller()
        self.poller.register(self.shell, zmq.POLLIN)
        self.poller.register(self.iopub, zmq.POLLIN)

    def send(self, msg_type: str, content: dict[str, Any]) -> str:
        """Send a shell request; returns its msg_id.

        Built and signed here, as ``Session.send`` would, minus its generality (buffers,
        tracking, version adaptation) and its cost: this runs once per execution.
        """
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "username": "tci-emulator",
                  "session": self.session.session, "version": _PROTOCOL_VERSION,
                  "date": datetime.now(timezone.utc).isoformat()}
        pack = self.session.pack  # jupyter-client's own JSON packing, edge cases included
        parts = [pack(header), b"{}", b"{}", pack(content)]
        self.shell.send_multipart([_DELIMITER, self.session.sign(parts), *parts])
        return msg_id

    def receive(self, timeout_s: float) -> list[tuple[str, dict[str, Any]]]:
        """Wait up to ``timeout_s`` and return every message then waiting, tagged by channel."""
        ready = dict(self.poller.poll(int(max(timeout_s, 0) * 1000)))
        messages: list[tuple[str, dict[str, Any]]] = []
        for name, sock in (("iopub", self.iopub), ("shell", self.shell)):
            if sock not in ready:
                continue
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                messages.append((name, self._decode(frames)))
        return messages

    def _decode(self, frames: list[bytes]) -> dict[str, Any]:
        """Check a message's signature and parse the JSON parts the emulator reads.

        ``Session.recv`` would also turn every date string in the headers into a datetime
        (through dateutil), which was over a third of the server's CPU time per execution;
        nothing here reads those dates. The message metadata and the content of
        ``execute_input`` (an echo of the code, up to megabytes) are not read either, so they
        are not parsed.
        """
        _, received = self.session.feed_identities(frames, copy=True)
        parts = cast("list[bytes]", received)  # copy=True gives bytes, not zmq Frames
        signature, header, parent, _metadata, content = parts[:5]
        if self.session.auth is not None and not hmac.compare_digest(
                signature, self.session.sign(parts[1:5])):
            raise KernelError("a kernel message had an invalid signature")
        head = _json_decode(header.decode())
        msg_type = head.get("msg_type")
        return {"header": head, "msg_id": head.get("msg_id"), "msg_type": msg_type,
                "parent_header": _json_decode(parent.decode()), "metadata": {},
                # ipykernel packs lone surrogates (print('\udcff')) with surrogateescape, so
                # content may be invalid UTF-8: replace those bytes, as jupyter_client does.
                "content": ({} if msg_type == "execute_input"
                            else _json_decode(content.decode("utf-8", "replace"))),
                "buffers": parts[5:]}

    def close(self) -> None:
        self.shell.close(linger=0)
        self.iopub.close(linger=0)


def _parent_id(msg: Mapping[str, Any]) -> str | None:
    parent = msg.get("parent_header") or {}
    return parent.get("msg_id")


def _msg_type(msg: Mapping[str, Any]) -> str:
    return str(msg.get("header", {}).get("msg_type", ""))


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "the kernel stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the kernel process was killed by {name}"
    return f"the kernel process exited with code {code}"


class Kernel:
    """One kernel process and its private directories; serves exactly one session for life.

    Not thread-safe: the session that owns it serialises calls (and the pool hands it out only
    once it is ready).
    """

    def __init__(self, launcher: KernelLauncher, manager: AsyncKernelManager, root: Path) -> None:
        self._launcher = launcher
        self._manager = manager
        self.id = root.name
        self.root = root
        self.workdir = root / "work"
        self._channels: _Channels | None = None
        self._closed = False
        # Held while the sockets are in use, so shutdown from another thread (reaper, reset)
        # never closes a socket under a running execution: it kills the process first, and
        # the execution notices and returns.
        self._io_lock = threading.RLock()
        # Why the emulator itself killed the process (memory cap, injected crash), if it did.
        self.kill_reason: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def connect(self, timeout: float) -> None:
        """Open channels and wait until the kernel answers on shell *and* publishes on iopub.

        A SUB socket misses what is published before its subscription lands, so a kernel is
        ready only once a ``kernel_info`` request's messages arrive on iopub too. Once the
        kernel has replied on shell, a missed iopub status is re-asked for within
        ``_READY_NUDGE_S`` (not after a whole second: that wait was most of a kernel's start).
        """
        if self._channels is not None:
            self._channels.close()
        self._channels = self._open_channels()
        clock = self._launcher.clock
        deadline = clock.monotonic() + timeout
        sent: set[str] = set()
        replied = published = False
        next_send = clock.monotonic()
        while clock.monotonic() < deadline:
            if clock.monotonic() >= next_send:
                sent.add(self._channels.send("kernel_info_request", {}))
                next_send = clock.monotonic() + (_READY_NUDGE_S if replied else 1.0)
            wait = min(next_send, deadline) - clock.monotonic()
            messages = self._channels.receive(wait)
            for channel, msg in messages:
                if _parent_id(msg) not in sent:
                    continue
                if channel == "shell":
                    replied = True
                    next_send = min(next_send, clock.monotonic() + _READY_NUDGE_S)
                else:
                    published = True
            if replied and published:
                return
            if not messages and not self.is_alive():
                raise KernelError(f"kernel {self.id} died while starting: "
                                  f"{_describe_exit(self.exit_code())}")
        raise KernelError(f"kernel {self.id} was not ready within {timeout:g} s")

    def _open_channels(self) -> _Channels:
        """Shell and iopub to this kernel (a kernel reached another way overrides this)."""
        return _Channels(self._launcher.zmq_context, self._manager.get_connection_info(),
                         self._launcher.max_message_bytes)

    def is_alive(self) -> bool:
        """Whether the kernel process is running (asked through its provisioner)."""
        if self._closed:
            return False
        return bool(self._launcher.loop.run(self._manager.is_alive(), timeout=10))

    def exit_code(self) -> int | None:
        """The process's exit status once it ended (negative: killed by that signal)."""
        provisioner = self._manager.provisioner
        if provisioner is None:
            return None
        return self._launcher.sandbox.exit_code(
            self._launcher.loop.run(provisioner.poll(), timeout=10))

    @property
    def local(self) -> bool:
        """Whether the kernel is a process on this machine, in the working directory here."""
        return self._manager.provisioner is None or isinstance(self._manager.provisioner,
                                                               LocalProvisioner)

    @property
    def pid(self) -> int | None:
        """The local process id, where the provisioner runs the kernel on this machine."""
        process = getattr(self._manager.provisioner, "process", None)
        return getattr(process, "pid", None)

    def aim_signals_inside_sandbox(self) -> None:
        """Point interrupts at the kernel's own process group inside the sandbox.

        jupyter-client signals the group of the process it started, which here is bubblewrap,
        and bubblewrap dies of a SIGINT (taking the sandbox with it). Inside, ``--new-session``
        gave the namespace's init and the kernel (bubblewrap -> init -> kernel) a session and
        group of their own: SIGINT goes there, reaching the kernel and the children it started
        as without a sandbox (the init has no handler, and an init ignores such signals from
        outside its namespace). A SIGKILL there ends the init, and with it every process of
        the namespace.
        """
        provisioner = self._manager.provisioner
        if self.pid is None or provisioner is None:
            return
        chain = first_descendants(self.pid, depth=2)
        try:
            group = os.getpgid(chain[-1]) if len(chain) == 2 else None
        except OSError:
            group = None
        if group is not None:
            setattr(provisioner, "pgid", group)

    def interrupt(self) -> None:
        """Interrupt the running cell (SIGINT or an interrupt_request, as the spec says)."""
        self._launcher.loop.run(self._manager.interrupt_kernel(), timeout=10)

    def restart(self) -> None:
        """Replace the process with a fresh one in the same directories: state is lost.

        The new process is prepared like a pooled one (memory cap, preloads).
        """
        self._launcher.forget_pid(self)
        self._launcher.loop.run(self._manager.restart_kernel(now=True), timeout=60)
        self.connect(self._launcher.start_timeout)
        self.kill_reason = None
        self._launcher.prepare(self)

    def kill(self, reason: str | None = None) -> None:
        """Kill the process group at once; ``reason`` is what the execution's error will say."""
        if reason is not None:
            self.kill_reason = reason
        self._launcher.loop.run(self._manager.signal_kernel(signal.SIGKILL), timeout=10)

    def exceeded_memory(self, used_bytes: int) -> None:
        """The memory watchdog's verdict: kill the kernel, naming the cap."""
        cap = self._launcher.memory_mb
        self.kill(f"the kernel used {used_bytes / 2**20:.0f} MB, over its memory cap of "
                  f"{cap} MB (--kernel-memory-mb), and was killed")

    def shutdown(self) -> None:
        """Stop the process and remove its directories; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._launcher.forget_pid(self)
        self._reap_now()
        try:
            self._launcher.loop.run(self._manager.shutdown_kernel(now=True), timeout=30)
        except Exception:  # noqa: BLE001 - a kernel that will not stop must not block cleanup
            try:
                self._launcher.loop.run(self._manager.signal_kernel(signal.SIGKILL), timeout=5)
            except Exception:  # noqa: BLE001
                pass
        with self._io_lock:
            if self._channels is not None:
                self._channels.close()
                self._channels = None
        shutil.rmtree(self.root, ignore_errors=True)

    def _reap_now(self) -> None:
        """Kill a local kernel's process group and reap it before jupyter_client's shutdown.

        ``shutdown_kernel(now=True)`` kills too, but then polls for the exit every 100 ms, which
        made every session end (and so every reset) cost a tenth of a second per kernel.
        """
        process = getattr(self._manager.provisioner, "process", None)
        if process is None:
            return
        try:
            self._launcher.loop.run(self._manager.signal_kernel(signal.SIGKILL), timeout=5)
            process.wait(timeout=5)
        except Exception:  # noqa: BLE001 - shutdown_kernel below is the fallback
            pass

    @property
    def closed(self) -> bool:
        """Whether the kernel was shut down for good."""
        return self._closed

    # -- execution -------------------------------------------------------------------------

    def execute(
        self,
        code: str,
        *,
        timeout: float,
        grace: float,
        max_output_bytes: int | None = None,
        silent: bool = False,
    ) -> ExecutionResult:
        """Run ``code`` and collect its outputs.

        At ``timeout`` the kernel is interrupted; if it has not finished ``grace`` seconds later
        (code that swallows ``KeyboardInterrupt``, a stuck C call) it is restarted. A kernel
        that dies is restarted too. Either way the result ends with an ``error`` item that says
        what happened and whether the session's state was lost.
        """
        with self._io_lock:
            if self._channels is None or self._closed:
                raise KernelError(f"kernel {self.id} is not running")
            return self._execute(code, timeout=timeout, grace=grace,
                                 max_output_bytes=max_output_bytes, silent=silent)

    def _execute(self, code: str, *, timeout: float, grace: float,
                 max_output_bytes: int | None, silent: bool) -> ExecutionResult:
        assert self._channels is not None
        clock = self._launcher.clock
        collector = OutputCollector(max_output_bytes)
        msg_id = self._channels.send("execute_request", {
            "code": code, "silent": silent, "store_history": not silent,
            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True,
        })
        deadline = clock.monotonic() + timeout
        interrupted_at: float | None = None
        reply: dict[str, Any] | None = None
        idle = False
        while not (idle and reply is not None):
            now = clock.monotonic()
            limit = interrupted_at + grace if interrupted_at is not None else deadline
            if now >= limit:
                if interrupted_at is None:
                    self.interrupt()
                    interrupted_at = clock.monotonic()
                    continue
                return self._replace_after(collector, self._timeout_message(timeout, restarted=True),
                                           "timeout")
            messages = self._channels.receive(min(_LIVENESS_POLL_S, limit - now))
            if not messages and not self.is_alive():
                if self._closed:
                    collector.add_error("SessionEnded: the session ended while this code was "
                                        "running.")
                    return ExecutionResult(collector.outputs, "died", state_lost=True,
                                           truncated=collector.truncated)
                return self._replace_after(collector, self._death_message(), "died")
            for channel, msg in messages:
                if _parent_id(msg) != msg_id:
                    continue
                if channel == "shell":
                    reply = msg["content"]
                elif _msg_type(msg) == "status":
                    idle = idle or msg["content"].get("execution_state") == "idle"
                elif interrupted_at is None or _msg_type(msg) != "error":
                    collector.add_message(msg)
        assert reply is not None
        if interrupted_at is not None:
            collector.add_error(self._timeout_message(timeout, restarted=False))
            status: Literal["ok", "error", "timeout", "died"] = "timeout"
        else:
            status = "ok" if reply.get("status") == "ok" else "error"
            if silent and status == "error" and not any(o["type"] == "error" for o in collector.outputs):
                collector.add_error(f"{reply.get('ename', 'Error')}: {reply.get('evalue', '')}")
        return ExecutionResult(collector.outputs, status, truncated=collector.truncated)

    def _replace_after(self, collector: OutputCollector, message: str,
                       status: Literal["timeout", "died"]) -> ExecutionResult:
        """Restart the kernel after a timeout or a death; the result says state was lost."""
        try:
            self.restart()
        except Exception as exc:  # noqa: BLE001 - reported to the user as part of the error item
            message += f" Restarting it failed too ({exc}); the session cannot run more code."
        collector.add_error(message)
        return ExecutionResult(collector.outputs, status, state_lost=True,
                               truncated=collector.truncated)

    def _death_message(self) -> str:
        cause = self.kill_reason or _describe_exit(self.exit_code())
        return (f"KernelDied: {cause} during execution. The session "
                "continues in a fresh kernel: variables and imports were lost; files in the "
                "working directory remain.")

    @staticmethod
    def _timeout_message(timeout: float, *, restarted: bool) -> str:
        if restarted:
            return (f"ExecutionTimeout: execution exceeded the time limit of {timeout:g} s and "
                    "did not stop when interrupted, so the kernel was restarted: variables and "
                    "imports were lost; files in the working directory remain.")
        return (f"ExecutionTimeout: execution exceeded the time limit of {timeout:g} s and was "
                "interrupted; the session's state is kept.")


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
        self.loop = _LoopThread()
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
            self.discard(kernel)
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
            self.watchdog.watch(kernel.pid, kernel.exceeded_memory)
        lines = [f"import {module}" for module in self.preload]
        if not lines:
            return
        result = kernel.execute("\n".join(lines), timeout=self.start_timeout, grace=1.0, silent=True)
        if result.status != "ok":
            detail = "; ".join(_error_summary(o["data"])
                               for o in result.outputs if o["type"] == "error")
            raise PreloadError(f"--preload {','.join(self.preload)} does not import: "
                               f"{detail or result.status}")

    def forget_pid(self, kernel: Kernel) -> None:
        """Stop watching a kernel's current process (it is being replaced or stopped)."""
        if self.watchdog is not None and kernel.pid is not None:
            self.watchdog.unwatch(kernel.pid)

    def discard(self, kernel: Kernel) -> None:
        """Shut a kernel down and forget it."""
        with self._lock:
            self._kernels.discard(kernel)
        kernel.shutdown()

    def close(self) -> None:
        """Shut down every kernel this launcher started and remove the runtime directory."""
        self._closed = True
        with self._lock:
            kernels = list(self._kernels)
            self._kernels.clear()
        for kernel in kernels:
            kernel.shutdown()
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
