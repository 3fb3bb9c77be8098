"""Fixtures of the project's own tests (the emulator itself comes from the plugin)."""

from __future__ import annotations

from typing import Iterator

import pytest

from tci_emulator import Emulator

from .helpers import Http
from .sdks import SDKS, SdkClient, SdkDrivers


@pytest.fixture
def http(tci_emulator: Emulator) -> Http:
    """Raw HTTP helpers bound to the test's (reset) emulator."""
    return Http(tci_emulator)


@pytest.fixture(scope="session")
def sdk_drivers(tci_emulator_server: Emulator) -> Iterator[SdkDrivers]:
    """The official SDKs' driver processes (``tests/sdks.py``), started on first use with
    ``TOGETHER_*`` pointing at the session's emulator and all stopped at the end of the session."""
    with SdkDrivers(tci_emulator_server.env()) as drivers:
        yield drivers


@pytest.fixture(params=SDKS)
def sdk(request: pytest.FixtureRequest, sdk_drivers: SdkDrivers,
        tci_emulator: Emulator) -> SdkClient:
    """One official SDK aimed at the test's emulator: each of v1, v2 and ts, unless a test
    names some with ``@pytest.mark.parametrize("sdk", [...], indirect=True)``."""
    return sdk_drivers.client(request.param, tci_emulator)
