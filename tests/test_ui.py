"""The dashboard's server side: the page and its files, their headers, who may see them, and the
polling that stays out of the journal. (In a browser:
scenarios/test_ui_browser.py.)"""

from __future__ import annotations

import configparser
import fnmatch
import logging
import re
import signal
from pathlib import Path

import pytest

from contract_tests.process import ServeProcess
from tci_emulator import Config
from tci_emulator.app import create_app
from tci_emulator.ui import CSP, POLL_HEADER, STATIC

from .helpers import Http

REPO = Path(__file__).resolve().parent.parent
VIEWS = ["/_emulator/ui/", "/_emulator/ui", "/_emulator/ui/sessions/ses_CVtmHZWnVBdtZnwbZNosk",
         "/_emulator/ui/usage", "/_emulator/ui/requests", "/_emulator/ui/faults",
         "/_emulator/ui/clock", "/_emulator/ui/health"]
# Ways of turning a string into markup or code; the page's Trusted Types policy blocks them at
# run time, and none may appear in its source either.
SINKS = ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(",
         "DOMParser", "srcdoc", "createContextualFragment", "setHTML", "javascript:"]


@pytest.mark.parametrize("path", VIEWS)
def test_every_view_address_serves_the_page_under_a_strict_csp(http: Http, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert '<script type="module" src="/_emulator/ui/assets/js/app.js">' in response.text
    csp = response.headers["Content-Security-Policy"]
    assert csp == CSP
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'" and directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert directives["require-trusted-types-for"] == "'script'"
    assert directives["trusted-types"] == "'none'"
    assert "unsafe" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_every_file_the_page_loads_is_served_with_its_type(http: Http) -> None:
    page = http.get("/_emulator/ui/").text
    linked = re.findall(r'(?:src|href)="(/_emulator/ui/assets/[^"]+)"', page)
    assert len(linked) == 3
    modules = [p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*.js")]
    for path in linked + [f"/_emulator/ui/assets/{m}" for m in modules]:
        response = http.get(path)
        assert response.status_code == 200, path
        assert response.headers["Content-Security-Policy"] == CSP
        kind = response.headers["Content-Type"]
        if path.endswith(".js"):
            assert kind.split(";")[0] in ("text/javascript", "application/javascript"), path
            imports = re.findall(r'from "(\.{1,2}/[^"]+)"', response.text)
            for target in imports:  # every import resolves to a shipped module
                assert (STATIC / Path(path.removeprefix("/_emulator/ui/assets/")).parent
                        / target).resolve().is_file(), (path, target)


def test_the_page_never_turns_a_string_into_markup_or_code() -> None:
    for source in STATIC.rglob("*.js"):
        text = source.read_text()
        found = [sink for sink in SINKS if sink in text]
        assert not found, f"{source.name} uses {found}"


@pytest.mark.parametrize("path", ["/_emulator/ui/assets/%2e%2e/__init__.py",
                                  "/_emulator/ui/assets/..%2f__init__.py",
                                  "/_emulator/ui/assets/nothing.js"])
def test_files_outside_the_page_folder_are_not_served(http: Http, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.tci_emulator(admin=False)
@pytest.mark.parametrize("path", ["/_emulator/ui/", "/_emulator/ui/assets/js/app.js"])
def test_no_admin_switches_the_page_off_too(http: Http, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_forbidden"
    assert "--no-admin" in response.json()["error"]["message"]


@pytest.mark.tci_emulator(admin_token="t0ken")
def test_with_an_admin_token_the_page_loads_but_its_data_needs_the_token(http: Http) -> None:
    assert http.get("/_emulator/ui/", key="").status_code == 200  # the files hold no data
    refused = http.get("/_emulator/sessions", key="")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "admin_unauthorized"
    assert http.get("/_emulator/sessions", key="t0ken").status_code == 200


def test_the_dashboards_own_traffic_stays_out_of_the_journal(http: Http) -> None:
    poll = {"Authorization": f"Bearer {http.emulator.api_key}", POLL_HEADER: "poll"}
    assert http.session.get(http.emulator.url + "/_emulator/usage", headers=poll).ok
    assert http.get("/_emulator/ui/faults").ok and http.get("/_emulator/ui/assets/style.css").ok
    http.get("/_emulator/clock")  # an ordinary read is recorded
    http.session.post(http.emulator.url + "/_emulator/clock", json={"frozen": False},
                      headers=poll)  # a change is recorded whoever makes it
    paths = [(e["method"], e["path"]) for e in http.emulator.requests()]
    assert paths == [("GET", "/_emulator/clock"), ("POST", "/_emulator/clock")]


def test_the_dashboards_own_traffic_stays_out_of_the_access_log(
        caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Config(pool_size=0, access_log=True))
    try:
        client = app.test_client()
        with caplog.at_level(logging.INFO, logger="tci_emulator.access"):
            assert client.get("/_emulator/health", headers={POLL_HEADER: "poll"}).status_code == 200
            with client.get("/_emulator/ui/") as page:  # a file response: closed here
                assert page.status_code == 200
            assert client.get("/_emulator/health").status_code == 200
        assert [r.getMessage().split(" ")[:3] for r in caplog.records] == [
            ["GET", "/_emulator/health", "200"]]
    finally:
        app.extensions["tci_emulator"].close()


def test_every_file_of_the_page_is_shipped_as_package_data() -> None:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    patterns = [p.strip() for p in parser["options.package_data"]["tci_emulator.ui"].split(",")]
    package = STATIC.parent
    for path in STATIC.rglob("*"):
        if path.is_file():
            name = path.relative_to(package).as_posix()
            assert any(fnmatch.fnmatchcase(name, p) and name.count("/") == p.count("/")
                       for p in patterns), f"{name} is not in setup.cfg's package_data"


@pytest.mark.parametrize("args,shown", [((), True), (("--no-admin",), False)])
def test_serve_names_the_dashboard_unless_the_control_plane_is_off(args: tuple[str, ...],
                                                                    shown: bool) -> None:
    server = ServeProcess(["--pool-size", "0", *args]).start()
    process = server.process
    try:
        assert process is not None and process.stdout is not None
        process.send_signal(signal.SIGTERM)
        printed = process.stdout.read()  # everything up to its exit
    finally:
        server.stop()
    assert (f"dashboard: {server.url}/_emulator/ui/\n" in printed) is shown
