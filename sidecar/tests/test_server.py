"""The real thing: `python -m hailo_sidecar` in a subprocess, driven with curl."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import make_window

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def curl(*args: str) -> tuple[int, str]:
    """(HTTP status, body) of one curl call."""
    assert CURL is not None
    out = subprocess.run(
        [CURL, "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", *args],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    body, _, status = out.stdout.rpartition("\n")
    return int(status), body


class Sidecar:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hailo_sidecar"],
            env=full_env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            if curl(f"{self.url}/readyz")[0] == 200:
                return
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


@pytest.fixture(params=["stub", "onnx"])
def sidecar(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sidecar]:
    env = {"INFER_MODE": request.param}
    if request.param == "onnx":
        model_dir = request.getfixturevalue("model_dir")
        env["MODEL_MANIFEST"] = str(model_dir / "manifest.json")
    s = Sidecar(env, tmp_path / "sidecar.log")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def post_file(url: str, path: Path, ctype: str = "application/json") -> tuple[int, Any]:
    status, body = curl(
        "-X", "POST", "-H", f"Content-Type: {ctype}", "--data-binary", f"@{path}", url
    )
    return status, json.loads(body)


def test_serves_the_contract_over_http(sidecar: Sidecar, tmp_path: Path) -> None:
    status, body = curl(f"{sidecar.url}/healthz")
    assert status == 200
    health = json.loads(body)
    assert health["ok"] is True
    assert isinstance(health["model"], str)

    window = tmp_path / "window.json"
    window.write_text(json.dumps({"x": make_window(8).tolist()}))
    status, result = post_file(f"{sidecar.url}/infer", window)
    assert status == 200
    assert len(result["latent"]) == 64
    assert len(result["motif_scores"]) == 12
    assert all(0 <= v <= 1 for v in result["motif_scores"])

    # Bad input: precise 4xx, and the server keeps serving.
    short = tmp_path / "short.json"
    x = make_window(8).tolist()
    x[10] = x[10][:7]
    short.write_text(json.dumps({"x": x}))
    assert post_file(f"{sidecar.url}/infer", short) == (
        422,
        {"error": "bad_shape", "detail": "x[10] has 7 values, expected 9", "loc": ["x", 10]},
    )
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\xff not json")
    assert post_file(f"{sidecar.url}/infer", garbage)[0] == 400
    assert post_file(f"{sidecar.url}/infer", window, ctype="text/plain")[0] == 415
    huge = tmp_path / "huge.json"
    huge.write_bytes(b'{"x": [' + b"1.0," * 600_000 + b"1.0]}")
    assert post_file(f"{sidecar.url}/infer", huge)[0] == 413
    assert post_file(f"{sidecar.url}/infer", window) == (200, result)  # same answer as before

    status, text = curl(f"{sidecar.url}/metrics")
    assert status == 200
    assert "sidecar_ready 1.0" in text
    assert 'status="413"' in text

    # SIGTERM: graceful shutdown (uvicorn re-raises the signal once done, hence -15).
    assert sidecar.stop() in (0, -signal.SIGTERM)
    log = sidecar.log.read_text()
    assert "Application shutdown complete" in log
    assert "ready: backend=" in log
    assert "Traceback" not in log


def test_not_ready_process_stays_up(tmp_path: Path) -> None:
    s = Sidecar(
        {"INFER_MODE": "onnx", "MODEL_MANIFEST": str(tmp_path / "missing.json")},
        tmp_path / "log",
    )
    try:
        deadline = time.monotonic() + 60
        while curl_status(f"{s.url}/healthz") != 200:
            assert time.monotonic() < deadline, s.log.read_text()
            assert s.proc.poll() is None, s.log.read_text()
            time.sleep(0.05)
        status, body = curl(f"{s.url}/readyz")
        assert status == 503
        assert (
            json.loads(body)["reason"]
            == f"model manifest not found: {tmp_path / 'missing.json'} (MODEL_MANIFEST)"
        )
    finally:
        assert s.stop() in (0, -signal.SIGTERM)
    assert "NOT READY: model manifest not found" in s.log.read_text()


def curl_status(url: str) -> int:
    try:
        return curl(url)[0]
    except subprocess.CalledProcessError:
        return 0
