"""Test helpers for the IPC socket: a raw frame-level connection and an in-process server."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from fastapi.testclient import TestClient
from hailo_sidecar.config import Config
from hailo_sidecar.ipc import framing
from hailo_sidecar.ipc.framing import HEADER, HEADER_SIZE, MsgType

from .conftest import client_for, free_port


class Reply(NamedTuple):
    type: int
    flags: int
    request_id: int
    n: int
    rows: int
    cols: int
    payload: bytes

    @property
    def error(self) -> tuple[int, str]:
        assert self.type == MsgType.ERROR, f"expected an ERROR frame, got {self.type:#x}"
        return framing.parse_error(self.payload)

    @property
    def closes(self) -> bool:
        return bool(self.flags & framing.FLAG_CLOSE)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, tuple[str, str, str]]:
        assert self.type == MsgType.RESULT, f"expected RESULT, got {self.type:#x} {self.payload!r}"
        lat_end = self.n * self.rows * 4
        mot_end = lat_end + self.n * self.cols * 4
        latent = np.frombuffer(self.payload[:lat_end], "<f4").reshape(self.n, self.rows)
        motifs = np.frombuffer(self.payload[lat_end:mot_end], "<f4").reshape(self.n, self.cols)
        return latent, motifs, framing.parse_identity(self.payload[mot_end:])


class RawConn:
    """One client connection that sends arbitrary bytes and reads whole frames."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))

    def send(self, data: bytes | list[Any]) -> None:
        if isinstance(data, list):
            data = b"".join(bytes(b) for b in data)
        self.sock.sendall(data)

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv(self) -> Reply:
        head = self._exact(HEADER_SIZE)
        magic, version, mtype, flags, rid, n, rows, cols, plen, reserved = HEADER.unpack(head)
        assert (magic, version, reserved) == (framing.MAGIC, 1, 0)
        return Reply(mtype, flags, rid, n, rows, cols, self._exact(plen))

    def is_closed(self) -> bool:
        """True if the server closed the connection (EOF) with nothing more to read."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def infer(self, rid: int, windows: np.ndarray) -> Reply:
        self.send(framing.infer_frame(rid, np.ascontiguousarray(windows, dtype="<f4")))
        return self.recv()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def serve(config: Config, sock_path: Path, **kwargs: Any) -> Iterator[TestClient]:
    """The app (HTTP via TestClient, IPC on `sock_path`) with its lifespan running."""
    cfg = dataclasses.replace(config, socket_path=sock_path)
    with client_for(cfg, **kwargs) as client:
        yield client


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class SidecarProcess:
    """`python -m hailo_sidecar` with HTTP on a free port and IPC on `sock`."""

    def __init__(
        self, env: dict[str, str], sock: Path, log: Path, argv: list[str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sock = sock
        self.log = log
        full = {
            **os.environ, "HOST": "127.0.0.1", "PORT": str(self.port),
            "SOCKET_PATH": str(sock), **env,
        }  # fmt: skip
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "hailo_sidecar"],
            env=full, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> None:
        from hailo_sidecar.client import HttpClient

        deadline = time.monotonic() + timeout
        with HttpClient(self.url, timeout=2) as http:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    if http.ready()[0] and self.sock.exists():
                        return
                except OSError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"not ready in {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
