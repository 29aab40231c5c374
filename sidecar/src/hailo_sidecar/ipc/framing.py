"""The IPC wire format: a fixed 32-byte header, then `payload_len` bytes. Little-endian.

    offset size field
    0      4    magic        b"HSCP"
    4      1    version      1
    5      1    type         MsgType
    6      2    flags        u16; requests: 0; ERROR: bit 0 = the server closes after it
    8      8    request_id   u64, chosen by the client, echoed in the reply
    16     4    n            u32: windows in the request / results in the reply
    20     2    rows         u16: 100 in requests; 64 (latent) in RESULT
    22     2    cols         u16: 9 in requests; NUM_MOTIFS in RESULT
    24     4    payload_len  u32: bytes after the header
    28     4    reserved     u32, 0

Payloads by type:

    INFER       (0x01)  n*100*9 float32: the windows, C order
    INFER_SHM   (0x02)  offset u64, seq u64, then the segment name (ASCII, 1-200 bytes);
                        the windows are n*100*9 float32 at `offset` in that segment
    INFO        (0x03)  empty
    RESULT      (0x81)  n*64 float32 latent, n*cols float32 motif_scores, then the
                        model identity: 3 x (u16 length + UTF-8): model, version, sha256
    INFO_RESULT (0x83)  UTF-8 JSON (model, version, sha256, backend, ready, reason, limits)
    ERROR       (0xFF)  code u16, reserved u16, UTF-8 message

This module holds the constants, the encoders both sides use, and `Decoder`, the
incremental parser the server feeds with whatever the socket delivers. The decoder
only raises `ProtocolError` for what breaks the framing itself (the next frame's
start is lost: bad magic, another version, a length over the limit); everything
else about a frame (its type, shape, values) is for the server to answer with an
ERROR frame while the connection stays usable.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final, NamedTuple

import numpy as np

MAGIC: Final = b"HSCP"
VERSION: Final = 1
HEADER: Final = struct.Struct("<4sBBHQIHHII")
HEADER_SIZE: Final = HEADER.size  # 32
SHM_REF: Final = struct.Struct("<QQ")  # offset, seq
MAX_NAME_BYTES: Final = 200
FLOAT32_LE: Final = np.dtype("<f4")
FLAG_CLOSE: Final = 0x0001


class MsgType(IntEnum):
    INFER = 0x01
    INFER_SHM = 0x02
    INFO = 0x03
    RESULT = 0x81
    INFO_RESULT = 0x83
    ERROR = 0xFF


class ErrorCode(IntEnum):
    """ERROR frame codes. The first four end the connection (FLAG_CLOSE set)."""

    BAD_MAGIC = 1
    BAD_VERSION = 2
    FRAME_TOO_LARGE = 3
    TRUNCATED = 4
    BAD_HEADER = 5
    BAD_TYPE = 6
    BAD_SHAPE = 7
    BAD_BATCH_SIZE = 8
    NOT_FINITE = 9
    SHM_UNAVAILABLE = 10
    SHM_BOUNDS = 11
    SHM_ALIGNMENT = 12
    STALE_SEQUENCE = 13
    NOT_READY = 14
    INFERENCE_FAILED = 15
    TOO_MANY_CONNECTIONS = 16
    INTERNAL = 17
    OVERLOADED = 18
    DEADLINE_EXCEEDED = 19

    @property
    def slug(self) -> str:
        return self.name.lower()


class Frame(NamedTuple):
    type: int
    flags: int
    request_id: int
    n: int
    rows: int
    cols: int
    reserved: int
    payload: memoryview


class ProtocolError(Exception):
    """The byte stream cannot be framed any further: answer, then close the connection."""

    def __init__(self, code: ErrorCode, message: str, request_id: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


# --------------------------------------------------------------------------- encoding
def header(
    msg_type: int,
    request_id: int,
    n: int = 0,
    rows: int = 0,
    cols: int = 0,
    payload_len: int = 0,
    flags: int = 0,
) -> bytes:
    return HEADER.pack(MAGIC, VERSION, msg_type, flags, request_id, n, rows, cols, payload_len, 0)


def infer_frame(request_id: int, windows: np.ndarray) -> list[bytes | memoryview]:
    """An INFER request for a C-contiguous float32 (n, rows, cols) array, as buffers to send."""
    n, rows, cols = windows.shape
    body = memoryview(windows).cast("B")
    return [header(MsgType.INFER, request_id, n, rows, cols, body.nbytes), body]


def shm_frame(
    request_id: int, name: str, offset: int, seq: int, n: int, rows: int = 100, cols: int = 9
) -> bytes:
    raw = name.encode("ascii")
    payload = SHM_REF.pack(offset, seq) + raw
    return header(MsgType.INFER_SHM, request_id, n, rows, cols, len(payload)) + payload


def info_frame(request_id: int) -> bytes:
    return header(MsgType.INFO, request_id)


def identity(model: str, version: str, sha256: str) -> bytes:
    """The model identity that ends every RESULT payload."""
    out = bytearray()
    for text in (model, version, sha256):
        raw = text.encode("utf-8")[:0xFFFF]
        out += struct.pack("<H", len(raw)) + raw
    return bytes(out)


def parse_identity(buf: bytes | memoryview) -> tuple[str, str, str]:
    """(model, version, sha256) from the end of a RESULT payload; ValueError if malformed."""
    fields: list[str] = []
    pos = 0
    for _ in range(3):
        if pos + 2 > len(buf):
            raise ValueError("RESULT identity is truncated")
        (size,) = struct.unpack_from("<H", buf, pos)
        pos += 2
        if pos + size > len(buf):
            raise ValueError("RESULT identity is truncated")
        fields.append(bytes(buf[pos : pos + size]).decode("utf-8"))
        pos += size
    if pos != len(buf):
        raise ValueError(f"RESULT identity has {len(buf) - pos} trailing bytes")
    return fields[0], fields[1], fields[2]


def result_frame(request_id: int, latent: np.ndarray, motifs: np.ndarray, ident: bytes) -> bytes:
    """A RESULT reply: one buffer (one send). `latent` (n, 64), `motifs` (n, m) float32."""
    n, rows = latent.shape
    cols = motifs.shape[1]
    lat = latent.astype(FLOAT32_LE, copy=False).tobytes()
    mot = motifs.astype(FLOAT32_LE, copy=False).tobytes()
    size = len(lat) + len(mot) + len(ident)
    return b"".join((header(MsgType.RESULT, request_id, n, rows, cols, size), lat, mot, ident))


def error_frame(request_id: int, code: ErrorCode, message: str, close: bool = False) -> bytes:
    raw = message.encode("utf-8")[:4096]
    payload = struct.pack("<HH", int(code), 0) + raw
    return (
        header(
            MsgType.ERROR, request_id, payload_len=len(payload), flags=FLAG_CLOSE if close else 0
        )
        + payload
    )


def parse_error(payload: bytes | memoryview) -> tuple[int, str]:
    if len(payload) < 4:
        raise ValueError("ERROR payload is shorter than 4 bytes")
    (code,) = struct.unpack_from("<H", payload, 0)
    return code, bytes(payload[4:]).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- decoding
class Decoder:
    """Incremental frame parser: `feed()` bytes as they arrive, then `next()` until None.

    A returned frame's payload is a memoryview into a buffer the decoder never
    changes again, so it (and numpy views on it) stays valid after later feeds.
    The common case, one whole frame per read, costs no copy at all.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf: bytes | bytearray = b""
        self._pos = 0

    @property
    def pending(self) -> int:
        """Bytes received and not yet returned as frames."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if not data:
            return
        buf, pos = self._buf, self._pos
        if pos == len(buf):  # nothing pending: take the chunk as is (no copy)
            self._buf, self._pos = data, 0
        elif pos or type(buf) is bytes:  # frames were handed out from it: never mutate it
            grown = bytearray(memoryview(buf)[pos:])
            grown += data
            self._buf, self._pos = grown, 0
        else:  # a bytearray holding only a partial frame: nothing points into it
            assert isinstance(buf, bytearray)
            buf += data

    def next(self) -> Frame | None:
        """The next complete frame, None if more bytes are needed; ProtocolError if unframeable."""
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail <= 0:
            return None
        if avail < HEADER_SIZE:
            # Fail fast on garbage: the magic is checkable before the header is complete.
            have = bytes(buf[pos : pos + min(avail, 4)])
            if not MAGIC.startswith(have):
                raise ProtocolError(ErrorCode.BAD_MAGIC, _bad_magic(have))
            return None
        magic, version, mtype, flags, rid, n, rows, cols, plen, reserved = HEADER.unpack_from(
            buf, pos
        )
        if magic != MAGIC:
            raise ProtocolError(ErrorCode.BAD_MAGIC, _bad_magic(magic))
        if version != VERSION:
            raise ProtocolError(
                ErrorCode.BAD_VERSION,
                f"protocol version {version} is not supported: this server speaks version "
                f"{VERSION}",
                rid,
            )
        if HEADER_SIZE + plen > self.max_frame_bytes:
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"frame of {HEADER_SIZE + plen} bytes is over the limit of "
                f"{self.max_frame_bytes} (IPC_MAX_FRAME_BYTES)",
                rid,
            )
        end = pos + HEADER_SIZE + plen
        if len(buf) < end:
            return None
        payload = memoryview(buf)[pos + HEADER_SIZE : end]
        if end == len(buf):
            self._buf, self._pos = b"", 0
        else:
            self._pos = end
        return Frame(mtype, flags, rid, n, rows, cols, reserved, payload)

    def partial_header(self) -> tuple[int, int] | None:
        """(request_id, bytes still missing) of an incomplete frame, for a TRUNCATED error."""
        avail = self.pending
        if avail == 0:
            return None
        if avail < HEADER_SIZE:
            return 0, HEADER_SIZE - avail
        fields = HEADER.unpack_from(self._buf, self._pos)
        return int(fields[4]), HEADER_SIZE + int(fields[8]) - avail


def _bad_magic(got: bytes) -> str:
    return (
        f"bad magic {got!r}: frames start with {MAGIC!r} (is this an HTTP client on the IPC "
        "socket?)"
        if got[:1].isalpha()
        else f"bad magic {got!r}: frames start with {MAGIC!r}"
    )
