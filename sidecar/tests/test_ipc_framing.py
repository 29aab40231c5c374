"""The IPC wire format: encoders, the incremental decoder, and what it refuses."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from hailo_sidecar.ipc import framing
from hailo_sidecar.ipc.framing import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    Decoder,
    ErrorCode,
    Frame,
    MsgType,
    ProtocolError,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import make_window

LIMIT = 1 << 20


def join(buffers: list[bytes | memoryview]) -> bytes:
    return b"".join(bytes(b) for b in buffers)


def decode_all(data: bytes, chunks: list[int] | None = None) -> list[Frame]:
    """Feed `data` in pieces of the given sizes (the rest at the end) and collect frames."""
    d = Decoder(LIMIT)
    out: list[Frame] = []
    pos = 0
    for size in [*(chunks or []), len(data)]:
        d.feed(data[pos : pos + size])
        pos += size
        while (f := d.next()) is not None:
            out.append(f)
    assert d.pending == 0
    return out


def test_header_layout_is_the_documented_one() -> None:
    raw = framing.header(MsgType.INFER, 0x0102030405060708, 3, 100, 9, 10800)
    assert len(raw) == HEADER_SIZE == 32
    assert raw[:4] == b"HSCP"
    assert raw[4] == 1  # version
    assert raw[5] == 0x01  # type
    assert raw[6:8] == b"\0\0"  # flags
    assert raw[8:16] == bytes.fromhex("0807060504030201")  # request id, little-endian
    assert struct.unpack("<IHHII", raw[16:32]) == (3, 100, 9, 10800, 0)


def test_infer_frame_round_trip() -> None:
    windows = np.stack([make_window(1), make_window(2)])
    (frame,) = decode_all(join(framing.infer_frame(7, windows)))
    assert (frame.type, frame.flags, frame.request_id) == (MsgType.INFER, 0, 7)
    assert (frame.n, frame.rows, frame.cols, frame.reserved) == (2, 100, 9, 0)
    got = np.frombuffer(frame.payload, dtype="<f4").reshape(2, 100, 9)
    assert np.array_equal(got, windows)


def test_shm_frame_round_trip() -> None:
    (frame,) = decode_all(framing.shm_frame(9, "psm_abc", 3600, 42, 1))
    assert (frame.type, frame.request_id, frame.n, frame.rows, frame.cols) == (2, 9, 1, 100, 9)
    offset, seq = framing.SHM_REF.unpack_from(frame.payload)
    assert (offset, seq, bytes(frame.payload[16:])) == (3600, 42, b"psm_abc")


def test_result_frame_round_trip() -> None:
    latent = np.arange(128, dtype=np.float32).reshape(2, 64)
    motifs = np.linspace(0, 1, 24, dtype=np.float32).reshape(2, 12)
    ident = framing.identity("tcn_encoder", "0.1.0", "ab" * 32)
    (frame,) = decode_all(framing.result_frame(5, latent, motifs, ident))
    assert (frame.type, frame.request_id, frame.n, frame.rows, frame.cols) == (0x81, 5, 2, 64, 12)
    body = bytes(frame.payload)
    assert np.array_equal(np.frombuffer(body[:512], "<f4").reshape(2, 64), latent)
    assert np.array_equal(np.frombuffer(body[512:608], "<f4").reshape(2, 12), motifs)
    assert framing.parse_identity(body[608:]) == ("tcn_encoder", "0.1.0", "ab" * 32)


def test_error_frame_round_trip() -> None:
    raw = framing.error_frame(11, ErrorCode.NOT_FINITE, "window 0 row 1 value 2 is nan", True)
    (frame,) = decode_all(raw)
    assert (frame.type, frame.flags, frame.request_id) == (0xFF, framing.FLAG_CLOSE, 11)
    assert framing.parse_error(frame.payload) == (9, "window 0 row 1 value 2 is nan")


def test_identity_refuses_truncation_and_trailing_bytes() -> None:
    ident = framing.identity("m", "v", "s")
    with pytest.raises(ValueError, match="truncated"):
        framing.parse_identity(ident[:-1])
    with pytest.raises(ValueError, match="1 trailing bytes"):
        framing.parse_identity(ident + b"x")


def test_every_split_point_gives_the_same_frames() -> None:
    a = join(framing.infer_frame(1, make_window(3)[None]))
    b = framing.info_frame(2)
    c = framing.shm_frame(3, "seg", 0, 1, 1)
    data = a + b + c
    want = decode_all(data)
    assert [f.request_id for f in want] == [1, 2, 3]
    for cut in range(1, len(data)):
        got = decode_all(data, [cut])
        assert [(f[:7], bytes(f.payload)) for f in got] == [(f[:7], bytes(f.payload)) for f in want]


def test_byte_at_a_time() -> None:
    data = join(framing.infer_frame(4, make_window(4)[None])) + framing.info_frame(5)
    frames = decode_all(data, [1] * (len(data) - 1))
    assert [f.request_id for f in frames] == [4, 5]


def test_payload_views_survive_later_feeds() -> None:
    d = Decoder(LIMIT)
    first = join(framing.infer_frame(1, make_window(5)[None]))
    second = join(framing.infer_frame(2, make_window(6)[None]))
    d.feed(first + second[:100])
    frame = d.next()
    assert frame is not None
    view = np.frombuffer(frame.payload, "<f4")
    d.feed(second[100:])  # must not move or resize the buffer the view points into
    assert d.next() is not None
    assert np.array_equal(view.reshape(100, 9), make_window(5))


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b"GET / HTTP/1.1\r\n", ErrorCode.BAD_MAGIC, "is this an HTTP client"),
        (b"\x00\x01", ErrorCode.BAD_MAGIC, "bad magic b'\\x00\\x01': frames start with"),
        (b"HSCX" + bytes(28), ErrorCode.BAD_MAGIC, "bad magic b'HSCX'"),
        (HEADER.pack(MAGIC, 2, 1, 0, 77, 1, 100, 9, 3600, 0), ErrorCode.BAD_VERSION,
         "protocol version 2 is not supported"),
        (HEADER.pack(MAGIC, 1, 1, 0, 78, 1, 100, 9, LIMIT, 0), ErrorCode.FRAME_TOO_LARGE,
         f"frame of {LIMIT + 32} bytes is over the limit of {LIMIT}"),
        (HEADER.pack(MAGIC, 1, 1, 0, 79, 1, 100, 9, 0xFFFFFFFF, 0), ErrorCode.FRAME_TOO_LARGE,
         "over the limit"),
    ],
)  # fmt: skip
def test_unframeable_input_raises_protocol_error(
    data: bytes, code: ErrorCode, message: str
) -> None:
    d = Decoder(LIMIT)
    d.feed(data)
    with pytest.raises(ProtocolError, match=re.escape(message)) as exc:
        d.next()
    assert exc.value.code == code
    if code in (ErrorCode.BAD_VERSION, ErrorCode.FRAME_TOO_LARGE):
        assert exc.value.request_id == HEADER.unpack(data[:32])[4]


def test_partial_header_reports_what_is_missing() -> None:
    d = Decoder(LIMIT)
    assert d.partial_header() is None
    raw = join(framing.infer_frame(12, make_window(0)[None]))
    d.feed(raw[:10])
    assert d.next() is None
    assert d.partial_header() == (0, 22)
    d.feed(raw[10:40])
    assert d.next() is None
    assert d.partial_header() == (12, len(raw) - 40)


# --------------------------------------------------------------------------- fuzz
frames_st = st.lists(
    st.one_of(
        st.builds(framing.info_frame, st.integers(0, 2**64 - 1)),
        st.builds(
            lambda rid, name, off, seq, n: framing.shm_frame(rid, name, off, seq, n),
            st.integers(0, 2**64 - 1),
            st.from_regex(r"[a-z_]{1,20}", fullmatch=True),
            st.integers(0, 2**40),
            st.integers(0, 2**64 - 1),
            st.integers(0, 64),
        ),
        st.builds(
            lambda rid, n, seed: join(framing.infer_frame(rid, np.stack([make_window(seed)] * n))),
            st.integers(0, 2**64 - 1),
            st.integers(1, 3),
            st.integers(0, 3),
        ),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(frames=frames_st, cuts=st.lists(st.integers(1, 4000), max_size=6))
def test_fuzz_valid_frames_survive_any_chunking(frames: list[bytes], cuts: list[int]) -> None:
    data = b"".join(frames)
    got = decode_all(data, cuts)
    assert [HEADER_SIZE + len(f.payload) for f in got] == [len(f) for f in frames]
    assert b"".join(framing.header(*_hdr(f)) + bytes(f.payload) for f in got) == data


def _hdr(f: Frame) -> tuple[int, ...]:
    return (f.type, f.request_id, f.n, f.rows, f.cols, len(f.payload), f.flags)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), prefix=st.booleans())
def test_fuzz_garbage_only_ever_raises_protocol_error(data: bytes, prefix: bool) -> None:
    d = Decoder(4096)
    d.feed((MAGIC + b"\x01" if prefix else b"") + data)
    code = None
    try:
        while d.next() is not None:
            pass
    except ProtocolError as exc:
        code = exc.code
    assert code in (None, ErrorCode.BAD_MAGIC, ErrorCode.BAD_VERSION, ErrorCode.FRAME_TOO_LARGE)
