"""The web app in a real browser: a live ``fhir-twin serve`` per module and headless Chromium
driven by Selenium (Debian's ``chromium`` and ``chromium-driver``, which ``.ci/run`` installs).

Without the browser the tests skip, unless ``FHIR_TWIN_REQUIRE_BROWSER`` is set (CI sets it), when
its absence fails them. Screenshots are kept as artefacts in ``FHIR_TWIN_SCREENSHOTS`` (a
temporary folder when unset).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.live_server import LiveServer, make_token

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@dataclass(frozen=True)
class AppServer:
    """A live server: its root URL, the FHIR base, its database and a ``system/*.cruds`` token."""

    root: str
    base: str
    database_url: str
    token: str
    server: LiveServer

    def token_for(self, scope: str, patient: str | None = None, name: str = "live-test") -> str:
        return make_token(self.database_url, scope, patient, name)

    def log(self) -> str:
        """Everything the server logged, its access log included."""
        return self.server.output(tail=None)


@pytest.fixture(scope="module")
def app_server(module_database_url: str) -> Iterator[AppServer]:
    url = module_database_url
    token = make_token(url)
    # At INFO the access log is written, so a test can see what it holds (never a token).
    server = LiveServer(url, log_level="INFO").start()
    try:
        yield AppServer(server.base.removesuffix("/fhir"), server.base, url, token, server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("FHIR_TWIN_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium, its console kept so a test can see Content-Security-Policy violations."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        message = "the browser tests need Debian's chromium and chromium-driver"
        if os.environ.get("FHIR_TWIN_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
