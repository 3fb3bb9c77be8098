"""pytest plugin: a running TCI emulator, a configured client and its controls in one fixture.

Installing tci-emulator is enough: the plugin is registered through the ``pytest11`` entry point,
so no ``conftest.py`` is needed. Disable it with ``-p no:tci_emulator``.

    def test_agent_prints(tci_emulator):
        client = tci_emulator.client()            # official `together` client, bound to it
        r = client.code_interpreter.execute(code="print(6 * 7)", language="python")
        assert r.data.outputs[0].data == "42\\n"
        assert tci_emulator.usage()["total"]["cost_usd"] == 0.03

Fixtures (a chain: the function-scoped handle is the session-scoped one, reset):

``tci_emulator_server`` -- session scope, :class:`~tci_emulator.emulator.Emulator`
    One emulator per test session (per xdist worker, so workers never share a port), started on
    first use in a thread on 127.0.0.1 and a free port, stopped with every kernel at the end.
    Settings come from the options below. Not reset: prefer ``tci_emulator``.
``tci_emulator`` -- function scope, :class:`~tci_emulator.emulator.Emulator`
    The session's emulator, reset before the test (no sessions, usage, clock offset or fault
    rules leak in from an earlier test), with ``TOGETHER_BASE_URL`` and ``TOGETHER_API_KEY``
    pointing at it while the test runs (both put back afterwards), so code that builds its
    client from the environment talks to the emulator unchanged. A test marked
    ``@pytest.mark.tci_emulator(**settings)`` gets an emulator of its own, started with those
    settings on top of the options and stopped after the test. An exception raised inside the
    emulator while serving the test fails that test, with the server-side traceback.

Settings: every :class:`~tci_emulator.config.Config` setting but ``host``, ``port`` and
``allow_remote`` (the plugin's emulator listens on 127.0.0.1 and a free port) is an option
``--tci-<flag>`` and an ini value ``tci_<flag>`` with underscores, named after the CLI flag:
``--tci-session-lifespan`` / ``tci_session_lifespan``, ``--tci-api-key`` / ``tci_api_key``.
Their values are read as the CLI reads its flags and the environment (``config.settings_from``;
repeatable ones comma-separated in the ini). The command line wins over the ini file, a marker
over both; the defaults are the emulator's own except the pool size (1) and the access log
(off). ``docs/settings.md`` lists them all. They apply to the session's emulator (session
scope); the marker takes any ``Config`` field name for one test. ``TCI_EMULATOR_*`` environment
variables are not read here: a test run is configured by its options alone.

Transcripts of failed tests: when a test that used ``tci_emulator`` fails (setup or call), the
transcript of every session it ran is written as ``<session id>.ipynb`` to a folder named after
the test, under ``--tci-transcripts-dir DIR`` (default: ``tci-transcripts`` in pytest's cache
directory, ``.pytest_cache/d/tci-transcripts``; with the cache disabled, ``tci-transcripts`` in
the run's temporary base directory, ``tmp_path_factory.getbasetemp()``). The failure report gets
a section "tci-emulator transcripts" naming the files, to open in Jupyter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import typing
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from .config import (
    argument_specs,
    config_from,
    flag_name,
    plugin_default,
    plugin_fields,
    settings_from,
)
from .settings_reference import default_text

if typing.TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["tci_emulator", "tci_emulator_server"]

_EMULATOR_KEY: pytest.StashKey[Emulator] = pytest.StashKey()
_SETTINGS_KEY: pytest.StashKey[dict[str, Any]] = pytest.StashKey()


def _name(f: dataclasses.Field[Any]) -> str:
    """The option's dest and the ini value's name: ``tci_`` plus the flag's own name."""
    return "tci_" + flag_name(f)[2:].replace("-", "_")


def _describe(f: dataclasses.Field[Any]) -> str:
    return f"{f.metadata['help']} Default: {default_text(plugin_default(f))}."


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``tci_emulator`` option group and the matching ini values, one per setting."""
    group = parser.getgroup("tci_emulator", "TCI emulator (fixture tci_emulator; session scope)")
    offered = plugin_fields()
    for f, flag, keywords in argument_specs(prefix="tci-"):
        if f in offered:
            group.addoption(flag, dest=_name(f), **keywords,
                            help=f"{_describe(f)} Ini: {_name(f)}.")
            parser.addini(_name(f), f"TCI emulator: {_describe(f)}", type="string", default="")
    group.addoption("--tci-transcripts-dir", dest="tci_transcripts_dir", default=None,
                    type=Path, metavar="DIR",
                    help="Where failed tests' session transcripts (.ipynb) are written, one "
                         "folder per test. Default: tci-transcripts in the pytest cache "
                         "directory (in the temporary base directory without the cache).")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker and read the settings once, so a bad option or ini value stops the
    run early."""
    config.addinivalue_line(
        "markers",
        "tci_emulator(**settings): run this test against an emulator of its own, started with "
        "these settings (tci_emulator.Config field names, e.g. session_lifespan=60, "
        "budget_usd='0.06') on top of the --tci-* options.")
    offered = plugin_fields()
    flags = {f.name: config.getoption(_name(f)) for f in offered}
    texts = {f.name: (f"ini value {_name(f)} = {raw!r}", raw) for f in offered
             if (raw := str(config.getini(_name(f))).strip())}
    settings = {f.name: plugin_default(f) for f in offered if plugin_default(f) != f.default}
    try:
        settings.update(settings_from(flags, texts))
        config_from(None, {}, **settings)  # refuses values that would break the emulator
    except ValueError as exc:
        raise pytest.UsageError(f"tci-emulator: {exc}") from None
    config.stash[_SETTINGS_KEY] = settings


@pytest.fixture(scope="session")
def tci_emulator_server(pytestconfig: pytest.Config) -> Iterator[Emulator]:
    """Session scope, ``tci_emulator.Emulator``: one emulator per test session (xdist worker).

    Started on first use on 127.0.0.1 and a free port with the ``--tci-*`` settings; stopped,
    with every kernel it started, when the session ends. Not reset between tests.
    """
    settings: dict[str, Any] = pytestconfig.stash[_SETTINGS_KEY]
    from .emulator import Emulator  # imported on use: plugin loading stays light

    with Emulator(**settings) as emulator:
        yield emulator


@pytest.fixture
def tci_emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """Function scope, ``tci_emulator.Emulator``: a clean emulator for this test.

    The session's emulator reset (or, under ``@pytest.mark.tci_emulator(**settings)``, one of
    its own), with ``TOGETHER_BASE_URL`` and ``TOGETHER_API_KEY`` pointing at it until the test
    ends. Server-side exceptions fail the test that caused them.
    """
    marker = request.node.get_closest_marker("tci_emulator")
    own: Emulator | None = None
    if marker is not None and marker.args:
        pytest.fail("@pytest.mark.tci_emulator takes settings as keywords only, e.g. "
                    f"session_lifespan=60 (got {marker.args!r})", pytrace=False)
    if marker is not None and marker.kwargs:
        settings: dict[str, Any] = request.config.stash[_SETTINGS_KEY]
        try:
            from .emulator import Emulator

            own = Emulator(**{**settings, **marker.kwargs})
        except (TypeError, ValueError, ArithmeticError) as exc:  # Decimal raises the last
            pytest.fail(f"@pytest.mark.tci_emulator: {exc}", pytrace=False)
        emulator = own.start()
    else:
        emulator = request.getfixturevalue("tci_emulator_server")
        emulator.reset()
    request.node.stash[_EMULATOR_KEY] = emulator
    environ = pytest.MonkeyPatch()
    try:
        for name, value in emulator.env().items():
            environ.setenv(name, value)
        yield emulator
        emulator.check()  # requests made by other fixtures' teardown: an error in teardown
    finally:
        emulator.close_clients()  # the test's `tci_emulator.client()`s hold kept-alive sockets
        environ.undo()
        del request.node.stash[_EMULATOR_KEY]
        if own is not None:
            own.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail the test whose requests made the emulator raise, with the server-side traceback.

    The check runs in the call phase, so the test itself is reported failed (not an error in
    teardown), whatever the test did with the 500 answer it got.
    """
    __tracebackhide__ = True  # the report starts at the server-side traceback
    try:
        return (yield)
    finally:
        emulator = item.stash.get(_EMULATOR_KEY, None)
        if emulator is not None:
            emulator.check()


def _transcripts_folder(item: pytest.Item) -> Path:
    """The folder for ``item``'s transcripts: one per test under the transcripts directory."""
    config = item.config
    root: Path | None = config.getoption("tci_transcripts_dir")
    if root is None:
        cache = getattr(config, "cache", None)
        if cache is not None:
            root = Path(cache.mkdir("tci-transcripts"))
        else:
            root = config._tmp_path_factory.getbasetemp() / "tci-transcripts"  # type: ignore[attr-defined]
    name = re.sub(r"[^\w.-]+", "_", item.nodeid).strip("_") or "test"
    if len(name) > 100:
        name = name[:80] + "-" + hashlib.sha256(item.nodeid.encode()).hexdigest()[:12]
    return root / name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
        item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """When a test that used ``tci_emulator`` fails, save its sessions' transcripts and name
    them in the report, so the reader can open what ran in Jupyter."""
    report = yield
    emulator = item.stash.get(_EMULATOR_KEY, None)
    if emulator is None or not report.failed or call.when not in ("setup", "call"):
        return report
    folder = _transcripts_folder(item)
    try:
        for stale in folder.glob("*.ipynb"):  # from an earlier run of the same test
            stale.unlink()
        paths = emulator.save_transcripts(folder)
    except Exception as exc:  # noqa: BLE001 - the test's own failure matters more
        report.sections.append(("tci-emulator transcripts",
                                f"could not write the transcripts to {folder}: {exc!r}"))
        return report
    if paths:
        listing = "\n".join(f"  {path}" for path in paths)
        report.sections.append(("tci-emulator transcripts",
                                f"The sessions of this test, as Jupyter notebooks:\n{listing}"))
        report.user_properties.append(("tci_transcripts", " ".join(str(p) for p in paths)))
    return report
