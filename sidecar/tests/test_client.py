"""hailo_sidecar.client against the real process: HTTP and UDS give identical outputs."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hailo_sidecar.backends.onnx import OnnxBackend
from hailo_sidecar.backends.stub import StubBackend
from hailo_sidecar.client import (
    BatchResult,
    HttpClient,
    Result,
    SharedMemoryWindows,
    SidecarError,
    UdsClient,
    as_windows,
)

from .conftest import ARTIFACT_NAME, make_window
from .ipc_helpers import SidecarProcess

WINDOWS = np.stack([make_window(s) for s in range(10, 14)])


@pytest.fixture(scope="module", params=["stub", "onnx"])
def sidecar(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidecarProcess]:
    import shutil
    import tempfile

    from hailo_sidecar.manifest import write_manifest

    from .conftest import REFERENCE_ONNX

    work = tmp_path_factory.mktemp(request.param)
    env = {"INFER_MODE": request.param, "MAX_BATCH": "8"}
    if request.param == "onnx":  # through discovery, as on a Pi
        release = work / "models" / "tcn_encoder-0.1.0"
        release.mkdir(parents=True)
        shutil.copyfile(REFERENCE_ONNX, release / ARTIFACT_NAME)
        write_manifest(release, release / ARTIFACT_NAME, filename="tcn_encoder-0.1.0.manifest.json")
        env |= {"MODELS_DIR": str(work / "models"), "MODEL_NAME": "tcn_encoder"}
    sock_dir = Path(tempfile.mkdtemp(prefix="ipc", dir="/tmp"))
    proc = SidecarProcess(env, sock_dir / "run" / "sidecar.sock", work / "sidecar.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


def reference(mode: str, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The backend run directly in this process, on the same windows."""
    if mode == "stub":
        backend: StubBackend | OnnxBackend = StubBackend(12)
    else:
        from .conftest import REFERENCE_ONNX

        backend = OnnxBackend(REFERENCE_ONNX, 12, model="m", version="v", sha256="s")
    backend.load()
    try:
        return backend.infer(np.ascontiguousarray(windows, dtype=np.float32))
    finally:
        backend.close()


def mode_of(sidecar: SidecarProcess) -> str:
    return "onnx" if "onnx" in str(sidecar.log) else "stub"


def same(a: Result | BatchResult, b: Result | BatchResult) -> None:
    assert a.latent.dtype == b.latent.dtype == np.float32
    assert np.array_equal(a.latent, b.latent)
    assert np.array_equal(a.motif_scores, b.motif_scores)
    assert (a.model, a.version, a.sha256) == (b.model, b.version, b.sha256)


def test_http_and_uds_give_identical_outputs(sidecar: SidecarProcess) -> None:
    window = WINDOWS[0]
    with (
        HttpClient(sidecar.url) as http,
        UdsClient(sidecar.sock) as uds,
        SharedMemoryWindows(4) as shm,
    ):
        via_http = http.infer(window)
        via_uds = uds.infer(window)
        shm.write(window, slot=3)
        via_shm = uds.infer_shm(shm, 1, slot=3)[0]
        same(via_http, via_uds)
        same(via_uds, via_shm)
        assert via_uds.latent.shape == (64,)
        assert via_uds.motif_scores.shape == (12,)
        assert via_uds.model == ("tcn_encoder" if mode_of(sidecar) == "onnx" else "stub")
        want_lat, want_mot = reference(mode_of(sidecar), window[None])
        assert np.array_equal(via_uds.latent, want_lat[0])
        assert np.array_equal(via_uds.motif_scores, want_mot[0])
        # Batches: the same numbers as one window at a time, on every path.
        b_http = http.infer_batch(WINDOWS)
        b_uds = uds.infer_batch(WINDOWS)
        shm.write(WINDOWS)
        b_shm = uds.infer_shm(shm, 4)
        same(b_http, b_uds)
        same(b_uds, b_shm)
        assert len(b_uds) == 4
        for i, one in enumerate(b_uds):
            same(one, uds.infer(WINDOWS[i]))
        # List input works the same as arrays.
        same(uds.infer(window.tolist()), via_uds)


def test_errors_are_sidecar_errors_on_both_transports(sidecar: SidecarProcess) -> None:
    short = np.zeros((99, 9), np.float32)
    nan = WINDOWS[0].copy()
    nan[5, 2] = np.nan
    with HttpClient(sidecar.url) as http, UdsClient(sidecar.sock) as uds:
        with pytest.raises(SidecarError) as e_http:
            http.infer(short)
        assert (e_http.value.code, e_http.value.status) == ("bad_shape", 422)
        assert e_http.value.message == "x has 99 rows, expected 100"
        with pytest.raises(SidecarError) as e_uds:
            uds.infer(short)
        assert (e_uds.value.code, e_uds.value.status) == ("bad_shape", 7)
        assert e_uds.value.message == "windows of 99 x 9, expected 100 x 9"
        with pytest.raises(SidecarError) as e_nan:
            uds.infer(nan)
        assert e_nan.value.code == "not_finite"
        with pytest.raises(SidecarError, match="bad_batch_size"):
            uds.infer_batch(np.stack([WINDOWS[0]] * 9))
        with pytest.raises(SidecarError, match="bad_batch_size"):
            http.infer_batch(np.stack([WINDOWS[0]] * 9))
        # Both keep working after errors.
        same(http.infer(WINDOWS[1]), uds.infer(WINDOWS[1]))


def test_uds_client_recovers_after_the_server_closes_its_connection(
    sidecar: SidecarProcess,
) -> None:
    with UdsClient(sidecar.sock) as uds:
        first = uds.infer(WINDOWS[2])
        assert uds._sock is not None
        uds._sock.sendall(b"garbage!")  # the next reply read is the server's bad-magic error
        with pytest.raises(SidecarError) as exc:
            uds.infer(WINDOWS[2])
        assert exc.value.code == "bad_magic"
        assert uds._sock is None  # FLAG_CLOSE: the client dropped the connection
        same(uds.infer(WINDOWS[2]), first)  # and reconnects


def test_info_health_ready(sidecar: SidecarProcess) -> None:
    with HttpClient(sidecar.url) as http, UdsClient(sidecar.sock) as uds:
        info = uds.info()
        health = http.health()
        ready, body = http.ready()
        assert ready is True
        assert info["ready"] is True
        assert info["max_batch"] == 8
        assert health["model"] == info["model"] == body["model"]
        assert info["sha256"] == body["sha256"]


def test_client_input_checks() -> None:
    assert as_windows(np.zeros((100, 9))).shape == (1, 100, 9)
    assert as_windows(np.zeros((2, 100, 9), np.float64)).dtype == np.float32
    with pytest.raises(ValueError, match="expected a window"):
        as_windows(np.zeros(900))
    with pytest.raises(ValueError, match="use infer_batch"):
        UdsClient("/nonexistent").infer(np.zeros((2, 100, 9)))
    with pytest.raises(ValueError, match="http://host"):
        HttpClient("unix:///run/x")
    with pytest.raises(FileNotFoundError):
        UdsClient("/nonexistent/sidecar.sock").infer(np.zeros((100, 9)))


def test_shutdown_removes_the_socket_and_ends_cleanly(tmp_path: Path, sock_dir: Path) -> None:
    proc = SidecarProcess({}, sock_dir / "s.sock", tmp_path / "log")
    try:
        proc.wait_ready()
        with UdsClient(proc.sock) as uds:
            uds.infer(WINDOWS[0])
            assert proc.stop() in (0, -signal.SIGTERM)
    finally:
        proc.stop()
    assert not proc.sock.exists()
    log = proc.log.read_text()
    assert f"IPC: listening on {proc.sock}" in log
    assert "Traceback" not in log
