"""The model manifest the compiler writes beside each artifact, and the sha256 check.

    {"schema": 1, "model": "tcn_encoder", "version": "0.1.0", "target": "cpu|hailo8",
     "artifact": "tcn_encoder-0.1.0.onnx", "sha256": "<hex>",
     "inputs": {"x": [1, 100, 9]}, "outputs": {"latent": [1, 64], "motif_scores": [1, 12]},
     "source_onnx_sha256": "...", "config_sha256": "...", "compiler": {...},
     "parity": {...}, "created_at": "...Z"}

The artifact path is relative to the manifest's directory unless MODEL_PATH/HEF_PATH
overrides it; either way its sha256 must equal the manifest's before it is loaded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from . import contract

SCHEMA: Final = 1
TARGETS: Final = {"onnx": "cpu", "hailo": "hailo8"}
SUFFIXES: Final = {"cpu": ".onnx", "hailo8": ".hef"}
_HEX64: Final = re.compile(r"[0-9a-f]{64}")


class ManifestError(Exception):
    """The manifest is missing, unreadable, or does not fit the contract or the mode."""


class ArtifactError(Exception):
    """The artifact is missing or its sha256 does not match the manifest."""


@dataclass(frozen=True)
class Manifest:
    path: Path
    model: str
    version: str
    target: str
    artifact: str
    sha256: str
    inputs: dict[str, list[int]]
    outputs: dict[str, list[int]]
    raw: dict[str, Any]

    def artifact_path(self, override: Path | None = None) -> Path:
        return override if override is not None else self.path.parent / self.artifact

    def check(self, mode: str, num_motifs: int) -> None:
        """Refuse a manifest whose target or shapes do not match this sidecar's contract."""
        want_target = TARGETS[mode]
        if self.target != want_target:
            raise ManifestError(
                f"manifest {self.path} is for target {self.target!r}, "
                f"but INFER_MODE={mode} needs target {want_target!r}"
            )
        suffix = SUFFIXES[want_target]
        if not self.artifact.endswith(suffix):
            raise ManifestError(
                f"manifest {self.path} names artifact {self.artifact!r}, but target "
                f"{want_target!r} (INFER_MODE={mode}) needs a {suffix} file"
            )
        want_in = {contract.INPUT_NAME: list(contract.INPUT_SHAPE)}
        if self.inputs != want_in:
            raise ManifestError(
                f"manifest {self.path} has inputs {self.inputs}, the contract is {want_in}"
            )
        want_out = {k: list(v) for k, v in contract.output_shapes(num_motifs).items()}
        if self.outputs != want_out:
            raise ManifestError(
                f"manifest {self.path} has outputs {self.outputs}, the contract with "
                f"NUM_MOTIFS={num_motifs} is {want_out}"
            )


def load_manifest(path: Path) -> Manifest:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ManifestError(f"model manifest not found: {path} (MODEL_MANIFEST)") from None
    except OSError as exc:
        raise ManifestError(f"model manifest {path} cannot be read: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"model manifest {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"model manifest {path} must be a JSON object")
    if data.get("schema") != SCHEMA:
        raise ManifestError(
            f"model manifest {path} has schema {data.get('schema')!r}, expected {SCHEMA}"
        )
    missing = [
        k
        for k in ("model", "version", "target", "artifact", "sha256", "inputs", "outputs")
        if k not in data
    ]
    if missing:
        raise ManifestError(f"model manifest {path} lacks {', '.join(missing)}")
    for key in ("model", "version", "target", "artifact", "sha256"):
        if not isinstance(data[key], str) or not data[key]:
            raise ManifestError(f"model manifest {path}: {key!r} must be a non-empty string")
    sha = data["sha256"].lower()
    if not _HEX64.fullmatch(sha):
        raise ManifestError(
            f"model manifest {path}: sha256 {data['sha256']!r} is not 64 hex digits"
        )
    for key in ("inputs", "outputs"):
        shapes = data[key]
        if not isinstance(shapes, dict) or not all(
            isinstance(v, list) and all(type(d) is int for d in v) for v in shapes.values()
        ):
            raise ManifestError(
                f"model manifest {path}: {key!r} must map names to lists of integers"
            )
    if "/" in data["artifact"] or data["artifact"] in (".", ".."):
        raise ManifestError(
            f"model manifest {path}: artifact {data['artifact']!r} must be a file name "
            "beside the manifest"
        )
    return Manifest(
        path=path,
        model=data["model"],
        version=data["version"],
        target=data["target"],
        artifact=data["artifact"],
        sha256=sha,
        inputs=data["inputs"],
        outputs=data["outputs"],
        raw=data,
    )


def sha256_of(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def verify_artifact(path: Path, expected_sha256: str) -> None:
    """Raise ArtifactError unless `path` exists and hashes to `expected_sha256`."""
    try:
        actual = sha256_of(path)
    except FileNotFoundError:
        raise ArtifactError(f"model artifact not found: {path}") from None
    except IsADirectoryError:
        raise ArtifactError(f"model artifact {path} is a directory, not a file") from None
    except OSError as exc:
        raise ArtifactError(f"model artifact {path} cannot be read: {exc.strerror}") from None
    if actual != expected_sha256:
        raise ArtifactError(
            f"sha256 mismatch for {path}: the manifest says {expected_sha256}, the file is {actual}"
        )


def write_manifest(
    directory: Path,
    artifact: Path,
    *,
    model: str = "tcn_encoder",
    version: str = "0.1.0",
    target: str = "cpu",
    num_motifs: int = contract.DEFAULT_NUM_MOTIFS,
    filename: str = "manifest.json",
) -> Path:
    """Write a manifest for an artifact already in `directory` (tests, the benchmark, local runs).

    The compiler writes the real ones; this writes the same fixed format with the
    fields the sidecar reads, so a local .onnx can be served without the compiler.
    `filename`: the compiler names it `<model>-<version>.manifest.json` (what discovery
    in MODELS_DIR looks for); the default `manifest.json` suits MODEL_MANIFEST.
    """
    data = {
        "schema": SCHEMA,
        "model": model,
        "version": version,
        "target": target,
        "artifact": artifact.name,
        "sha256": sha256_of(artifact),
        "inputs": {contract.INPUT_NAME: list(contract.INPUT_SHAPE)},
        "outputs": {k: list(v) for k, v in contract.output_shapes(num_motifs).items()},
        "source_onnx_sha256": None,
        "config_sha256": None,
        "compiler": {"name": "hailo_sidecar.manifest.write_manifest"},
        "parity": {},
        "created_at": None,
    }
    path = directory / filename
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return path
