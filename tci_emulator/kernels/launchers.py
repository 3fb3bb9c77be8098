"""Which launcher starts a server's session kernels: the one place that decides.

On the kernel gateway of ``--kernel-gateway`` (where the gateway isolates them), or on this
machine in the sandbox: forked from a template (``--kernel-launcher fork``, Linux, a kernel spec
that runs this interpreter's ipykernel) or spawned by jupyter-client (everything else).
"""

from __future__ import annotations

import logging
import sys

from jupyter_client.kernelspec import KernelSpecManager

from ..clock import Clock
from ..config import Config
from .fork import ForkingKernelLauncher, forkable
from .sandbox import Sandbox
from .spawn import KernelLauncher, provisioned_locally

__all__ = ["launcher_for"]

_log = logging.getLogger(__name__)


def launcher_for(config: Config, clock: Clock,
                 sandbox: Sandbox) -> tuple[KernelLauncher, str | None]:
    """The launcher for ``config``, started, and why the launcher in force is not the one
    ``--kernel-launcher`` asked for (``None`` when it is)."""
    if config.kernel_gateway is not None:
        from .gateway import GatewayLauncher  # jupyter_server is imported only when used

        launcher = GatewayLauncher(clock, config.kernel_gateway, token=config.kernel_gateway_token,
                                   kernel_name=config.kernel_gateway_kernel or config.kernel_name,
                                   start_timeout=config.kernel_start_timeout,
                                   preload=config.preload)
        return launcher, None
    launcher_class: type[KernelLauncher] = KernelLauncher
    reason: str | None = None
    if config.kernel_launcher == "fork":
        if not sys.platform.startswith("linux"):
            reason = f"forking kernels is Linux-only; this is {sys.platform}"
        else:
            reason = _unforkable_reason(config.kernel_name) or None
        if reason is None:
            launcher_class = ForkingKernelLauncher
        else:
            _log.info("kernels are spawned, not forked: %s", reason)
    return launcher_class(clock, kernel_name=config.kernel_name,
                          start_timeout=config.kernel_start_timeout,
                          memory_mb=config.kernel_memory_mb, preload=config.preload,
                          sandbox=sandbox, max_output_bytes=config.max_output_bytes,
                          max_code_bytes=config.max_code_bytes), reason


def _unforkable_reason(kernel_name: str) -> str:
    """Why the kernel spec's kernels cannot be forked from the template, or "" if they can."""
    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except Exception as exc:  # noqa: BLE001 - the first spawn reports it properly
        return f"kernel spec {kernel_name!r} could not be read ({exc})"
    if not provisioned_locally(spec):
        return f"kernel spec {kernel_name!r} has a provisioner of its own"
    argv = list(spec.argv)
    pythons = {"python", f"python{sys.version_info[0]}",
               f"python{sys.version_info[0]}.{sys.version_info[1]}"}
    if argv and argv[0] in pythons:
        argv[0] = sys.executable
    if not forkable(argv):
        return (f"kernel spec {kernel_name!r} does not run this interpreter's "
                "ipykernel_launcher")
    return ""
