"""tci-emulator: a local emulator and test double of the Together Code Interpreter (TCI).

Point any TCI client at it with ``TOGETHER_BASE_URL``; run ``tci-emulator serve`` for a
development server, or use :class:`EmulatorServer` in-process.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .app import create_app  # noqa: E402
from .config import Config  # noqa: E402
from .emulator import Emulator  # noqa: E402
from .server import EmulatorServer, ServerError  # noqa: E402

__all__ = ["Config", "Emulator", "EmulatorServer", "ServerError", "create_app", "__version__"]
