"""A headless Chromium for the web pages' tests (tests/test_web.py, tests/test_studio.py),
and the processes they watch.

The browser is Debian's ``chromium`` driven by its ``chromium-driver`` through Selenium,
both named by path so that Selenium Manager never tries to download one (``.ci/run``
installs the two packages; without them the browser tests skip, saying why)."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Where a test writes the README's screenshot, when JSTYLE_WRITE_SCREENSHOT=1.
SCREENSHOT = ROOT / "docs" / "gallery" / "web.png"
SCREENSHOT_LIMIT = 300 * 1024

#: The fingerprint of the image a page shows: its version and its pixels (a data URL).
FINGERPRINT = """
const img = document.querySelector(arguments[0]);
if (!img || !img.complete || !img.naturalWidth || img.dataset.shown === "0") return null;
const canvas = document.createElement("canvas");
canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
canvas.getContext("2d").drawImage(img, 0, 0);
return [img.dataset.shown, canvas.toDataURL("image/png")];
"""


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Selenium WebDriver), or a skip naming what is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install chromium "
                    "chromium-driver; .ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never download a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,900", "--no-first-run",
                     "--disable-extensions", "--disable-background-networking"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


try:
    from selenium.common.exceptions import (
        StaleElementReferenceException as StaleElementError,
    )
except ImportError:  # no selenium: the browser tests skip, the helpers still import
    class StaleElementError(Exception):
        """Stands in for Selenium's, which nothing raises without it."""


def text_of(driver, selector: str, timeout: float = 10) -> str:
    """The text of the element ``selector`` names, read again if the page replaced it
    between the look-up and the read."""
    return wait_for(lambda: (driver.find_element("css selector", selector).text,),
                    timeout, f"the text of {selector}")[0]


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.05) -> Any:
    """``condition()``'s first truthy value, polled; a test failure naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except StaleElementError:  # the page re-rendered the element under the look-up: look again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def click(driver, selector: str, timeout: float = 10) -> None:
    """Click the element ``selector`` names, found afresh until the click lands: a list the
    page re-renders (each second, as a run reports) can replace the element between the
    look-up and the click (Selenium's StaleElementReferenceException)."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        NoSuchElementException,
        StaleElementReferenceException,
    )

    def clicked() -> bool:
        try:
            driver.find_element("css selector", selector).click()
        except (StaleElementReferenceException, NoSuchElementException,
                ElementClickInterceptedException):
            return False
        return True

    wait_for(clicked, timeout, f"a click on {selector}")


class Process:
    """A jstyle process started by a test, its stderr read line by line in the background;
    :meth:`url` waits for the address it prints."""

    def __init__(self, argv: list[str], cwd: Path = ROOT) -> None:
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen([sys.executable, *argv], cwd=cwd, text=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def url(self, timeout: float = 120) -> str:
        """The first http:// address the process printed."""
        def found() -> str | None:
            match = re.search(r"http://[\w.:\[\]-]+/", self.stderr)
            if match is None and self.proc.poll() is not None:
                pytest.fail(f"the process ended ({self.proc.returncode}):\n{self.stderr}")
            return match.group(0) if match else None

        return wait_for(found, timeout, "the page's address")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the process did not end within {timeout:.0f} s:\n{self.stderr}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def fingerprint(driver, selector: str) -> tuple[str, str] | None:
    """The version and pixels of the image ``selector`` shows, once one has loaded."""
    value = driver.execute_script(FINGERPRINT, selector)
    return tuple(value) if value else None


def changed_image(driver, selector: str, timeout: float) -> tuple[tuple, tuple]:
    """Two fingerprints of the image a page shows, of two versions with other pixels."""
    first = wait_for(lambda: fingerprint(driver, selector), timeout, "the first image")

    def other():
        now = fingerprint(driver, selector)
        return now if now and now[0] != first[0] and now[1] != first[1] else None

    return first, wait_for(other, timeout, "the image to change")


def screenshot(driver, tmp_path: Path) -> Path:
    """A PNG of the page: the README's (:data:`SCREENSHOT`) with JSTYLE_WRITE_SCREENSHOT=1,
    else in ``tmp_path``; palette-quantised so that it stays small."""
    from io import BytesIO

    from PIL import Image

    path = SCREENSHOT if os.environ.get("JSTYLE_WRITE_SCREENSHOT") == "1" else \
        tmp_path / "web.png"
    image = Image.open(BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path

