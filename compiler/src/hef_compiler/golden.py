"""Golden vectors: a few seeded windows with the *compiled* model's outputs on them.

Written beside the artifact as ``<model>-<version>.golden.json``, listed in
``hef_sha256sum.txt`` and named (with its sha256) in the manifest. The sidecar runs
them before it calls itself ready, and the deploy gate sends them through ``/infer``
on every Pi: both compare with the tolerances recorded here.

    {"schema": 1, "model": ..., "version": ..., "target": "cpu|hailo8",
     "artifact": "<model>-<version>.onnx|.hef", "artifact_sha256": "<hex>",
     "produced_by": "onnxruntime 1.x on the INT8 artifact" | "hailo DFC x emulator (SDK_QUANTIZED)",
     "seed": 11, "channels": ["ax", ...],
     "windows": [[[9 floats] x 100] x K],
     "outputs": {"latent": [[64 floats] x K], "motif_scores": [[NUM_MOTIFS floats] x K]},
     "tolerances": {"latent": {"max_abs_error": e, "min_cosine_similarity": c}, ...}}

The tolerances are the parity thresholds: where the model runs may stray from the
compiled model by no more than the compiled model may stray from the float model.
JSON so that the Pi-side gate reads it with the standard library alone; every float is
a float32 written as the shortest decimal that reads back as the same float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hef_compiler import calibration, contract
from hef_compiler.config import ModelConfig

SCHEMA = 1
# A stream of its own, apart from calibration and parity windows even for equal seeds.
_SEED_OFFSET = 2_000_003


@dataclass(frozen=True)
class GoldenOutputs:
    """What a target's reference run gave on the golden windows."""

    outputs: dict[str, np.ndarray]  # name -> (K, n) float32
    produced_by: str


def _float32_lists(values: np.ndarray) -> Any:
    """Nested lists of floats, each the shortest decimal of its float32 (half the size of
    a double's repr, and exact once read back as float32)."""
    flat = [float(str(v)) for v in values.astype(np.float32).ravel()]
    return np.asarray(flat, dtype=np.float64).reshape(values.shape).tolist()


def windows(cfg: ModelConfig) -> np.ndarray:
    """The golden windows (K, 100, 9) float32, deterministic from the config's seed."""
    return calibration.generate_windows(cfg.golden.windows, cfg.golden.seed + _SEED_OFFSET)


def tolerances(cfg: ModelConfig) -> dict[str, dict[str, float]]:
    return {
        name: {
            "max_abs_error": cfg.parity.max_abs_error[name],
            "min_cosine_similarity": cfg.parity.min_cosine_similarity[name],
        }
        for name in cfg.outputs
    }


def document(
    cfg: ModelConfig,
    *,
    target: str,
    artifact_name: str,
    artifact_sha256: str,
    golden_windows: np.ndarray,
    result: GoldenOutputs,
) -> dict[str, Any]:
    """The golden file's content; checks that every output has K rows of its width."""
    k = len(golden_windows)
    outputs: dict[str, Any] = {}
    for name, shape in cfg.outputs.items():
        values = np.asarray(result.outputs.get(name), dtype=np.float32)
        want = (k, int(np.prod(shape[1:])))
        if values.shape != want:
            raise ValueError(f"golden outputs for {name!r} have shape {values.shape}, want {want}")
        if not np.isfinite(values).all():
            raise ValueError(f"golden outputs for {name!r} contain NaN or infinite values")
        outputs[name] = _float32_lists(values)
    return {
        "schema": SCHEMA,
        "model": cfg.model,
        "version": cfg.version,
        "target": target,
        "artifact": artifact_name,
        "artifact_sha256": artifact_sha256,
        "produced_by": result.produced_by,
        "seed": cfg.golden.seed,
        "channels": list(contract.CHANNEL_ORDER),
        "windows": _float32_lists(golden_windows),
        "outputs": outputs,
        "tolerances": tolerances(cfg),
    }


def summary(doc: Mapping[str, Any], name: str, sha256: str) -> dict[str, Any]:
    """The manifest's ``golden`` entry."""
    return {
        "file": name,
        "sha256": sha256,
        "windows": len(doc["windows"]),
        "produced_by": doc["produced_by"],
        "tolerances": doc["tolerances"],
    }
