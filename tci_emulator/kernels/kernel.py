"""One kernel's life: connect, execute, interrupt, restart, kill and shut down.

A :class:`Kernel` serves exactly one session. It reaches whatever launched it only through
:class:`KernelHost` (a clock, the loop thread, how to open its channels, how to read its exit
status, and two calls: prepare a fresh process, release a process that is gone), so the spawn,
fork and gateway launchers are siblings behind one small interface. :meth:`Kernel.shutdown` is
the only way a kernel ends: the pool, the sessions and the launcher's own ``close`` all call it,
and it tells the launcher, never the other way round.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from ..clock import Clock
from ..outputs import Output, OutputCollector
from ..watchdog import first_descendants
from .errors import KernelError
from .loop import LoopThread
from .wire import Channels, msg_type, parent_id

__all__ = ["ExecutionResult", "Kernel", "KernelHost", "describe_exit"]

_LIVENESS_POLL_S = 0.2
# How soon a starting kernel that answered on shell is asked again when iopub missed it.
_READY_NUDGE_S = 0.05


class KernelHost(Protocol):
    """What a :class:`Kernel` needs from whatever launched it, and all of it a kernel reaches.

    The launcher keeps its kernels under its own rules (the memory cap, the preloads, the set
    of live kernels): a kernel asks it to :meth:`prepare` each fresh process and tells it, by
    :meth:`release`, when a process is being replaced (``final=False``) or the kernel has ended
    for good (``final=True``).
    """

    @property
    def clock(self) -> Clock:
        """The emulator's clock, for every wait and deadline."""

    @property
    def loop(self) -> LoopThread:
        """The loop thread on which the kernel's manager runs."""

    @property
    def start_timeout(self) -> float:
        """How long a (re)started process may take to be ready."""

    def open_channels(self, info: Mapping[str, Any]) -> Channels:
        """Shell and iopub to a kernel with this connection info."""

    def exit_status(self, status: int | None) -> int | None:
        """The kernel's own exit status from its process's (a sandbox reports the kernel's)."""

    def prepare(self, kernel: Kernel) -> None:
        """Make a fresh process ready for session code (memory cap, preloads)."""

    def release(self, kernel: Kernel, *, final: bool) -> None:
        """The kernel's process is being replaced, or (``final``) the kernel has ended."""


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


def describe_exit(code: int | None) -> str:
    """How a kernel process ended, for an error item: by a signal, with a code, or silently."""
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

    def __init__(self, host: KernelHost, manager: AsyncKernelManager, root: Path) -> None:
        self._host = host
        self._manager = manager
        self.id = root.name
        self.root = root
        self.workdir = root / "work"
        self._channels: Channels | None = None
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
        clock = self._host.clock
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
                if parent_id(msg) not in sent:
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
                                  f"{describe_exit(self.exit_code())}")
        raise KernelError(f"kernel {self.id} was not ready within {timeout:g} s")

    def _open_channels(self) -> Channels:
        """Shell and iopub to this kernel (a kernel reached another way overrides this)."""
        return self._host.open_channels(self._manager.get_connection_info())

    def is_alive(self) -> bool:
        """Whether the kernel process is running (asked through its provisioner)."""
        if self._closed:
            return False
        return bool(self._host.loop.run(self._manager.is_alive(), timeout=10))

    def exit_code(self) -> int | None:
        """The process's exit status once it ended (negative: killed by that signal)."""
        provisioner = self._manager.provisioner
        if provisioner is None:
            return None
        return self._host.exit_status(self._host.loop.run(provisioner.poll(), timeout=10))

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
        if group is not None:  # LocalProvisioner's attribute, not its base class's
            cast(Any, provisioner).pgid = group

    def interrupt(self) -> None:
        """Interrupt the running cell (SIGINT or an interrupt_request, as the spec says)."""
        self._host.loop.run(self._manager.interrupt_kernel(), timeout=10)

    def restart(self) -> None:
        """Replace the process with a fresh one in the same directories: state is lost.

        The new process is prepared like a pooled one (memory cap, preloads).
        """
        self._host.release(self, final=False)
        self._host.loop.run(self._manager.restart_kernel(now=True), timeout=60)
        self.connect(self._host.start_timeout)
        self.kill_reason = None
        self._host.prepare(self)

    def kill(self, reason: str | None = None) -> None:
        """Kill the process group at once; ``reason`` is what the execution's error will say."""
        if reason is not None:
            self.kill_reason = reason
        self._host.loop.run(self._manager.signal_kernel(signal.SIGKILL), timeout=10)

    def shutdown(self) -> None:
        """Stop the process and remove its directories; safe to call twice.

        The only way a kernel ends, whoever ends it (its session, the pool, the launcher's
        close): the launcher hears of it through :meth:`KernelHost.release`.
        """
        if self._closed:
            return
        self._closed = True
        self._host.release(self, final=True)
        self._reap_now()
        try:
            self._host.loop.run(self._manager.shutdown_kernel(now=True), timeout=30)
        except Exception:  # noqa: BLE001 - a kernel that will not stop must not block cleanup
            try:
                self._host.loop.run(self._manager.signal_kernel(signal.SIGKILL), timeout=5)
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
            self._host.loop.run(self._manager.signal_kernel(signal.SIGKILL), timeout=5)
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
        clock = self._host.clock
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
                message = self._timeout_message(timeout, restarted=True)
                return self._replace_after(collector, message, "timeout")
            messages = self._channels.receive(min(_LIVENESS_POLL_S, limit - now))
            if not messages and not self.is_alive():
                if self._closed:
                    collector.add_error("SessionEnded: the session ended while this code was "
                                        "running.")
                    return ExecutionResult(collector.outputs, "died", state_lost=True,
                                           truncated=collector.truncated)
                return self._replace_after(collector, self._death_message(), "died")
            for channel, msg in messages:
                if parent_id(msg) != msg_id:
                    continue
                if channel == "shell":
                    reply = msg["content"]
                elif msg_type(msg) == "status":
                    idle = idle or msg["content"].get("execution_state") == "idle"
                elif interrupted_at is None or msg_type(msg) != "error":
                    collector.add_message(msg)
        assert reply is not None
        if interrupted_at is not None:
            collector.add_error(self._timeout_message(timeout, restarted=False))
            status: Literal["ok", "error", "timeout", "died"] = "timeout"
        else:
            status = "ok" if reply.get("status") == "ok" else "error"
            errored = any(o["type"] == "error" for o in collector.outputs)
            if silent and status == "error" and not errored:
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
        cause = self.kill_reason or describe_exit(self.exit_code())
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
