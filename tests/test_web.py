"""The live page of a run (``python -m jstyle.run --web``, jstyle/web/server.py): a real
run at 64 px watched in a headless Chromium, its Stop button, and the port's errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from browser import ROOT, SCREENSHOT_LIMIT, Process, changed_image, chromium, screenshot, wait_for

from jstyle.terminal import EXIT_INTERRUPTED

CSS = "css selector"  # selenium.webdriver.common.by.By.CSS_SELECTOR

#: A network two blocks deep, at 64 px: chunks of 20 iterations take a fraction of a second,
#: and the run is long enough to be still running whenever the browser looks.
FAST = ["--config", "configs/quick.yaml", "--set", "size=64", "--set", "iterations=20000",
        "--set", "content_layers=[relu2_2]", "--set", "style_layers=[relu1_1, relu2_1]"]


def test_the_page_shows_the_run_and_its_stop_button_saves_it(real_weights, tmp_path,
                                                            shared_images_or_none):
    """The image changes from one chunk to the next, the loss curve, progress and config
    are shown; Stop saves the PNG, its sidecar and the resume file, and the run exits as
    Ctrl-C makes it (130)."""
    output = tmp_path / "live.png"
    writing = os.environ.get("JSTYLE_WRITE_SCREENSHOT") == "1"
    images = [] if shared_images_or_none is None else [
        "--content", str(shared_images_or_none / "tubingen.jpg"),
        "--style", str(shared_images_or_none / "starry_night.jpg")]
    size = ["--set", "size=160"] if writing else []  # the README's: a larger image
    run = Process(["-m", "jstyle.run", *FAST, *size, *images, "--output", str(output),
                   "--web", "--quiet"])
    try:
        url = run.url()
        assert url.startswith("http://127.0.0.1:")
        with chromium() as driver:
            driver.get(url)
            first, second = changed_image(driver, "#run .image", timeout=120)
            assert int(second[0]) > int(first[0])
            def text(selector: str) -> str:
                return driver.find_element(CSS, f"#run {selector}").text

            assert text(".status") == "running"
            assert "iteration" in text(".count")
            config = json.loads(driver.find_element(CSS, "#run .config")
                                .get_attribute("textContent"))
            assert config["iterations"] == 20000
            assert config["style_layers"] == {"relu1_1": 0.5, "relu2_1": 0.5}
            curve = driver.execute_script(
                "const c = document.querySelector('#run .curve');"
                "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                "let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3]) n++; return n;")
            assert curve > 1000  # axes, labels and three lines drawn
            if writing:  # let the image form before the README's picture is taken
                wait_for(lambda: int(driver.execute_script(
                    "return document.querySelector('#run .image').dataset.iteration || 0"))
                    >= 400, 120, "iteration 400")
            shot = screenshot(driver, tmp_path)
            assert shot.stat().st_size < SCREENSHOT_LIMIT

            driver.find_element(CSS, "#run .stop").click()
            wait_for(lambda: text(".status") == "interrupted", 60,
                     "the page to say the run was interrupted")
            assert "--resume" in text(".message")
        assert run.wait(60) == EXIT_INTERRUPTED, run.stderr
    finally:
        run.close()
    record = json.loads(output.with_suffix(".json").read_text())
    assert record["incomplete"]["reason"].startswith("interrupted")
    assert output.is_file() and output.with_suffix(".resume.npz").is_file()
    assert "saved" in run.stderr and "Traceback" not in run.stderr


@pytest.fixture
def shared_images_or_none():
    """../shared/images when present (the paper's photo and painting), else None: the run
    then uses jstyle's default images."""
    folder = ROOT.parent / "shared" / "images"
    return folder if (folder / "tubingen.jpg").is_file() else None


def jstyle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jstyle.run", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_a_taken_port_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = jstyle("--set", "iterations=1", "--output", str(tmp_path / "x.png"),
                      "--web", str(port))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jstyle: error: "), proc.stderr
    assert f"port {port} on 127.0.0.1 is in use" in lines[0] and "--web" in lines[0]
    assert not (tmp_path / "x.png").exists()


def test_a_port_that_is_not_a_number_is_refused():
    proc = jstyle("--web", "http", "--set", "iterations=1")
    assert proc.returncode == 2 and "PORT must be a port number" in proc.stderr, proc.stderr
