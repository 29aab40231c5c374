"""Parity of a compiled (quantised) model against the float ONNX model.

Figures per output over the held-out windows:
* ``max_abs_error``: the largest absolute difference of any element in any window;
* ``cosine_similarity``: the smallest per-window cosine similarity (worst window).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from hef_compiler import progress
from hef_compiler.config import ModelConfig, ParitySpec
from hef_compiler.errors import ParityError

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


def run_windows(
    model: Path, windows: np.ndarray, input_name: str, outputs: Sequence[str]
) -> dict[str, np.ndarray]:
    """``model`` on each window alone (batch 1): ``{output: (N, values per window)}``."""
    sess = session(model)
    rows: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
    for window in windows:
        got = sess.run(list(outputs), {input_name: window[None, ...].astype(np.float32)})
        for name, value in zip(outputs, got, strict=True):
            rows[name].append(np.asarray(value).ravel())
    return {name: np.stack(values) for name, values in rows.items()}


def measure(
    expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], outputs: Sequence[str]
) -> ParityFigures:
    """How far ``got`` strays from ``expected``: per output, arrays with one row per
    window (any trailing shape; compared flattened per window)."""
    max_abs = dict.fromkeys(outputs, 0.0)
    cos = dict.fromkeys(outputs, 1.0)
    count = 0
    for name in outputs:
        e_all = np.asarray(expected[name], dtype=np.float64)
        g_all = np.asarray(got[name], dtype=np.float64)
        e_all, g_all = e_all.reshape(len(e_all), -1), g_all.reshape(len(g_all), -1)
        if e_all.shape != g_all.shape:
            raise ValueError(f"{name}: shapes {e_all.shape} and {g_all.shape} differ")
        count = len(e_all)
        for e64, g64 in zip(e_all, g_all, strict=True):
            max_abs[name] = max(max_abs[name], float(np.max(np.abs(e64 - g64))))
            cos[name] = min(cos[name], _cosine(e64, g64))
    return ParityFigures(max_abs_error=max_abs, cosine_similarity=cos, windows=count)


def compare(
    reference: Path,
    candidate: Path,
    windows: np.ndarray,
    input_name: str,
    outputs: Sequence[str],
) -> ParityFigures:
    """Run both models on every window and measure how far ``candidate`` strays."""
    return measure(
        run_windows(reference, windows, input_name, outputs),
        run_windows(candidate, windows, input_name, outputs),
        outputs,
    )


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


def enforce(figures: ParityFigures, cfg: ModelConfig, subject: str) -> None:
    """Print the figures against the config's thresholds; raise ParityError when any is
    missed. ``subject``: what was measured, e.g. "INT8 model"."""
    spec = cfg.parity
    for name in cfg.outputs:
        progress.say(
            f"parity {name}: max abs error {figures.max_abs_error[name]:.6g} "
            f"(<= {spec.max_abs_error[name]:.6g}), "
            f"min cosine similarity {figures.cosine_similarity[name]:.6f} "
            f"(>= {spec.min_cosine_similarity[name]:.6f})"
        )
    missed = failures(figures, spec)
    if missed:
        raise ParityError(
            f"{subject} fails parity with the float model on "
            f"{figures.windows} held-out windows:\n"
            + "\n".join(f"  - {m}" for m in missed)
            + "\n(thresholds: key 'parity' in "
            f"{cfg.source}; previous artifacts were left as they were)"
        )


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
