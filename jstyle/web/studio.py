"""The studio: a local page to upload a content photo and a style painting, pick a config
and the few keys people change, start a run, watch it, stop it and download the PNG with
its sidecar (``python -m jstyle.studio``; :mod:`jstyle.studio` is its command line).

Each run is the command line's own, ``python -m jstyle.run ... --web`` in a child
process, one at a time, the rest queued: the studio follows it through its live page
(:mod:`jstyle.web.server`; an event stream and the current image, over the loopback
address) and shows what it hears on its own page. Stop sends the child SIGINT, which is
Ctrl-C: the run saves its image, sidecar and resume file, and Resume queues the same
command with ``--resume``. A queued run that is stopped leaves the queue.

Uploads are refused, with a message on the page, when they are over
:data:`MAX_UPLOAD_BYTES` or are not an image that :func:`jstyle.images.read_image` reads
(Pillow decodes it, every check of the command line applies). Every config is validated
(:func:`jstyle.config.resolve`) before it is queued, so a bad value is a message at once.
"""

from __future__ import annotations

import collections
import http.client
import json
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jstyle.config import Config, parse_override, read_yaml, resolve
from jstyle.errors import JStyleError
from jstyle.options import BALANCES, PRESERVE_COLOR, STYLE_LOSSES
from jstyle.web.base import Board, Handler, serve, url_of
from jstyle.web.server import EXIT_STATUS

__all__ = ["Studio", "MAX_UPLOAD_BYTES", "KEYS", "LOCAL_HOSTS", "default_configs"]

#: The largest upload accepted (one image), in bytes.
MAX_UPLOAD_BYTES = 50 * 2**20
#: The config keys the page offers (the rest: a config file, or key=value lines).
KEYS = ("size", "iterations", "balance", "content_weight", "style_weight", "style_scale",
        "preserve_color", "style_loss")
#: Keys the studio sets itself: the uploads and the output in the run's folder.
OWN_KEYS = ("content", "style", "output", "masks")
#: Addresses only this machine reaches.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Lines of a child's stderr kept per run.
LOG_LINES = 50
#: The states of a run the studio is still running or will run.
PENDING = ("queued", "starting", "running", "stopping")
#: Seconds a stopped studio waits for its running child to save.
SAVE_WAIT_S = 120


def default_configs() -> Path | None:
    """The source tree's ``configs/`` folder, when jstyle runs from one."""
    folder = Path(__file__).resolve().parents[2] / "configs"
    return folder if folder.is_dir() else None


def _safe_name(name: str) -> str:
    """A file name for an upload: the last part of ``name``, other characters as ``_``."""
    base = re.sub(r"[^\w.\- ]", "_", Path(name.replace("\\", "/")).name).strip(" .")
    return base[-100:] or "image"


class Job:
    """One run: its command, folder, state, the image and live state its page last sent."""

    def __init__(self, number: int, name: str, argv: list[str], folder: Path,
                 output: Path, total: int) -> None:
        self.id, self.name, self.argv, self.folder, self.output = \
            number, name, argv, folder, output
        self.status, self.message, self.code = "queued", "", None
        self.live: dict[str, Any] = {"iteration": 0, "total": total, "terms": [], "log": [],
                                     "config": {}, "image": 0}
        self.image: bytes | None = None
        self.image_version = 0
        self.log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self.process: subprocess.Popen | None = None
        self.stop_asked = False

    @property
    def command(self) -> str:
        """The command line that runs (or resumes) it in a terminal."""
        shown = [a for a in self.argv if a not in ("--web", "--quiet")]
        return shlex.join(["python", *shown])

    def files(self) -> dict[str, str | None]:
        """Download addresses of the PNG and its sidecar, once written."""
        from jstyle.outputs import sidecar_path

        out = {}
        for kind, path in (("png", self.output), ("json", sidecar_path(self.output))):
            out[kind] = f"/api/jobs/{self.id}/files/{path.name}" if path.is_file() else None
        return out

    def resumable(self) -> bool:
        from jstyle.outputs import resume_path

        return self.status in ("interrupted", "stopped") and resume_path(self.output).is_file()

    def summary(self, position: int | None) -> dict[str, Any]:
        live = {**self.live, "status": self.status, "image": self.image_version,
                "message": self.message or self.live.get("message", ""),
                "log": [*self.live.get("log", []), *self.log]}
        return {"id": self.id, "name": self.name, "status": self.status, "position": position,
                "message": live["message"], "command": self.command, "live": live,
                "files": self.files(), "resumable": self.resumable(), "code": self.code}


class _StudioHandler(Handler):
    def _route(self) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        return parts.path, parse_qs(parts.query)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        studio: Studio = self.server.studio  # type: ignore[attr-defined]
        path, _ = self._route()
        job_path = re.fullmatch(r"/api/jobs/(\d+)/(image\.png|files/([^/]+))", path)
        if path in ("/", "/index.html"):
            self.send_static("studio.html")
        elif path.startswith("/static/"):
            self.send_static(path[len("/static/"):])
        elif path == "/api/info":
            self.send_json(studio.info())
        elif path == "/api/events":
            self.stream(studio.board, studio.snapshot)
        elif job_path and job_path.group(2) == "image.png":
            body = studio.image(int(job_path.group(1)))
            if body is None:
                self.send_error_json(HTTPStatus.NOT_FOUND, "no image yet")
            else:
                self.send_bytes(body, "image/png")
        elif job_path:
            found = studio.file(int(job_path.group(1)), job_path.group(3))
            if found is None:
                self.send_error_json(HTTPStatus.NOT_FOUND, "no such file")
            else:
                kind = "image/png" if found.suffix == ".png" else "application/json"
                self.send_bytes(found.read_bytes(), kind, headers={
                    "Content-Disposition": f'attachment; filename="{found.name}"'})
        else:
            self.send_error_json(HTTPStatus.NOT_FOUND, f"no such page: {path}")

    do_HEAD = do_GET  # noqa: N815 - http.server's name

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        studio: Studio = self.server.studio  # type: ignore[attr-defined]
        path, query = self._route()
        action = re.fullmatch(r"/api/jobs/(\d+)/(stop|resume)", path)
        try:
            if path == "/api/uploads":
                body = self.read_body(MAX_UPLOAD_BYTES)
                if body is not None:
                    self.send_json(studio.upload(query.get("name", ["image"])[0], body))
                return
            if path == "/api/jobs":
                body = self.read_body(2**20)
                if body is not None:
                    try:
                        request = json.loads(body or b"{}")
                    except ValueError:
                        raise JStyleError("the request is not JSON") from None
                    self.send_json(studio.submit(request))
                return
            if action and action.group(2) == "stop":
                self.send_json({"stopping": studio.stop(int(action.group(1)))})
            elif action:
                self.send_json(studio.resume(int(action.group(1))))
            else:
                self.send_error_json(HTTPStatus.NOT_FOUND, f"no such action: {path}")
        except JStyleError as e:
            self.send_error_json(HTTPStatus.BAD_REQUEST, str(e))


class Studio:
    """The studio's state (uploads, runs, the queue), its worker and its server.

    ``workdir``: where uploads and each run's folder go. ``configs``: a folder of YAML
    configs offered on the page (None: jstyle's defaults only). Raises
    :class:`JStyleError` when the port is taken."""

    def __init__(self, host: str, port: int, workdir: Path, configs: Path | None) -> None:
        self.host, self.workdir = host, Path(workdir)
        self.board = Board()
        self._lock = threading.RLock()
        self._queued = threading.Condition(self._lock)
        self._jobs: dict[int, Job] = {}
        self._queue: collections.deque[int] = collections.deque()
        self._uploads: dict[str, Path] = {}
        self._closing = False
        self._configs = self._read_configs(configs)
        try:
            (self.workdir / "uploads").mkdir(parents=True, exist_ok=True)
            (self.workdir / "runs").mkdir(exist_ok=True)
        except OSError as e:
            raise JStyleError(f"cannot create the studio's folder {self.workdir}: "
                              f"{e.strerror}; give another with --workdir") from None
        self.server, _ = serve(_StudioHandler, host, port, "give another with --port, or "
                               "--port 0 for a free one", "jstyle-studio")
        self.server.studio = self  # type: ignore[attr-defined]
        self.url = url_of(self.server)
        self._worker = threading.Thread(target=self._work, name="jstyle-studio-runs",
                                        daemon=True)
        self._worker.start()

    @property
    def local(self) -> bool:
        """Whether only this machine can reach the page."""
        return self.host in LOCAL_HOSTS

    # --- configs --------------------------------------------------------------------------

    @staticmethod
    def _read_configs(folder: Path | None) -> dict[str, tuple[Path | None, dict[str, Any]]]:
        """Each config the page offers: its path and resolved values (the first: jstyle's
        defaults); a config that does not resolve is left out."""
        found: dict[str, tuple[Path | None, dict[str, Any]]] = {
            "": (None, Config().to_dict())}
        for path in sorted(folder.glob("*.yaml")) if folder else []:
            try:
                found[path.name] = (path, resolve(read_yaml(path)).to_dict())
            except JStyleError as e:
                print(f"jstyle studio: warning: leaving out {path}: {e}", file=sys.stderr)
        return found

    def info(self) -> dict[str, Any]:
        """What the form needs: the configs and their values of :data:`KEYS`, the choices,
        the upload limit, and where the studio listens."""
        def shown(values: dict[str, Any]) -> dict[str, Any]:
            out = {k: values[k] for k in KEYS}
            losses = values["style_loss"]
            out["style_loss"] = next(iter(losses)) if len(losses) == 1 else ""
            return out

        return {"configs": [{"name": name, "values": shown(values)}
                            for name, (_, values) in self._configs.items()],
                "choices": {"balance": list(BALANCES), "preserve_color": list(PRESERVE_COLOR),
                            "style_loss": list(STYLE_LOSSES)},
                "max_upload_bytes": MAX_UPLOAD_BYTES, "url": self.url, "local": self.local,
                "workdir": str(self.workdir)}

    # --- uploads and runs -----------------------------------------------------------------

    def upload(self, name: str, data: bytes) -> dict[str, Any]:
        """Keep an uploaded image: its id for :meth:`submit`, or :class:`JStyleError`
        (too large, empty, not an image) naming the file as the user named it."""
        from jstyle.images import read_image

        shown = _safe_name(name)
        if len(data) > MAX_UPLOAD_BYTES:
            raise JStyleError(f"{shown} is {len(data) / 2**20:.1f} MB, more than the "
                              f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB allowed; shrink it first")
        if not data:
            raise JStyleError(f"{shown} is empty (0 bytes); choose an image file")
        token = secrets.token_hex(8)
        path = self.workdir / "uploads" / token / shown
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        try:
            image = read_image(path)
        except JStyleError as e:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise JStyleError(str(e).replace(str(path), shown)) from None
        with self._lock:
            self._uploads[token] = path
        return {"id": token, "name": shown, "width": image.width, "height": image.height}

    def submit(self, request: dict[str, Any]) -> dict[str, Any]:
        """Queue a run: ``request`` names a config, the two uploads, values of :data:`KEYS`
        (as typed; those that equal the config's are left out) and ``extra`` key=value
        lines. The whole config is validated first (:class:`JStyleError`)."""
        name = str(request.get("config") or "")
        if name not in self._configs:
            raise JStyleError(f"unknown config {name!r}; pick one of the list")
        path, base = self._configs[name]
        inputs = {}
        for role in ("content", "style"):
            token = str(request.get(role) or "")
            with self._lock:
                upload = self._uploads.get(token)
            if upload is None:
                raise JStyleError(f"choose a {role} image first")
            inputs[role] = upload
        values = read_yaml(path) if path else {}
        overrides = []
        fields = request.get("fields") or {}
        for key in KEYS:
            text = str(fields.get(key, "")).strip()
            if not text:
                continue
            parsed = parse_override(f"{key}={text}")[1]
            if resolve({**values, key: parsed}).to_dict()[key] != base[key]:
                overrides.append((key, text, parsed))
        for line in str(request.get("extra") or "").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, parsed = parse_override(line)
            if key in OWN_KEYS:
                raise JStyleError(f"{key} is the studio's to set (the uploads, the run's "
                                  "folder); leave it out of the other keys")
            overrides.append((key, line.split("=", 1)[1].strip(), parsed))
        for key, _, parsed in overrides:
            values[key] = parsed
        stem = f"{Path(inputs['content']).stem}_{Path(inputs['style']).stem}"[:80]
        with self._lock:
            number = max(self._jobs, default=0) + 1
        folder = self.workdir / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{number}-{stem}"
        output = folder / f"{stem}.png"
        config = resolve({**values, "content": str(inputs["content"]),
                          "style": [str(inputs["style"])], "output": str(output)})
        argv = ["-m", "jstyle.run"] + (["--config", str(path)] if path else []) + [
            "--content", str(inputs["content"]), "--style", str(inputs["style"]),
            "--output", str(output)]
        for key, text, _ in overrides:
            argv += ["--set", f"{key}={text}"]
        return self._queue_job(Job(number, stem, [*argv, "--web", "--quiet"], folder, output,
                                   config.iterations))

    def _queue_job(self, job: Job) -> dict[str, Any]:
        job.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._closing:
                raise JStyleError("the studio is shutting down")
            self._jobs[job.id] = job
            self._queue.append(job.id)
            job.message = "waiting for the run before it" if len(self._queue) > 1 or any(
                j.status in PENDING[1:] for j in self._jobs.values()) else ""
            self._queued.notify_all()
        self.board.bump()
        return {"id": job.id}

    def resume(self, number: int) -> dict[str, Any]:
        """Queue an interrupted run again, with ``--resume``: it continues where it stopped."""
        with self._lock:
            job = self._jobs.get(number)
            if job is None or not job.resumable():
                raise JStyleError("only a stopped run with a resume file can be resumed")
            argv = job.argv if "--resume" in job.argv else [*job.argv, "--resume"]
            again = Job(max(self._jobs) + 1, job.name, argv, job.folder, job.output,
                        int(job.live.get("total") or 0))
        return self._queue_job(again)

    def stop(self, number: int) -> bool:
        """Stop a run: a queued one leaves the queue; a running one gets SIGINT (Ctrl-C: it
        saves its image, sidecar and resume file). Whether anything was done."""
        with self._lock:
            job = self._jobs.get(number)
            if job is None:
                return False
            if job.status == "queued":
                self._queue.remove(number)
                job.status, job.message = "cancelled", "removed from the queue"
            elif job.status in ("starting", "running") and not job.stop_asked:
                job.stop_asked = True
                job.status, job.message = "stopping", "stopping at the end of this chunk of " \
                    "iterations, then saving"
                if job.process is not None:
                    job.process.send_signal(signal.SIGINT)
            else:
                return False
        self.board.bump()
        return True

    # --- what the page reads --------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every run, newest first, with its place in the queue."""
        with self._lock:
            queue = list(self._queue)
            return {"jobs": [job.summary(queue.index(n) + 1 if n in queue else None)
                             for n, job in sorted(self._jobs.items(), reverse=True)]}

    def image(self, number: int) -> bytes | None:
        with self._lock:
            job = self._jobs.get(number)
            return None if job is None else job.image

    def file(self, number: int, name: str) -> Path | None:
        """A run's PNG or sidecar by name (nothing else is served)."""
        from jstyle.outputs import sidecar_path

        with self._lock:
            job = self._jobs.get(number)
        if job is None:
            return None
        for path in (job.output, sidecar_path(job.output)):
            if path.name == name and path.is_file():
                return path
        return None

    # --- running ---------------------------------------------------------------------------

    def _work(self) -> None:
        """The worker: one run at a time, in the order queued."""
        while True:
            with self._lock:
                self._queued.wait_for(lambda: self._queue or self._closing)
                if self._closing:
                    return
                job = self._jobs[self._queue.popleft()]
                job.status, job.message = "starting", "starting jstyle"
            self.board.bump()
            try:
                self._run(job)
            except OSError as e:  # the child could not start
                with self._lock:
                    job.status, job.message = "error", f"error: cannot start the run: {e}"
                self.board.bump()

    def _run(self, job: Job) -> None:
        import os

        process = subprocess.Popen(
            [sys.executable, *job.argv], cwd=job.folder, text=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        with self._lock:
            job.process = process
            if job.stop_asked:  # Stop was pressed before the child existed
                process.send_signal(signal.SIGINT)
        mirror = None
        for line in process.stderr:
            line = line.rstrip("\n")
            with self._lock:
                job.log.append(line)
            found = re.search(r"watch the run at (http://\S+/)", line)
            if found and mirror is None:
                mirror = threading.Thread(target=self._mirror, args=(job, found.group(1)),
                                          daemon=True, name=f"jstyle-studio-run-{job.id}")
                mirror.start()
            self.board.bump()
        code = process.wait()
        if mirror is not None:
            mirror.join(10)
        self._ended(job, code)

    def _ended(self, job: Job, code: int) -> None:
        with self._lock:
            job.code = code
            errors = [line for line in job.log if line.startswith("jstyle: error: ")]
            if code < 0 or (code == 130 and not job.output.is_file()):
                job.status = "interrupted"
                job.message = "stopped before the optimisation began: nothing was saved"
            elif code == 130:
                job.status = "interrupted"
                job.message = "stopped; the image, its sidecar and a resume file are " \
                    "saved: Resume continues the run"
            elif code == 0:
                job.status, job.message = "done", "done: the PNG and its sidecar are below"
            elif code == 1 and job.output.is_file():
                job.status = "stopped"
                job.message = "stopped early by a non-finite loss; the last finite image " \
                    "is saved"
            else:
                job.status = EXIT_STATUS.get(code, "error")
                job.message = errors[-1][len("jstyle: "):] if errors else \
                    f"error: the run ended with exit code {code}: {job.log[-1] if job.log else ''}"
            job.process = None
        self.board.bump()

    def _mirror(self, job: Job, url: str) -> None:
        """Follow a child's live page: each state it sends, and its image when it changed."""
        address = urlsplit(url)
        seen = 0
        try:
            events = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
            events.request("GET", "/api/events")
            response = events.getresponse()
            for raw in response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line.startswith("data: "):
                    continue
                state = json.loads(line[len("data: "):])
                image = None
                if state.get("image") and state["image"] != seen:
                    seen = state["image"]
                    image = self._fetch(address, "/api/image.png")
                with self._lock:
                    job.live = state
                    if image is not None:
                        job.image, job.image_version = image, job.image_version + 1
                    if job.status == "starting" and state.get("status") == "running":
                        job.status, job.message = "running", ""
                self.board.bump()
        except (OSError, http.client.HTTPException, ValueError):
            return  # the child's page closed: its exit code says how the run ended

    @staticmethod
    def _fetch(address, path: str) -> bytes | None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            return body if response.status == HTTPStatus.OK else None
        finally:
            connection.close()

    def close(self) -> None:
        """Stop serving; a running child is stopped as by Ctrl-C and saves (waited for up to
        :data:`SAVE_WAIT_S` seconds)."""
        with self._lock:
            self._closing = True
            self._queued.notify_all()
            running = [(j, j.process) for j in self._jobs.values() if j.process is not None]
        for job, process in running:
            self.stop(job.id)
            try:
                process.wait(SAVE_WAIT_S)
            except subprocess.TimeoutExpired:
                print(f"jstyle studio: run #{job.id} did not save within {SAVE_WAIT_S} s; "
                      "leaving it", file=sys.stderr)
        self.board.close()
        self.server.shutdown()
        self.server.server_close()
