"""Headless Debian Chromium driven by Selenium, for the dashboard's browser test.

Chromium comes from Debian (``apt-get install chromium chromium-driver``; ``make test``
installs it when CI=true). A test tool's own browser download does not work here, so the
binary and the driver are named explicitly and Selenium never looks for others. On a
laptop without them the test is skipped with the reason; in CI a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver), or skip (laptop) / fail (CI) when they are missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = (
        "Debian chromium + chromium-driver are not installed "
        "(apt-get install -y chromium chromium-driver; `make test` does it when CI=true)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def chromium(width: int = 1440, height: int = 900) -> Iterator[Any]:
    chrome, driver_path = browser_paths()
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="interlock-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
