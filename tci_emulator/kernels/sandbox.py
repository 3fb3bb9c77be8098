"""The sandbox around every session's kernel: bubblewrap (``bwrap``) namespaces.

Session code is mostly code a language model wrote, and on the hosted service every session ran
in a sandbox of its own. Here each kernel, and every process it starts, runs in its own user,
mount, PID, IPC, UTS (and, with ``--session-network none``, network) namespaces, built by
bubblewrap, the small setuid-free tool Flatpak uses, rather than by namespace code of our own:

- read-only: the system directories, a short allow-list of ``/etc`` (no ``shadow``, no host
  keys) and the Python installation the kernels run (interpreter, site-packages);
- read-write: the kernel's own directory only (its working directory, which is also ``HOME``;
  its pip prefix; its connection file and IPC sockets, which the server reaches through the
  same bind mount, so no TCP port is needed even without a network), plus a private ``/tmp``;
- invisible: other sessions, the server's runtime directory, the user's home, the state dir;
- ``/proc`` shows the sandbox's own processes; no pid outside it can be named, so no signal
  leaves it;
- ``--die-with-parent`` and the PID namespace tie every process to the server: when the
  server dies, bubblewrap dies, the namespace's init dies and the kernel kills everything left
  in the namespace, ``setsid``/double-forked/``nohup`` children included.

The interface is small on purpose (:func:`resolve` once per emulator, then
:meth:`Sandbox.wrap` per launch), so any launcher that starts a local process can reuse it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MODES", "NETWORKS", "Sandbox", "SandboxUnavailable", "resolve"]

_log = logging.getLogger(__name__)

MODES = ("auto", "namespaces", "off")
NETWORKS = ("host", "none")

# System directories bound read-only (a symlink, as /bin on merged-/usr systems, stays one).
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of /etc a Python session needs: the loader, name resolution, TLS roots, time zone, users
# and groups (names only: no shadow files), MIME types, fonts, pip's own settings.
_ETC_ALLOW = (
    "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone",
    "resolv.conf", "hosts", "host.conf", "nsswitch.conf", "gai.conf", "services", "protocols",
    "networks", "passwd", "group", "ssl", "ca-certificates", "ca-certificates.conf", "pki",
    "crypto-policies", "mime.types", "fonts", "pip.conf", "os-release", "debian_version",
    "lsb-release", "locale.alias", "terminfo", "magic", "matplotlibrc",
)
# Read-only parts of /sys that libraries read to size thread pools (OpenBLAS, os.cpu_count).
_SYS_ALLOW = ("/sys/devices/system/cpu",)
_PROBE_TIMEOUT_S = 10.0


class SandboxUnavailable(ValueError):
    """``--sandbox namespaces`` was asked for where bubblewrap cannot build namespaces.

    A ``ValueError``, so the CLI reports it as one line and exits 2, as for any bad setting.
    """


@dataclass(frozen=True)
class Sandbox:
    """The isolation in force for one emulator's kernels, and how to wrap their command."""

    mode: str  # "namespaces" or "off": what is in force
    requested: str  # the setting: "auto", "namespaces" or "off"
    network: str  # "host" or "none"
    reason: str = ""  # why it is off, when it is
    bwrap: str | None = None
    # Read-only paths of the Python installation(s) the kernels run.
    python_paths: tuple[str, ...] = field(default_factory=tuple)

    @property
    def enabled(self) -> bool:
        """Whether kernels run in namespaces."""
        return self.mode == "namespaces"

    def describe(self) -> dict[str, Any]:
        """What ``/_emulator/health`` says about isolation."""
        info: dict[str, Any] = {"mode": self.mode, "requested": self.requested,
                                "network": self.network if self.enabled else "host"}
        if self.enabled:
            info["tool"] = "bubblewrap"
        else:
            info["reason"] = self.reason
        return info

    def wrap(self, argv: Sequence[str], *, root: Path, workdir: Path,
             readonly: Iterable[str] = (), sealed: Iterable[str] = ()) -> list[str]:
        """``argv`` run inside a fresh sandbox (or unchanged when the sandbox is off).

        ``root`` is the kernel's own directory, bound read-write at the same path (so the
        connection file, IPC socket paths and working directory mean the same inside and out);
        ``workdir`` (beneath ``root``) is the cwd and ``HOME``; ``readonly`` are further
        paths the command reads (a kernel spec's folder, with its launch script); ``sealed``
        are files beneath ``root`` that the server reads or writes again later (the connection
        file): bound read-only over themselves, so the session can neither change them nor
        swap them for a symlink that the server would follow out of the sandbox.
        """
        if not self.enabled:
            return list(argv)
        assert self.bwrap is not None
        args = [self.bwrap, "--unshare-all"]
        if self.network == "host":
            args.append("--share-net")
        # --new-session: no terminal to inject keystrokes into; it also gives the namespace's
        # init and the kernel a process group of their own, which is where interrupts are sent
        # (bubblewrap outside would die of a SIGINT sent to its group).
        args += ["--die-with-parent", "--new-session", "--hostname", "tci-sandbox",
                 "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        args += _system_binds()
        for path in (*self.python_paths, *_argv_paths(argv), *_minimal(readonly)):
            args += ["--ro-bind", path, path]
        args += ["--bind", str(root), str(root)]
        for path in sealed:
            args += ["--ro-bind", path, path]
        args += ["--chdir", str(workdir),
                 "--setenv", "HOME", str(workdir), "--setenv", "TMPDIR", "/tmp",
                 "--setenv", "XDG_CACHE_HOME", "/tmp/.cache",
                 # The kernel's parent is the namespace's init, pid 1, which ipykernel's
                 # parent poller would take for a dead parent; pid 1 tells it not to poll
                 # (--die-with-parent does that job).
                 "--setenv", "JPY_PARENT_PID", "1", "--", *argv]
        return args

    def exit_code(self, code: int | None) -> int | None:
        """A kernel's exit status as if it had not been wrapped: bubblewrap reports a command
        killed by signal N as ``128 + N``; this gives ``-N``, as for a bare process."""
        if self.enabled and code is not None and 128 < code < 128 + signal.NSIG:
            return -(code - 128)
        return code


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in _ETC_ALLOW:
        path = f"/etc/{name}"
        if os.path.lexists(path):
            args += ["--ro-bind-try", path, path]
    for path in _SYS_ALLOW:
        args += ["--ro-bind-try", path, path]
    return args


def _under_system(path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in _SYSTEM_DIRS)


def _minimal(paths: Iterable[str]) -> tuple[str, ...]:
    """Absolute paths outside the system dirs, without those inside another one."""
    chosen: list[str] = []
    for path in sorted({os.path.abspath(p) for p in paths if p and os.path.isabs(p)}):
        if _under_system(path) or not os.path.exists(path):
            continue
        if any(path == c or path.startswith(c.rstrip("/") + "/") for c in chosen):
            continue
        chosen.append(path)
    return tuple(chosen)


def _python_paths() -> tuple[str, ...]:
    """The installation the kernels run: this interpreter's prefixes (a virtual environment's
    and the base one it was made from), as named and as resolved through symlinks."""
    prefixes = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    prefixes |= {os.path.realpath(p) for p in list(prefixes)}
    prefixes.add(str(Path(os.path.realpath(sys.executable)).parent.parent))
    return _minimal(prefixes)


def _argv_paths(argv: Sequence[str]) -> tuple[str, ...]:
    """The installation of a kernel spec's interpreter, when it is not this one (a kernel spec
    of another environment): the folder above its ``bin``."""
    if not argv or not os.path.isabs(argv[0]):
        return ()
    ours = _python_paths()
    extra = []
    for candidate in (argv[0], os.path.realpath(argv[0])):
        prefix = str(Path(candidate).parent.parent)
        if not any(prefix == p or prefix.startswith(p + "/") for p in ours):
            extra.append(prefix)
    return _minimal(extra)


def _probe(bwrap: str, network: str) -> str:
    """Why bubblewrap cannot build the namespaces here, or "" when it can."""
    args = [bwrap, "--unshare-all", *(["--share-net"] if network == "host" else []),
            "--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev",
            "--tmpfs", "/tmp", *_system_binds(), "--", "true"]
    try:
        done = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=_PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not run: {exc}"
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"bwrap failed: {detail[-1] if detail else f'exit code {done.returncode}'}"
    return ""


def resolve(requested: str = "auto", network: str = "host", *,
            local_kernels: bool = True) -> Sandbox:
    """The sandbox for ``--sandbox requested``: probes bubblewrap once.

    ``auto`` falls back to ``off`` with one warning (none for remote kernels); ``namespaces`` raises
    :class:`SandboxUnavailable` instead. ``local_kernels`` is false when the kernel spec's
    provisioner runs kernels elsewhere (a cluster, a gateway): there is no local process to
    wrap, and isolation is that provisioner's business.
    """
    if requested not in MODES:
        raise ValueError(f"sandbox must be one of {', '.join(MODES)} (got {requested!r})")
    if network not in NETWORKS:
        raise ValueError(f"session_network must be one of {', '.join(NETWORKS)} "
                         f"(got {network!r})")
    if requested == "off":
        if network == "none":
            raise SandboxUnavailable("--session-network none needs the sandbox (--sandbox "
                                     "auto or namespaces), not --sandbox off")
        return Sandbox("off", requested, network, reason="switched off (--sandbox off)")
    bwrap = shutil.which("bwrap")
    if not local_kernels:
        reason = "the kernel spec's provisioner runs kernels elsewhere, not as local processes"
    elif not sys.platform.startswith("linux"):
        reason = f"namespaces are Linux-only; this is {sys.platform}"
    elif bwrap is None:
        reason = ("bubblewrap is not installed (the 'bwrap' command; package 'bubblewrap' on "
                  "Debian, Ubuntu, Fedora and Arch)")
    else:
        reason = _probe(bwrap, network)
    if not reason:
        return Sandbox("namespaces", requested, network, bwrap=bwrap,
                       python_paths=_python_paths())
    if requested == "namespaces" or network == "none":
        flag = "--sandbox namespaces" if requested == "namespaces" else "--session-network none"
        raise SandboxUnavailable(f"{flag}: {reason}")
    if local_kernels:  # remote kernels are isolated where they run: nothing to warn about here
        _log.warning("sessions are NOT sandboxed: %s (--sandbox auto falls back to off)", reason)
    return Sandbox("off", requested, network, reason=reason)
