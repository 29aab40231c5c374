"""The IPC server in the app's process: socket permissions, requests, and every bad frame."""

from __future__ import annotations

import logging
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hailo_sidecar.backends import BackendError
from hailo_sidecar.backends.stub import StubBackend
from hailo_sidecar.config import Config
from hailo_sidecar.ipc import framing
from hailo_sidecar.ipc.framing import HEADER, MAGIC, ErrorCode, MsgType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import make_window
from .ipc_helpers import RawConn, serve, wait_for

W = make_window(3)


def frame(
    mtype: int = MsgType.INFER,
    rid: int = 1,
    n: int = 1,
    rows: int = 100,
    cols: int = 9,
    payload: bytes | None = None,
    flags: int = 0,
    reserved: int = 0,
    version: int = 1,
    magic: bytes = MAGIC,
) -> bytes:
    if payload is None:
        payload = np.zeros((n, rows, cols), "<f4").tobytes() if n * rows * cols < 10**6 else b""
    head = HEADER.pack(magic, version, mtype, flags, rid, n, rows, cols, len(payload), reserved)
    return head + payload


def good(conn: RawConn, rid: int = 99) -> None:
    """The connection still serves: a correct request gets its RESULT."""
    reply = conn.infer(rid, W[None])
    assert reply.type == MsgType.RESULT
    assert reply.request_id == rid


@pytest.fixture
def path(sock_dir: Path) -> Path:
    return sock_dir / "run" / "sidecar.sock"


# --------------------------------------------------------------------------- the socket
def test_socket_is_0660_in_a_0750_directory_and_removed_at_shutdown(path: Path) -> None:
    with serve(Config(), path) as client:
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o750
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert os.listdir(path.parent) == ["sidecar.sock"]  # no temporary name left
        assert client.get("/readyz").status_code == 200
    assert not path.exists()


def test_an_existing_directory_is_not_chmodded(path: Path) -> None:
    path.parent.mkdir(mode=0o755)
    os.chmod(path.parent, 0o755)
    os.chown(path.parent, 12345, 12345)  # "a volume owned by someone else"
    with serve(Config(), path) as client:
        assert client.get("/readyz").status_code == 200
        st = os.stat(path.parent)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o755, 12345)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


def test_ipc_failure_does_not_fail_http(path: Path) -> None:
    """Issue 16, point 7: an IPC socket that cannot be made is reported, HTTP serves on."""
    path.parent.mkdir()
    os.chmod(path.parent, 0o777)
    with serve(Config(), path) as client:
        r = client.get("/readyz")
        assert r.status_code == 200
        assert r.json()["ipc"] == (
            f"failed: the IPC directory {path.parent} is world-writable (mode 0777): "
            "anyone could replace the socket; make it 0750 (or 0770) and owned by the "
            "sidecar's uid/gid"
        )
        assert client.get("/healthz").status_code == 200
        assert client.post("/infer", json={"x": W.tolist()}).status_code == 200
        metrics = client.get("/metrics").text
        assert "sidecar_ipc_up 0.0" in metrics
        assert "sidecar_ready 1.0" in metrics
    with serve(Config(), path.parent.parent / "ok" / "s.sock") as client:
        assert client.get("/readyz").json()["ipc"] == "listening"
        assert "sidecar_ipc_up 1.0" in client.get("/metrics").text


# With IPC_REQUIRED=1 a socket that cannot be made is a readiness reason.
REQUIRED = Config(ipc_required=True)


def test_a_world_writable_directory_is_refused(path: Path) -> None:
    path.parent.mkdir()
    os.chmod(path.parent, 0o777)
    with serve(REQUIRED, path) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["reason"] == (
            f"IPC socket: the IPC directory {path.parent} is world-writable (mode 0777): "
            "anyone could replace the socket; make it 0750 (or 0770) and owned by the "
            "sidecar's uid/gid"
        )
        assert client.get("/healthz").status_code == 200
        assert client.app.state.ipc is None  # type: ignore[attr-defined]
    assert not path.exists()


def test_a_sticky_world_writable_directory_is_served_with_a_warning(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path.parent.mkdir()
    os.chmod(path.parent, 0o1777)
    with caplog.at_level(logging.WARNING), serve(REQUIRED, path) as client:
        assert client.get("/readyz").status_code == 200
        with RawConn(path) as conn:
            good(conn)
    assert "world-writable with the sticky bit (mode 1777)" in caplog.text


def test_a_directory_the_uid_cannot_write_is_a_readiness_reason(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path.parent.mkdir(mode=0o750)
    # Tests run as root, which may write anywhere: stand in for uid 10001 on a root-owned dir.
    monkeypatch.setattr("hailo_sidecar.ipc.listen.os.access", lambda *a, **k: False)
    with serve(REQUIRED, path) as client:
        reason = client.get("/readyz").json()["reason"]
        assert reason.startswith(f"IPC socket: the IPC directory {path.parent} (mode 0750, ")
        assert "is not writable by uid" in reason


def test_a_stale_socket_is_replaced(path: Path) -> None:
    path.parent.mkdir(mode=0o750)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: what a killed process leaves
    with serve(REQUIRED, path) as client, RawConn(path) as conn:
        assert client.get("/readyz").status_code == 200
        good(conn)


def test_a_live_socket_is_not_taken_over(path: Path) -> None:
    path.parent.mkdir(mode=0o750)
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(path))
    live.listen(1)
    try:
        with serve(REQUIRED, path) as client:
            reason = client.get("/readyz").json()["reason"]
            assert reason == f"IPC socket: another process is already serving on {path}"
        assert path.exists()  # still the other process's
    finally:
        live.close()


def test_a_file_that_is_not_a_socket_is_not_replaced(path: Path) -> None:
    path.parent.mkdir(mode=0o750)
    path.write_text("precious")
    with serve(REQUIRED, path) as client:
        reason = client.get("/readyz").json()["reason"]
        assert reason == f"IPC socket: {path} exists and is not a socket: refusing to replace it"
    assert path.read_text() == "precious"


def test_strict_startup_exits_when_the_socket_cannot_be_made(path: Path) -> None:
    path.parent.mkdir()
    os.chmod(path.parent, 0o777)
    with (
        pytest.raises(RuntimeError, match="world-writable"),
        serve(Config(strict_startup=True, ipc_required=True), path),
    ):
        pass


def test_no_socket_path_means_no_ipc(sock_dir: Path) -> None:
    from .conftest import client_for

    with client_for(Config(socket_path=None)) as client:
        assert client.app.state.ipc is None  # type: ignore[attr-defined]
        assert client.get("/readyz").status_code == 200
    assert os.listdir(sock_dir) == []


# --------------------------------------------------------------------------- requests
def test_inline_infer_matches_http_and_the_backend(path: Path) -> None:
    with serve(Config(), path) as client, RawConn(path) as conn:
        reply = conn.infer(7, W[None])
        assert (reply.request_id, reply.n, reply.rows, reply.cols) == (7, 1, 64, 12)
        latent, motifs, ident = reply.arrays()
        body = client.post("/infer", json={"x": W.tolist()}).json()
        assert np.array_equal(latent[0], np.asarray(body["latent"], np.float32))
        assert np.array_equal(motifs[0], np.asarray(body["motif_scores"], np.float32))
        assert ident == (body["model"], body["version"], body["sha256"])
        stub = StubBackend(12)
        stub.load()
        want_lat, want_mot = stub.infer(W[None])
        assert np.array_equal(latent, want_lat)
        assert np.array_equal(motifs, want_mot)


def test_pipelined_requests_get_one_reply_each_in_order(path: Path) -> None:
    windows = [make_window(s) for s in range(5)]
    with serve(Config(max_batch=8), path), RawConn(path) as conn:
        blob = b"".join(
            b"".join(bytes(b) for b in framing.infer_frame(100 + i, w[None]))
            for i, w in enumerate(windows)
        )
        blob += framing.info_frame(200)
        blob += b"".join(bytes(b) for b in framing.infer_frame(300, np.stack(windows)))
        conn.send(blob)
        replies = [conn.recv() for _ in range(7)]
        assert [r.request_id for r in replies] == [100, 101, 102, 103, 104, 200, 300]
        assert replies[5].type == MsgType.INFO_RESULT
        batch_latent, _, _ = replies[6].arrays()
        for i in range(5):
            assert np.array_equal(replies[i].arrays()[0][0], batch_latent[i])


def test_info(path: Path) -> None:
    with serve(Config(max_batch=8), path), RawConn(path) as conn:
        conn.send(framing.info_frame(5))
        reply = conn.recv()
        assert (reply.type, reply.request_id) == (MsgType.INFO_RESULT, 5)
        import orjson

        info = orjson.loads(reply.payload)
        assert info["ready"] is True
        assert info["backend"] == "stub"
        assert (info["protocol"], info["num_motifs"], info["max_batch"]) == (1, 12, 8)


def test_a_full_batch_and_one_more(path: Path) -> None:
    with serve(Config(max_batch=4), path), RawConn(path) as conn:
        assert conn.infer(1, np.stack([W] * 4)).n == 4
        reply = conn.infer(2, np.stack([W] * 5))
        assert reply.error == (8, "n is 5 windows, expected 1 to 4 (MAX_BATCH)")
        good(conn)


# Request-level errors: an ERROR frame, the request id echoed, the connection stays open.
NAN = W.copy()
NAN[3, 4] = np.nan
INF = W.copy()
INF[99, 8] = -np.inf


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (frame(flags=1), 5, "flags (0x0001) and reserved (0x00000000) must be 0 in requests"),
        (frame(reserved=7), 5, "flags (0x0000) and reserved (0x00000007) must be 0 in requests"),
        (frame(mtype=0x07), 6, "message type 0x07 is not a request (INFER 0x01, INFER_SHM 0x02, "
         "INFO 0x03)"),
        (frame(mtype=MsgType.RESULT), 6, "message type 0x81 is not a request (INFER 0x01, "
         "INFER_SHM 0x02, INFO 0x03)"),
        (frame(rows=99), 7, "windows of 99 x 9, expected 100 x 9"),
        (frame(cols=8), 7, "windows of 100 x 8, expected 100 x 9"),
        (frame(n=2, payload=W.tobytes()), 7, "payload is 3600 bytes; 2 window(s) of 100 x 9 "
         "float32 are 7200"),
        (frame(payload=W.tobytes()[:-1]), 7, "payload is 3599 bytes; 1 window(s) of 100 x 9 "
         "float32 are 3600"),
        (frame(n=0, payload=b""), 8, "n is 0 windows, expected 1 to 64 (MAX_BATCH)"),
        (frame(n=65, payload=b""), 8, "n is 65 windows, expected 1 to 64 (MAX_BATCH)"),
        (frame(payload=NAN.tobytes()), 9, "window 0 row 3 value 4 is nan, not finite"),
        (frame(payload=INF.tobytes()), 9, "window 0 row 99 value 8 is -inf, not finite"),
        (frame(mtype=MsgType.INFER_SHM, payload=b"\0" * 16), 7, "INFER_SHM payload is 16 bytes: "
         "expected offset u64, seq u64 and a segment name"),
        (frame(mtype=MsgType.INFER_SHM, payload=b"\0" * 16 + b"\xff"), 10,
         "segment name is not ASCII"),
    ],
)  # fmt: skip
def test_request_errors_keep_the_connection(
    path: Path, data: bytes, code: int, message: str
) -> None:
    with serve(Config(), path), RawConn(path) as conn:
        conn.send(data[:8] + struct.pack("<Q", 4242) + data[16:])  # request id 4242
        reply = conn.recv()
        assert reply.error == (code, message)
        assert reply.request_id == 4242
        assert not reply.closes
        good(conn)


# Protocol errors: an ERROR frame with FLAG_CLOSE, then the server closes; others unaffected.
@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b"POST /infer HTTP/1.1\r\nHost: x\r\n\r\n", 1, "bad magic b'POST': frames start with "
         "b'HSCP' (is this an HTTP client on the IPC socket?)"),
        (b"\x00" * 40, 1, "bad magic b'\\x00\\x00\\x00\\x00': frames start with b'HSCP'"),
        (frame(version=2), 2, "protocol version 2 is not supported: this server speaks version 1"),
        (frame(payload=b"")[:24] + struct.pack("<II", 1 << 20, 0), 3,
         "frame of 1048608 bytes is over the limit of 1048576 (IPC_MAX_FRAME_BYTES)"),
    ],
)  # fmt: skip
def test_protocol_errors_close_the_connection(
    path: Path, data: bytes, code: int, message: str
) -> None:
    with serve(Config(), path) as client, RawConn(path) as bystander, RawConn(path) as conn:
        conn.send(data)
        reply = conn.recv()
        assert reply.error == (code, message)
        assert reply.closes
        assert conn.is_closed()
        good(bystander)
        with RawConn(path) as again:
            good(again)
        metrics = client.get("/metrics").text
        assert f'sidecar_ipc_requests_total{{kind="invalid",result="{ErrorCode(code).slug}"}}' in (
            metrics
        )


def test_bad_magic_is_answered_before_a_whole_header_arrives(path: Path) -> None:
    with serve(Config(), path), RawConn(path) as conn:
        conn.send(b"GE")
        assert conn.recv().error[0] == ErrorCode.BAD_MAGIC
        assert conn.is_closed()


def test_a_truncated_frame_then_half_close_gets_truncated(path: Path) -> None:
    with serve(Config(), path), RawConn(path) as conn:
        data = frame(rid=31)
        conn.send(data[:1000])
        conn.sock.shutdown(socket.SHUT_WR)
        reply = conn.recv()
        assert reply.error == (4, f"connection ended in the middle of a frame ({len(data) - 1000} "
                               "bytes missing)")  # fmt: skip
        assert reply.request_id == 31
        assert conn.is_closed()


def test_half_close_after_whole_frames_gets_the_replies_then_eof(path: Path) -> None:
    with serve(Config(), path), RawConn(path) as conn:
        conn.send(frame(rid=1) + frame(rid=2))
        conn.sock.shutdown(socket.SHUT_WR)
        assert [conn.recv().request_id, conn.recv().request_id] == [1, 2]
        assert conn.is_closed()


def test_a_client_that_disconnects_mid_frame_leaks_nothing(path: Path) -> None:
    with serve(Config(), path) as client:
        ipc = client.app.state.ipc  # type: ignore[attr-defined]
        for cut in (1, 20, 32, 33, 1000, 3631):
            conn = RawConn(path)
            conn.send(frame()[:cut])
            wait_for(lambda: len(ipc.connections) == 1)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            wait_for(lambda: len(ipc.connections) == 0)
        assert "sidecar_ipc_connections 0.0" in client.get("/metrics").text
        with RawConn(path) as conn:
            good(conn)
            assert "sidecar_ipc_connections 1.0" in client.get("/metrics").text


def test_a_client_that_never_reads_does_not_block_others(path: Path) -> None:
    with serve(Config(), path), RawConn(path) as greedy, RawConn(path) as other:
        greedy.sock.setblocking(False)
        sent = 0
        try:  # requests until the socket buffers are full both ways
            for i in range(20000):
                greedy.sock.send(frame(rid=i))
                sent += 1
        except BlockingIOError:
            pass
        assert sent > 10
        good(other)
        greedy.sock.settimeout(10)
        assert greedy.recv().request_id == 0  # and it is still served, in order


def test_too_many_connections(path: Path) -> None:
    with serve(Config(ipc_max_connections=2), path), RawConn(path) as a, RawConn(path) as b:
        good(a)
        with RawConn(path) as c:
            reply = c.recv()
            assert reply.error == (16, "too many IPC connections (IPC_MAX_CONNECTIONS=2)")
            assert reply.closes
            assert c.is_closed()
        good(b)


def test_not_ready_is_a_request_error(path: Path, tmp_path: Path) -> None:
    cfg = Config(infer_mode="onnx", model_manifest=tmp_path / "missing.json")
    with serve(cfg, path), RawConn(path) as conn:
        reply = conn.infer(3, W[None])
        reason = f"model manifest not found: {tmp_path / 'missing.json'} (MODEL_MANIFEST)"
        assert reply.error == (14, f"the sidecar is not ready: {reason}")
        conn.send(framing.info_frame(4))
        import orjson

        info = orjson.loads(conn.recv().payload)
        assert (info["ready"], info["reason"]) == (False, reason)


class FlakyBackend(StubBackend):
    def __init__(self, num_motifs: int) -> None:
        super().__init__(num_motifs)
        self.calls = 0

    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        if self.calls == 2:
            raise BackendError("HailoRT inference failed: HailoRTTimeout: timed out")
        if self.calls == 3:
            raise ZeroDivisionError("a bug")
        return super().infer(windows)


def test_inference_failures_are_request_errors(path: Path) -> None:
    with (
        serve(Config(), path, backend_factory=lambda cfg, *a, **k: FlakyBackend(12)),
        RawConn(path) as conn,
    ):
        assert conn.infer(1, W[None]).error == (
            15, "HailoRT inference failed: HailoRTTimeout: timed out"
        )  # fmt: skip
        assert conn.infer(2, W[None]).error == (17, "internal error (logged)")
        good(conn)


class OffloadedStub(StubBackend):
    """Like the hailo backend: the server runs it in a worker thread."""

    offload = True
    name = "stub"

    def __init__(self, num_motifs: int) -> None:
        super().__init__(num_motifs)
        self.threads: set[str] = set()

    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import threading
        import time

        self.threads.add(threading.current_thread().name)
        if windows.shape[0] == 2:
            time.sleep(0.05)
        return super().infer(windows)


def test_an_offloaded_backend_keeps_order_and_survives_disconnects(path: Path) -> None:
    backend = OffloadedStub(12)

    def factory(cfg: Config, *a: Any, **k: Any) -> OffloadedStub:
        return backend

    with serve(Config(), path, backend_factory=factory) as client, RawConn(path) as conn:
        conn.send(frame(rid=1, n=2) + frame(rid=2) + frame(rid=3, rows=99))
        replies = [conn.recv() for _ in range(3)]
        assert [r.request_id for r in replies] == [1, 2, 3]
        assert replies[0].n == 2
        assert replies[2].error[0] == ErrorCode.BAD_SHAPE
        assert any(t.startswith("backend") for t in backend.threads)  # Service's thread
        # Gone while its (slow) reply is computed: nothing breaks, nothing leaks.
        quitter = RawConn(path)
        quitter.send(frame(rid=9, n=2))
        quitter.close()
        ipc = client.app.state.ipc  # type: ignore[attr-defined]
        wait_for(lambda: len(ipc.connections) == 1)
        good(conn)


def test_metrics_count_ipc_requests(path: Path) -> None:
    with serve(Config(), path) as client, RawConn(path) as conn:
        good(conn)
        conn.send(frame(rows=3))
        conn.recv()
        text = client.get("/metrics").text
        assert 'sidecar_ipc_requests_total{kind="infer",result="ok"} 1.0' in text
        assert 'sidecar_ipc_requests_total{kind="infer",result="bad_shape"} 1.0' in text
        assert 'sidecar_inference_windows_total{backend="stub"}' in text


def test_fuzz_random_bytes_never_break_the_server(path: Path) -> None:
    with serve(Config(), path) as client:
        ipc = client.app.state.ipc  # type: ignore[attr-defined]

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            head=st.sampled_from([b"", MAGIC, MAGIC + b"\x01", MAGIC + b"\x01\x01\x00\x00"]),
            data=st.binary(max_size=300),
            close_early=st.booleans(),
        )
        def check(head: bytes, data: bytes, close_early: bool) -> None:
            with RawConn(path, timeout=5) as conn:
                conn.send(head + data)
                if close_early:
                    return
                conn.sock.shutdown(socket.SHUT_WR)
                while True:  # read replies until the server closes: it must close
                    try:
                        reply = conn.recv()
                    except EOFError:
                        break
                    assert reply.type in (MsgType.ERROR, MsgType.RESULT, MsgType.INFO_RESULT)

        check()
        wait_for(lambda: len(ipc.connections) == 0)
        with RawConn(path) as conn:
            good(conn)
