"""Shared fixtures: the repo, the reference model and config, and a CLI runner."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hef_compiler import cli
from hefc_testing import Run

REPO = Path(__file__).resolve().parents[2]
REFERENCE_CONFIG = REPO / "hailo_models" / "tcn_encoder.yaml"
REFERENCE_ONNX = REPO / "exports" / "tcn_encoder.onnx"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def reference_config() -> dict[str, Any]:
    return yaml.safe_load(REFERENCE_CONFIG.read_text())


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A repo-like tree: exports/tcn_encoder.onnx and hailo_models/tcn_encoder.yaml."""
    root = tmp_path / "repo"
    (root / "exports").mkdir(parents=True)
    (root / "hailo_models").mkdir()
    shutil.copy(REFERENCE_ONNX, root / "exports" / "tcn_encoder.onnx")
    shutil.copy(REFERENCE_CONFIG, root / "hailo_models" / "tcn_encoder.yaml")
    return root


@pytest.fixture
def write_config(workspace: Path, reference_config: dict[str, Any]) -> Callable[..., Path]:
    """Write hailo_models/tcn_encoder.yaml in the workspace with top-level overrides."""

    def write(**overrides: Any) -> Path:
        data = {**reference_config, **overrides}
        for key, value in list(data.items()):
            if value is None:
                del data[key]
        path = workspace / "hailo_models" / "tcn_encoder.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def run_cli(workspace: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run hef-compile in-process against the workspace; parse the JSON summary."""

    def run(*args: str, env: Mapping[str, str] | None = None) -> Run:
        argv = ["--model", "hailo_models/tcn_encoder.yaml", "--repo-root", str(workspace), *args]
        if "--output" not in args:
            argv += ["--output", str(workspace / "artifacts")]
        code = cli.main(argv, env=env)
        out, err = capsys.readouterr()
        lines = out.strip().splitlines()
        assert len(lines) == 1, f"stdout must be one JSON line, got: {out!r}"
        return Run(code, json.loads(lines[0]), out, err)

    return run
