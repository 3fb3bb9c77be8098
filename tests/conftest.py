"""Fixtures of the project's own tests (the emulator itself comes from the plugin)."""

from __future__ import annotations

import pytest

from tci_emulator import Emulator

from .helpers import Http


@pytest.fixture
def http(tci_emulator: Emulator) -> Http:
    """Raw HTTP helpers bound to the test's (reset) emulator."""
    return Http(tci_emulator)
