"""The CLI contract: one JSON line on stdout, exit codes, idempotence (skip and --check),
x86_64 only, atomic outputs, the checksum file and the manifest."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hef_compiler import __version__, artifacts
from hefc_testing import Run, snapshot

MANIFEST_KEYS = [
    "schema",
    "model",
    "version",
    "target",
    "hw_arch",
    "artifact",
    "sha256",
    "inputs",
    "outputs",
    "source_onnx_sha256",
    "config_sha256",
    "compiler",
    "optimization",
    "parity",
    "golden",
    "created_at",
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_content(run_cli: Callable[..., Run], workspace: Path) -> None:
    run = run_cli()
    assert run.code == 0, run.stderr
    out = workspace / "artifacts"
    manifest = json.loads((out / "tcn_encoder-0.1.0.manifest.json").read_text())
    assert list(manifest) == MANIFEST_KEYS
    assert manifest["schema"] == 1
    assert manifest["model"] == "tcn_encoder"
    assert manifest["version"] == "0.1.0"
    assert manifest["target"] == "cpu"
    assert manifest["hw_arch"] is None  # no Hailo architecture: the INT8 ONNX runs on CPU
    assert manifest["optimization"] is None  # the DFC's optimization level (hailo8 only)
    assert manifest["artifact"] == "tcn_encoder-0.1.0.onnx"
    assert manifest["sha256"] == _sha(out / "tcn_encoder-0.1.0.onnx")
    assert manifest["inputs"] == {"x": [1, 100, 9]}
    assert manifest["outputs"] == {"latent": [1, 64], "motif_scores": [1, 12]}
    assert manifest["source_onnx_sha256"] == _sha(workspace / "exports" / "tcn_encoder.onnx")
    assert manifest["config_sha256"] == _sha(workspace / "hailo_models" / "tcn_encoder.yaml")
    assert manifest["compiler"]["name"] == "hef_compiler"
    assert manifest["compiler"]["version"] == __version__
    assert manifest["compiler"]["backend"].startswith("onnxruntime 1.")
    assert set(manifest["parity"]) == {"max_abs_error", "cosine_similarity", "thresholds"}
    assert set(manifest["parity"]["max_abs_error"]) == {"latent", "motif_scores"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["created_at"])
    # The JSON summary says the same.
    assert run.summary["sha256"] == manifest["sha256"]
    assert run.summary["changed"] is True


def test_checksum_file_passes_sha256sum_and_is_updated_not_clobbered(
    run_cli: Callable[..., Run], workspace: Path
) -> None:
    out = workspace / "artifacts"
    out.mkdir()
    other = out / "other_model-1.0.0.hef"
    other.write_bytes(b"another model's artifact")
    (out / artifacts.CHECKSUM_FILE).write_text(
        f"{_sha(other)}  {other.name}\n"
        f"{'0' * 64}  gone-0.0.1.onnx\n"  # a file that no longer exists: dropped
    )
    assert run_cli().code == 0
    text = (out / artifacts.CHECKSUM_FILE).read_text()
    lines = text.splitlines()
    assert lines == sorted(lines, key=lambda line: line.split("  ", 1)[1])
    assert f"{_sha(other)}  {other.name}" in lines
    assert f"{_sha(out / 'tcn_encoder-0.1.0.onnx')}  tcn_encoder-0.1.0.onnx" in lines
    assert len(lines) == 3  # + the golden vectors
    for line in lines:
        digest, name = line.split("  ", 1)
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
        assert "/" not in name
    check = subprocess.run(
        ["sha256sum", "-c", "--strict", artifacts.CHECKSUM_FILE],
        cwd=out,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "tcn_encoder-0.1.0.onnx: OK" in check.stdout


def test_second_run_is_a_no_op(run_cli: Callable[..., Run], workspace: Path) -> None:
    assert run_cli().summary["changed"] is True
    out = workspace / "artifacts"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir() if p.is_file()}
    run = run_cli()
    assert run.code == 0
    assert run.summary["status"] == "up_to_date"
    assert run.summary["changed"] is False
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir() if p.is_file()}
    assert after == before


def test_check_mode_reports_freshness_without_writing(
    run_cli: Callable[..., Run], write_config: Callable[..., Path], workspace: Path
) -> None:
    missing = run_cli("--check")
    assert missing.code == 0
    assert missing.summary["up_to_date"] is False
    assert any("no manifest" in r for r in missing.summary["reasons"])
    assert not (workspace / "artifacts").exists()

    config = workspace / "hailo_models" / "tcn_encoder.yaml"
    original = config.read_bytes()
    run_cli()
    fresh = run_cli("--check")
    assert fresh.summary["status"] == "up_to_date"
    assert fresh.summary["up_to_date"] is True
    assert fresh.summary["changed"] is False
    assert fresh.summary["sha256"] == _sha(workspace / "artifacts" / "tcn_encoder-0.1.0.onnx")

    write_config(parity={"max_abs_error": 0.2})
    stale = run_cli("--check")
    assert stale.summary["up_to_date"] is False
    assert any(r.startswith("config_sha256 differs") for r in stale.summary["reasons"])

    config.write_bytes(original)  # the same bytes again: fresh again
    onnx_path = workspace / "exports" / "tcn_encoder.onnx"
    onnx_path.touch()  # a newer mtime alone changes nothing
    assert run_cli("--check").summary["up_to_date"] is True
    (workspace / "artifacts" / "tcn_encoder-0.1.0.onnx").write_bytes(b"tampered")
    tampered = run_cli("--check")
    assert tampered.summary["up_to_date"] is False
    assert any("does not match the manifest" in r for r in tampered.summary["reasons"])
    # And a compile repairs it.
    assert run_cli().summary["status"] == "compiled"


def test_compiler_version_change_makes_it_stale(
    run_cli: Callable[..., Run], workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_cli()
    monkeypatch.setattr(artifacts, "__version__", "9.9.9")
    stale = run_cli("--check")
    assert any("compiler.version differs" in r for r in stale.summary["reasons"])


def test_refuses_non_x86_64(
    run_cli: Callable[..., Run], workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    run = run_cli()
    assert run.code == 6
    assert run.summary["error_kind"] == "host"
    assert "this machine is aarch64" in run.summary["error"]
    assert "only on x86_64" in run.summary["error"]
    assert "hef-compile: error: this machine is aarch64" in run.stderr
    assert not (workspace / "artifacts").exists()


def test_failed_compile_leaves_previous_artifacts_byte_identical(
    run_cli: Callable[..., Run], workspace: Path
) -> None:
    assert run_cli().code == 0
    out = workspace / "artifacts"
    before = snapshot(out)
    # A new, corrupt export: validation fails before anything is written.
    onnx_path = workspace / "exports" / "tcn_encoder.onnx"
    good = onnx_path.read_bytes()
    onnx_path.write_bytes(good[:100])
    run = run_cli()
    assert run.code == 3
    assert run.summary["error_kind"] == "onnx"
    assert snapshot(out) == before
    onnx_path.write_bytes(good)


def test_failure_while_publishing_rolls_back(
    run_cli: Callable[..., Run],
    write_config: Callable[..., Path],
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run_cli().code == 0
    out = workspace / "artifacts"
    before = snapshot(out)
    write_config(version="0.1.0", parity={"max_abs_error": 0.3})  # new config: recompile
    real_replace = os.replace
    calls: list[str] = []

    def flaky_replace(src: str | Path, dst: str | Path) -> None:
        # Let the artifact move in, then fail on the manifest.
        if Path(dst).parent == out:
            calls.append(Path(dst).name)
            if Path(dst).name.endswith(".manifest.json"):
                raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", flaky_replace)
    run = run_cli()
    assert run.code == 1
    assert "the previous files were restored" in run.summary["error"]
    assert calls[:3] == [
        "tcn_encoder-0.1.0.onnx",
        "tcn_encoder-0.1.0.golden.json",
        "tcn_encoder-0.1.0.manifest.json",
    ]
    assert snapshot(out) == before
    assert [p for p in out.iterdir() if p.is_dir()] == []


def test_stale_staging_dirs_are_cleared(run_cli: Callable[..., Run], workspace: Path) -> None:
    out = workspace / "artifacts"
    stale = out / f"{artifacts.STAGING_PREFIX}killed"
    stale.mkdir(parents=True)
    (stale / "half.onnx").write_bytes(b"x")
    assert run_cli().code == 0
    assert not stale.exists()


def test_missing_config_is_a_config_error(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hef_compiler import cli

    code = cli.main(["--model", "hailo_models/none.yaml", "--repo-root", str(workspace)])
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert code == 2
    assert summary["error_kind"] == "config"
    assert "model config not found" in err


def test_console_script_stdout_is_one_json_line(workspace: Path) -> None:
    """The installed entry point, as Ansible would run it: stdout is exactly one JSON line."""
    exe = Path(sys.executable).with_name("hef-compile")
    proc = subprocess.run(
        [str(exe), "--model", "hailo_models/tcn_encoder.yaml", "--output", "out"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["status"] == "compiled"
    assert summary["output_dir"] == str(workspace / "out")
    assert "[hef-compile] static INT8 quantisation" in proc.stderr
