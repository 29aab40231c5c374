"""Parity of a compiled (quantised) model against the float ONNX model.

Figures per output over the held-out windows:
* ``max_abs_error``: the largest absolute difference of any element in any window;
* ``cosine_similarity``: the smallest per-window cosine similarity (worst window).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from hef_compiler.config import ParitySpec

# No telemetry from a build job (and on a read-only root it only warns).
ort.disable_telemetry_events()


@dataclass(frozen=True)
class ParityFigures:
    max_abs_error: dict[str, float]
    cosine_similarity: dict[str, float]
    windows: int


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def compare(
    reference: Path,
    candidate: Path,
    windows: np.ndarray,
    input_name: str,
    outputs: Sequence[str],
) -> ParityFigures:
    """Run both models on every window and measure how far ``candidate`` strays."""
    ref, cand = session(reference), session(candidate)
    max_abs = dict.fromkeys(outputs, 0.0)
    cos = dict.fromkeys(outputs, 1.0)
    for window in windows:
        feed = {input_name: window[None, ...].astype(np.float32)}
        expected = ref.run(list(outputs), feed)
        got = cand.run(list(outputs), feed)
        for name, e, g in zip(outputs, expected, got, strict=True):
            e64, g64 = e.astype(np.float64).ravel(), g.astype(np.float64).ravel()
            max_abs[name] = max(max_abs[name], float(np.max(np.abs(e64 - g64))))
            cos[name] = min(cos[name], _cosine(e64, g64))
    return ParityFigures(max_abs_error=max_abs, cosine_similarity=cos, windows=len(windows))


def failures(figures: ParityFigures, spec: ParitySpec) -> list[str]:
    """One line per threshold the figures miss (empty when parity holds)."""
    out: list[str] = []
    for name, limit in spec.max_abs_error.items():
        value = figures.max_abs_error[name]
        if not value <= limit:
            out.append(f"{name}: max abs error {value:.6g} > threshold {limit:.6g}")
    for name, limit in spec.min_cosine_similarity.items():
        value = figures.cosine_similarity[name]
        if not value >= limit:
            out.append(f"{name}: cosine similarity {value:.6f} < threshold {limit:.6f}")
    return out


def as_manifest(figures: ParityFigures | None, spec: ParitySpec) -> dict[str, Any]:
    """The manifest's ``parity`` block (figures empty when the target measures none)."""
    return {
        "max_abs_error": {
            k: round(v, 6) for k, v in (figures.max_abs_error if figures else {}).items()
        },
        "cosine_similarity": {
            k: round(v, 6) for k, v in (figures.cosine_similarity if figures else {}).items()
        },
        "thresholds": spec.thresholds(),
    }
