"""Jupyter kernels for sessions: how they start, how the emulator talks to them, how they end.

The only package that imports jupyter_client. Its modules, one idea each:

- :mod:`.wire`: the messaging protocol (messages, signing, decoding) over ZeroMQ sockets;
- :mod:`.loop`: the asyncio loop thread that jupyter-client's kernel managers run on;
- :mod:`.kernel`: one kernel's life (execute, interrupt, restart, shut down) and
  :class:`~.kernel.KernelHost`, all a kernel may ask of whatever launched it;
- launchers, siblings behind that interface: :mod:`.spawn` (kernel specs and provisioners),
  :mod:`.fork` (a template process, :mod:`.fork_template`, forks each kernel) and
  :mod:`.gateway` (a Jupyter Enterprise Gateway's REST API and WebSocket); :mod:`.launchers`
  picks one from the config;
- :mod:`.sandbox` (bubblewrap arguments) and :mod:`.namespaces` (the same, enacted by a forked
  child), which wrap whatever a launcher starts locally;
- :mod:`.pool`: ready kernels kept ahead of new sessions.

Names are re-exported here lazily: ``python -m tci_emulator.kernels.fork_template`` imports this
package, and the template must stay free of everything it does not need before it forks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["IPYTHON_SETTINGS", "ExecutionResult", "Kernel", "KernelError", "KernelHost",
           "KernelLauncher", "PreloadError", "launcher_for", "runs_locally"]

_LAZY = {"IPYTHON_SETTINGS": ".spawn", "ExecutionResult": ".kernel", "Kernel": ".kernel",
         "KernelError": ".errors", "KernelHost": ".kernel", "KernelLauncher": ".spawn",
         "PreloadError": ".errors", "launcher_for": ".launchers", "runs_locally": ".spawn"}

if TYPE_CHECKING:
    from .errors import KernelError, PreloadError
    from .kernel import ExecutionResult, Kernel, KernelHost
    from .launchers import launcher_for
    from .spawn import IPYTHON_SETTINGS, KernelLauncher, runs_locally


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'tci_emulator.kernels' has no attribute {name!r}")
