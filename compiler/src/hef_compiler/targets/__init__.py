"""Compile targets: one interface, two implementations (``cpu``, ``hailo8``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hef_compiler.config import ModelConfig
from hef_compiler.golden import GoldenOutputs
from hef_compiler.onnx_check import ValidatedModel
from hef_compiler.parity import ParityFigures


@dataclass(frozen=True)
class BuildResult:
    """What a target produced in its work directory."""

    artifact: Path
    backend: str
    parity: ParityFigures | None
    # hailo8: the DFC's optimization level, how it was set, and what the DFC said about it.
    optimization: dict[str, Any] | None = None
    # hailo8: the HEF's network group and vstreams as HailoRT reads them, each matched
    # to the contract's input or output.
    hef_streams: dict[str, Any] | None = None


class Target(Protocol):
    name: str

    def backend(self) -> str:
        """``"<toolchain> <version>"`` for the manifest; raises if the toolchain is missing."""
        ...

    def build(
        self,
        cfg: ModelConfig,
        model: ValidatedModel,
        calibration: np.ndarray,
        work: Path,
        artifact_name: str,
    ) -> BuildResult:
        """Compile into ``work``; return the artifact path (named ``artifact_name``)."""
        ...

    def reference(
        self, cfg: ModelConfig, work: Path, artifact: Path, windows: np.ndarray
    ) -> GoldenOutputs:
        """The compiled model's outputs on ``windows`` (K, 100, 9), for the golden file."""
        ...


def get_target(
    name: str, env: Mapping[str, str] | None = None, scratch: Path | None = None
) -> Target:
    """``scratch``: a writable directory for toolchain runs before the work directory
    exists (the output directory; ``None`` for read-only uses such as ``--check``)."""
    if name == "cpu":
        from hef_compiler.targets.cpu import CpuTarget

        return CpuTarget()
    if name == "hailo8":
        from hef_compiler.targets.hailo8 import Hailo8Target

        return Hailo8Target(env, scratch)
    raise ValueError(f"unknown target {name!r}; allowed: cpu, hailo8")
