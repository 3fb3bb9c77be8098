"""The sandbox for forked kernels: a forked child builds bubblewrap's namespaces itself.

bubblewrap starts a new program in its namespaces; it cannot wrap a process that is already
running, and a forked kernel is exactly that. So the fork template's child enacts the *same
argument list* :meth:`tci_emulator.kernels.sandbox.Sandbox.wrap` builds for bubblewrap (the one
description of what a session may see), with the system calls bubblewrap makes:

1. the child (``outer``, the one the server watches, as it watches bubblewrap) unshares the
   user, mount, PID, IPC, UTS (and, without ``--share-net``, network) namespaces and maps its
   own uid and gid, as an unprivileged bubblewrap does; it can, because the template it was
   forked from has exactly one thread;
2. its child is PID 1 of the new PID namespace (``init``): it mounts a tmpfs, pivots into it,
   binds what the argument list names from the old root (read-only where it says so, keeping
   the flags a user namespace may not clear), mounts ``/proc`` of the new PID namespace, a
   minimal ``/dev`` and a private ``/tmp``, detaches the old root, and forks the kernel;
3. the kernel (``init``'s child) starts a session of its own (where interrupts go), drops every
   capability and sets ``no_new_privs`` (bubblewrap's ``exec`` of a non-root program drops
   them; without an ``exec`` they must be dropped by hand), and runs ipykernel.

When the kernel ends, ``init`` exits with its status (``128 + N`` when killed by signal ``N``, as
bubblewrap reports it) and the kernel kills whatever is left in the namespace; when ``outer``
dies, ``init`` dies with it (``PR_SET_PDEATHSIG``). Standard library only: the template imports
this module, and it may start no thread.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["enter"]

_CLONE_NEWNS = 0x00020000
_CLONE_NEWCGROUP = 0x02000000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME = 1024, 2048, 1 << 21
_MNT_DETACH = 2
# statvfs's f_flag bits and the mount flags they stand for (a user namespace may not clear them
# when it remounts a bind read-only).
_KEPT_FLAGS = ((os.ST_NOSUID, _MS_NOSUID), (os.ST_NODEV, _MS_NODEV), (os.ST_NOEXEC, _MS_NOEXEC),
               (os.ST_NOATIME, _MS_NOATIME), (os.ST_NODIRATIME, _MS_NODIRATIME),
               (os.ST_RELATIME, _MS_RELATIME))
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
_PR_SET_PDEATHSIG, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 1, 24, 38
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_BASE = "/tmp"

_libc = ctypes.CDLL(None, use_errno=True)
_pylibc = ctypes.PyDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")


def _prctl(option: int, value: int, arg: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(arg), 0, 0),
           f"prctl({option})")


class _Plan:
    """bubblewrap's arguments, read back: what to unshare, mount and set."""

    def __init__(self, args: Sequence[str]) -> None:
        self.share_net = False
        self.hostname = ""
        self.chdir = "/"
        self.env: dict[str, str] = {}
        self.mounts: list[tuple[str, ...]] = []
        flags = {"--unshare-all", "--share-net", "--die-with-parent", "--new-session"}
        arity = {"--hostname": 1, "--proc": 1, "--dev": 1, "--tmpfs": 1, "--chdir": 1,
                 "--symlink": 2, "--ro-bind": 2, "--ro-bind-try": 2, "--bind": 2, "--setenv": 2}
        i = 0
        while i < len(args):
            option = args[i]
            if option == "--":
                break
            if option in flags:
                self.share_net = self.share_net or option == "--share-net"
                i += 1
                continue
            if option not in arity:
                raise ValueError(f"the forked sandbox does not know bubblewrap's {option}")
            values = tuple(args[i + 1:i + 1 + arity[option]])
            i += 1 + arity[option]
            if option == "--hostname":
                self.hostname = values[0]
            elif option == "--chdir":
                self.chdir = values[0]
            elif option == "--setenv":
                self.env[values[0]] = values[1]
            else:
                self.mounts.append((option, *values))


def _make_point(dest: str, *, file: bool) -> None:
    os.makedirs(os.path.dirname(dest) or "/", exist_ok=True)
    if file:
        if not os.path.lexists(dest):
            os.close(os.open(dest, os.O_CREAT | os.O_WRONLY, 0o644))
    else:
        os.makedirs(dest, exist_ok=True)


def _bind(source: str, dest: str, *, readonly: bool) -> None:
    _make_point(dest, file=not os.path.isdir(source))
    _mount(source, dest, None, _MS_BIND | _MS_REC)
    if readonly:
        current = os.statvfs(dest).f_flag
        kept = sum(flag for bit, flag in _KEPT_FLAGS if current & bit)
        _mount(None, dest, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | kept)


def _dev(dest: str) -> None:
    _make_point(dest, file=False)
    _mount("tmpfs", dest, "tmpfs", _MS_NOSUID | _MS_NOEXEC, "mode=0755")
    for name in _DEVICES:
        if os.path.exists(f"/oldroot/dev/{name}"):
            _bind(f"/oldroot/dev/{name}", f"{dest}/{name}", readonly=False)
    for name, target in (("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("fd", "/proc/self/fd"),
                         ("core", "/proc/kcore")):
        os.symlink(target, f"{dest}/{name}")
    os.mkdir(f"{dest}/pts")  # terminals of its own (IPython's !command runs in one)
    _mount("devpts", f"{dest}/pts", "devpts", _MS_NOSUID | _MS_NOEXEC,
           "newinstance,ptmxmode=0666,mode=620")
    os.symlink("pts/ptmx", f"{dest}/ptmx")
    os.mkdir(f"{dest}/shm")
    _mount("tmpfs", f"{dest}/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=1777")


def _build_root(plan: _Plan) -> None:
    """As bubblewrap: pivot into a tmpfs, bind from ``/oldroot`` into ``/newroot``, pivot
    again, detach the old root."""
    # Sources through symlinks are resolved first, in the old root, as bubblewrap does (an
    # absolute link such as /etc/localtime would otherwise point into the new one).
    sources = {values[0]: os.path.realpath(values[0]) for option, *values in plan.mounts
               if option in ("--ro-bind", "--ro-bind-try", "--bind")}
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount("tmpfs", _BASE, "tmpfs", _MS_NODEV | _MS_NOSUID, "mode=0755")
    os.chdir(_BASE)
    for name in ("newroot", "oldroot"):
        os.mkdir(name)
    _mount("newroot", "newroot", None, _MS_BIND | _MS_REC)
    _check(_libc.syscall(_PIVOT_ROOT[platform.machine()], _BASE.encode(), b"oldroot"),
           "pivot_root")
    os.chdir("/")
    for option, *values in plan.mounts:
        dest = "/newroot" + values[-1]
        if option == "--symlink":
            _make_point(os.path.dirname(dest), file=False)
            os.symlink(values[0], dest)
        elif option == "--proc":
            _make_point(dest, file=False)
            _mount("proc", dest, "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        elif option == "--dev":
            _dev(dest)
        elif option == "--tmpfs":
            _make_point(dest, file=False)
            _mount("tmpfs", dest, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755")
        elif option == "--ro-bind-try" and not os.path.exists("/oldroot" + sources[values[0]]):
            continue
        else:
            _bind("/oldroot" + sources[values[0]], dest, readonly=option != "--bind")
    _check(_libc.umount2(b"/oldroot", _MNT_DETACH), "umount oldroot")
    os.chdir("/newroot")
    _check(_libc.syscall(_PIVOT_ROOT[platform.machine()], b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", _MNT_DETACH), "umount base")
    os.chdir("/")


def _drop_privileges() -> None:
    """No capability in any set, none regainable (bubblewrap's exec would have done this)."""
    for cap in range(64):
        if _libc.prctl(_PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    _check(_libc.capset(header, data), "capset")
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def _status_code(status: int) -> int:
    """A wait status as bubblewrap's exit code: the code, or 128 + the killing signal."""
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _wait_for(pid: int, *, reap_all: bool) -> int:
    """Wait until ``pid`` ends (reaping every other child on the way, as an init must)."""
    while True:
        try:
            done, status = os.waitpid(-1 if reap_all else pid, 0)
        except InterruptedError:
            continue
        if done == pid:
            return _status_code(status)


def _fork_plainly() -> int:
    """``fork()`` as the C library does it, without the interpreter's after-fork handlers.

    For the namespace's init only: it runs no code but this module's, in a process with one
    thread and no lock held, so the handlers (reinitialising locks, reseeding ``random``,
    logging's handler locks, ...) have nothing to repair, and the pages they write would be
    written again by the kernel forked next: a copy of each for nothing (0.5 MB per sandbox).
    The kernel itself is forked with :func:`os.fork`. ``PyDLL`` keeps the GIL held across the
    call, so the child resumes holding it, as the one thread it has.
    """
    pid = int(_pylibc.fork())
    if pid < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"fork: {os.strerror(errno)}")
    return pid


def enter(args: Sequence[str], run: Callable[[dict[str, str], str], Any]) -> None:
    """In a single-threaded child: build the sandbox ``args`` describe, then call
    ``run(env, cwd)`` as the sandboxed kernel. Never returns (each process ``_exit``\\s)."""
    plan = _Plan(args)
    uid, gid = os.getuid(), os.getgid()
    flags = _CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWUTS
    _check(_libc.unshare(flags | (0 if plan.share_net else _CLONE_NEWNET)), "unshare")
    _libc.unshare(_CLONE_NEWCGROUP)  # where the kernel supports it, as --unshare-all tries
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)
    init = _fork_plainly()
    if init:
        os._exit(_wait_for(init, reap_all=False))  # outer: exits as bubblewrap would
    code = 1
    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are the kernel's, not init's
        _build_root(plan)
        if plan.hostname:
            _check(_libc.sethostname(plan.hostname.encode(), len(plan.hostname)), "sethostname")
        kernel = os.fork()
        if kernel == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.setsid()
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            _drop_privileges()
            os.chdir(plan.chdir)
            run(plan.env, plan.chdir)
            os._exit(0)
        code = _wait_for(kernel, reap_all=True)
    except BaseException:  # noqa: BLE001 - reported, then init ends and the namespace with it
        import traceback
        traceback.print_exc()
    finally:
        os._exit(code)
