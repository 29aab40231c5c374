"""The transport-independent core: start-up sequence, readiness, and timed inference.

HTTP (app.py) and the Unix-socket IPC server (ipc/server.py) call the same
`Service.infer` on the same loaded backend.

Start-up (`start`): [onnx/hailo] find the manifest (MODEL_MANIFEST, or discovery of
MODEL_NAME/MODEL_VERSION in MODELS_DIR), check its target and shapes against the
contract, verify the artifact's sha256 (before anything loads it) and the golden
vectors' (golden.py) -> construct and `load()` the backend -> `warm_up()` -> run the
golden windows and compare with the compiled model's outputs. Ready only if all of
that succeeded. A failure leaves the service up but not ready, with the reason; it
never raises, so /healthz and /metrics keep answering.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any

import numpy as np

from . import golden
from .backends import Backend, BackendError, BackendInfo, create_backend
from .config import Config
from .discovery import discover
from .manifest import ArtifactError, Manifest, ManifestError, load_manifest, verify_artifact
from .metrics import Metrics

log = logging.getLogger(__name__)

BackendFactory = Callable[..., Backend]


class NotReadyError(Exception):
    """Inference was asked for while the service is not ready (503, with the reason)."""


class Service:
    def __init__(
        self, config: Config, metrics: Metrics, backend_factory: BackendFactory | None = None
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._factory = backend_factory or create_backend
        self.backend: Backend | None = None
        self.ready = False
        self.reason: str | None = "starting"
        # The golden check's figures (golden.compare), None until it ran or without one.
        self.golden: dict[str, Any] | None = None
        self._timer: Any = None
        self._counter: Any = None
        self._set_info(BackendInfo(config.infer_mode, "unknown", "unknown", "unknown"))
        metrics.ready.set(0)

    # ------------------------------------------------------------------ start-up
    def start(self) -> None:
        try:
            self._start()
        except (ManifestError, ArtifactError, BackendError, golden.GoldenMismatchError) as exc:
            self._fail(str(exc))
        except Exception as exc:  # a bug or an unexpected library error: stay up, say so
            log.exception("start-up failed")
            self._fail(f"start-up failed: {type(exc).__name__}: {exc}")

    def _start(self) -> None:
        cfg = self.config
        reference: golden.Golden | None = None
        if cfg.infer_mode == "stub":
            backend = self._factory(cfg)
        else:
            manifest = self._find_manifest()
            manifest.check(cfg.infer_mode, cfg.num_motifs)
            # Say which model this is meant to be, even if it never gets ready.
            self._set_info(
                BackendInfo(cfg.infer_mode, manifest.model, manifest.version, manifest.sha256)
            )
            artifact = manifest.artifact_path(cfg.model_path)
            verify_artifact(artifact, manifest.sha256)
            reference = golden.load(manifest, cfg.num_motifs)
            backend = self._factory(
                cfg,
                artifact,
                model=manifest.model,
                version=manifest.version,
                sha256=manifest.sha256,
            )
        self.backend = backend
        backend.load()
        backend.warm_up()
        if reference is not None:
            latent, motifs = backend.infer(reference.windows)
            self.golden = golden.compare(reference, {"latent": latent, "motif_scores": motifs})
            if not self.golden["ok"]:
                raise golden.GoldenMismatchError(self.golden["reason"])
        self._set_info(backend.describe())
        self._timer, self._counter = self.metrics.inference_observer(backend.name)
        self.ready, self.reason = True, None
        self.metrics.ready.set(1)

    def _find_manifest(self) -> Manifest:
        cfg = self.config
        if cfg.model_manifest is None:
            assert cfg.model_name is not None  # Config guarantees one of the two
            return discover(cfg.models_dir, cfg.model_name, cfg.model_version, cfg.infer_mode)
        manifest = load_manifest(cfg.model_manifest)
        for var, want, got in (
            ("MODEL_NAME", cfg.model_name, manifest.model),
            ("MODEL_VERSION", cfg.model_version, manifest.version),
        ):
            if want is not None and got != want:
                raise ManifestError(
                    f"manifest {manifest.path} (MODEL_MANIFEST) is for {got!r}, but {var}={want!r}"
                )
        return manifest

    def fail(self, reason: str) -> None:
        """Not ready from now on (e.g. the IPC socket cannot be created), with the reason."""
        self._fail(reason)

    def _fail(self, reason: str) -> None:
        self.ready, self.reason = False, reason
        self.metrics.ready.set(0)
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def _set_info(self, info: BackendInfo) -> None:
        self.info = info
        self.model_fields = {"model": info.model, "version": info.version, "sha256": info.sha256}
        self.headers = {
            "x-model": info.model,
            "x-model-version": info.version,
            "x-model-sha256": info.sha256,
            "x-backend": info.backend,
        }
        self.raw_headers = [(k.encode(), v.encode("latin-1")) for k, v in self.headers.items()]
        self.metrics.set_model(info.model, info.version, info.sha256, info.backend)

    # ------------------------------------------------------------------ serving
    @property
    def offload(self) -> bool:
        return self.backend is not None and self.backend.offload

    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the backend on checked windows (N, 100, 9) float32; times it into the metrics."""
        backend = self.backend
        if not self.ready or backend is None:
            raise NotReadyError(self.reason or "not ready")
        start = perf_counter()
        result = backend.infer(windows)
        self._timer.observe(perf_counter() - start)
        self._counter.inc(windows.shape[0])
        return result

    def close(self) -> None:
        self.ready, self.reason = False, "shutting down"
        self.metrics.ready.set(0)
        if self.backend is not None:
            self.backend.close()
            self.backend = None
