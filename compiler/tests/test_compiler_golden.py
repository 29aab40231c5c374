"""Golden vectors: the compiled model's outputs on seeded windows, beside the artifact."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hef_compiler import artifacts
from hef_compiler.config import load_config
from hef_compiler.errors import ConfigError
from hefc_testing import Run

GOLDEN = "tcn_encoder-0.1.0.golden.json"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_golden_file_format_checksum_entry_and_manifest(
    run_cli: Callable[..., Run], workspace: Path
) -> None:
    run = run_cli()
    assert run.code == 0, run.stderr
    out = workspace / "artifacts"
    doc = json.loads((out / GOLDEN).read_text())
    assert doc["schema"] == 1
    assert (doc["model"], doc["version"], doc["target"]) == ("tcn_encoder", "0.1.0", "cpu")
    assert doc["artifact"] == "tcn_encoder-0.1.0.onnx"
    assert doc["artifact_sha256"] == _sha(out / "tcn_encoder-0.1.0.onnx")
    assert doc["produced_by"].startswith("onnxruntime 1.")
    assert doc["channels"] == ["ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz"]
    windows = np.asarray(doc["windows"], dtype=np.float32)
    assert windows.shape == (8, 100, 9)
    assert np.asarray(doc["outputs"]["latent"]).shape == (8, 64)
    assert np.asarray(doc["outputs"]["motif_scores"]).shape == (8, 12)
    # Tolerances are the config's parity thresholds.
    assert doc["tolerances"] == {
        "latent": {"max_abs_error": 0.15, "min_cosine_similarity": 0.995},
        "motif_scores": {"max_abs_error": 0.05, "min_cosine_similarity": 0.995},
    }
    # Listed in the checksum file (sha256sum -c passes) and named in the manifest.
    sums = artifacts.read_checksums(out / artifacts.CHECKSUM_FILE)
    assert sums[GOLDEN] == _sha(out / GOLDEN)
    check = subprocess.run(
        ["sha256sum", "-c", artifacts.CHECKSUM_FILE], cwd=out, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    manifest = json.loads((out / "tcn_encoder-0.1.0.manifest.json").read_text())
    assert manifest["golden"]["file"] == GOLDEN
    assert manifest["golden"]["sha256"] == _sha(out / GOLDEN)
    assert manifest["golden"]["windows"] == 8
    assert run.summary["golden"] == {"file": GOLDEN, "sha256": _sha(out / GOLDEN)}


def test_golden_outputs_are_the_compiled_artifact_s_and_exact(
    run_cli: Callable[..., Run], workspace: Path
) -> None:
    """The recorded outputs are what the INT8 artifact computes on the recorded windows,
    and the windows survive JSON bit for bit (float32 written exactly)."""
    assert run_cli().code == 0
    out = workspace / "artifacts"
    doc = json.loads((out / GOLDEN).read_text())
    session = ort.InferenceSession(
        str(out / "tcn_encoder-0.1.0.onnx"), providers=["CPUExecutionProvider"]
    )
    for i, window in enumerate(np.asarray(doc["windows"], dtype=np.float32)):
        latent, motifs = session.run(["latent", "motif_scores"], {"x": window[None]})
        assert np.array_equal(latent.ravel(), np.asarray(doc["outputs"]["latent"][i], np.float32))
        assert np.array_equal(
            motifs.ravel(), np.asarray(doc["outputs"]["motif_scores"][i], np.float32)
        )
    # Not the float model's numbers: the compiled (quantised) one's.
    float_session = ort.InferenceSession(
        str(workspace / "exports" / "tcn_encoder.onnx"), providers=["CPUExecutionProvider"]
    )
    window = np.asarray(doc["windows"][0], dtype=np.float32)[None]
    float_latent = float_session.run(["latent"], {"x": window})[0].ravel()
    assert not np.array_equal(float_latent, np.asarray(doc["outputs"]["latent"][0], np.float32))


def test_golden_windows_are_deterministic_and_recompile_when_missing(
    run_cli: Callable[..., Run], workspace: Path
) -> None:
    assert run_cli().code == 0
    out = workspace / "artifacts"
    first = (out / GOLDEN).read_bytes()
    (out / GOLDEN).unlink()
    again = run_cli()
    assert again.summary["status"] == "compiled"
    assert any("golden vectors" in r for r in again.summary["reasons"]), again.summary
    assert json.loads((out / GOLDEN).read_bytes())["windows"] == json.loads(first)["windows"]
    assert run_cli().summary["status"] == "up_to_date"


def test_golden_config_is_checked(write_config: Callable[..., Path], workspace: Path) -> None:
    path = write_config(golden={"windows": 65})
    with pytest.raises(ConfigError, match=r"golden\.windows"):
        load_config(path, workspace)
    path = write_config(golden={"windows": 4, "sede": 3})
    with pytest.raises(ConfigError, match=r"golden\.sede"):
        load_config(path, workspace)
    cfg = load_config(write_config(golden=None), workspace)
    assert (cfg.golden.windows, cfg.golden.seed) == (8, 11)
