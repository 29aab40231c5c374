"""Golden vectors: the compiled model's outputs on a few seeded windows, checked here.

The compiler writes ``<model>-<version>.golden.json`` beside the artifact and names it,
with its sha256, in the manifest (``"golden": {"file", "sha256", ...}``). Before the
sidecar calls itself ready it runs those windows through its backend and compares
each output with the recorded one: the largest absolute error and the smallest
per-window cosine similarity must be within the file's tolerances. A model that
loads and answers in the right shapes but computes something else (permuted
channels, another preprocessing, a runtime that differs) is not ready, and
``/readyz`` says which output, which window and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from . import contract
from .manifest import ArtifactError, Manifest, ManifestError, verify_artifact

SCHEMA = 1


class GoldenMismatchError(Exception):
    """The backend's outputs on the golden windows are outside the tolerances."""


@dataclass(frozen=True)
class Golden:
    path: Path
    windows: np.ndarray  # (K, 100, 9) float32
    outputs: dict[str, np.ndarray]  # name -> (K, n) float64
    tolerances: dict[str, dict[str, float]]
    produced_by: str


def load(manifest: Manifest, num_motifs: int) -> Golden | None:
    """The golden file the manifest names, sha256-verified; None when it names none."""
    entry = manifest.raw.get("golden")
    if entry is None:
        return None
    where = f"manifest {manifest.path}: golden"
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise ManifestError(f"{where} must be an object with 'file' and 'sha256'")
    name = entry["file"]
    if "/" in name or name in ("", ".", ".."):
        raise ManifestError(f"{where} file {name!r} must be a file name beside the manifest")
    path = manifest.path.parent / name
    try:
        verify_artifact(path, str(entry.get("sha256", "")).lower())
    except ArtifactError as exc:
        raise ArtifactError(f"golden vectors: {exc}") from None
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"golden vectors {path} are not valid JSON: {exc}") from None
    return parse(doc, path, manifest, num_motifs)


def parse(doc: Any, path: Path, manifest: Manifest, num_motifs: int) -> Golden:
    def bad(problem: str) -> ManifestError:
        return ManifestError(f"golden vectors {path}: {problem}")

    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise bad(f"expected a JSON object with schema {SCHEMA}")
    for key, want in (
        ("model", manifest.model),
        ("version", manifest.version),
        ("artifact_sha256", manifest.sha256),
    ):
        if doc.get(key) != want:
            raise bad(f"{key} is {doc.get(key)!r}, the manifest's artifact is {want!r}")
    try:
        windows = np.asarray(doc["windows"], dtype=np.float32)
        widths = {k: v[-1] for k, v in contract.output_shapes(num_motifs).items()}
        # float32 first: each value is the shortest decimal of a float32.
        outputs = {
            k: np.asarray(doc["outputs"][k], dtype=np.float32).astype(np.float64) for k in widths
        }
        tolerances = {
            k: {
                "max_abs_error": float(doc["tolerances"][k]["max_abs_error"]),
                "min_cosine_similarity": float(doc["tolerances"][k]["min_cosine_similarity"]),
            }
            for k in widths
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"missing or malformed field ({type(exc).__name__}: {exc})") from None
    k = len(windows)
    if k < 1 or windows.shape != (k, contract.WINDOW, contract.CHANNELS):
        raise bad(f"windows have shape {windows.shape}, expected (K, 100, 9)")
    for name, width in widths.items():
        if outputs[name].shape != (k, width):
            raise bad(f"outputs.{name} has shape {outputs[name].shape}, expected ({k}, {width})")
    return Golden(path, windows, outputs, tolerances, str(doc.get("produced_by", "")))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity; two zero rows agree (1), one zero row does not (0)."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.einsum("ij,ij->i", a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = dot / (na * nb)
    cos = np.where((na == 0) & (nb == 0), 1.0, cos)
    return np.where((na == 0) ^ (nb == 0), 0.0, cos)


def compare(golden: Golden, got: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per output: max abs error, min cosine and the worst window; ``ok`` and the reason."""
    report: dict[str, Any] = {"windows": len(golden.windows), "outputs": {}, "ok": True}
    problems: list[str] = []
    for name, expected in golden.outputs.items():
        actual = np.asarray(got[name], dtype=np.float64).reshape(expected.shape)
        errors = np.abs(actual - expected).max(axis=1)
        cosines = _cosines(actual, expected)
        if not np.isfinite(actual).all():
            errors = np.where(np.isfinite(actual).all(axis=1), errors, np.inf)
            cosines = np.where(np.isfinite(actual).all(axis=1), cosines, -1.0)
        tol = golden.tolerances[name]
        worst_err, worst_cos = int(np.argmax(errors)), int(np.argmin(cosines))
        figures = {
            "max_abs_error": float(errors[worst_err]),
            "min_cosine_similarity": float(cosines[worst_cos]),
            **{f"tolerance_{k}": v for k, v in tol.items()},
        }
        report["outputs"][name] = figures
        if not errors[worst_err] <= tol["max_abs_error"]:
            problems.append(
                f"{name}: max abs error {errors[worst_err]:.6g} > {tol['max_abs_error']:.6g} "
                f"(window {worst_err})"
            )
        if not cosines[worst_cos] >= tol["min_cosine_similarity"]:
            problems.append(
                f"{name}: cosine similarity {cosines[worst_cos]:.6f} < "
                f"{tol['min_cosine_similarity']:.6f} (window {worst_cos})"
            )
    if problems:
        report["ok"] = False
        report["reason"] = (
            f"golden check failed on {len(golden.windows)} windows of {golden.path.name}: "
            + "; ".join(problems)
        )
    return report
