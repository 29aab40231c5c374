"""Readiness: model loaded AND sha256 matches the manifest AND warm-up passed; else 503 + reason."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import orjson
import pytest
from hailo_sidecar.backends import BackendError
from hailo_sidecar.backends.stub import StubBackend
from hailo_sidecar.config import Config
from hailo_sidecar.manifest import sha256_of, write_manifest
from onnx import TensorProto, helper, numpy_helper

from .conftest import ARTIFACT_NAME, REFERENCE_ONNX, client_for, make_window

GOOD = {"x": make_window(2).tolist()}


def tiny_onnx(path: Path, *, motif_offset: float = 0.0, sigmoid: bool = True) -> Path:
    """A contract-shaped model: x (1,100,9) -> latent (1,64), motif_scores (1,12)."""
    rng = np.random.default_rng(5)
    inits = [
        numpy_helper.from_array(np.array([1, 900], dtype=np.int64), "flat_shape"),
        numpy_helper.from_array(rng.standard_normal((900, 64)).astype(np.float32) / 30, "w"),
        numpy_helper.from_array(rng.standard_normal((64, 12)).astype(np.float32) / 8, "v"),
        numpy_helper.from_array(np.full((1, 12), motif_offset, dtype=np.float32), "offset"),
    ]
    nodes = [
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["latent"]),
        helper.make_node("MatMul", ["latent", "v"], ["logits"]),
        helper.make_node("Add", ["logits", "offset"], ["shifted"]),
        helper.make_node("Sigmoid" if sigmoid else "Identity", ["shifted"], ["motif_scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 100, 9])],
        [
            helper.make_tensor_value_info("latent", TensorProto.FLOAT, [1, 64]),
            helper.make_tensor_value_info("motif_scores", TensorProto.FLOAT, [1, 12]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def assert_not_ready(config: Config, reason: str, *, model: str = "unknown") -> None:
    """503 on /readyz with the reason; /healthz, /metrics still answer; /infer says why."""
    with client_for(config) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["ready"] is False
        assert r.json()["reason"] == reason
        h = c.get("/healthz")
        assert h.status_code == 200
        assert h.json()["ok"] is True
        assert h.json()["ready"] is False
        assert h.json()["model"] == model
        metrics = c.get("/metrics")
        assert metrics.status_code == 200
        assert "sidecar_ready 0.0" in metrics.text
        i = c.post("/infer", json=GOOD)
        assert i.status_code == 503
        assert i.json() == {
            "error": "not_ready",
            "detail": f"the sidecar is not ready: {reason}",
            "loc": None,
        }


def test_manifest_missing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "manifest.json"
    cfg = Config(infer_mode="onnx", model_manifest=path)
    assert_not_ready(cfg, f"model manifest not found: {path} (MODEL_MANIFEST)")


def test_manifest_not_json(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text("{not json")
    reason = (
        f"model manifest {path} is not valid JSON: "
        "unexpected character, expected a string key: line 1 column 2 (char 1)"
    )
    assert_not_ready(Config(infer_mode="onnx", model_manifest=path), reason)


def test_artifact_missing(model_dir: Path, onnx_config: Config) -> None:
    (model_dir / ARTIFACT_NAME).unlink()
    reason = f"model artifact not found: {model_dir / ARTIFACT_NAME}"
    assert_not_ready(onnx_config, reason, model="tcn_encoder")


def test_sha256_mismatch_is_caught_before_load(model_dir: Path, onnx_config: Config) -> None:
    artifact = model_dir / ARTIFACT_NAME
    expected = sha256_of(artifact)
    with artifact.open("ab") as fh:
        fh.write(b"\0")
    reason = (
        f"sha256 mismatch for {artifact}: the manifest says {expected}, "
        f"the file is {sha256_of(artifact)}"
    )
    assert_not_ready(onnx_config, reason, model="tcn_encoder")


def test_corrupt_artifact_with_matching_sha_fails_to_load(tmp_path: Path) -> None:
    artifact = tmp_path / ARTIFACT_NAME
    artifact.write_bytes(b"not an onnx model")
    manifest = write_manifest(tmp_path, artifact)
    with client_for(Config(infer_mode="onnx", model_manifest=manifest)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["reason"].startswith(f"onnxruntime cannot load {artifact}: ")


def test_warm_up_failure(tmp_path: Path) -> None:
    artifact = tiny_onnx(tmp_path / ARTIFACT_NAME, motif_offset=3.0, sigmoid=False)
    manifest = write_manifest(tmp_path, artifact)
    with client_for(Config(infer_mode="onnx", model_manifest=manifest)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        reason = r.json()["reason"]
        assert reason.startswith("warm-up: motif_scores outside [0, 1] (min ")
        assert reason.endswith("); the model must end in a sigmoid")
        assert c.post("/infer", json=GOOD).status_code == 503


def test_a_contract_shaped_model_gets_ready(tmp_path: Path) -> None:
    artifact = tiny_onnx(tmp_path / ARTIFACT_NAME)
    manifest = write_manifest(tmp_path, artifact)
    with client_for(Config(infer_mode="onnx", model_manifest=manifest)) as c:
        assert c.get("/readyz").status_code == 200
        assert c.post("/infer", json=GOOD).status_code == 200


def test_manifest_for_another_target(tmp_path: Path) -> None:
    artifact = tmp_path / ARTIFACT_NAME
    shutil.copyfile(REFERENCE_ONNX, artifact)
    manifest = write_manifest(tmp_path, artifact, target="hailo8")
    reason = f"manifest {manifest} is for target 'hailo8', but INFER_MODE=onnx needs target 'cpu'"
    assert_not_ready(Config(infer_mode="onnx", model_manifest=manifest), reason)


def test_num_motifs_must_match_the_manifest(onnx_config: Config) -> None:
    cfg = dataclasses.replace(onnx_config, num_motifs=10)
    reason = (
        f"manifest {cfg.model_manifest} has outputs "
        "{'latent': [1, 64], 'motif_scores': [1, 12]}, the contract with NUM_MOTIFS=10 is "
        "{'latent': [1, 64], 'motif_scores': [1, 10]}"
    )
    assert_not_ready(cfg, reason)


def test_model_path_overrides_the_manifest_artifact(model_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.onnx"
    shutil.move(model_dir / ARTIFACT_NAME, elsewhere)
    manifest = model_dir / "manifest.json"
    with client_for(Config(infer_mode="onnx", model_manifest=manifest, model_path=elsewhere)) as c:
        assert c.get("/readyz").status_code == 200
    other = tiny_onnx(tmp_path / "other.onnx")
    cfg = Config(infer_mode="onnx", model_manifest=manifest, model_path=other)
    with client_for(cfg) as c:
        assert c.get("/readyz").json()["reason"].startswith(f"sha256 mismatch for {other}")


def test_transitions_starting_ready_shutting_down(onnx_config: Config) -> None:
    client = client_for(onnx_config)
    service = client.app.state.service  # type: ignore[attr-defined]
    # Before the lifespan ran: not ready, and it says so.
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["reason"] == "starting"
    with client:
        assert client.get("/readyz").status_code == 200
        assert "sidecar_ready 1.0" in client.get("/metrics").text
    assert service.ready is False
    assert service.reason == "shutting down"
    assert service.backend is None


def test_strict_startup_refuses_to_serve_when_not_ready(tmp_path: Path) -> None:
    cfg = Config(infer_mode="onnx", model_manifest=tmp_path / "manifest.json", strict_startup=True)
    match = "STRICT_STARTUP is set and the sidecar is not ready"
    with pytest.raises(RuntimeError, match=match), client_for(cfg):
        pass


class FlakyBackend(StubBackend):
    """Warms up fine, then the 'device' fails."""

    def __init__(self, num_motifs: int) -> None:
        super().__init__(num_motifs)
        self.calls = 0

    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        if self.calls > 1:
            raise BackendError("HailoRT inference failed: HailoRTTimeout: timed out")
        return super().infer(windows)


def test_inference_failure_is_503_not_500() -> None:
    def factory(config: Config, *args: Any, **kwargs: Any) -> FlakyBackend:
        return FlakyBackend(config.num_motifs)

    with client_for(Config(), backend_factory=factory) as c:
        assert c.get("/readyz").status_code == 200
        r = c.post("/infer", json=GOOD)
        assert r.status_code == 503
        assert r.json()["error"] == "inference_failed"
        assert r.json()["detail"] == "HailoRT inference failed: HailoRTTimeout: timed out"


def test_a_backend_that_crashes_on_load_leaves_the_service_up() -> None:
    class Broken(StubBackend):
        def load(self) -> None:
            raise ZeroDivisionError("bug")

    with client_for(Config(), backend_factory=lambda cfg, *a, **k: Broken(12)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["reason"] == "start-up failed: ZeroDivisionError: bug"
        assert c.get("/healthz").status_code == 200


def test_manifest_fields_are_validated(tmp_path: Path) -> None:
    artifact = tmp_path / ARTIFACT_NAME
    shutil.copyfile(REFERENCE_ONNX, artifact)
    path = write_manifest(tmp_path, artifact)
    data = orjson.loads(path.read_bytes())
    for change, reason in [
        ({"schema": 2}, f"model manifest {path} has schema 2, expected 1"),
        ({"sha256": "abc"}, f"model manifest {path}: sha256 'abc' is not 64 hex digits"),
        ({"artifact": "../x.onnx"}, f"model manifest {path}: artifact '../x.onnx' must be a "
         "file name beside the manifest"),
        ({"version": 3}, f"model manifest {path}: 'version' must be a non-empty string"),
        ({"inputs": {"x": "1,100,9"}}, f"model manifest {path}: 'inputs' must map names to "
         "lists of integers"),
    ]:  # fmt: skip
        path.write_bytes(orjson.dumps({**data, **change}))
        with client_for(Config(infer_mode="onnx", model_manifest=path)) as c:
            assert c.get("/readyz").json()["reason"] == reason
    del data["outputs"]
    path.write_bytes(orjson.dumps(data))
    with client_for(Config(infer_mode="onnx", model_manifest=path)) as c:
        assert c.get("/readyz").json()["reason"] == f"model manifest {path} lacks outputs"
