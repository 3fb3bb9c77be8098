"""Why a kernel could not be had: infrastructure failures, told apart from the user's code.

A failing start, a dead connection or a forged message is the emulator's problem (the request
answers 503); an exception in session code is data in a success envelope, and never one of these.
"""

from __future__ import annotations

__all__ = ["KernelError", "PreloadError"]


class KernelError(Exception):
    """A kernel could not be started or reached (infrastructure, not the user's code)."""


class PreloadError(KernelError):
    """A kernel started, but the ``--preload`` modules did not import in it."""
