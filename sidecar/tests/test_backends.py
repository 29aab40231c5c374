"""Backends: onnx equals onnxruntime run directly; the stub is deterministic and input-driven."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import orjson
import pytest
from fastapi.testclient import TestClient
from hailo_sidecar.backends import BackendError, create_backend
from hailo_sidecar.backends.onnx import OnnxBackend
from hailo_sidecar.backends.stub import StubBackend
from hailo_sidecar.config import Config
from onnx import TensorProto, helper, numpy_helper

from .conftest import REFERENCE_ONNX, make_window


def direct(x: np.ndarray, path: Path = REFERENCE_ONNX) -> tuple[np.ndarray, np.ndarray]:
    """onnxruntime's own answer, with a plain default session."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    latent, motifs = session.run(["latent", "motif_scores"], {"x": x})
    return latent, motifs


def onnx_backend(path: Path = REFERENCE_ONNX, **kwargs: object) -> OnnxBackend:
    b = OnnxBackend(path, 12, model="m", version="v", sha256="s", **kwargs)  # type: ignore[arg-type]
    b.load()
    return b


@pytest.mark.parametrize("threads", [1, 2])
def test_onnx_backend_equals_onnxruntime_directly(threads: int) -> None:
    backend = onnx_backend(intra_op_threads=threads)
    for seed in range(5):
        x = make_window(seed)[None]
        latent, motifs = backend.infer(x)
        want_latent, want_motifs = direct(x)
        if threads == 1:  # the sidecar's default: bit-for-bit what onnxruntime gives
            np.testing.assert_array_equal(latent, want_latent)
            np.testing.assert_array_equal(motifs, want_motifs)
        else:
            np.testing.assert_allclose(latent, want_latent, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(motifs, want_motifs, rtol=1e-5, atol=1e-6)
        assert latent.dtype == motifs.dtype == np.float32


def test_onnx_batch_is_the_same_as_one_by_one() -> None:
    backend = onnx_backend()
    xs = np.stack([make_window(s) for s in range(6)])
    latent, motifs = backend.infer(xs)
    assert latent.shape == (6, 64)
    assert motifs.shape == (6, 12)
    for i in range(6):
        one_latent, one_motifs = backend.infer(xs[i : i + 1])
        np.testing.assert_array_equal(latent[i], one_latent[0])
        np.testing.assert_array_equal(motifs[i], one_motifs[0])


def test_onnx_results_are_fresh_arrays() -> None:
    backend = onnx_backend()
    a, _ = backend.infer(make_window(1)[None])
    keep = a.copy()
    backend.infer(make_window(2)[None])
    np.testing.assert_array_equal(a, keep)  # the preallocated buffers are not handed out


def test_http_onnx_numbers_equal_onnxruntime_on_the_same_window(onnx_client: TestClient) -> None:
    x = make_window(11)
    r = onnx_client.post("/infer", content=orjson.dumps({"x": x.tolist()}),
                         headers={"content-type": "application/json"})  # fmt: skip
    body = r.json()
    want_latent, want_motifs = direct(x[None])
    # float32 -> JSON -> float32 is exact both ways, so the numbers are bit-identical.
    np.testing.assert_array_equal(np.array(body["latent"], np.float32), want_latent[0])
    np.testing.assert_array_equal(np.array(body["motif_scores"], np.float32), want_motifs[0])


def dynamic_batch_model(path: Path) -> Path:
    rng = np.random.default_rng(9)
    inits = [
        numpy_helper.from_array(np.array([-1, 900], dtype=np.int64), "flat_shape"),
        numpy_helper.from_array(rng.standard_normal((900, 64)).astype(np.float32) / 30, "w"),
        numpy_helper.from_array(rng.standard_normal((64, 12)).astype(np.float32) / 8, "v"),
    ]
    nodes = [
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["latent"]),
        helper.make_node("MatMul", ["latent", "v"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["motif_scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 100, 9])],
        [
            helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["N", 64]),
            helper.make_tensor_value_info("motif_scores", TensorProto.FLOAT, ["N", 12]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_onnx_dynamic_batch_model_runs_the_batch_at_once(tmp_path: Path) -> None:
    path = dynamic_batch_model(tmp_path / "dyn.onnx")
    backend = onnx_backend(path)
    assert backend.describe().details["dynamic_batch"] is True
    xs = np.stack([make_window(s) for s in range(3)])
    latent, motifs = backend.infer(xs)
    want_latent, want_motifs = direct(xs, path)
    np.testing.assert_allclose(latent, want_latent, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(motifs, want_motifs, rtol=1e-5, atol=1e-6)


def test_onnx_refuses_a_model_off_contract(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"motif_scores has shape \[1, 12\], the contract is "
                       r"\[1, 10\] \(NUM_MOTIFS=10\)"):  # fmt: skip
        OnnxBackend(REFERENCE_ONNX, 10, model="m", version="v", sha256="s").load()
    renamed = onnx.load(REFERENCE_ONNX)
    renamed.graph.input[0].name = "input"
    for node in renamed.graph.node:
        node.input[:] = ["input" if i == "x" else i for i in node.input]
    onnx.save(renamed, tmp_path / "renamed.onnx")
    with pytest.raises(BackendError, match=r"inputs \['input'\] .* do not match the contract"):
        onnx_backend(tmp_path / "renamed.onnx")


def test_stub_is_deterministic_and_depends_on_the_input() -> None:
    a, b = StubBackend(12), StubBackend(12)
    a.load()
    b.load()
    x = make_window(0)[None]
    la, ma = a.infer(x)
    lb, mb = b.infer(x.copy())
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(ma, mb)
    assert a.describe().sha256 == b.describe().sha256
    ly, my = a.infer(make_window(1)[None])
    assert np.abs(ly - la).max() > 1e-3
    assert np.abs(my - ma).max() > 1e-3
    assert np.unique(la).size > 32  # not a constant vector
    assert la.shape == (1, 64)
    assert ma.shape == (1, 12)
    assert ((ma > 0) & (ma < 1)).all()


def test_stub_honours_num_motifs() -> None:
    s = StubBackend(5)
    s.load()
    s.warm_up()
    assert s.infer(make_window(0)[None])[1].shape == (1, 5)


def test_only_the_selected_backend_module_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # importing it would fail
    monkeypatch.setitem(sys.modules, "hailo_platform", None)
    backend = create_backend(Config())
    backend.load()
    backend.warm_up()
    onnx_b = create_backend(Config(infer_mode="onnx", model_manifest=Path("m")), REFERENCE_ONNX)
    with pytest.raises(BackendError, match="onnxruntime is not installed"):
        onnx_b.load()


def test_offload_flags() -> None:
    assert StubBackend.offload is False
    assert OnnxBackend.offload is False
    from hailo_sidecar.backends.hailo import HailoBackend

    assert HailoBackend.offload is True
