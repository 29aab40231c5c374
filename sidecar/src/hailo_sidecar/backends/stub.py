"""The stub backend: no model file, deterministic outputs computed from the input.

A fixed random projection (seeded, so the same on every run) stands in for the
encoder: latent = tanh(x . W), motif_scores = sigmoid(latent . V). Same window in,
same numbers out; different windows give different numbers; shapes and ranges are
the contract's. For GPUSrv smoke tests and for the HTTP path's benchmarks.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .. import __version__, contract
from .base import Backend, BackendInfo

SEED = 20261123


class StubBackend(Backend):
    name = "stub"

    def __init__(self, num_motifs: int) -> None:
        super().__init__(num_motifs)
        self._w: np.ndarray | None = None
        self._v: np.ndarray | None = None
        self._sha256 = ""

    def load(self) -> None:
        rng = np.random.default_rng(SEED)
        n_in = contract.WINDOW * contract.CHANNELS
        w = rng.standard_normal((n_in, contract.LATENT_DIM), dtype=np.float32) / np.float32(
            np.sqrt(n_in)
        )
        v = rng.standard_normal(
            (contract.LATENT_DIM, self.num_motifs), dtype=np.float32
        ) / np.float32(8.0)
        self._w, self._v = np.ascontiguousarray(w), np.ascontiguousarray(v)
        self._sha256 = hashlib.sha256(self._w.tobytes() + self._v.tobytes()).hexdigest()

    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, v = self._w, self._v
        if w is None or v is None:
            raise RuntimeError("StubBackend.infer() before load()")
        flat = windows.reshape(windows.shape[0], -1)
        # Row by row (matrix-vector), so a window's numbers never depend on the batch
        # it came in: BLAS may round a matrix-matrix product differently.
        n = flat.shape[0]
        latent = np.empty((n, w.shape[1]), dtype=np.float32)
        logits = np.empty((n, v.shape[1]), dtype=np.float32)
        for i in range(n):
            np.tanh(flat[i] @ w, out=latent[i])
            np.matmul(latent[i], v, out=logits[i])
        motifs = 1.0 / (1.0 + np.exp(-logits))
        return latent, motifs

    def describe(self) -> BackendInfo:
        return BackendInfo(
            backend=self.name,
            model="stub",
            version=__version__,
            sha256=self._sha256,
            details={"seed": SEED},
        )
