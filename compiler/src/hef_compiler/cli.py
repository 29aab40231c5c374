"""``hef-compile``: compile a model config's ONNX for a target into an output directory.

    hef-compile --model hailo_models/tcn_encoder.yaml [--target cpu|hailo8]
                [--output artifacts] [--repo-root .] [--check] [--force]

stdout carries exactly one line, a JSON summary, whatever happens; progress and errors
go to stderr. Exit codes: 0 compiled or already up to date (and every ``--check``),
1 other failure, 2 config, 3 ONNX validation, 4 toolchain (DFC), 5 parity,
6 not x86_64, 7 calibration set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hef_compiler import __version__, artifacts, calibration, golden, progress
from hef_compiler.config import TARGETS, ModelConfig, load_config
from hef_compiler.errors import CompileError, ToolchainError
from hef_compiler.host import require_x86_64
from hef_compiler.onnx_check import validate_onnx
from hef_compiler.parity import as_manifest
from hef_compiler.targets import get_target


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hef-compile",
        description="Compile an ONNX model (per hailo_models/<model>.yaml) for the Hailo-8 "
        "(Hailo DFC) or for CPU (ONNX Runtime INT8), writing the artifact, its manifest "
        "and hef_sha256sum.txt atomically into the output directory.",
    )
    p.add_argument(
        "--model", required=True, type=Path, help="model config, e.g. hailo_models/tcn_encoder.yaml"
    )
    p.add_argument("--target", choices=TARGETS, help="overrides the config's 'target'")
    p.add_argument("--output", type=Path, help="output directory (default: <repo-root>/artifacts)")
    p.add_argument(
        "--repo-root",
        type=Path,
        help="where relative paths (--model, --output, the config's) start "
        "(default: the working directory)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="compile nothing; report whether the output is up to date (exit 0 either way)",
    )
    p.add_argument("--force", action="store_true", help="compile even when up to date")
    p.add_argument("--version", action="version", version=f"hef-compile {__version__}")
    return p


def _emit(summary: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(summary, sort_keys=False) + "\n")
    sys.stdout.flush()


def _under(root: Path, path: Path) -> Path:
    """Relative paths on the command line are taken from --repo-root."""
    return path if path.is_absolute() else root / path


def _base(cfg: ModelConfig, target: str, output: Path) -> dict[str, Any]:
    return {
        "model": cfg.model,
        "version": cfg.version,
        "target": target,
        "output_dir": str(output),
        "artifact": cfg.artifact_name(target),
        "manifest": cfg.manifest_name,
        "checksums": artifacts.CHECKSUM_FILE,
    }


def _backend_or_none(target_name: str, env: Mapping[str, str]) -> tuple[str | None, list[str]]:
    try:
        return get_target(target_name, env).backend(), []
    except ToolchainError as exc:
        return None, [f"backend version not compared: {exc.message.split('. ')[0]}"]


def run_check(
    cfg: ModelConfig, target: str, output: Path, env: Mapping[str, str]
) -> dict[str, Any]:
    onnx_sha = artifacts.sha256_file(cfg.onnx_path) if cfg.onnx_path.is_file() else None
    backend, notes = _backend_or_none(target, env)
    fresh = artifacts.freshness(
        cfg, output, target=target, source_onnx_sha256=onnx_sha, backend=backend
    )
    if onnx_sha is None:
        fresh.reasons.insert(0, f"ONNX model not found: {cfg.onnx_path}")
        fresh.up_to_date = False
    summary = _base(cfg, target, output)
    summary.update(
        status="up_to_date" if fresh.up_to_date else "stale",
        changed=False,
        up_to_date=fresh.up_to_date,
        reasons=fresh.reasons,
        notes=notes,
        source_onnx_sha256=onnx_sha,
        config_sha256=cfg.sha256,
        compiler_version=__version__,
        sha256=(fresh.manifest or {}).get("sha256") if fresh.up_to_date else None,
    )
    return summary


def run_compile(
    cfg: ModelConfig, target_name: str, output: Path, env: Mapping[str, str], force: bool
) -> dict[str, Any]:
    require_x86_64()
    target = get_target(target_name, env, scratch=output)
    summary = _base(cfg, target_name, output)
    with artifacts.locked(output):
        with progress.step(f"validating {cfg.onnx_path} for target '{target_name}'"):
            model = validate_onnx(cfg, target_name)
        backend = target.backend()
        fresh = artifacts.freshness(
            cfg, output, target=target_name, source_onnx_sha256=model.sha256, backend=backend
        )
        if fresh.up_to_date and not force:
            progress.say(
                f"{output / cfg.artifact_name(target_name)} is up to date "
                "(same ONNX, config and compiler); nothing to do (--force compiles anyway)"
            )
            manifest = fresh.manifest or {}
            summary.update(
                status="up_to_date",
                changed=False,
                sha256=manifest.get("sha256"),
                parity=manifest.get("parity"),
                backend=backend,
                reasons=[],
            )
            return summary
        for reason in fresh.reasons if not force else ["--force"]:
            progress.say(f"compiling because: {reason}")
        with artifacts.staging(output) as stage:
            work, out = stage / "work", stage / "out"
            work.mkdir()
            out.mkdir()
            with progress.step("preparing calibration windows"):
                windows = calibration.calibration_windows(cfg.calibration)
            # Libraries that use tempfile (the ORT quantiser) write next to the output,
            # so the container can run with a read-only root filesystem.
            saved_tempdir = tempfile.tempdir
            tempfile.tempdir = str(work)
            try:
                with progress.stdout_to_stderr():
                    result = target.build(cfg, model, windows, work, cfg.artifact_name(target_name))
            finally:
                tempfile.tempdir = saved_tempdir
            artifact = out / cfg.artifact_name(target_name)
            os.replace(result.artifact, artifact)
            artifact_sha = artifacts.sha256_file(artifact)
            golden_windows = golden.windows(cfg)
            with progress.step(f"golden vectors: compiled model on {len(golden_windows)} windows"):
                reference = target.reference(cfg, work, artifact, golden_windows)
            golden_doc = golden.document(
                cfg,
                target=target_name,
                artifact_name=artifact.name,
                artifact_sha256=artifact_sha,
                golden_windows=golden_windows,
                result=reference,
            )
            golden_path = out / cfg.golden_name
            artifacts.write_json(golden_path, golden_doc)
            golden_sha = artifacts.sha256_file(golden_path)
            parity_block = as_manifest(result.parity, cfg.parity)
            manifest = artifacts.build_manifest(
                cfg,
                target=target_name,
                artifact_name=artifact.name,
                artifact_sha256=artifact_sha,
                source_onnx_sha256=model.sha256,
                backend=result.backend,
                parity=parity_block,
                golden=golden.summary(golden_doc, golden_path.name, golden_sha),
                optimization=result.optimization,
                hef_streams=result.hef_streams,
            )
            manifest_path = out / cfg.manifest_name
            artifacts.write_json(manifest_path, manifest)
            checksum_path = out / artifacts.CHECKSUM_FILE
            checksum_path.write_text(
                artifacts.render_checksums(
                    artifacts.updated_checksums(
                        output, {artifact.name: artifact_sha, golden_path.name: golden_sha}
                    )
                ),
                encoding="utf-8",
            )
            with progress.step(f"publishing into {output}"):
                artifacts.publish(
                    output,
                    [artifact, golden_path, manifest_path, checksum_path],
                    stage / "backup",
                )
        progress.say(f"wrote {output / artifact.name} (sha256 {artifact_sha})")
        summary.update(
            status="compiled",
            changed=True,
            sha256=artifact_sha,
            golden={"file": golden_path.name, "sha256": golden_sha},
            parity=parity_block,
            optimization=result.optimization,
            backend=result.backend,
            reasons=fresh.reasons if not force else ["--force"],
        )
        return summary


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ if env is None else env)
    repo_root = (args.repo_root or Path.cwd()).resolve()
    summary: dict[str, Any] = {"status": "failed", "changed": False}
    try:
        cfg = load_config(_under(repo_root, args.model), repo_root)
        target = args.target or cfg.target
        output = _under(repo_root, args.output or Path("artifacts")).resolve()
        summary.update(_base(cfg, target, output))
        if args.check:
            result = run_check(cfg, target, output, env)
        else:
            result = run_compile(cfg, target, output, env, args.force)
        _emit(result)
        return 0
    except CompileError as exc:
        print(f"hef-compile: error: {exc.message}", file=sys.stderr, flush=True)
        summary.update(error_kind=exc.kind, error=exc.message, exit_code=exc.exit_code)
        _emit(summary)
        return exc.exit_code
    except Exception as exc:  # an unexpected failure still gets a JSON line
        traceback.print_exc()
        summary.update(error_kind="internal", error=f"{type(exc).__name__}: {exc}", exit_code=1)
        _emit(summary)
        return 1


if __name__ == "__main__":
    sys.exit(main())
