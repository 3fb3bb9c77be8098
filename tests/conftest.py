"""Fixtures of the project's own tests (the emulator itself comes from the plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contract_tests.gateway import EnterpriseGateway
from tci_emulator import Emulator

from .helpers import Http
from .sdks import SDKS, SdkClient, SdkDrivers


@pytest.fixture
def http(tci_emulator: Emulator) -> Iterator[Http]:
    """Raw HTTP bound to the test's (reset) emulator; its connections closed afterwards."""
    with Http(tci_emulator) as client:
        yield client


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


@pytest.fixture(scope="session")
def enterprise_gateway() -> Iterator[EnterpriseGateway]:
    """Session scope, :class:`contract_tests.gateway.EnterpriseGateway`: a real Jupyter
    Enterprise Gateway on 127.0.0.1 (started on first use, stopped at the end), for the tests
    of ``--kernel-gateway``."""
    with EnterpriseGateway() as gateway:
        yield gateway
