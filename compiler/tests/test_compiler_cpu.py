"""Target cpu end to end: INT8 parity within the config thresholds, a runnable artifact,
deterministic bytes, and a parity failure that leaves the old artifacts alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from hef_compiler.calibration import holdout_windows
from hefc_testing import Run, snapshot


def test_int8_parity_within_threshold(run_cli: Callable[..., Run], workspace: Path) -> None:
    run = run_cli()
    assert run.code == 0, run.stderr
    parity = run.summary["parity"]
    thresholds = parity["thresholds"]
    for name in ("latent", "motif_scores"):
        err = parity["max_abs_error"][name]
        cos = parity["cosine_similarity"][name]
        print(f"INT8 parity {name}: max abs error {err:.6f}, min cosine similarity {cos:.6f}")
        assert 0 < err <= thresholds["max_abs_error"][name]
        assert thresholds["min_cosine_similarity"][name] <= cos <= 1.0
    assert "parity latent: max abs error" in run.stderr


def test_artifact_is_int8_qdq_and_runs(run_cli: Callable[..., Run], workspace: Path) -> None:
    run = run_cli()
    artifact = workspace / "artifacts" / "tcn_encoder-0.1.0.onnx"
    model = onnx.load(artifact)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    int8 = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert int8, "weights should be stored as INT8"
    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    latent, motifs = session.run(["latent", "motif_scores"], {"x": holdout_windows(1, 99)})
    assert latent.shape == (1, 64)
    assert motifs.shape == (1, 12)
    assert ((motifs >= 0) & (motifs <= 1)).all()
    assert run.summary["backend"] == f"onnxruntime {ort.__version__}"


def test_same_inputs_give_the_same_artifact_bytes(
    run_cli: Callable[..., Run], workspace: Path
) -> None:
    first = run_cli().summary["sha256"]
    again = run_cli("--force")
    assert again.summary["status"] == "compiled"
    assert again.summary["sha256"] == first


def test_parity_failure_fails_with_figures_and_keeps_old_artifacts(
    run_cli: Callable[..., Run], write_config: Callable[..., Path], workspace: Path
) -> None:
    assert run_cli().code == 0
    before = snapshot(workspace / "artifacts")
    write_config(parity={"max_abs_error": 1e-6, "min_cosine_similarity": 0.99})
    run = run_cli()
    assert run.code == 5
    assert run.summary["status"] == "failed"
    assert run.summary["error_kind"] == "parity"
    assert "latent: max abs error" in run.summary["error"]
    assert "> threshold 1e-06" in run.summary["error"]
    assert snapshot(workspace / "artifacts") == before
    leftovers = [p.name for p in (workspace / "artifacts").iterdir() if p.is_dir()]
    assert leftovers == []


def test_calibration_from_a_npy_file(
    run_cli: Callable[..., Run], write_config: Callable[..., Path], workspace: Path
) -> None:
    from hef_compiler.calibration import generate_windows

    (workspace / "calib").mkdir()
    np.save(workspace / "calib" / "windows.npy", generate_windows(512, 2))
    write_config(calibration={"path": "calib/windows.npy"})
    run = run_cli()
    assert run.code == 0, run.stderr
    assert run.summary["status"] == "compiled"
    # A wrong file fails with the calibration exit code.
    np.save(workspace / "calib" / "windows.npy", np.zeros((4, 100, 3), np.float32))
    bad = run_cli("--force")
    assert bad.code == 7
    assert "shape (4, 100, 3)" in bad.summary["error"]
