"""What the live page of a run and the studio share: a threaded HTTP server bound to a
local address, the package's static files, JSON answers and a stream of server-sent events
that sends a snapshot of a changing state each time it changes.

The standard library suffices: :class:`http.server.ThreadingHTTPServer` answers each
request in its own thread, and an event stream is one long response that the handler's
thread writes to as the state changes (HTTP/1.0: the stream ends when the connection
closes, and the browser's ``EventSource`` reconnects on its own).
"""

from __future__ import annotations

import errno
import json
import math
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jstyle.errors import JStyleError

__all__ = ["STATIC", "Board", "Handler", "serve", "finite", "url_of"]

#: The pages' files, shipped in the package (``pyproject.toml``'s package-data).
STATIC = Path(__file__).with_name("static")

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}

#: Seconds between two keep-alive comments of an idle event stream.
KEEPALIVE_S = 10.0


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


class Board:
    """A version number that threads wait on: each change of the state it stands for
    bumps it, and every event stream then sends a fresh snapshot; closed when the state
    will not change again."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.version = 0
        self.closed = False

    def bump(self) -> None:
        """The state changed: wake every stream."""
        with self._changed:
            self.version += 1
            self._changed.notify_all()

    def close(self) -> None:
        """No more changes: every stream sends its last snapshot and ends."""
        with self._changed:
            self.closed = True
            self.version += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """The version once it differs from ``seen`` (or after ``timeout`` seconds)."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen, timeout)
            return self.version


class Handler(BaseHTTPRequestHandler):
    """A request handler with the pages' answers: static files, JSON, bytes, events."""

    server_version = "jstyle"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Quiet: the terminal shows the run, not every request."""

    def send_bytes(self, body: bytes, content_type: str, status: int = HTTPStatus.OK,
                   headers: dict[str, str] | None = None) -> None:
        """One whole response, never cached (every answer describes the state now)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, value: Any, status: int = HTTPStatus.OK) -> None:
        """``value`` as JSON (non-finite numbers as null)."""
        body = json.dumps(finite(value), allow_nan=False).encode()
        self.send_bytes(body, "application/json", status)

    def send_error_json(self, status: int, message: str) -> None:
        """An error the page shows: ``{"error": message}``."""
        self.send_json({"error": message}, status)

    def send_static(self, name: str) -> None:
        """A file of :data:`STATIC` by its bare name (nothing outside it is served)."""
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            self.send_error_json(HTTPStatus.NOT_FOUND, f"no such page: {self.path}")
            return
        self.send_bytes(path.read_bytes(), _TYPES.get(path.suffix, "application/octet-stream"))

    def stream(self, board: Board, snapshot: Callable[[], Any]) -> None:
        """Server-sent events: ``snapshot()`` as JSON now and after every change of
        ``board``, a comment when idle, until the board closes or the page goes away."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        seen = -1
        try:
            while True:
                version = board.wait(seen, KEEPALIVE_S)
                if version == seen:
                    self.wfile.write(b": idle\n\n")
                else:
                    seen = version
                    data = json.dumps(finite(snapshot()), allow_nan=False)
                    self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()
                if board.closed and version == board.version:
                    return
        except ConnectionError:  # the page was closed (a broken pipe, a reset)
            return

    def read_body(self, limit: int) -> bytes | None:
        """The request's body, or None (after answering 413) when it is longer than
        ``limit`` bytes."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            self.close_connection = True
            self.send_error_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                 f"the upload is {length / 2**20:.1f} MB, more than the "
                                 f"{limit / 2**20:.0f} MB allowed; shrink the image first")
            return None
        return self.rfile.read(length)


def url_of(server: ThreadingHTTPServer) -> str:
    """The address a browser opens (an IPv6 host in brackets)."""
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(handler: type[Handler], host: str, port: int, fix: str, name: str
          ) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Bind ``host:port`` (0: a free port) and answer requests in a background thread;
    :class:`JStyleError` naming ``fix`` when the port is taken or the address unusable."""
    server_type = ThreadingHTTPServer
    if ":" in host:  # an IPv6 address
        import socket

        server_type = type("IPv6Server", (ThreadingHTTPServer,),
                           {"address_family": socket.AF_INET6})
    try:
        server = server_type((host, port), handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise JStyleError(f"port {port} on {host} is in use; {fix}") from None
        raise JStyleError(f"cannot serve on {host}:{port}: {e.strerror or e}; {fix}") from None
    server.daemon_threads = True  # an open event stream never holds the process
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    return server, thread
