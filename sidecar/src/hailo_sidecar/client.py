"""Python clients for the sidecar: HTTP (`HttpClient`) and the Unix socket (`UdsClient`).

    from hailo_sidecar.client import HttpClient, UdsClient, SharedMemoryWindows

    with UdsClient("/run/hailo-sidecar/sidecar.sock") as c:
        r = c.infer(window)                  # window: (100, 9) floats
        r.latent, r.motif_scores, r.model, r.version, r.sha256
        batch = c.infer_batch(windows)       # (N, 100, 9) -> BatchResult, batch[i] -> Result
        with SharedMemoryWindows(capacity=8) as shm:
            n = shm.write(windows)           # into the segment
            batch = c.infer_shm(shm, n)      # only (name, offset, n, seq) on the socket

    with HttpClient("http://hailo-inference:9000") as c:
        r = c.infer(window)                  # the same Result, over POST /infer (JSON)

Both return float32 numpy arrays and raise `SidecarError` (`code`, `message`) when
the sidecar refuses a request: the HTTP body's `error` code, or the IPC error code's
name (`bad_shape`, `not_finite`, `stale_sequence`, ...). Both keep one connection
(keep-alive / one socket) and reconnect on the next call after it was closed. They
are not thread-safe: use one client per thread.

Uses only the standard library, numpy and orjson (what the sidecar already needs).
"""

from __future__ import annotations

import http.client
import itertools
import os
import socket
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any, Self

import numpy as np
import orjson

from . import contract
from .config import DEFAULT_SOCKET_PATH
from .ipc import framing
from .ipc.framing import FLOAT32_LE, HEADER, HEADER_SIZE, ErrorCode, MsgType

WINDOW_SHAPE = (contract.WINDOW, contract.CHANNELS)
WINDOW_BYTES = contract.WINDOW * contract.CHANNELS * 4

__all__ = [
    "BatchResult",
    "HttpClient",
    "Result",
    "SharedMemoryWindows",
    "SidecarError",
    "UdsClient",
    "as_windows",
]


class SidecarError(Exception):
    """The sidecar refused the request (or the reply was not understood)."""

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status  # the HTTP status, or the IPC error code (int)


@dataclass(frozen=True)
class Result:
    latent: np.ndarray  # (64,) float32
    motif_scores: np.ndarray  # (NUM_MOTIFS,) float32
    model: str
    version: str
    sha256: str


@dataclass(frozen=True)
class BatchResult:
    latent: np.ndarray  # (N, 64) float32
    motif_scores: np.ndarray  # (N, NUM_MOTIFS) float32
    model: str
    version: str
    sha256: str

    def __len__(self) -> int:
        return int(self.latent.shape[0])

    def __getitem__(self, i: int) -> Result:
        return Result(self.latent[i], self.motif_scores[i], self.model, self.version, self.sha256)

    def __iter__(self) -> Iterator[Result]:
        return (self[i] for i in range(len(self)))


def as_windows(x: Any) -> np.ndarray:
    """(100, 9) or (N, 100, 9) array-like -> C-contiguous little-endian float32 (N, 100, 9).

    Only the rank is checked here; the sidecar checks the rest and says what is wrong.
    """
    arr = np.ascontiguousarray(x, dtype=FLOAT32_LE)
    if arr.ndim == 2:
        arr = arr.reshape(1, *arr.shape)
    if arr.ndim != 3:
        raise ValueError(f"expected a window (100, 9) or windows (N, 100, 9), got {arr.shape}")
    return arr


def _one(windows: np.ndarray) -> np.ndarray:
    if windows.shape[0] != 1:
        raise ValueError(f"infer() takes one window, got {windows.shape[0]}: use infer_batch()")
    return windows


# --------------------------------------------------------------------------- HTTP
class HttpClient:
    """POST /infer and /infer/batch over one keep-alive HTTP/1.1 connection."""

    def __init__(self, base_url: str = "http://127.0.0.1:9000", *, timeout: float = 5.0) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"base_url must be http://host[:port], got {base_url!r}")
        self.base_url = base_url
        self._host, self._port = url.hostname, url.port or 80
        self._prefix = url.path.rstrip("/")
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self.timeout
                )
            try:
                self._conn.request(method, self._prefix + path, body=body, headers=headers)
                response = self._conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt or not reused:  # a kept-alive connection the server dropped: retry
                    raise
                continue
            except Exception:
                self.close()
                raise
            if response.will_close:
                self.close()
            return response.status, data
        raise AssertionError("unreachable")

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        status, data = self._request(
            "POST", path, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        )
        body = _json(data, status)
        if status != 200:
            raise SidecarError(
                str(body.get("error", f"http_{status}")), str(body.get("detail", "")), status=status
            )
        return body

    def infer(self, window: Any) -> Result:
        x = _one(as_windows(window))[0]
        body = self._post("/infer", {"x": x})
        return Result(
            np.asarray(body["latent"], dtype=np.float32),
            np.asarray(body["motif_scores"], dtype=np.float32),
            body["model"],
            body["version"],
            body["sha256"],
        )

    def infer_batch(self, windows: Any) -> BatchResult:
        body = self._post("/infer/batch", {"windows": as_windows(windows)})
        results = body["results"]
        return BatchResult(
            np.asarray([r["latent"] for r in results], dtype=np.float32),
            np.asarray([r["motif_scores"] for r in results], dtype=np.float32),
            body["model"],
            body["version"],
            body["sha256"],
        )

    def health(self) -> dict[str, Any]:
        """GET /healthz (liveness): its JSON body; SidecarError if not 200."""
        status, data = self._request("GET", "/healthz")
        body = _json(data, status)
        if status != 200:
            raise SidecarError(f"http_{status}", str(body), status=status)
        return body

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """GET /readyz: (ready, body) — the body carries the reason when not ready."""
        status, data = self._request("GET", "/readyz")
        return status == 200, _json(data, status)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json(data: bytes, status: int) -> dict[str, Any]:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise SidecarError(
            "bad_reply", f"HTTP {status} with a non-JSON body", status=status
        ) from None
    if not isinstance(body, dict):
        raise SidecarError("bad_reply", f"HTTP {status} with a non-object body", status=status)
    return body


# --------------------------------------------------------------------------- shared memory
class SharedMemoryWindows:
    """A POSIX shared-memory segment this process owns, holding `capacity` windows.

    `windows` is a (capacity, 100, 9) float32 array on the segment: write into it
    directly, or with `write()`. The segment is created with `mode` (default 0640, so
    the sidecar can read it if this process runs with the sidecar's group; the
    sidecar maps it read-only and never unlinks it). `close()` unmaps and unlinks it:
    this object is its owner (multiprocessing's resource_tracker also unlinks it if
    the process exits without closing). Each reference sent needs a new sequence
    number (`next_seq()`, which UdsClient.infer_shm calls).
    """

    def __init__(self, capacity: int = 1, *, name: str | None = None, mode: int = 0o640) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._shm = shared_memory.SharedMemory(name=name, create=True, size=capacity * WINDOW_BYTES)
        try:
            os.fchmod(self._shm._fd, mode)  # type: ignore[attr-defined]  # created 0600
        except (AttributeError, OSError):
            self._shm.close()
            self._shm.unlink()
            raise
        self.capacity = capacity
        self.windows: np.ndarray = np.ndarray(
            (capacity, *WINDOW_SHAPE), dtype=FLOAT32_LE, buffer=self._shm.buf
        )
        self._seq = 0

    @property
    def name(self) -> str:
        return self._shm.name

    @staticmethod
    def offset(slot: int) -> int:
        return slot * WINDOW_BYTES

    def write(self, windows: Any, slot: int = 0) -> int:
        """Copy windows into slots slot.. ; return how many."""
        arr = as_windows(windows)
        n = arr.shape[0]
        if arr.shape[1:] != WINDOW_SHAPE or not 0 <= slot <= self.capacity - n:
            raise ValueError(
                f"{arr.shape} does not fit slots {slot}.. of a {self.capacity}-window segment"
            )
        self.windows[slot : slot + n] = arr
        return n

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def close(self) -> None:
        if getattr(self, "windows", None) is None:
            return
        self.windows = None  # type: ignore[assignment]  # release the view before unmapping
        self._shm.close()
        self._shm.unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- UDS
class UdsClient:
    """The IPC protocol (hailo_sidecar.ipc.framing) over one Unix-socket connection."""

    def __init__(
        self, socket_path: str | os.PathLike[str] = DEFAULT_SOCKET_PATH, *, timeout: float = 5.0
    ) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._head = bytearray(HEADER_SIZE)

    def connect(self) -> None:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path)
            except OSError:
                sock.close()
                raise
            self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def infer(self, window: Any) -> Result:
        return self.infer_batch(_one(as_windows(window)))[0]

    def infer_batch(self, windows: Any) -> BatchResult:
        arr = as_windows(windows)
        rid = next(self._ids)
        return self._result(rid, self._call(rid, framing.infer_frame(rid, arr)))

    def infer_shm(self, shm: SharedMemoryWindows, n: int = 1, *, slot: int = 0) -> BatchResult:
        """Infer the n windows at `slot` in `shm`; only the reference goes over the socket."""
        rid = next(self._ids)
        frame = framing.shm_frame(rid, shm.name, shm.offset(slot), shm.next_seq(), n)
        return self._result(rid, self._call(rid, [frame]))

    def info(self) -> dict[str, Any]:
        """The server's INFO: model, version, sha256, backend, ready, reason, limits."""
        rid = next(self._ids)
        mtype, _, payload = self._call(rid, [framing.info_frame(rid)])
        if mtype != MsgType.INFO_RESULT:
            raise SidecarError("bad_reply", f"expected INFO_RESULT, got type {mtype:#04x}")
        info: dict[str, Any] = orjson.loads(payload)
        return info

    # ------------------------------------------------------------------ wire
    def _call(
        self, rid: int, buffers: list[bytes | memoryview]
    ) -> tuple[int, tuple[int, ...], bytearray]:
        for attempt in (0, 1):
            reused = self._sock is not None
            self.connect()
            sock = self._sock
            assert sock is not None
            try:
                _send_all(sock, buffers)
            except (BrokenPipeError, ConnectionResetError):
                # The server closed this connection: after a protocol error (its ERROR
                # frame is still readable: raise that), or while idle (retry once).
                try:
                    reply = self._read(sock)
                except (OSError, SidecarError):
                    reply = None
                self.close()
                if reply is not None and reply[0] == MsgType.ERROR:
                    raise _error(reply[4]) from None
                if attempt or not reused:
                    raise
                continue
            try:
                mtype, flags, got, shape, payload = self._read(sock)
            except BaseException:
                self.close()  # the stream position is unknown now
                raise
            if mtype == MsgType.ERROR:
                if flags & framing.FLAG_CLOSE:
                    self.close()
                raise _error(payload)
            if got != rid:
                self.close()
                raise SidecarError("bad_reply", f"reply to request {got}, expected {rid}")
            return mtype, shape, payload
        raise AssertionError("unreachable")

    def _read(self, sock: socket.socket) -> tuple[int, int, int, tuple[int, ...], bytearray]:
        head = self._head
        _recv_into(sock, memoryview(head))
        magic, version, mtype, flags, got, n, rows, cols, plen, _ = HEADER.unpack(head)
        if magic != framing.MAGIC or version != framing.VERSION:
            raise SidecarError("bad_reply", f"reply is not a version-1 frame: {bytes(head)!r}")
        payload = bytearray(plen)
        _recv_into(sock, memoryview(payload))
        return mtype, flags, got, (n, rows, cols), payload

    def _result(self, rid: int, reply: tuple[int, tuple[int, ...], bytearray]) -> BatchResult:
        mtype, (n, rows, cols), payload = reply
        if mtype != MsgType.RESULT:
            raise SidecarError("bad_reply", f"expected RESULT, got type {mtype:#04x}")
        lat_end = n * rows * 4
        mot_end = lat_end + n * cols * 4
        if len(payload) < mot_end:
            raise SidecarError("bad_reply", "RESULT payload is shorter than its shape")
        latent = np.frombuffer(payload, dtype=FLOAT32_LE, count=n * rows).reshape(n, rows)
        motifs = np.frombuffer(payload, dtype=FLOAT32_LE, count=n * cols, offset=lat_end)
        model, version, sha256 = framing.parse_identity(memoryview(payload)[mot_end:])
        return BatchResult(latent, motifs.reshape(n, cols), model, version, sha256)


def _error(payload: bytearray) -> SidecarError:
    code, message = framing.parse_error(payload)
    try:
        slug = ErrorCode(code).slug
    except ValueError:
        slug = f"error_{code}"
    return SidecarError(slug, message, status=code)


def _send_all(sock: socket.socket, buffers: list[bytes | memoryview]) -> None:
    total = sum(memoryview(b).nbytes for b in buffers)
    sent = sock.sendmsg(buffers)
    if sent == total:
        return
    rest = memoryview(b"".join(bytes(b) for b in buffers))[sent:]
    sock.sendall(rest)


def _recv_into(sock: socket.socket, view: memoryview) -> None:
    got = 0
    size = view.nbytes
    while got < size:
        k = sock.recv_into(view[got:], size - got)
        if k == 0:
            raise ConnectionError(
                f"the sidecar closed the connection ({got} of {size} bytes of a reply received)"
            )
        got += k
