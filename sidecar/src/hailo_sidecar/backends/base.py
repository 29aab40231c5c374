"""The backend interface: one model, loaded once, called with a batch of windows.

Every transport (HTTP today; the Unix-socket IPC path and shared-memory input
next) calls the same `Backend.infer` on a C-contiguous float32 array of shape
(N, 100, 9) and gets fresh arrays back, so callers may hold the results while the
next call runs. Implementations serialise `infer` with a lock (their buffers are
preallocated and shared), so calling from several threads is safe.

Lifecycle: construct (cheap, no I/O) -> `load()` (open the model, check its shapes
against the contract, preallocate) -> `warm_up()` (one real inference, checked) ->
`infer()` many times -> `close()`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .. import contract


class BackendError(Exception):
    """The backend cannot load, warm up or run; the message says why and what to do."""


@dataclass(frozen=True)
class BackendInfo:
    """What /metrics, /healthz, /readyz and response headers say about the model."""

    backend: str
    model: str
    version: str
    sha256: str
    details: dict[str, Any] = field(default_factory=dict)


class Backend(abc.ABC):
    """Base class of the stub, onnx and hailo backends."""

    name: ClassVar[str]
    # True when one call can take long enough (milliseconds, device I/O) that an
    # async caller should run it in a worker thread rather than on the event loop.
    offload: ClassVar[bool] = False

    def __init__(self, num_motifs: int) -> None:
        self.num_motifs = num_motifs

    @abc.abstractmethod
    def load(self) -> None:
        """Open the model and preallocate; raise BackendError with the reason on failure."""

    @abc.abstractmethod
    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 100, 9) float32 C-contiguous -> ((N, 64), (N, num_motifs)) float32, new arrays."""

    @abc.abstractmethod
    def describe(self) -> BackendInfo:
        """Model name, version, sha256 and backend details."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model and the device. Idempotent."""

    def warm_up(self) -> None:
        """Run one inference on a fixed window and check the result against the contract."""
        t = np.linspace(0.0, 1.0, contract.WINDOW, dtype=np.float32)
        window = np.ascontiguousarray(
            np.stack([np.sin((c + 1) * 2 * np.pi * t) for c in range(contract.CHANNELS)], axis=1)[
                None
            ]
        )
        try:
            latent, motifs = self.infer(window)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"warm-up inference failed: {type(exc).__name__}: {exc}") from exc
        check_outputs(latent, motifs, 1, self.num_motifs)


def check_outputs(latent: np.ndarray, motifs: np.ndarray, n: int, num_motifs: int) -> None:
    """Raise BackendError unless the outputs have the contract's shapes and ranges."""
    if latent.shape != (n, contract.LATENT_DIM):
        raise BackendError(
            f"warm-up: latent has shape {latent.shape}, expected {(n, contract.LATENT_DIM)}"
        )
    if motifs.shape != (n, num_motifs):
        raise BackendError(
            f"warm-up: motif_scores has shape {motifs.shape}, expected {(n, num_motifs)} "
            f"(NUM_MOTIFS={num_motifs})"
        )
    if not (np.isfinite(latent).all() and np.isfinite(motifs).all()):
        raise BackendError("warm-up: the model returned non-finite values")
    if motifs.min() < 0.0 or motifs.max() > 1.0:
        raise BackendError(
            f"warm-up: motif_scores outside [0, 1] (min {motifs.min():.4g}, "
            f"max {motifs.max():.4g}); the model must end in a sigmoid"
        )
