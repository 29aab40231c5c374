"""The model config: the reference loads; every invalid value names its key and the
allowed values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hef_compiler.config import load_config
from hef_compiler.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
REFERENCE_CONFIG = REPO / "hailo_models" / "tcn_encoder.yaml"


def test_reference_config_loads() -> None:
    cfg = load_config(REFERENCE_CONFIG, REPO)
    assert cfg.model == "tcn_encoder"
    assert cfg.version == "0.1.0"
    assert cfg.onnx_path == REPO / "exports" / "tcn_encoder.onnx"
    assert cfg.hw_arch == "hailo8"
    assert cfg.target == "cpu"
    assert cfg.inputs == {"x": (1, 100, 9)}
    assert cfg.outputs == {"latent": (1, 64), "motif_scores": (1, 12)}
    assert cfg.num_motifs == 12
    assert cfg.calibration.generated
    assert (cfg.calibration.windows, cfg.calibration.seed) == (512, 20261123)
    assert cfg.parity.max_abs_error == {"latent": 0.15, "motif_scores": 0.05}
    assert cfg.parity.min_cosine_similarity == {"latent": 0.995, "motif_scores": 0.995}
    assert cfg.dfc.start_node_names == ("tcn0_conv",)
    assert cfg.dfc.end_node_names == ("latent_head", "motif_prob")
    assert cfg.artifact_name("cpu") == "tcn_encoder-0.1.0.onnx"
    assert cfg.artifact_name("hailo8") == "tcn_encoder-0.1.0.hef"
    assert cfg.manifest_name == "tcn_encoder-0.1.0.manifest.json"
    assert len(cfg.sha256) == 64


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        ({"target": "gpu"}, "'target'", "allowed values: cpu, hailo8"),
        ({"hw_arch": "hailo15h"}, "'hw_arch'", "allowed values: hailo8, hailo8l"),
        ({"version": "1.0"}, "'version'", "semantic version"),
        ({"model": "TCN-Encoder"}, "'model'", "[a-z][a-z0-9_]*"),
        ({"schema": 2}, "'schema'", "allowed values: 1"),
        ({"onnx": "exports/tcn_encoder.pt"}, "'onnx'", ".onnx file"),
        ({"onnx": None}, "'onnx'", "missing; required"),
        ({"targt": "cpu"}, "'targt'", "unknown key; allowed keys here: schema, model"),
        ({"inputs": {"x": [1, 50, 9]}}, "'inputs.x'", "[1, 100, 9]"),
        ({"inputs": {"x": [1, 100, 9], "y": [1, 1]}}, "'inputs'", "exactly one input"),
        ({"outputs": {"latent": [1, 64]}}, "'outputs'", "exactly latent, motif_scores"),
        ({"outputs": {"latent": [1, 32], "motif_scores": [1, 12]}}, "'outputs.latent'", "[1, 64]"),
        (
            {"outputs": {"latent": [1, 64], "motif_scores": [12]}},
            "'outputs.motif_scores'",
            "NUM_MOTIFS",
        ),
        ({"calibration": {"path": "c.npy", "generate": {}}}, "'calibration'", "exactly one of"),
        (
            {"dfc": {"optimization_level": 5}},
            "'dfc.optimization_level'",
            "an integer from 0 to 4",
        ),
        ({"calibration": {"path": "c.csv"}}, "'calibration.path'", "(N, 100, 9) float32"),
        ({"calibration": {"generate": {"windows": 2}}}, "'calibration.generate.windows'", ">= 8"),
        (
            {"parity": {"min_cosine_similarity": 1.5}},
            "'parity.min_cosine_similarity'",
            "[-1.0, 1.0]",
        ),
        ({"parity": {"max_abs_error": {"latent": 0.1}}}, "'parity.max_abs_error'", "motif_scores"),
        (
            {"parity": {"max_abs_error": {"latent": 1, "motif_scores": 1, "z": 1}}},
            "'parity.max_abs_error.z'",
            "unknown key",
        ),
        ({"dfc": {"end_node_names": []}}, "'dfc.end_node_names'", "non-empty list"),
        ({"dfc": {"model_script": "s.txt"}}, "'dfc.model_script'", ".alls"),
    ],
)
def test_invalid_values_name_key_and_allowed(
    write_config: Callable[..., Path],
    workspace: Path,
    overrides: dict[str, Any],
    key: str,
    fragment: str,
) -> None:
    path = write_config(**overrides)
    with pytest.raises(ConfigError) as info:
        load_config(path, workspace)
    message = str(info.value)
    assert str(path) in message
    assert f"key {key}" in message
    assert fragment in message


def test_missing_config_file_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model config not found: .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml", tmp_path)


def test_not_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, tmp_path)


def test_scalar_thresholds_apply_to_both_outputs(
    write_config: Callable[..., Path], workspace: Path
) -> None:
    cfg = load_config(write_config(parity={"max_abs_error": 0.2}), workspace)
    assert cfg.parity.max_abs_error == {"latent": 0.2, "motif_scores": 0.2}
    assert cfg.parity.min_cosine_similarity == {"latent": 0.99, "motif_scores": 0.99}


def test_calibration_path_is_taken_from_repo_root(
    write_config: Callable[..., Path], workspace: Path
) -> None:
    cfg = load_config(write_config(calibration={"path": "calib/windows.npy"}), workspace)
    assert cfg.calibration.path == workspace / "calib" / "windows.npy"
    assert not cfg.calibration.generated


def test_config_sha_changes_with_content(
    write_config: Callable[..., Path], workspace: Path
) -> None:
    a = load_config(write_config(), workspace).sha256
    b = load_config(write_config(version="0.1.1"), workspace).sha256
    assert a != b


def test_hailo8l_is_an_architecture_of_the_hailo8_target(
    write_config: Callable[..., Path], workspace: Path
) -> None:
    cfg = load_config(write_config(hw_arch="hailo8l", target="hailo8"), workspace)
    assert cfg.hw_arch == "hailo8l"
    assert cfg.target == "hailo8"
    assert cfg.artifact_name("hailo8") == "tcn_encoder-0.1.0.hef"
