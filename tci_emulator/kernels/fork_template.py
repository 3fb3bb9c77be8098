"""The fork template: one process that has imported ipykernel and forks a kernel per request.

Run by :mod:`tci_emulator.kernels.fork` as
``python -m tci_emulator.kernels.fork_template [MODULE ...]``, never imported by the server.
A cold kernel spends most of its half second importing IPython, ipykernel, tornado and zmq,
and most of the rest reading its configuration and building its IPython shell; this process
does all of that once, then answers each request with an ``os.fork()`` whose child only points
the application and shell at its own session, opens its sockets and starts the kernel's own
loop.

Why it is shaped this way:

- It starts no thread, ZeroMQ context or event loop before it forks (it checks, and refuses to
  serve otherwise): a fork copies only the calling thread, so a lock or socket owned by another
  thread would be broken in every child, and a child that must enter a new user namespace has
  to be single-threaded.
- It speaks JSON lines: requests on stdin, answers and exit statuses on the protocol fd (its
  stdout at start; fd 1 then points at stderr, so a stray print of an imported module cannot
  corrupt the protocol). End of file on stdin means the server is gone: the template kills
  every kernel it forked and exits, so nothing outlives a server that was killed outright.
- It is every kernel's parent, so it reaps them and reports their exit status (a kernel killed
  by a signal reads as such in the session's error item, as with a spawned kernel).
- What it does ahead is chosen by what it spares every child, in CPU and in private memory: a
  page of the template stays shared with a child until either writes to it, and in CPython
  even reading an object writes its reference count. So the template also leaves out what
  the kernel would load only for requests the emulator never sends, and lays out what every
  kernel reads at start on few pages.
- A child owns nothing of the template: it gets a session and process group of its own (where
  interrupts go), dies with the template (``PR_SET_PDEATHSIG``), closes every inherited
  descriptor, takes the session's environment, working directory and ``sys.path`` entries, and
  reseeds every random generator the template may have seeded, before any user code runs.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import importlib
import json
import os
import select
import signal
import sys
import threading
import traceback
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import namespaces

__all__ = ["main"]

# What IPKernelApp.initialize would import in every child: imported once here instead.
_KERNEL_MODULES = (
    "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.debugger",
    "ipykernel.comm", "IPython", "IPython.core.completer", "IPython.core.completerlib",
    "IPython.core.debugger", "IPython.core.logger", "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "tornado.platform.asyncio", "faulthandler", "sqlite3", "pdb", "pydoc",
)
# What the kernel would import and set up for requests the emulator never sends: ipykernel's
# debugger (debugpy, for debug_request) and jedi (for complete_request). They are left out
# because every forked kernel lists every loaded module's file when it starts (the debugger's
# filter, built even without a debugger), and reading a module's attributes writes to its
# reference counts: each module the template holds costs every kernel about 7 KB of private
# memory. Session code that imports either still gets it.
_NOT_LOADED = ("debugpy",)
_PR_SET_PDEATHSIG = 1
_libc: Any = None


def _prctl(option: int, value: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _without(names: tuple[str, ...], call: Callable[[], object]) -> None:
    """``call()`` while the modules ``names`` cannot be imported (what imports them falls back
    as when they are not installed); afterwards they import as usual."""
    hidden = {name: sys.modules.get(name) for name in names}
    for name in names:
        sys.modules[name] = None  # type: ignore[assignment]  # None: "import x" fails
    try:
        call()
    finally:
        for name, module in hidden.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


def _threads() -> int:
    """Threads of this process as the kernel counts them (C threads such as OpenBLAS's too)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _reseed() -> None:
    """Give the child random states of its own (``random`` reseeds itself at fork; ``uuid4``,
    ``secrets`` and ``os.urandom`` read the kernel's entropy and hold no state)."""
    import random
    import tempfile
    random.seed()
    tempfile.tempdir = None  # the session's TMPDIR, not a value cached by the template
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _become_kernel(request: dict[str, Any], template_pid: int) -> None:
    """In the child: shed the template, take the session's settings (in its own namespaces
    when the request carries the sandbox's arguments), run the kernel. Never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != template_pid:  # the template died before the line above
            os._exit(1)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(2, 1)
        os.closerange(3, 65536)
        env = dict(request["env"])
        sandbox = request.get("sandbox")
        if sandbox:
            # Inside, the kernel's parent is the namespace's init, pid 1, which the parent
            # poller would take for a dead parent: 1 tells it not to poll.
            namespaces.enter(
                sandbox, lambda extra, cwd: _run_kernel(request, {**env, **extra}, cwd, 1))
        else:
            _run_kernel(request, env, request["cwd"], template_pid)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported on stderr, then the child ends
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _run_kernel(request: dict[str, Any], env: dict[str, str], cwd: str, parent: int) -> None:
    """Run ipykernel in this process with the session's environment and directory."""
    env["JPY_PARENT_PID"] = str(parent)  # ipykernel exits when its parent does
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path[0:0] = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    _reseed()
    argv = list(request["argv"])
    sys.argv = [argv[0], *argv[3:]]
    app = _prebuilt
    if app is not None and len(argv) == 5 and argv[3] == "-f":  # the command line it expects
        _adopt(app, argv[4], parent)
        app.initialize([])
        app.start()
        return
    from ipykernel.kernelapp import IPKernelApp
    from ipykernel.zmqshell import ZMQInteractiveShell
    for built in (IPKernelApp, ZMQInteractiveShell):
        built.clear_instance()  # another command line: the kernel builds everything itself
    # The trait's default was read from the environment when the template imported it.
    IPKernelApp.launch_instance(argv=[*argv[3:], f"--IPKernelApp.parent_handle={parent}"])


# The kernel application the template configured and whose shell it built, or None.
_prebuilt: Any = None


def _prebuild() -> None:
    """Build, once, what every kernel builds the same way before it opens a socket: the kernel
    application with its configuration read (the command line parser alone covers every
    setting of every class), and the IPython shell with its namespaces, magics, formatters and
    traceback printers. A child then adopts both (:func:`_adopt`) instead of building them:
    half of a kernel's start-up, and memory that stays shared with the template.

    The shell is pristine (no code has run in it) and each child gets its own copy of it, as
    of everything else here. What a session can change of it (its profile, directory,
    environment) is set again in the child. ``IPYTHONDIR`` is the profile every kernel's is
    copied from, so the configuration read here is the one a kernel would read.
    """
    global _prebuilt
    from ipykernel.compiler import XCachingCompiler
    from ipykernel.ipkernel import IPythonKernel
    from ipykernel.kernelapp import IPKernelApp as Base
    from ipykernel.zmqshell import ZMQInteractiveShell
    from IPython.core.application import BaseIPythonApplication

    class Configured(BaseIPythonApplication):  # type: ignore[misc,valid-type]
        """Reads the configuration on its first call only (in the template)."""

        _configured = False

        def initialize(self, argv: list[str] | None = None) -> None:
            if not self._configured:
                self._configured = True
                super().initialize(argv)  # type: ignore[no-untyped-call]

    class IPKernelApp(Base, Configured):  # type: ignore[misc,valid-type]
        """ipykernel's application, whose ``initialize`` begins with ``Configured``'s (next in
        line after it), and whose kernel adopts the template's shell."""

        def init_kernel(self) -> None:
            super().init_kernel()  # type: ignore[no-untyped-call]
            # The kernel took the shell the template built (it is a singleton), before there
            # was a kernel to be its parent.
            self.kernel.shell.kernel = self.kernel.shell.parent = self.kernel

    app = IPKernelApp.instance()
    Configured.initialize(app, [])
    settings = app.config.get("IPythonKernel", {})
    if app.kernel_class is IPythonKernel and not {"shell_class", "compiler_class"} & set(settings):
        shell = ZMQInteractiveShell.instance(parent=app, profile_dir=app.profile_dir,
                                             user_module=None, user_ns=app.user_ns, kernel=None,
                                             compiler_class=XCachingCompiler)
        atexit.unregister(shell.atexit_operations)  # the template has no session to clean up
    _prebuilt = app


def _adopt(app: Any, connection_file: str, parent: int) -> None:
    """In the child: point the template's application and shell at this kernel (its
    connection file, parent, profile, directory and environment)."""
    from ipykernel.zmqshell import ZMQInteractiveShell
    from IPython.core.profiledir import ProfileDir
    from IPython.paths import get_ipython_dir
    from IPython.utils.path import get_home_dir

    app.connection_file = connection_file
    app.parent_handle = parent
    ipython_dir = get_ipython_dir()  # this kernel's own copy of the profile
    app.ipython_dir = ipython_dir
    app.profile_dir = ProfileDir.create_profile_dir_by_name(  # type: ignore[no-untyped-call]
        ipython_dir, app.profile, app.config)
    shell = ZMQInteractiveShell._instance
    if shell is not None:
        shell.ipython_dir = ipython_dir
        shell.profile_dir = app.profile_dir
        shell.starting_dir = os.getcwd()
        shell.home_dir = get_home_dir()
        shell.history_manager.dir_hist[:] = [Path.cwd()]
        shell.init_environment()  # the variables it sets, in this kernel's environment


class _Template:
    def __init__(self, out: int) -> None:
        self.out = out
        self.pid = os.getpid()
        self.children: set[int] = set()

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self.out, data):]

    def fork(self, request: dict[str, Any]) -> None:
        if _threads() != 1:
            self.send({"op": "failed", "id": request["id"],
                       "error": f"the template has {_threads()} threads; it must have one"})
            return
        try:
            pid = os.fork()
        except OSError as exc:
            self.send({"op": "failed", "id": request["id"], "error": str(exc)})
            return
        if pid == 0:
            _become_kernel(request, self.pid)
        self.children.add(pid)
        self.send({"op": "started", "id": request["id"], "pid": pid})

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            self.send({"op": "exited", "pid": pid, "status": code})

    def kill_all(self) -> None:
        for pid in list(self.children):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    continue
                break


def prepare(modules: Iterable[str]) -> None:
    """Do here, once, what every kernel would otherwise do for itself: import the kernel and
    the ``--preload`` modules, and build the kernel's application and shell."""
    _without(_NOT_LOADED, lambda: importlib.import_module("ipykernel.debugger"))
    for module in (*_KERNEL_MODULES, *modules):
        importlib.import_module(module)
    _prebuild()
    _pack_module_files()


def _pack_module_files() -> None:
    """Give every module's ``__file__`` an equal string of its own, allocated one after another.

    Every kernel reads every loaded module's ``__file__`` when it starts (ipykernel lists them
    for its debugger's filter, with or without a debugger), and reading a string writes its
    reference count, which copies the page it lies on into the kernel's private memory. The
    strings the imports left lie on hundreds of pages; their copies, made in one go, on few.
    """
    modules = [m for m in sys.modules.values() if type(m) is types.ModuleType]
    copies = [(m, (m.__dict__["__file__"] + "\0")[:-1]) for m in modules
              if type(m.__dict__.get("__file__")) is str]
    for module, name in copies:
        module.__dict__["__file__"] = name


def main(argv: list[str] | None = None) -> int:
    """Import, check single-threadedness, then serve fork requests until stdin closes."""
    modules = sys.argv[1:] if argv is None else argv
    out = os.dup(1)
    os.dup2(2, 1)
    os.set_inheritable(out, False)
    template = _Template(out)
    try:
        prepare(modules)
    except BaseException as exc:  # noqa: BLE001 - reported to the server, which falls back
        template.send({"op": "broken", "error": f"import failed: {exc!r}"})
        return 1
    if _threads() != 1:
        template.send({"op": "broken", "error": f"after its imports the template has "
                       f"{_threads()} threads; a fork needs exactly one"})
        return 1
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when the template ends
    # What the imports allocated is shared with every child for as long as nobody writes to
    # it; the collector's bookkeeping writes to every object it tracks, so take it all out of
    # the collector's view (the child's own objects are still collected).
    gc.collect()
    gc.freeze()
    template.send({"op": "ready", "pid": template.pid})
    buffer = b""
    try:
        while True:
            try:
                ready, _, _ = select.select([0, wake_r], [], [])
            except InterruptedError:
                continue
            if wake_r in ready:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
                template.reap()
            if 0 in ready:
                chunk = os.read(0, 65536)
                if not chunk:
                    return 0
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    request = json.loads(line)
                    if request.get("op") == "fork":
                        template.fork(request)
    finally:
        template.kill_all()


if __name__ == "__main__":
    sys.exit(main())
