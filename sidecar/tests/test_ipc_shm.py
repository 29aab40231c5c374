"""Shared-memory input: bounds, alignment, stale sequence numbers, and whose segment it is."""

from __future__ import annotations

import contextlib
import multiprocessing.resource_tracker as resource_tracker
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hailo_sidecar.backends.stub import StubBackend
from hailo_sidecar.client import SharedMemoryWindows, UdsClient
from hailo_sidecar.config import Config
from hailo_sidecar.ipc import framing
from hailo_sidecar.ipc.framing import ErrorCode, MsgType
from hailo_sidecar.ipc.shm import SegmentReader, ShmError

from .conftest import free_port, make_window
from .ipc_helpers import RawConn, serve, wait_for

WB = 3600


@pytest.fixture
def path(sock_dir: Path) -> Path:
    return sock_dir / "run" / "sidecar.sock"


@pytest.fixture
def segment() -> Iterator[shared_memory.SharedMemory]:
    """A segment this test owns: 4 windows."""
    shm = shared_memory.SharedMemory(create=True, size=4 * WB)
    arr = np.ndarray((4, 100, 9), "<f4", buffer=shm.buf)
    arr[:] = np.stack([make_window(s) for s in range(4)])
    del arr
    try:
        yield shm
    finally:
        shm.close()
        with contextlib.suppress(FileNotFoundError):  # some tests unlink it early
            shm.unlink()


def ref(conn: RawConn, rid: int, name: str, offset: int, seq: int, n: int = 1) -> Any:
    conn.send(framing.shm_frame(rid, name, offset, seq, n))
    return conn.recv()


def stub_outputs(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    stub = StubBackend(12)
    stub.load()
    return stub.infer(np.ascontiguousarray(windows, dtype=np.float32))


def test_shm_reads_match_inline_and_the_backend(path: Path, segment: Any) -> None:
    with serve(Config(), path), RawConn(path) as conn:
        reply = ref(conn, 1, segment.name, WB, 1, n=3)  # windows 1, 2, 3
        assert (reply.type, reply.request_id, reply.n) == (MsgType.RESULT, 1, 3)
        latent, motifs, _ = reply.arrays()
        want = np.stack([make_window(s) for s in (1, 2, 3)])
        want_lat, want_mot = stub_outputs(want)
        assert np.array_equal(latent, want_lat)
        assert np.array_equal(motifs, want_mot)
        inline = conn.infer(2, want).arrays()
        assert np.array_equal(inline[0], latent)


class RecordingStub(StubBackend):
    """Remembers what kind of array the transport handed to the backend."""

    def __init__(self, num_motifs: int) -> None:
        super().__init__(num_motifs)
        self.seen: list[tuple[bool, bool, str]] = []

    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        base = windows
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        if isinstance(base, memoryview):  # np.frombuffer's base: a view of the mapping
            base = base.obj
        self.seen.append((windows.flags.owndata, windows.flags.writeable, type(base).__name__))
        return super().infer(windows)


def test_the_backend_gets_a_private_copy_not_a_view_on_the_segment(
    path: Path, segment: Any
) -> None:
    # A view on a mapping of memory the client controls can fault (SIGBUS) when the
    # client shrinks it; the server reads with preadv into its own array instead.
    backend = RecordingStub(12)
    with serve(Config(), path, backend_factory=lambda cfg, *a, **k: backend), RawConn(path) as conn:
        backend.seen.clear()  # the warm-up
        assert ref(conn, 1, segment.name, 0, 1).type == MsgType.RESULT
    assert backend.seen == [(True, True, "ndarray")]


@pytest.mark.parametrize(
    ("offset", "n", "code", "message"),
    [
        (4 * WB, 1, 11, "1 window(s) (3600 bytes) at offset 14400 run past the end of segment "
         "{name!r} (14400 bytes)"),
        (WB, 4, 11, "4 window(s) (14400 bytes) at offset 3600 run past the end of segment "
         "{name!r} (14400 bytes)"),
        (2**63, 1, 11, "1 window(s) (3600 bytes) at offset 9223372036854775808 run past the end "
         "of segment {name!r} (14400 bytes)"),
        (2, 1, 12, "offset 2 into segment {name!r} is not a multiple of 4 (float32)"),
        (WB + 1, 1, 12, "offset 3601 into segment {name!r} is not a multiple of 4 (float32)"),
    ],
)  # fmt: skip
def test_bounds_and_alignment(
    path: Path, segment: Any, offset: int, n: int, code: int, message: str
) -> None:
    with serve(Config(), path), RawConn(path) as conn:
        reply = ref(conn, 7, segment.name, offset, 1, n)
        assert reply.error == (code, message.format(name=segment.name))
        assert reply.request_id == 7
        assert ref(conn, 8, segment.name, 3 * WB, 2).type == MsgType.RESULT  # seq 1 unused


def test_a_4_byte_aligned_offset_inside_a_window_is_fine(path: Path, segment: Any) -> None:
    with serve(Config(), path), RawConn(path) as conn:
        assert ref(conn, 1, segment.name, 4, 1).type == MsgType.RESULT


def test_stale_sequence_numbers_are_refused(path: Path, segment: Any) -> None:
    name = segment.name
    with serve(Config(), path), RawConn(path) as conn:
        assert ref(conn, 1, name, 0, 5).type == MsgType.RESULT
        stale = (
            f"stale reference to segment {name!r}: sequence 5 is not after 5, the last one "
            "accepted on this connection (sequence numbers must increase)"
        )
        assert ref(conn, 2, name, 0, 5).error == (13, stale)
        assert ref(conn, 3, name, 0, 4).error[0] == 13
        assert ref(conn, 4, name, 0, 6).type == MsgType.RESULT  # strictly greater: fine
        # A refused request does not advance it; the rule is per connection.
        assert ref(conn, 5, name, 10**9, 7).error[0] == 11
        assert ref(conn, 6, name, 0, 7).type == MsgType.RESULT
        with RawConn(path) as other:
            assert ref(other, 1, name, 0, 1).type == MsgType.RESULT


def test_unknown_and_invalid_segment_names(path: Path) -> None:
    with serve(Config(), path), RawConn(path) as conn:
        reply = ref(conn, 1, "no_such_segment_here", 0, 1)
        assert reply.error == (
            10,
            "segment 'no_such_segment_here' does not exist (never created, or already unlinked "
            "by its owner; with containers, share the IPC namespace: ipc: "
            "service:hailo-inference)",
        )
        for bad in ("../etc/passwd", "a/b", ".hidden", "-x", "x" * 201):
            code, message = ref(conn, 2, bad, 0, 1).error
            assert code == 10
            assert message.startswith(f"segment name {bad!r} is invalid")
        assert conn.infer(3, make_window(0)[None]).type == MsgType.RESULT


def test_the_server_survives_the_client_unlinking_early(path: Path, segment: Any) -> None:
    with serve(Config(), path), RawConn(path) as conn:
        assert ref(conn, 1, segment.name, 0, 1).type == MsgType.RESULT  # mapped and cached
        segment.unlink()
        code, message = ref(conn, 2, segment.name, 0, 2).error
        assert code == ErrorCode.SHM_UNAVAILABLE
        assert "does not exist" in message
        assert conn.infer(3, make_window(0)[None]).type == MsgType.RESULT


def test_a_re_created_name_is_mapped_again(path: Path, segment: Any) -> None:
    name = segment.name
    with serve(Config(), path), RawConn(path) as conn:
        first = ref(conn, 1, name, 0, 1).arrays()[0]
        segment.close()
        segment.unlink()
        again = shared_memory.SharedMemory(name=name, create=True, size=WB)
        try:
            np.ndarray((1, 100, 9), "<f4", buffer=again.buf)[:] = make_window(77)
            second = ref(conn, 2, name, 0, 2).arrays()[0]
            assert not np.array_equal(first, second)
            assert np.array_equal(second, stub_outputs(make_window(77)[None])[0])
            # the old segment had 4 windows; the new one only 1
            assert ref(conn, 3, name, WB, 3).error[0] == ErrorCode.SHM_BOUNDS
        finally:
            again.close()
            again.unlink()


def test_a_shrunk_segment_is_refused_not_read_past_its_end(path: Path, segment: Any) -> None:
    with serve(Config(), path), RawConn(path) as conn:
        assert ref(conn, 1, segment.name, 3 * WB, 1).type == MsgType.RESULT
        fd = os.open(f"/dev/shm/{segment.name}", os.O_RDWR)
        try:
            os.ftruncate(fd, WB)  # a client shrinking its segment after the server mapped it
        finally:
            os.close(fd)
        assert ref(conn, 2, segment.name, 3 * WB, 2).error == (
            11, f"1 window(s) (3600 bytes) at offset 10800 run past the end of segment "
            f"{segment.name!r} (3600 bytes)",
        )  # fmt: skip
        assert ref(conn, 3, segment.name, 0, 3).type == MsgType.RESULT


def test_non_finite_values_in_shared_memory(path: Path, segment: Any) -> None:
    arr = np.ndarray((4, 100, 9), "<f4", buffer=segment.buf)
    arr[2, 50, 1] = np.inf
    del arr
    with serve(Config(), path), RawConn(path) as conn:
        assert ref(conn, 1, segment.name, 2 * WB, 1).error == (
            9, "window 0 row 50 value 1 is inf, not finite"
        )  # fmt: skip


def test_the_server_never_registers_segments_with_the_resource_tracker(
    path: Path, segment: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(resource_tracker, "register", lambda n, t: calls.append((n, t)))
    monkeypatch.setattr(resource_tracker, "unregister", lambda n, t: calls.append((n, t)))
    with serve(Config(), path), RawConn(path) as conn:
        for seq in range(1, 4):
            assert ref(conn, seq, segment.name, 0, seq).type == MsgType.RESULT
    assert calls == []
    assert os.path.exists(f"/dev/shm/{segment.name}")


def test_a_server_process_never_unlinks_the_clients_segment(sock_dir: Path) -> None:
    """The real process, stopped with SIGTERM: the client's segment must still exist."""
    sock = sock_dir / "s.sock"
    env = {**os.environ, "SOCKET_PATH": str(sock), "HOST": "127.0.0.1", "PORT": str(free_port())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hailo_sidecar"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    shm = SharedMemoryWindows(2)
    name = shm.name
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        shm.write(np.stack([make_window(1), make_window(2)]))
        with UdsClient(sock) as client:
            assert len(client.infer_shm(shm, 2)) == 2
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert os.path.exists(f"/dev/shm/{name}"), err
        assert "resource_tracker" not in err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shm.close()
    assert not os.path.exists(f"/dev/shm/{name}")  # its owner unlinks it


def mappings_of(name: str) -> int:
    """How many mappings of /dev/shm/<name> this process holds (server and test alike)."""
    with open("/proc/self/maps") as fh:
        return sum(1 for line in fh if line.rstrip().endswith(f"/dev/shm/{name}"))


def fds_of(name: str) -> int:
    """How many open descriptors of this process point at /dev/shm/<name>."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == f"/dev/shm/{name}"
    return count


def test_a_closed_connection_closes_its_segments(path: Path, segment: Any) -> None:
    with serve(Config(), path) as client:
        ipc = client.app.state.ipc  # type: ignore[attr-defined]
        mine = mappings_of(segment.name), fds_of(segment.name)  # the test's (client) side
        conn = RawConn(path)
        assert ref(conn, 1, segment.name, 0, 1).type == MsgType.RESULT
        # The server keeps one read-only descriptor (fstat and preadv), and no mapping.
        assert mappings_of(segment.name) == mine[0]
        assert fds_of(segment.name) == mine[1] + 1
        conn.close()
        wait_for(lambda: len(ipc.connections) == 0)
        assert (mappings_of(segment.name), fds_of(segment.name)) == mine
    assert os.path.exists(f"/dev/shm/{segment.name}")


def test_segment_reader_unmaps_least_recently_used_and_never_unlinks() -> None:
    segments = [shared_memory.SharedMemory(create=True, size=WB) for _ in range(3)]
    try:
        reader = SegmentReader(max_segments=2)
        a, b, c = (s.name for s in segments)
        reader.windows(a, 0, 1, 1)
        reader.windows(b, 0, 1, 1)
        reader.windows(a, 0, 1, 2)  # a is now the most recent
        reader.windows(c, 0, 1, 1)
        assert reader.attached == [a, c]
        with pytest.raises(ShmError) as exc:
            reader.windows(b, 0, 1, 1)  # unmapped, but its sequence is remembered
        assert exc.value.code == ErrorCode.STALE_SEQUENCE
        reader.close()
        assert reader.attached == []
        assert all(os.path.exists(f"/dev/shm/{s.name}") for s in segments)
    finally:
        for s in segments:
            s.close()
            s.unlink()


def test_a_view_in_use_does_not_break_closing() -> None:
    shm = shared_memory.SharedMemory(create=True, size=WB)
    try:
        reader = SegmentReader()
        view = reader.windows(shm.name, 0, 1, 1)
        reader.close()  # the mapping stays until the view is gone
        assert view.shape == (1, 100, 9)
        del view
    finally:
        shm.close()
        shm.unlink()


def test_shared_memory_windows_helper() -> None:
    with SharedMemoryWindows(3) as shm:
        assert oct(os.stat(f"/dev/shm/{shm.name}").st_mode & 0o777) == "0o640"
        assert shm.write(np.stack([make_window(1), make_window(2)]), slot=1) == 2
        assert np.array_equal(shm.windows[2], make_window(2))
        assert (shm.offset(2), shm.next_seq(), shm.next_seq()) == (7200, 1, 2)
        with pytest.raises(ValueError, match="does not fit slots 2"):
            shm.write(np.stack([make_window(1)] * 2), slot=2)
        name = shm.name
    assert not os.path.exists(f"/dev/shm/{name}")


TRUNCATE_UNDER_THE_SERVER = """
import os, sys
from pathlib import Path
import numpy as np
from hailo_sidecar.ipc.shm import SegmentReader, ShmError
d = Path(sys.argv[1])
(d / "seg").write_bytes(np.ones(900 * 2, "<f4").tobytes())
reader = SegmentReader(shm_dir=d)
got = reader.windows("seg", 0, 2, 1)  # checked: in bounds
os.truncate(d / "seg", 0)  # the client shrinks it under the server
print(float(got.sum()))  # the server reads what it was given
try:
    reader.windows("seg", 0, 1, 2)
except ShmError as exc:
    print(int(exc.code), exc.message)
"""


def test_a_segment_truncated_under_the_server_cannot_crash_it(tmp_path: Path) -> None:
    """Issue 16, point 8: a client that shrinks its segment after the server checked the
    bounds used to make the whole process take SIGBUS (HTTP included)."""
    proc = subprocess.run(
        [sys.executable, "-c", TRUNCATE_UNDER_THE_SERVER, str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    lines = proc.stdout.splitlines()
    assert lines[0] == "1800.0"
    assert lines[1] == "10 segment 'seg' is empty or not a segment"
