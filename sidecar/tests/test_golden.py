"""Golden vectors: the sidecar is ready only when its backend reproduces the compiled
model's outputs on the compiler's golden windows, within the file's tolerances."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hailo_sidecar import golden
from hailo_sidecar.backends import create_backend
from hailo_sidecar.backends.base import Backend
from hailo_sidecar.config import Config
from hailo_sidecar.manifest import load_manifest, sha256_of

from .conftest import REPO, client_for
from .ipc_helpers import RawConn, serve

MANIFEST = "tcn_encoder-0.1.0.manifest.json"
GOLDEN = "tcn_encoder-0.1.0.golden.json"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `hef-compile --target cpu` writes: the INT8 artifact, golden vectors, manifest."""
    from hef_compiler import cli

    out = tmp_path_factory.mktemp("compiled")
    code = cli.main(
        ["--model", "hailo_models/tcn_encoder.yaml", "--output", str(out), "--repo-root", str(REPO)]
    )
    assert code == 0
    return out


@pytest.fixture
def model_dir(compiled: Path, tmp_path: Path) -> Path:
    """A private copy, for tests that change a file."""
    return Path(shutil.copytree(compiled, tmp_path / "models"))


def config(directory: Path) -> Config:
    return Config(infer_mode="onnx", model_manifest=directory / MANIFEST)


def permuted_channels(order: list[int]) -> Callable[..., Backend]:
    """A backend factory whose backend sees the channels in another order: a sidecar
    with different preprocessing than the compiler assumed (right shapes, wrong numbers)."""

    def factory(cfg: Config, *args: Any, **kwargs: Any) -> Backend:
        backend = create_backend(cfg, *args, **kwargs)
        real = backend.infer
        backend.infer = lambda windows: real(np.ascontiguousarray(windows[..., order]))  # type: ignore[method-assign]
        return backend

    return factory


def test_compiled_model_passes_its_golden_check(compiled: Path) -> None:
    with client_for(config(compiled)) as c:
        r = c.get("/readyz")
        assert r.status_code == 200, r.json()
        body = r.json()
        assert body["sha256"] == json.loads((compiled / MANIFEST).read_text())["sha256"]
        check = body["golden"]
        assert check["ok"] is True
        assert check["windows"] == 8
        for name in ("latent", "motif_scores"):
            # The same onnxruntime on the same artifact: the same numbers.
            assert check["outputs"][name]["max_abs_error"] == 0.0
            assert check["outputs"][name]["min_cosine_similarity"] == pytest.approx(1.0)
        assert check["outputs"]["latent"]["tolerance_max_abs_error"] == 0.15


def test_wrong_numbers_are_not_ready_with_the_worst_error(compiled: Path) -> None:
    """Right shapes, finite, in range: but gx and ax swapped. Not ready, and the reason
    names the output, the window and the figure."""
    order = [3, 1, 2, 0, 4, 5, 6, 7, 8]
    with client_for(config(compiled), backend_factory=permuted_channels(order)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        reason = body["reason"]
        assert reason.startswith(f"golden check failed on 8 windows of {GOLDEN}: latent: ")
        assert "max abs error" in reason
        assert "(window " in reason
        assert body["golden"]["ok"] is False
        assert body["golden"]["outputs"]["latent"]["max_abs_error"] > 0.15
        assert c.post("/infer", json={"x": np.zeros((100, 9)).tolist()}).status_code == 503


def test_tampered_golden_file_is_refused_before_the_model_loads(model_dir: Path) -> None:
    path = model_dir / GOLDEN
    doc = json.loads(path.read_text())
    doc["outputs"]["latent"][0][0] += 1.0
    path.write_text(json.dumps(doc))
    with client_for(config(model_dir)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["reason"].startswith(f"golden vectors: sha256 mismatch for {path}: ")


def test_golden_file_for_another_artifact_is_refused(model_dir: Path) -> None:
    path = model_dir / GOLDEN
    doc = json.loads(path.read_text())
    doc["artifact_sha256"] = "0" * 64
    path.write_text(json.dumps(doc))
    manifest_path = model_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["golden"]["sha256"] = sha256_of(path)
    manifest_path.write_text(json.dumps(manifest))
    with client_for(config(model_dir)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert "artifact_sha256 is '000" in r.json()["reason"]


def test_compare_reports_each_failure() -> None:
    k = 3
    expected = {
        "latent": np.ones((k, 64)),
        "motif_scores": np.full((k, 12), 0.5),
    }
    tol = {"max_abs_error": 0.1, "min_cosine_similarity": 0.99}
    g = golden.Golden(
        Path("m.golden.json"),
        np.zeros((k, 100, 9), np.float32),
        expected,
        {"latent": tol, "motif_scores": tol},
        "test",
    )
    same = golden.compare(g, {k_: v.copy() for k_, v in expected.items()})
    assert same["ok"] is True
    assert "reason" not in same
    got = {"latent": expected["latent"].copy(), "motif_scores": expected["motif_scores"].copy()}
    got["latent"][2, 5] = 1.5  # window 2: error 0.5, cosine still high
    got["motif_scores"][1] = -0.5  # window 1: opposite direction
    report = golden.compare(g, got)
    assert report["ok"] is False
    assert "latent: max abs error 0.5 > 0.1 (window 2)" in report["reason"]
    assert "motif_scores: cosine similarity -1.000000 < 0.990000 (window 1)" in report["reason"]
    nan = {"latent": expected["latent"].copy(), "motif_scores": expected["motif_scores"]}
    nan["latent"][0, 0] = np.nan
    assert "latent: max abs error inf" in golden.compare(g, nan)["reason"]


def test_golden_check_over_the_ipc_path(compiled: Path, sock_dir: Path) -> None:
    """The golden windows through the Unix socket give the compiled model's outputs."""
    manifest = load_manifest(compiled / MANIFEST)
    reference = golden.load(manifest, 12)
    assert reference is not None
    sock = sock_dir / "s.sock"
    with serve(config(compiled), sock) as c:
        assert c.get("/readyz").status_code == 200
        with RawConn(sock) as conn:
            latent, motifs, identity = conn.infer(1, reference.windows).arrays()
    report = golden.compare(reference, {"latent": latent, "motif_scores": motifs})
    assert report["ok"] is True, report
    assert identity[2] == manifest.sha256


def test_a_manifest_without_golden_vectors_is_ready_unchecked(model_dir: Path) -> None:
    """Artifacts from before golden vectors existed still serve; /readyz says unchecked."""
    manifest_path = model_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["golden"]
    manifest_path.write_text(json.dumps(manifest))
    with client_for(config(model_dir)) as c:
        r = c.get("/readyz")
        assert r.status_code == 200
        assert r.json()["golden"] is None
