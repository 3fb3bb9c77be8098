"""tci-emulator: a local emulator and test double of the Together Code Interpreter (TCI).

Point any TCI client at it with ``TOGETHER_BASE_URL``; run ``tci-emulator serve`` for a
development server, or use :class:`EmulatorServer` in-process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Config", "Emulator", "EmulatorServer", "ServerError", "create_app", "__version__"]

# Public names, imported on first use: the pytest plugin loads this package in every pytest run
# of an environment that has it installed, and Flask plus jupyter_client cost ~0.3 s to import.
_LAZY = {"Config": ".config", "Emulator": ".emulator", "EmulatorServer": ".server",
         "ServerError": ".server", "create_app": ".app"}

if TYPE_CHECKING:
    from .app import create_app
    from .config import Config
    from .emulator import Emulator
    from .server import EmulatorServer, ServerError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'tci_emulator' has no attribute {name!r}")
