"""The Unix-socket IPC server: binary frames (framing.py) in, the same Service as HTTP.

It runs on the HTTP server's event loop, started and stopped in the app's lifespan,
and calls the same `Service.infer` on the same loaded backend, so nothing is loaded
twice and the metrics and readiness are shared.

Per connection (`_Connection`, an asyncio.Protocol): bytes go into a `Decoder`;
each complete frame is answered in order, one reply per request, with the request
id echoed. Inference goes through `Service.run_now` (inline, the fast path) or
`Service.run` (the shared admission queue, deadline and backend thread, as HTTP);
while a queued request is pending the connection waits for its reply before reading
the next frame. A connection that closes cancels its pending request (it leaves the
queue; a call already running finishes and its reply is dropped).

Stop (`stop(timeout)`): stop accepting, stop reading, send the replies of requests
already taken (bounded by `timeout`), then close.

Errors: anything wrong with one request (type, shape, values, a shared-memory
reference, not ready, a failed inference) gets an ERROR frame and the connection
stays open. What breaks the framing (bad magic, another version, a frame over
IPC_MAX_FRAME_BYTES, a connection that ends mid-frame) gets an ERROR frame with
FLAG_CLOSE and the connection is closed. Nothing a client sends raises out of the
protocol; every connection is closed and forgotten when its transport goes.

Back-pressure: while a reply is pending or the socket's write buffer is full, no
more frames are processed; reading pauses once a frame's worth is buffered.
"""

from __future__ import annotations

import asyncio
import logging
import math
import select
import struct
import warnings
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import orjson

from .. import contract
from ..admission import RefusedError
from ..backends import BackendError
from ..config import Config
from ..contract import ContractError
from ..metrics import Metrics
from ..service import NotReadyError, Service
from . import framing
from .framing import FLOAT32_LE, Decoder, ErrorCode, Frame, MsgType, ProtocolError
from .listen import IpcSetupError, listen, unlink_if_ours
from .shm import SegmentReader, ShmError

log = logging.getLogger(__name__)
# The finiteness check's dot product meets inf * 0 on purpose (-> NaN, then the exact check).
warnings.filterwarnings(
    "ignore", "invalid value encountered in dot", RuntimeWarning, module=r"hailo_sidecar\.ipc"
)

__all__ = ["IpcServer", "IpcSetupError"]

# Plain ints on the hot path (IntEnum attribute lookups cost more than the comparison).
_INFER: Final = int(MsgType.INFER)
_INFER_SHM: Final = int(MsgType.INFER_SHM)
_INFO: Final = int(MsgType.INFO)
KINDS: Final = {_INFER: "infer", _INFER_SHM: "infer_shm", _INFO: "info"}
_CONTRACT_CODES: Final = {
    "bad_shape": ErrorCode.BAD_SHAPE,
    "bad_type": ErrorCode.BAD_SHAPE,
    "not_finite": ErrorCode.NOT_FINITE,
}
_REFUSED_CODES: Final = {
    "overloaded": ErrorCode.OVERLOADED,
    "deadline_exceeded": ErrorCode.DEADLINE_EXCEEDED,
    "client_gone": ErrorCode.INTERNAL,  # never sent: the client is gone
}


class RequestError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class IpcServer:
    def __init__(self, service: Service, config: Config, metrics: Metrics) -> None:
        if config.socket_path is None:
            raise ValueError("IpcServer needs config.socket_path")
        self.path: Path = config.socket_path
        self.service = service
        self.metrics = metrics
        self.max_frame_bytes = config.ipc_max_frame_bytes
        self.max_batch = config.max_batch
        self.max_connections = config.ipc_max_connections
        self.connections: set[_Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._ident: tuple[int, int] | None = None
        self._fields: dict[str, str] | None = None
        self._identity = b""
        self.zeros = np.zeros(self.max_batch * contract.WINDOW * contract.CHANNELS, FLOAT32_LE)

    async def start(self) -> str:
        """Listen on the socket; return a note for the log. IpcSetupError says what to fix."""
        sock, self._ident, note = listen(self.path)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_unix_server(lambda: _Connection(self), sock=sock)
        except Exception:
            sock.close()
            unlink_if_ours(self.path, self._ident)
            raise
        return note

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting and reading; send the replies of requests already taken (at most
        `timeout` s), then close every connection and unlink the socket."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self.connections):
            conn.stop_reading()
        pending = [c.task for c in self.connections if c.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        for conn in list(self.connections):
            conn.close()
        if server is not None:
            await server.wait_closed()
        if self._ident is not None:
            unlink_if_ours(self.path, self._ident)
            self._ident = None

    # ------------------------------------------------------------------ shared helpers
    def identity(self) -> bytes:
        """The RESULT trailer for the model being served, encoded once per model."""
        fields = self.service.model_fields
        if fields is not self._fields:
            self._identity = framing.identity(fields["model"], fields["version"], fields["sha256"])
            self._fields = fields
        return self._identity

    def info(self) -> bytes:
        service, info = self.service, self.service.info
        return orjson.dumps(
            {
                "protocol": framing.VERSION,
                "ready": service.ready,
                "reason": service.reason,
                "model": info.model,
                "version": info.version,
                "sha256": info.sha256,
                "backend": info.backend,
                "num_motifs": service.config.num_motifs,
                "window": [contract.WINDOW, contract.CHANNELS],
                "max_batch": self.max_batch,
                "max_frame_bytes": self.max_frame_bytes,
            }
        )


class _Connection(asyncio.Protocol):
    def __init__(self, server: IpcServer) -> None:
        self.server = server
        self.service = server.service
        self.metrics = server.metrics
        self.decoder = Decoder(server.max_frame_bytes)
        self.segments = SegmentReader()
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.busy = False  # a reply is being computed off the loop
        self.task: asyncio.Task[Any] | None = None  # that reply's Service.run
        self.stopping = False  # the server is stopping: no new frames
        self.write_paused = False
        self.read_paused = False
        self.eof = False

    # ------------------------------------------------------------------ transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        server = self.server
        server.connections.add(self)
        self.metrics.ipc_connections.set(len(server.connections))
        if len(server.connections) > server.max_connections:
            self._fatal(
                0,
                ErrorCode.TOO_MANY_CONNECTIONS,
                f"too many IPC connections (IPC_MAX_CONNECTIONS={server.max_connections})",
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.task is not None:
            self.task.cancel()  # out of the queue; a running call's reply is dropped
        self.segments.close()
        server = self.server
        server.connections.discard(self)
        self.metrics.ipc_connections.set(len(server.connections))
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.decoder.feed(data)
        if self.busy or self.write_paused:
            self._maybe_pause_reading()
            return
        self._process()

    def eof_received(self) -> bool:
        self.eof = True
        if self.busy and _peer_closed(self.transport):
            # Closed, not half-closed: nobody will read the reply. Leave the queue now.
            self.close()
            return True
        if not (self.busy or self.write_paused):
            self._process()
        return True  # half-open: we close once the replies are out

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._process()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def stop_reading(self) -> None:
        """The server stops: take no new frame; a pending reply is still sent."""
        self.stopping = True
        if self.transport is not None and not self.read_paused:
            self.transport.pause_reading()
            self.read_paused = True

    # ------------------------------------------------------------------ frames
    def _maybe_pause_reading(self) -> None:
        if not self.read_paused and self.decoder.pending >= self.server.max_frame_bytes:
            assert self.transport is not None
            self.transport.pause_reading()
            self.read_paused = True

    def _process(self) -> None:
        try:
            while not (self.busy or self.write_paused or self.closing or self.stopping):
                try:
                    frame = self.decoder.next()
                except ProtocolError as exc:
                    self._fatal(exc.request_id, exc.code, exc.message)
                    return
                if frame is None:
                    if self.eof:
                        self._end_of_input()
                    elif self.read_paused and self.transport is not None:
                        self.read_paused = False
                        self.transport.resume_reading()
                    return
                self._handle(frame)
        except Exception:  # a bug: never let it escape into the event loop
            log.exception("IPC connection failed")
            self._fatal(0, ErrorCode.INTERNAL, "internal error in the IPC server (logged)")

    def _end_of_input(self) -> None:
        partial = self.decoder.partial_header()
        if partial is not None:
            rid, missing = partial
            self._fatal(
                rid,
                ErrorCode.TRUNCATED,
                f"connection ended in the middle of a frame ({missing} bytes missing)",
            )
        else:
            self.close()

    def _handle(self, frame: Frame) -> None:
        kind = KINDS.get(frame.type, "invalid")
        rid = frame.request_id
        windows: np.ndarray | None = None
        try:
            if frame.flags or frame.reserved:
                raise RequestError(
                    ErrorCode.BAD_HEADER,
                    f"flags ({frame.flags:#06x}) and reserved ({frame.reserved:#010x}) must be "
                    "0 in requests",
                )
            mtype = frame.type
            if mtype == _INFER:
                windows = self._inline(frame)
            elif mtype == _INFER_SHM:
                windows = self._shared(frame)
            elif mtype == _INFO:
                self._write(_reply(MsgType.INFO_RESULT, rid, self.server.info()), kind, "ok")
                return
            else:
                raise RequestError(
                    ErrorCode.BAD_TYPE,
                    f"message type {frame.type:#04x} is not a request "
                    "(INFER 0x01, INFER_SHM 0x02, INFO 0x03)",
                )
            # Finite? One dot product with zeros is NaN iff any value is NaN or +-inf (no
            # temporary array); only then does check_windows find and name the value.
            flat = windows.reshape(-1)
            if math.isnan(flat.dot(self.server.zeros[: flat.size])):
                contract.check_windows(windows)
            result = self.service.run_now(windows)
            if result is None:
                self._queue(rid, kind, windows)
                return
            latent, motifs = result
            windows = None  # drop the view on the socket buffer / shared memory
            self._write(
                framing.result_frame(rid, latent, motifs, self.server.identity()), kind, "ok"
            )
        except RequestError as exc:
            self._error(rid, exc.code, exc.message, kind)
        except ShmError as exc:
            self._error(rid, exc.code, exc.message, kind)
        except ContractError as exc:
            self._error(rid, _CONTRACT_CODES.get(exc.code, ErrorCode.BAD_SHAPE), exc.message,
                        kind)  # fmt: skip
        except Exception as exc:
            self._inference_error(rid, kind, exc)

    def _check_shape(self, frame: Frame) -> None:
        if not 1 <= frame.n <= self.server.max_batch:
            raise RequestError(
                ErrorCode.BAD_BATCH_SIZE,
                f"n is {frame.n} windows, expected 1 to {self.server.max_batch} (MAX_BATCH)",
            )
        if (frame.rows, frame.cols) != (contract.WINDOW, contract.CHANNELS):
            raise RequestError(
                ErrorCode.BAD_SHAPE,
                f"windows of {frame.rows} x {frame.cols}, expected "
                f"{contract.WINDOW} x {contract.CHANNELS}",
            )

    def _inline(self, frame: Frame) -> np.ndarray:
        self._check_shape(frame)
        n = frame.n
        expected = n * contract.WINDOW * contract.CHANNELS * 4
        if len(frame.payload) != expected:
            raise RequestError(
                ErrorCode.BAD_SHAPE,
                f"payload is {len(frame.payload)} bytes; {n} window(s) of {contract.WINDOW} x "
                f"{contract.CHANNELS} float32 are {expected}",
            )
        return np.frombuffer(frame.payload, dtype=FLOAT32_LE).reshape(
            n, contract.WINDOW, contract.CHANNELS
        )

    def _shared(self, frame: Frame) -> np.ndarray:
        self._check_shape(frame)
        payload = frame.payload
        if len(payload) <= framing.SHM_REF.size:
            raise RequestError(
                ErrorCode.BAD_SHAPE,
                f"INFER_SHM payload is {len(payload)} bytes: expected offset u64, seq u64 "
                "and a segment name",
            )
        offset, seq = framing.SHM_REF.unpack_from(payload)
        try:
            name = bytes(payload[framing.SHM_REF.size :]).decode("ascii")
        except UnicodeDecodeError:
            raise RequestError(ErrorCode.SHM_UNAVAILABLE, "segment name is not ASCII") from None
        return self.segments.windows(name, offset, frame.n, seq)

    def _inference_error(self, rid: int, kind: str, exc: BaseException) -> None:
        if isinstance(exc, NotReadyError):
            self._error(rid, ErrorCode.NOT_READY, f"the sidecar is not ready: {exc}", kind)
        elif isinstance(exc, RefusedError):
            self._error(rid, _REFUSED_CODES.get(exc.code, ErrorCode.INTERNAL), exc.message, kind)
        elif isinstance(exc, BackendError):
            log.error("inference failed: %s", exc)
            self._error(rid, ErrorCode.INFERENCE_FAILED, str(exc), kind)
        else:  # a bug or an unexpected library error: this request only
            log.error("IPC request failed", exc_info=exc)
            self._error(rid, ErrorCode.INTERNAL, "internal error (logged)", kind)

    def _queue(self, rid: int, kind: str, windows: np.ndarray) -> None:
        """Through the shared queue (Service.run); frames wait until the reply is out."""
        self.busy = True

        async def gone() -> bool:
            return self.closing or (self.eof and _peer_closed(self.transport))

        task = asyncio.ensure_future(self.service.run(windows, gone))
        self.task = task

        def done(fut: asyncio.Future[Any]) -> None:
            self.busy = False
            self.task = None
            if fut.cancelled():
                return
            exc = fut.exception()
            if self.closing:
                return
            if exc is not None:
                self._inference_error(rid, kind, exc)
            else:
                latent, motifs = fut.result()
                self._write(
                    framing.result_frame(rid, latent, motifs, self.server.identity()),
                    kind, "ok",
                )  # fmt: skip
            self._process()

        task.add_done_callback(done)

    # ------------------------------------------------------------------ replies
    def _write(self, data: bytes, kind: str, result: str) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
        self.metrics.count_ipc(kind, result)

    def _error(self, rid: int, code: ErrorCode, message: str, kind: str) -> None:
        self._write(framing.error_frame(rid, code, message), kind, code.slug)

    def _fatal(self, rid: int, code: ErrorCode, message: str) -> None:
        """A protocol error: say why, then close (the next frame's start is unknown)."""
        log.info("closing an IPC connection: %s", message)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(framing.error_frame(rid, code, message, close=True))
        self.metrics.count_ipc("invalid", code.slug)
        self.close()


def _peer_closed(transport: asyncio.Transport | None) -> bool:
    """True if the client closed its socket, not just its write side (a half-close still
    wants its replies). AF_UNIX reports POLLHUP only once both directions are shut."""
    if transport is None:
        return True
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return any(events & select.POLLHUP for _, events in poller.poll(0))


def _reply(msg_type: MsgType, rid: int, payload: bytes) -> bytes:
    return framing.header(msg_type, rid, payload_len=len(payload)) + payload


# The header must stay 32 bytes: the float payload that follows it stays 4-byte aligned.
assert struct.calcsize(framing.HEADER.format) == framing.HEADER_SIZE == 32
