"""Shared fixtures: windows, the reference model with a manifest, in-process clients."""

from __future__ import annotations

import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Starlette 1.x warns that its TestClient will move from httpx to httpx2; the pinned
# httpx (0.28.1) is what this project uses, and the warning is not about our code.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

from fastapi.testclient import TestClient  # noqa: E402
from hailo_sidecar.app import create_app  # noqa: E402
from hailo_sidecar.config import Config  # noqa: E402
from hailo_sidecar.manifest import write_manifest  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    # pytest resets warning filters per test; mirror the one contract.py installs
    # (its range check's dot product overflows on purpose for huge values).
    config.addinivalue_line("filterwarnings", "ignore:overflow encountered in dot:RuntimeWarning")
    # ipc/server.py's finiteness check multiplies inf by 0 on purpose.
    config.addinivalue_line(
        "filterwarnings", "ignore:invalid value encountered in dot:RuntimeWarning"
    )


REFERENCE_ONNX = REPO / "exports" / "tcn_encoder.onnx"
ARTIFACT_NAME = "tcn_encoder-0.1.0.onnx"


def make_window(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((100, 9)).astype(np.float32)


@pytest.fixture
def window() -> np.ndarray:
    return make_window(0)


@pytest.fixture
def window_json(window: np.ndarray) -> list[list[float]]:
    return window.tolist()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A models folder as the compiler leaves it: the .onnx artifact and manifest.json."""
    artifact = tmp_path / ARTIFACT_NAME
    shutil.copyfile(REFERENCE_ONNX, artifact)
    write_manifest(tmp_path, artifact)
    return tmp_path


@pytest.fixture
def onnx_config(model_dir: Path) -> Config:
    return Config(infer_mode="onnx", model_manifest=model_dir / "manifest.json")


def client_for(config: Config, **kwargs: Any) -> TestClient:
    """A TestClient; use it as a context manager so the lifespan (model load) runs."""
    return TestClient(create_app(config, **kwargs), raise_server_exceptions=False)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with client_for(Config(max_batch=8)) as c:
        yield c


@pytest.fixture
def onnx_client(onnx_config: Config) -> Iterator[TestClient]:
    with client_for(onnx_config) as c:
        yield c


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for sockets (sun_path holds 107 bytes; pytest's tmp_path can be long)."""
    base = Path(tempfile.mkdtemp(prefix="ipc", dir="/tmp"))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
