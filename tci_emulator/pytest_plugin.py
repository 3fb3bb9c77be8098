"""pytest plugin: a running TCI emulator, a configured client and its controls in one fixture.

Registered through the ``pytest11`` entry point, so installing tci-emulator is enough; disable it
with ``-p no:tci_emulator``.

Fixtures:

``tci_emulator_server`` (session scope, :class:`~tci_emulator.emulator.Emulator`)
    One emulator per test session (per xdist worker), on 127.0.0.1 and a free port.
``tci_emulator`` (function scope, :class:`~tci_emulator.emulator.Emulator`)
    The same emulator, reset before the test (no sessions, usage, clock offset or faults leak
    in), with ``TOGETHER_BASE_URL`` and ``TOGETHER_API_KEY`` pointing at it while the test runs.
    A test marked ``@pytest.mark.tci_emulator(**settings)`` gets its own emulator with those
    settings instead. An exception inside the emulator while serving the test fails the test.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from .emulator import Emulator

__all__ = ["tci_emulator", "tci_emulator_server"]

_EMULATOR_KEY = pytest.StashKey[Emulator]()

# (name, type, help) of the settings exposed as --tci-<name> options and tci_<name> ini values.
_SETTINGS: tuple[tuple[str, type, str], ...] = (
    ("session_lifespan", float, "session lifespan in seconds (default 3600)"),
    ("price_per_session", str, "USD charged per session (default 0.03)"),
    ("budget_usd", str, "per-key budget in USD; beyond it new sessions get 402 (default none)"),
    ("pool_size", int, "warm kernels kept ahead (default 1 under pytest)"),
    ("execution_timeout", float, "seconds one execution may run (default 120)"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tci_emulator", "TCI emulator (fixture tci_emulator)")
    for name, _kind, help_text in _SETTINGS:
        flag = "--tci-" + name.replace("_", "-")
        group.addoption(flag, dest=f"tci_{name}", default=None,
                        help=f"{help_text}; ini: tci_{name}")
        parser.addini(f"tci_{name}", help_text, default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "tci_emulator(**settings): run this test against its own emulator with these settings "
        "(Config field names, e.g. session_lifespan=60, budget_usd='0.06').")


def _settings(config: pytest.Config) -> dict[str, Any]:
    settings: dict[str, Any] = {"pool_size": 1}
    for name, kind, _help in _SETTINGS:
        raw = config.getoption(f"tci_{name}") or config.getini(f"tci_{name}")
        if raw not in (None, ""):
            settings[name] = kind(raw)
    return settings


@pytest.fixture(scope="session")
def tci_emulator_server(pytestconfig: pytest.Config) -> Iterator[Emulator]:
    """One emulator for the whole test session (or xdist worker); stopped at the end."""
    emulator = Emulator(**_settings(pytestconfig)).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def tci_emulator(request: pytest.FixtureRequest, tci_emulator_server: Emulator,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """A reset emulator for this test, with the TOGETHER_* variables pointing at it."""
    marker = request.node.get_closest_marker("tci_emulator")
    own: Emulator | None = None
    if marker is not None and marker.kwargs:
        own = Emulator(**{**_settings(request.config), **marker.kwargs}).start()
        emulator = own
    else:
        emulator = tci_emulator_server
        emulator.reset()
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, value)
    request.node.stash[_EMULATOR_KEY] = emulator
    try:
        yield emulator
    finally:
        if own is not None:
            own.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail the test whose requests made the emulator raise, with the server traceback."""
    try:
        return (yield)
    finally:
        emulator = item.stash.get(_EMULATOR_KEY, None)
        if emulator is not None:
            emulator.check()
