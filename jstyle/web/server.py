"""The live page of one run: ``python -m jstyle.run --web [PORT]``.

A page on 127.0.0.1 that shows the image after each chunk of iterations, the loss curve
(total, and the weighted content and style terms apart), the progress, the resolved
config and what the run logs, and a Stop button that does what Ctrl-C does: the run stops
at the end of its chunk, saves the image, its sidecar and the resume file, and exits with
code 130; ``--resume`` continues it.

The command line drives a :class:`LivePage` (:func:`watch`): :meth:`LivePage.begin` as a
run starts, :meth:`LivePage.progress` from its progress callback, :meth:`LivePage.ended`
with its exit code. The browser reads ``/api/events`` (server-sent events, a JSON snapshot
of :meth:`LivePage.snapshot` after every change) and ``/api/image.png`` (the current image);
``POST /api/stop`` presses Stop. The studio (:mod:`jstyle.web.studio`) follows its runs
through the same two addresses.
"""

from __future__ import annotations

import contextlib
import io
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np

from jstyle.errors import JStyleError
from jstyle.web.base import Board, Handler, serve, url_of

__all__ = ["LivePage", "watch", "png_bytes", "EXIT_STATUS", "ACTIVE", "HOST"]

#: The live page is for the machine the run is on: it listens on the loopback address only.
HOST = "127.0.0.1"
#: What a run's exit code says (jstyle.terminal's codes): done, stopped by a non-finite
#: loss, interrupted (by Ctrl-C, SIGTERM or Stop; saved and resumable), bad input.
EXIT_STATUS = {0: "done", 1: "stopped", 130: "interrupted", 2: "error"}
#: The states of a run that Stop applies to.
ACTIVE = ("starting", "running")
#: Lines of the run's log the page keeps.
LOG_LINES = 50


def png_bytes(image: np.ndarray) -> bytes:
    """A float RGB image in [0, 1] as PNG bytes."""
    from jstyle.images import from_array

    buffer = io.BytesIO()
    from_array(image).save(buffer, format="PNG")
    return buffer.getvalue()


class _PageHandler(Handler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        page: LivePage = self.server.page  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self.send_static("run.html")
        elif path.startswith("/static/"):
            self.send_static(path[len("/static/"):])
        elif path == "/api/state":
            self.send_json(page.snapshot())
        elif path == "/api/events":
            self.stream(page.board, page.snapshot)
        elif path == "/api/image.png":
            body = page.image_png()
            if body is None:
                self.send_error_json(HTTPStatus.NOT_FOUND, "no image yet")
            else:
                self.send_bytes(body, "image/png")
        else:
            self.send_error_json(HTTPStatus.NOT_FOUND, f"no such page: {path}")

    do_HEAD = do_GET  # noqa: N815 - http.server's name

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        page: LivePage = self.server.page  # type: ignore[attr-defined]
        if self.path.split("?", 1)[0] == "/api/stop":
            self.send_json({"stopping": page.stop(), "message": page.snapshot()["message"]})
        else:
            self.send_error_json(HTTPStatus.NOT_FOUND, f"no such action: {self.path}")


class LivePage:
    """The state of a run as its page shows it, and the server that shows it.

    ``port``: 0 for a free one. Raises :class:`JStyleError` (one line) when the port is
    taken."""

    def __init__(self, port: int, config) -> None:
        self.board = Board()
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {
            "status": "starting", "message": "loading the images and the network",
            "iteration": 0, "total": config.iterations, "terms": [], "image": 0,
            "config": config.to_dict(), "output": config.output, "log": [], "code": None,
            "started": time.time()}
        self._image: np.ndarray | None = None
        self._preview: Callable[[np.ndarray], np.ndarray] = lambda image: image
        self._png: tuple[int, bytes] | None = None  # the encoded image and its version
        self._weights = (config.balance, config.content_weight, config.style_weight,
                         config.tv_weight)
        self.server, self._thread = serve(
            _PageHandler, HOST, port, "give another with --web PORT, or --web alone for a "
            "free one", "jstyle-web")
        self.server.page = self  # type: ignore[attr-defined]
        self.url = url_of(self.server)

    # --- what the run tells the page -----------------------------------------------------

    def begin(self, config, done: int = 0,
              preview: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """A run (or a batch's next image) starts, ``done`` of its iterations made before
        (a resumed run); ``preview`` turns an optimised image into the one a user receives
        (the content's colours restored)."""
        with self._lock:
            self._state.update(
                status="running", message=f"optimising {Path(config.output).name}",
                iteration=done, total=config.iterations, terms=[], config=config.to_dict(),
                output=config.output)
            self._weights = (config.balance, config.content_weight, config.style_weight,
                             config.tv_weight)
            self._preview = preview or (lambda image: image)
        self.board.bump()

    def progress(self, iteration: int, terms: dict[str, float], image: np.ndarray) -> None:
        """A chunk of iterations ended at ``iteration`` (counted from the run's start)."""
        balance, alpha, beta, tv_weight = self._weights
        total, style = float(terms["total"]), beta * float(terms["style"])
        # With balance: auto, alpha is measured at the stage's start: the content term is
        # what remains of eq. 7's total.
        content = alpha * float(terms["content"]) if balance != "auto" else \
            total - style - tv_weight * float(terms["tv"])
        with self._lock:
            self._image = np.array(image, copy=True)
            self._state["iteration"] = iteration
            self._state["image"] += 1
            self._state["terms"].append([iteration, total, content, style])
        self.board.bump()

    def log(self, message: str) -> None:
        """A line of the run's log, shown on the page."""
        with self._lock:
            self._state["log"] = [*self._state["log"], message][-LOG_LINES:]
        self.board.bump()

    def tee(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """``log``, that also shows each line on the page."""
        def both(message: str) -> None:
            log(message)
            self.log(message)

        return both

    def ended(self, code: int) -> int:
        """The run ended with exit code ``code`` (returned): say so, and what was saved."""
        from jstyle import outputs

        output = Path(self._state["output"])
        side = outputs.sidecar_path(output)
        message = {
            0: f"done: wrote {output} and {side}",
            1: f"stopped early (a non-finite loss): saved {output} and {side}",
            130: f"interrupted: saved {output}, {side} and {outputs.resume_path(output)}; "
                 "continue with the same command and --resume",
        }.get(code, f"ended with exit code {code}")
        self._end(EXIT_STATUS.get(code, "error"), message, code)
        return code

    def failed(self, message: str, code: int, status: str = "error") -> None:
        """The run ended without a result (bad input, or interrupted before it started)."""
        self._end(status, message, code)

    def _end(self, status: str, message: str, code: int) -> None:
        with self._lock:
            self._state.update(status=status, message=message, code=code)
        self.board.bump()

    # --- what the page asks -------------------------------------------------------------

    def stop(self) -> bool:
        """The Stop button: Ctrl-C's own path (jstyle.terminal's handler of SIGINT, in the
        main thread): during the transfer, a stop at the end of the chunk, then the image,
        sidecar and resume file are saved; before it, the run ends with nothing to save.
        Pressed again, or once the run is saving, it does nothing (a second Ctrl-C would
        quit without saving). Whether this press asked for the stop."""
        engine = sys.modules.get("jstyle.engine")
        with self._lock:
            state = self._state
            if state["status"] not in ACTIVE:
                return False
            finishing = state["terms"] and state["iteration"] >= state["total"] and not (
                engine is not None and engine.running())
            if finishing:  # the last chunk is done: the outputs are being written
                return False
            state.update(status="stopping", message="stopping at the end of this chunk of "
                         "iterations, then saving")
        self.board.bump()
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        return True

    def snapshot(self) -> dict[str, Any]:
        """The state the page draws: status, message, iteration of total, the loss terms
        (``[iteration, total, alpha content, beta style]`` after each chunk), the image's
        version (0: none yet), the resolved config, the output path, the log, the exit
        code (once ended)."""
        with self._lock:
            return {**self._state, "terms": list(self._state["terms"]),
                    "elapsed": time.time() - self._state["started"]}

    def image_png(self) -> bytes | None:
        """The current image as PNG (encoded once per version), or None before the first."""
        with self._lock:
            image, version, preview = self._image, self._state["image"], self._preview
            cached = self._png
        if image is None:
            return None
        if cached is not None and cached[0] == version:
            return cached[1]
        body = png_bytes(preview(image))
        with self._lock:
            self._png = (version, body)
        return body

    def close(self, linger: float = 1.0) -> None:
        """No more changes: let the open pages receive the last state (up to ``linger``
        seconds), then stop serving."""
        self.board.close()
        time.sleep(linger)
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def watch(port: int, config) -> Iterator[LivePage]:
    """The live page of the run of ``config`` while the block runs; its address printed.
    The block's end (an exit code given to :meth:`LivePage.ended`, a :class:`JStyleError`,
    an interrupt) is the page's last state."""
    page = LivePage(port, config)
    print(f"jstyle: watch the run at {page.url} (this machine only; its Stop button saves "
          "the run, as Ctrl-C does)", file=sys.stderr, flush=True)
    try:
        yield page
    except JStyleError as e:
        page.failed(f"error: {e}", 2)
        raise
    except KeyboardInterrupt:
        page.failed("interrupted outside the optimisation: nothing was saved", 130,
                    "interrupted")
        raise
    except BaseException as e:
        page.failed(f"error: {type(e).__name__}: {e}", 1)
        raise
    finally:
        page.close()
