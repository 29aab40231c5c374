"""The committed reference model is exactly what exports/make_tcn_encoder.py writes."""

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

EXPORTS = Path(__file__).resolve().parents[1] / "exports"


def _generator():
    spec = importlib.util.spec_from_file_location(
        "make_tcn_encoder", EXPORTS / "make_tcn_encoder.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_model_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "tcn_encoder.onnx"
    _generator().main(["--output", str(out)])
    committed = (EXPORTS / "tcn_encoder.onnx").read_bytes()
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(committed).hexdigest()


def test_model_passes_checker_and_uses_hailo_friendly_ops() -> None:
    model = onnx.load(EXPORTS / "tcn_encoder.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 13
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 4
    for node in convs:  # Conv2d with (1, k) kernels, not Conv1d
        kernel = next(a for a in node.attribute if a.name == "kernel_shape").ints
        assert list(kernel) == [1, 3]


def test_model_runs_with_contract_shapes() -> None:
    session = ort.InferenceSession(
        str(EXPORTS / "tcn_encoder.onnx"), providers=["CPUExecutionProvider"]
    )
    x = np.random.default_rng(1).standard_normal((1, 100, 9)).astype(np.float32)
    latent, motifs = session.run(["latent", "motif_scores"], {"x": x})
    assert latent.shape == (1, 64)
    assert motifs.shape == (1, 12)
    assert np.isfinite(latent).all()
    assert ((motifs >= 0) & (motifs <= 1)).all()
    # Outputs depend on the input: a different window gives different scores.
    _, other = session.run(["latent", "motif_scores"], {"x": x * -1.5})
    assert np.abs(other - motifs).max() > 1e-3


def test_num_motifs_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        _generator().build_model(num_motifs=0)
