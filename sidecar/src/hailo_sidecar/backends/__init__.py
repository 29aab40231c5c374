"""Backends behind one interface (base.Backend), chosen by INFER_MODE.

Only the selected backend's module is imported: the stub never imports
onnxruntime, and nothing imports hailo_platform unless INFER_MODE=hailo.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from .base import Backend, BackendError, BackendInfo

__all__ = ["Backend", "BackendError", "BackendInfo", "create_backend"]


def create_backend(
    config: Config,
    artifact: Path | None = None,
    *,
    model: str = "",
    version: str = "",
    sha256: str = "",
) -> Backend:
    """Construct (not load) the backend for `config.infer_mode`."""
    if config.infer_mode == "stub":
        from .stub import StubBackend

        return StubBackend(config.num_motifs)
    if artifact is None:
        raise ValueError(f"INFER_MODE={config.infer_mode} needs an artifact path")
    if config.infer_mode == "onnx":
        from .onnx import OnnxBackend

        return OnnxBackend(
            artifact,
            config.num_motifs,
            model=model,
            version=version,
            sha256=sha256,
            intra_op_threads=config.ort_intra_op_threads,
        )
    if config.infer_mode == "hailo":
        from .hailo import HailoBackend

        return HailoBackend(
            artifact,
            config.num_motifs,
            model=model,
            version=version,
            sha256=sha256,
            max_batch=config.max_batch,
            device=config.hailo_device,
            timeout_ms=config.hailo_timeout_ms,
        )
    raise ValueError(f"unknown INFER_MODE {config.infer_mode!r}")
