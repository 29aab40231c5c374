"""The app under the real uvicorn server (http_server.build_server) in a thread, on loopback.

For what the TestClient cannot show: connection limits, timeouts, disconnects, and
concurrent requests from raw sockets.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from hailo_sidecar.app import create_app
from hailo_sidecar.config import Config
from hailo_sidecar.http_server import SidecarServer, build_server

from .conftest import free_port


@dataclass
class Live:
    server: SidecarServer
    port: int
    app: Any

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def metrics(self) -> str:
        return get(self.port, "/metrics")[2].decode()


@contextmanager
def live_server(config: Config, **kwargs: Any) -> Iterator[Live]:
    port = free_port()
    cfg = dataclasses.replace(config, host="127.0.0.1", port=port)
    app = create_app(cfg, **kwargs)
    server = build_server(app, cfg, log_level="warning")
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield Live(server, port, app)
    finally:
        server.should_exit = True
        thread.join(20)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body: (status, headers, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed before a whole response head: {buf!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed in the middle of a response body")
        body += chunk
    return status, headers, body


def closed(sock: socket.socket) -> bool:
    """True if the server closed the connection (EOF or reset) with nothing more to read."""
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def request_bytes(
    method: str, path: str, body: bytes = b"", ctype: str = "application/json"
) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: sidecar\r\n"
    if method == "POST":
        head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request_bytes("GET", path))
        return read_response(s)


def post_json(
    port: int, path: str, payload: Any, timeout: float = 10
) -> tuple[int, dict[str, str], Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request_bytes("POST", path, orjson.dumps(payload)))
        status, headers, body = read_response(s)
        return status, headers, orjson.loads(body) if body else None
