"""The onnx backend: onnxruntime on the CPU, one session, preallocated buffers.

The reference model has a fixed batch of 1, so a batch of N windows is N runs
through one IO binding whose input and output buffers are allocated once at load
(no per-call allocation inside onnxruntime). A model exported with a dynamic batch
dimension is run with the whole batch at once instead.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from .. import contract
from .base import Backend, BackendError, BackendInfo


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(
        self,
        artifact: Path,
        num_motifs: int,
        *,
        model: str,
        version: str,
        sha256: str,
        intra_op_threads: int = 1,
    ) -> None:
        super().__init__(num_motifs)
        self.artifact = artifact
        self._identity = (model, version, sha256)
        self._threads = intra_op_threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._binding: Any = None
        self._dynamic_batch = False
        self._ort_version = ""

    def load(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError(
                "onnxruntime is not installed: install the sidecar with its 'onnx' extra "
                "(pip install 'hailo-sidecar[onnx]')"
            ) from exc
        self._ort_version = ort.__version__
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(self.artifact), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"onnxruntime cannot load {self.artifact}: {exc}") from exc
        self._check_signature(session)
        self._session = session
        if not self._dynamic_batch:
            self._x = np.zeros(contract.INPUT_SHAPE, dtype=np.float32)
            self._latent = np.zeros((1, contract.LATENT_DIM), dtype=np.float32)
            self._motifs = np.zeros((1, self.num_motifs), dtype=np.float32)
            binding = session.io_binding()
            binding.bind_cpu_input(contract.INPUT_NAME, self._x)
            for name, buf in (
                (contract.LATENT_NAME, self._latent),
                (contract.MOTIFS_NAME, self._motifs),
            ):
                binding.bind_output(name, "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)
            self._binding = binding

    def _check_signature(self, session: Any) -> None:
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name: o for o in session.get_outputs()}
        want_out = contract.output_shapes(self.num_motifs)
        if set(inputs) != {contract.INPUT_NAME} or not set(want_out) <= set(outputs):
            raise BackendError(
                f"{self.artifact}: inputs {sorted(inputs)} and outputs {sorted(outputs)} do not "
                f"match the contract (input {contract.INPUT_NAME!r}, outputs {sorted(want_out)})"
            )
        checks = [(contract.INPUT_NAME, inputs[contract.INPUT_NAME], contract.INPUT_SHAPE)]
        checks += [(name, outputs[name], shape) for name, shape in want_out.items()]
        batch_dims: set[object] = set()
        for name, meta, want in checks:
            if meta.type != "tensor(float)":
                raise BackendError(
                    f"{self.artifact}: {name} is {meta.type}, expected tensor(float)"
                )
            shape = list(meta.shape)
            dynamic = bool(shape) and not isinstance(shape[0], int)
            batch_dims.add("dynamic" if dynamic else (shape[0] if shape else None))
            if (
                len(shape) != len(want)
                or shape[1:] != list(want[1:])
                or not (dynamic or shape[0] == 1)
            ):
                raise BackendError(
                    f"{self.artifact}: {name} has shape {shape}, the contract is {list(want)}"
                    + (f" (NUM_MOTIFS={self.num_motifs})" if name == contract.MOTIFS_NAME else "")
                )
        self._dynamic_batch = batch_dims == {"dynamic"}

    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        session = self._session
        if session is None:
            raise RuntimeError("OnnxBackend.infer() before load()")
        n = windows.shape[0]
        if n == 1 and not self._dynamic_batch:  # the common case: fewest numpy calls
            with self._lock:
                np.copyto(self._x, windows)
                session.run_with_iobinding(self._binding)
                return self._latent.copy(), self._motifs.copy()
        if self._dynamic_batch:
            with self._lock:
                latent, motifs = session.run(
                    [contract.LATENT_NAME, contract.MOTIFS_NAME], {contract.INPUT_NAME: windows}
                )
            return latent, motifs
        latent = np.empty((n, contract.LATENT_DIM), dtype=np.float32)
        motifs = np.empty((n, self.num_motifs), dtype=np.float32)
        with self._lock:
            for i in range(n):
                self._x[0] = windows[i]
                session.run_with_iobinding(self._binding)
                latent[i] = self._latent[0]
                motifs[i] = self._motifs[0]
        return latent, motifs

    def describe(self) -> BackendInfo:
        model, version, sha256 = self._identity
        return BackendInfo(
            backend=self.name,
            model=model,
            version=version,
            sha256=sha256,
            details={
                "artifact": str(self.artifact),
                "onnxruntime": self._ort_version,
                "intra_op_threads": self._threads,
                "dynamic_batch": self._dynamic_batch,
            },
        )

    def close(self) -> None:
        self._binding = None
        self._session = None
