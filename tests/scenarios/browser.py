"""A real Chromium for the dashboard's tests, driven by Playwright.

Browser downloads (``playwright install``) are not needed: Playwright drives the system's Chromium
(Debian's ``chromium``, which ``make test`` installs where it can) through ``executable_path``.
``$TCI_CHROMIUM`` names another binary. Every page records its console: an error or an uncaught
exception there fails the test, except the network lines of statuses the test provoked itself
(Chromium logs each 4xx answer to ``fetch`` as an error).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Error, Page

__all__ = ["LAUNCH_ARGS", "ARTIFACTS", "find_chromium", "ConsoleLog"]

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_NETWORK = re.compile(r"^Failed to load resource: the server responded with a status of (\d+)")


def find_chromium() -> str | None:
    """The Chromium to drive: ``$TCI_CHROMIUM``, else the first on ``PATH``."""
    named = os.environ.get("TCI_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class ConsoleLog:
    """What a page logged as an error, and which HTTP statuses the test expects to provoke."""

    errors: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", self._page_error)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "assert"):
            self.errors.append(message.text)

    def _page_error(self, error: Error) -> None:
        self.errors.append(f"uncaught: {error}")

    def expect_status(self, status: int) -> None:
        """The test provokes answers with this status on purpose: their network lines are fine."""
        self.expected_statuses.add(status)

    def unexpected(self) -> list[str]:
        """Errors other than the network lines of expected statuses."""
        return [text for text in self.errors
                if not ((m := _NETWORK.match(text)) and int(m[1]) in self.expected_statuses)]
