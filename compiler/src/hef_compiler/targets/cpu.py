"""Target ``cpu``: ONNX Runtime graph optimisation + static INT8 quantisation (QDQ).

The same job the DFC's optimize step does for the Hailo-8, done with ONNX Runtime so
the pipeline runs end to end where no DFC exists, and so that there is a numeric
reference: the INT8 model is checked against the float model on held-out windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from hef_compiler import calibration as calib
from hef_compiler import parity, progress
from hef_compiler.config import ModelConfig
from hef_compiler.golden import GoldenOutputs
from hef_compiler.onnx_check import ValidatedModel
from hef_compiler.targets import BuildResult


class WindowReader(CalibrationDataReader):  # type: ignore[misc]  # untyped base
    """Feeds the calibration windows one at a time, as ``{input: (1, 100, 9)}``."""

    def __init__(self, input_name: str, windows: np.ndarray) -> None:
        self.input_name = input_name
        self.windows = windows
        self.index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.windows):
            return None
        window = self.windows[self.index]
        self.index += 1
        return {self.input_name: window[None, ...].astype(np.float32)}

    def rewind(self) -> None:
        self.index = 0


class CpuTarget:
    name = "cpu"

    def backend(self) -> str:
        return f"onnxruntime {ort.__version__}"

    def build(
        self,
        cfg: ModelConfig,
        model: ValidatedModel,
        calibration: np.ndarray,
        work: Path,
        artifact_name: str,
    ) -> BuildResult:
        pre = work / "preprocessed.onnx"
        out = work / artifact_name
        with progress.step("onnxruntime graph optimisation and shape inference"):
            # Static shapes everywhere: ONNX shape inference is enough (no sympy needed).
            quant_pre_process(str(cfg.onnx_path), str(pre), skip_symbolic_shape=True)
        with progress.step(
            f"static INT8 quantisation (QDQ) with {len(calibration)} calibration windows"
        ):
            quantize_static(
                str(pre),
                str(out),
                WindowReader(cfg.input_name, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=False,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        holdout = calib.holdout_windows(cfg.parity.holdout_windows, cfg.parity.holdout_seed)
        with progress.step(
            f"parity check against the float model on {len(holdout)} held-out windows"
        ):
            figures = parity.compare(cfg.onnx_path, out, holdout, cfg.input_name, list(cfg.outputs))
        parity.enforce(figures, cfg, "INT8 model")
        return BuildResult(artifact=out, backend=self.backend(), parity=figures)

    def reference(
        self, cfg: ModelConfig, work: Path, artifact: Path, windows: np.ndarray
    ) -> GoldenOutputs:
        outputs = parity.run_windows(artifact, windows, cfg.input_name, list(cfg.outputs))
        return GoldenOutputs(
            outputs={name: value.astype(np.float32) for name, value in outputs.items()},
            produced_by=f"onnxruntime {ort.__version__} (CPU) on the INT8 artifact",
        )
