"""Targets and raw-HTTP helpers of the contract suite.

The contract suite is one set of wire-level assertions (``requests`` only, no SDK) that runs
against whichever target the environment names, the way moto's ``aws_verified`` tests and
LocalStack's parity tests run one test against an emulator or the real service:

- by default against three targets, in turn: an in-process :class:`tci_emulator.Emulator`, a
  separately started ``tci-emulator serve --port 0`` child process (stopped with SIGTERM at the
  end, which must leave no kernel behind), and an in-process emulator whose kernels run on a
  real Jupyter Enterprise Gateway (``--kernel-gateway``) that the suite starts itself
  (``gateway.py``; the modules of ``GATEWAY_MODULES``, which reach kernels; the gateway may
  keep no kernel of it once it stopped);
- with ``TCI_BASE_URL`` (and ``TOGETHER_API_KEY``) set, only against that URL: any running
  TCI-compatible service, for instance an emulator started by hand.

Every test gets the session-scoped ``target`` fixture (a :class:`Target`). Tests marked
``emulator_only`` use the emulator's control plane (``/_emulator/...``: clock, reset, usage) and
are skipped only when the target does not answer ``GET /_emulator/health`` with an emulator's
``status`` (``ready``, ``starting`` or ``degraded``), or refuses the rest of the control
plane, as ``--no-admin`` does. Tests that need isolation use an API key of their own (each key
is its own tenant), so none depends on a reset; the control plane resets the target at the
start of each module (which bounds the live sessions) and around every ``emulator_only`` test
(which moves the clock).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tci_emulator import Emulator
from tci_emulator.config import Config
from tci_emulator.packages import EXTRA, PREINSTALLED

from .client import (
    HTTP_TIMEOUT,
    NO_BODY,
    SESSIONS,
    Client,
    stdout_of,
)
from .gateway import KERNEL_NAME, EnterpriseGateway
from .process import ServeProcess
from .procfs import kernels_launched_by

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# What an emulator's GET /_emulator/health says (its readiness); anything else: no control plane.
HEALTH_STATUSES = {"ready", "starting", "degraded"}


def _target_names() -> list[str]:
    return ["url"] if os.environ.get("TCI_BASE_URL") else ["inprocess", "serve", "gateway"]


# The modules run against the ``gateway`` target: everything that reaches a kernel (outputs,
# files, session reuse, expiry and reset on the clock, the recorded examples). Paths and errors
# are answered before any kernel is involved, and are run against the other two targets.
GATEWAY_MODULES = {"test_outputs", "test_sessions", "test_control_plane", "test_cookbook"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out of the ``gateway`` target the modules that do not reach a kernel."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_gateway = callspec is not None and callspec.params.get("target") == "gateway"
        module = getattr(item, "module", None)
        name = module.__name__.rsplit(".", 1)[-1] if module is not None else ""
        (drop if on_gateway and name not in GATEWAY_MODULES else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@dataclass
class Target:
    """One TCI-compatible service under test and what it offers.

    ``url`` is the root (the DOCS' ``/tci/...`` paths hang off it), ``base_url`` the ``/v1``
    base an SDK is given. ``accepts_any_key`` tells whether every non-empty key is a tenant of
    its own (an emulator without ``--api-key``); otherwise the suite has ``api_key`` and, when
    set, ``TCI_OTHER_API_KEY`` for a second tenant. ``session_lifespan`` is known for the
    targets the suite starts itself (the emulator's default), ``None`` for a URL target.
    """

    name: str
    url: str
    api_key: str
    has_control_plane: bool
    accepts_any_key: bool
    session_lifespan: timedelta | None
    emulator: Emulator | None = None
    http: requests.Session = field(default_factory=requests.Session)
    _importable: dict[str, bool] = field(default_factory=dict)

    def missing_packages(self, modules: tuple[str, ...]) -> list[str]:
        """Which of ``modules`` (import names of TCI's pre-installed set) the target's sessions
        cannot import; asked of the target once, in one session of its own."""
        if not set(modules) <= self._importable.keys():
            names = sorted(PREINSTALLED)
            code = ("import importlib.util\n"
                    f"print(' '.join(n for n in {names!r} if importlib.util.find_spec(n) is None))")
            missing = stdout_of(Wire(self, self.key()).run(code)).split()
            self._importable = {name: name not in missing for name in names}
        return [name for name in modules if not self._importable.get(name, False)]

    @property
    def base_url(self) -> str:
        """``TOGETHER_BASE_URL`` for this target (ends in ``/v1``)."""
        return self.url + "/v1"

    def key(self) -> str:
        """A key that is a tenant of its own, for one test (the one key a strict target has)."""
        return f"contract-{uuid.uuid4().hex}" if self.accepts_any_key else self.api_key

    def other_key(self) -> str:
        """A second tenant's key; skips where the target has only ``api_key`` and no
        ``TCI_OTHER_API_KEY`` is set, since two tenants cannot be made up there."""
        if self.accepts_any_key:
            return self.key()
        other = os.environ.get("TCI_OTHER_API_KEY")
        if not other:
            pytest.skip("needs a second tenant: set TCI_OTHER_API_KEY to another key of the target")
        return other

    def client(self, key: str | None) -> Client:
        """Raw HTTP to the target as the tenant ``key`` (``None``: no key), on the suite's
        connections."""
        return Client(self.url, key, session=self.http)

    def request(self, method: str, path: str, *, key: str | None, body: Any = NO_BODY,
                raw: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> requests.Response:
        """One raw request (:meth:`Client.request`); ``key=None`` sends no ``Authorization``
        header (``headers`` may still set one)."""
        return self.client(key).request(method, path, body=body, raw=raw, headers=headers)

    def control(self, method: str, path: str, body: Any = NO_BODY) -> Any:
        """A control-plane call (``/_emulator/<path>``) that must succeed; its JSON body."""
        response = self.request(method, "/_emulator/" + path, key=None, body=body)
        assert response.status_code == 200, response.text
        return response.json()

    def reset(self) -> None:
        """End every session and put clock and usage back (control plane only)."""
        assert self.control("POST", "reset")["status"] == "ok"

    def close(self) -> None:
        """Close the connections the suite holds to the target."""
        self.http.close()


def _probe(name: str, url: str, api_key: str, *, session_lifespan: timedelta | None,
           emulator: Emulator | None = None) -> Target:
    """Build the :class:`Target` of ``url``, asking it what it offers."""
    http = requests.Session()
    try:
        health = http.get(url + "/_emulator/health", timeout=HTTP_TIMEOUT)
        has_control_plane = (health.status_code == 200
                             and health.json().get("status") in HEALTH_STATUSES
                             # health is served even with --no-admin: the rest must answer too
                             and http.get(url + "/_emulator/clock",
                                          timeout=HTTP_TIMEOUT).status_code == 200)
    except ValueError:  # not JSON: no control plane
        has_control_plane = False
    stranger = http.get(url + SESSIONS, timeout=HTTP_TIMEOUT,
                        headers={"Authorization": f"Bearer contract-probe-{uuid.uuid4().hex}"})
    return Target(name=name, url=url, api_key=api_key, has_control_plane=has_control_plane,
                  accepts_any_key=stranger.status_code == 200,
                  session_lifespan=session_lifespan, emulator=emulator, http=http)


def _serve_target() -> Iterator[Target]:
    server = ServeProcess().start()  # reads the "... listening on URL" line
    try:
        assert server.process is not None and server.process.stdout is not None
        export = server.process.stdout.readline().strip()
        prefix = "export TOGETHER_BASE_URL="
        assert export.startswith(prefix), export
        base_url = export[len(prefix):]
        assert base_url == server.url + "/v1", (export, server.url)
        with closing(_probe("serve", base_url.removesuffix("/v1"), "contract-serve-key",
                            session_lifespan=timedelta(seconds=Config().session_lifespan))
                     ) as found:
            yield found
    finally:
        pid = server.pid
        exit_code = server.stop()  # SIGTERM, then wait
        deadline = time.monotonic() + 15
        leftovers = kernels_launched_by(pid)
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.1)  # a kernel told to stop may take a moment to exit
            leftovers = kernels_launched_by(pid)
    assert exit_code == 0, f"tci-emulator serve exited with {exit_code} on SIGTERM"
    assert not leftovers, f"tci-emulator serve left kernels running: {leftovers}"


def _gateway_target(gateway: EnterpriseGateway) -> Iterator[Target]:
    """An in-process emulator whose kernels run on a real Enterprise Gateway; once it has
    stopped, the gateway may run no kernel of its."""
    before = gateway.kernel_ids()
    with Emulator(kernel_gateway=gateway.url, kernel_gateway_token=gateway.token,
                  kernel_gateway_kernel=KERNEL_NAME) as emulator, closing(_probe(
                "gateway", emulator.url, emulator.api_key, emulator=emulator,
                session_lifespan=timedelta(seconds=emulator.config.session_lifespan))) as found:
        yield found
    left = gateway.kernel_ids() - before
    assert not left, f"kernels left on the gateway after the emulator stopped: {left}"


@pytest.fixture(scope="session")
def enterprise_gateway() -> Iterator[EnterpriseGateway]:
    """Session scope, :class:`contract_tests.gateway.EnterpriseGateway`: a real Jupyter
    Enterprise Gateway on 127.0.0.1 for the ``gateway`` target, started on first use from
    ``TCI_GATEWAY_DIR`` and stopped at the end."""
    with EnterpriseGateway() as gateway:
        yield gateway


def _url_target() -> Target:
    raw = os.environ["TCI_BASE_URL"].rstrip("/")
    key = os.environ.get("TOGETHER_API_KEY")
    if not key:
        pytest.fail("TCI_BASE_URL is set: set TOGETHER_API_KEY to a key of that target too",
                    pytrace=False)
    return _probe("url", raw.removesuffix("/v1"), key, session_lifespan=None)


@pytest.fixture(scope="session", params=_target_names())
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """Session scope, :class:`Target`: the service under test.

    ``inprocess``: an :class:`Emulator` in a thread of this process. ``serve``: a
    ``tci-emulator serve --port 0`` child, stopped with SIGTERM at the end; its exit code must
    be 0 and none of its kernels may outlive it. ``url``: ``TCI_BASE_URL`` (the only target
    when it is set).
    """
    if request.param == "inprocess":
        with Emulator() as emulator, closing(_probe(
                "inprocess", emulator.url, emulator.api_key, emulator=emulator,
                session_lifespan=timedelta(seconds=emulator.config.session_lifespan))) as found:
            yield found
    elif request.param == "serve":
        yield from _serve_target()
    elif request.param == "gateway":
        yield from _gateway_target(request.getfixturevalue("enterprise_gateway"))
    else:
        with closing(_url_target()) as found:
            yield found


@pytest.fixture(scope="module", autouse=True)
def _fresh_module(target: Target) -> None:
    """Each module starts on a target without sessions, where it has a control plane."""
    if target.has_control_plane:
        target.reset()


@pytest.fixture(autouse=True)
def _per_test(request: pytest.FixtureRequest, target: Target) -> Iterator[None]:
    """Skip ``needs_packages`` tests where the target's sessions lack those packages, and
    ``emulator_only`` tests on targets without a control plane, reset around them
    (they move the clock), and fail a test whose requests made the in-process emulator raise."""
    needs = request.node.get_closest_marker("needs_packages")
    if needs is not None:
        missing = target.missing_packages(tuple(needs.args))
        if missing:
            dists = ", ".join(PREINSTALLED.get(name, name) for name in missing)
            pytest.skip(f"the target's sessions lack {dists} (TCI has it pre-installed): "
                        f"install tci-emulator[{EXTRA}] where the target runs")
    needs_control_plane = request.node.get_closest_marker("emulator_only") is not None
    if needs_control_plane:
        if not target.has_control_plane:
            pytest.skip(f"target {target.url} has no /_emulator control plane")
        target.reset()
    yield
    if target.emulator is not None:
        target.emulator.check()
    if needs_control_plane:
        target.reset()


class Wire(Client):
    """Raw HTTP against a target as one tenant (one API key), on the suite's connections."""

    key: str  # always one: a tenant's

    def __init__(self, target: Target, key: str) -> None:
        super().__init__(target.url, key, session=target.http)
        self.target = target


@pytest.fixture
def wire(target: Target) -> Wire:
    """Function scope, :class:`Wire`: a tenant of this test's own."""
    return Wire(target, target.key())


@pytest.fixture(scope="module")
def shared(target: Target) -> tuple[Wire, str]:
    """Module scope, ``(Wire, session_id)``: one session that the module's tests share, for
    assertions about single executions that no earlier execution in the session can change."""
    tenant = Wire(target, target.key())
    return tenant, tenant.run("pass")["session_id"]
