"""The studio (``python -m jstyle.studio``, jstyle/web/studio.py): uploads, a 64 px run
started, watched, queued behind, stopped and downloaded in a headless Chromium; refused
uploads; the address it binds and says."""

from __future__ import annotations

import http.client
import json
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from browser import ROOT, Process, changed_image, chromium, click, text_of, wait_for
from PIL import Image

from jstyle.errors import JStyleError
from jstyle.web.studio import MAX_UPLOAD_BYTES, Studio

CSS = "css selector"  # selenium.webdriver.common.by.By.CSS_SELECTOR
SHARED = ROOT.parent / "shared" / "images"
#: The keys the form leaves to "other keys": a network two blocks deep, so that chunks of
#: 20 iterations take a fraction of a second at 64 px.
SHALLOW = "content_layers=[relu2_2]\nstyle_layers=[relu1_1, relu2_1]"


@pytest.fixture
def pictures(tmp_path: Path) -> tuple[Path, Path]:
    """The Tübingen photo and The Starry Night from ../shared/images, else two generated
    images."""
    if (SHARED / "tubingen.jpg").is_file() and (SHARED / "starry_night.jpg").is_file():
        return SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
    rng = np.random.default_rng(0)
    out = []
    for name in ("photo.png", "painting.png"):
        path = tmp_path / name
        Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(path)
        out.append(path)
    return out[0], out[1]


@pytest.fixture
def studio(tmp_path: Path):
    """A studio process on a free port, its workdir in ``tmp_path``."""
    process = Process(["-m", "jstyle.studio", "--port", "0", "--workdir",
                       str(tmp_path / "studio")])
    try:
        yield process, process.url(60)
    finally:
        process.close()


def _fill(driver, selector: str, value: str) -> None:
    field = driver.find_element(CSS, selector)
    field.clear()
    field.send_keys(value)


def test_a_run_is_started_watched_queued_behind_stopped_and_downloaded(
        real_weights, studio, pictures, tmp_path):
    process, url = studio
    assert url.startswith("http://127.0.0.1:") and "this machine only" in process.stderr
    text_file = tmp_path / "x.jpg"
    text_file.write_text("not a picture\n")
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:  # sparse: past the limit without writing it
        f.truncate(MAX_UPLOAD_BYTES + 2**20)
    with chromium() as driver:
        driver.get(url)
        wait_for(lambda: driver.find_elements(CSS, "#config option[value='quick.yaml']"), 30,
                 "the configs")
        driver.find_element(CSS, "#config option[value='quick.yaml']").click()
        assert driver.find_element(CSS, "#size").get_attribute("value") == "256"
        error = driver.find_element(CSS, "#error")

        def refused(content: Path, message: str) -> None:
            driver.find_element(CSS, "#content").send_keys(str(content))
            driver.find_element(CSS, "#style").send_keys(str(pictures[1]))
            click(driver, "#start")
            wait_for(lambda: message in error.text, 30, f"the error for {content.name}")

        refused(text_file, "x.jpg is not an image Pillow can read")
        refused(huge, "huge.png is 51.0 MB, more than the 50.0 MB allowed")
        assert not driver.find_elements(CSS, "#jobs li")  # nothing was queued

        driver.find_element(CSS, "#content").send_keys(str(pictures[0]))
        driver.find_element(CSS, "#style").send_keys(str(pictures[1]))
        _fill(driver, "#size", "64")
        _fill(driver, "#iterations", "20000")
        _fill(driver, "#extra", SHALLOW)
        click(driver, "#start")
        wait_for(lambda: driver.find_elements(CSS, "#jobs li[data-id='1']"), 30, "run #1")
        assert error.text == ""
        first, second = changed_image(driver, "#run .image", timeout=120)
        assert text_of(driver, "#run .status") == "running"
        command = text_of(driver, "#run .command")
        assert "--set size=64" in command and "--set iterations=20000" in command

        click(driver, "#start")  # a second run waits for the first
        wait_for(lambda: driver.find_elements(CSS, "#jobs li[data-id='2'][data-status='queued']"),
                 30, "run #2 in the queue")
        assert "queued (1)" in text_of(driver, "#jobs li[data-id='2']")
        click(driver, "#run .stop")  # run #2 is shown: leaves the queue
        wait_for(lambda: driver.find_elements(
            CSS, "#jobs li[data-id='2'][data-status='cancelled']"), 30, "run #2 cancelled")

        click(driver, "#jobs li[data-id='1']")
        wait_for(lambda: driver.find_element(CSS, "#run").get_attribute("data-id") == "1", 10,
                 "run #1 shown")
        click(driver, "#run .stop")
        wait_for(lambda: text_of(driver, "#run .status") == "interrupted", 60,
                 "run #1 to stop")
        assert "Resume" in text_of(driver, "#run .message")
        assert driver.find_element(CSS, "#run .resume").is_displayed()
        links = {kind: driver.find_element(CSS, f"#run .download-{kind}").get_attribute("href")
                 for kind in ("png", "json")}
    with urllib.request.urlopen(links["png"], timeout=10) as response:
        assert response.read(8) == b"\x89PNG\r\n\x1a\n"
        assert "attachment" in response.headers["Content-Disposition"]
    with urllib.request.urlopen(links["json"], timeout=10) as response:
        record = json.loads(response.read())
    assert record["config"]["size"] == 64 and record["incomplete"]
    runs = list((tmp_path / "studio" / "runs").glob("*/*.resume.npz"))
    assert len(runs) == 1, runs


def test_an_oversized_body_is_refused_before_it_is_read(studio):
    _, url = studio
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    connection.putrequest("POST", "/api/uploads?name=big.jpg")
    connection.putheader("Content-Length", str(MAX_UPLOAD_BYTES + 1))
    connection.endheaders()  # the body is never sent: the answer comes first
    response = connection.getresponse()
    assert response.status == 413
    assert "more than the 50 MB allowed" in json.loads(response.read())["error"]


def test_uploads_and_configs_are_checked_before_anything_is_queued(tmp_path):
    studio = Studio("127.0.0.1", 0, tmp_path, ROOT / "configs")
    try:
        with pytest.raises(JStyleError, match="more than the 50 MB allowed"):
            studio.upload("a.png", b"\0" * (MAX_UPLOAD_BYTES + 1))
        with pytest.raises(JStyleError, match="notes.jpg is not an image"):
            studio.upload("../notes.jpg", b"hello")
        path = tmp_path / "p.png"
        Image.new("RGB", (40, 30), "red").save(path)
        image = studio.upload("p.png", path.read_bytes())
        assert (image["width"], image["height"]) == (40, 30)
        request = {"config": "quick.yaml", "content": image["id"], "style": image["id"]}
        with pytest.raises(JStyleError, match="style_weight"):
            studio.submit({**request, "fields": {"style_weight": "a lot"}})
        with pytest.raises(JStyleError, match="output is the studio's to set"):
            studio.submit({**request, "extra": "output=/tmp/x.png"})
        with pytest.raises(JStyleError, match="choose a style image"):
            studio.submit({**request, "style": "nope"})
        assert studio.snapshot() == {"jobs": []}
    finally:
        studio.close()


def test_another_host_is_said_to_be_reachable(tmp_path):
    process = Process(["-m", "jstyle.studio", "--host", "0.0.0.0", "--port", "0",
                       "--workdir", str(tmp_path)])
    try:
        process.url(60)
        assert "reachable from other machines" in process.stderr
    finally:
        process.close()
