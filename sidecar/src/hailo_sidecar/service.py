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

Serving (`run`, shared by HTTP and IPC): admission (admission.py: one backend call at
a time, a bounded queue, a deadline per request, nothing run for a client that has
gone), health (health.py: consecutive failures, the oldest running call; a
watchdog.py thread ends a longer wedge), and the metrics of both. Small calls on
loop-bound backends (stub, onnx) run inline on the event loop (`run_now`); device
backends and big batches run in one backend thread, awaited up to the deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from time import monotonic, perf_counter
from typing import Any

import numpy as np

from . import golden
from .admission import Admission, ClientGoneError, DeadlineExceededError, RefusedError
from .backends import Backend, BackendError, BackendInfo, create_backend
from .config import Config
from .discovery import discover
from .health import Health
from .manifest import ArtifactError, Manifest, ManifestError, load_manifest, verify_artifact
from .metrics import Metrics
from .watchdog import Watchdog

log = logging.getLogger(__name__)

BackendFactory = Callable[..., Backend]
Result = tuple[np.ndarray, np.ndarray]
Gone = Callable[[], Awaitable[bool]]


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
        # Serving state: health, admission, drain, the IPC door's state (see `readiness`).
        self.health = Health(config.unhealthy_after_failures, config.stall_after_ms / 1000)
        self.admission = Admission(config.max_queue, config.retry_after_s)
        self.watchdog = Watchdog(self.health, config.wedge_exit_after_ms / 1000)
        self.draining = False
        self.drain_started = 0.0  # monotonic(), set by begin_drain
        self.ipc_state = "off"  # off | listening | failed: <reason>
        self._executor: ThreadPoolExecutor | None = None
        self._calls: set[asyncio.Future[Result]] = set()
        health, admission = self.health, self.admission
        metrics.in_flight.set_function(lambda: health.running)
        metrics.queued.set_function(lambda: admission.waiting)
        metrics.consecutive_failures.set_function(lambda: health.failures)
        metrics.oldest_call.set_function(health.oldest_age)
        metrics.healthy.set_function(lambda: 0 if health.problem() else 1)

    # ------------------------------------------------------------------ start-up
    def start(self) -> None:
        try:
            self._start()
        except (ManifestError, ArtifactError, BackendError, golden.GoldenMismatchError) as exc:
            self._fail(str(exc))
        except Exception as exc:  # a bug or an unexpected library error: stay up, say so
            log.exception("start-up failed")
            self._fail(f"start-up failed: {type(exc).__name__}: {exc}")
        self.watchdog.start()

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

    # ------------------------------------------------------------------ health
    def health_problem(self) -> str | None:
        """Why /healthz is 503 (the backend is failing or stalled), or None."""
        return self.health.problem()

    def readiness(self) -> tuple[bool, str | None]:
        """(ready, reason): loaded and verified, not draining, the backend healthy."""
        if not self.ready:
            return False, self.reason or "not ready"
        if self.draining:
            return False, "draining: shutting down (SIGTERM)"
        problem = self.health.problem()
        if problem is not None:
            return False, problem
        return True, None

    def begin_drain(self) -> None:
        """Readiness 503 from now on; requests already here still run."""
        if not self.draining:
            log.info("draining: readiness is 503 from now on")
            self.drain_started = monotonic()
        self.draining = True

    async def drain(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until no request runs or waits; True if none does."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not (self.admission.idle() and not self._calls):
            if loop.time() >= end:
                return False
            await asyncio.sleep(0.01)
        return True

    # ------------------------------------------------------------------ serving
    @property
    def offload(self) -> bool:
        return self.backend is not None and self.backend.offload

    def infer(self, windows: np.ndarray) -> Result:
        """Run the backend on checked windows (N, 100, 9) float32 now, on this thread.

        Times the call (failed calls too) and reports it to `health`. Transports call
        `run` (or `run_now`) instead, which add admission and deadlines.
        """
        backend = self.backend
        if not self.ready or backend is None:
            raise NotReadyError(self.reason or "not ready")
        health = self.health
        token = health.begin()
        start = perf_counter()
        try:
            result = backend.infer(windows)
        except BaseException as exc:
            health.end(token, str(exc) if isinstance(exc, BackendError) else repr(exc))
            self.metrics.inference_failed_seconds.labels(backend.name).observe(
                perf_counter() - start
            )
            raise
        self._timer.observe(perf_counter() - start)
        health.end(token)
        self._counter.inc(windows.shape[0])
        return result

    def _inline(self, windows: np.ndarray) -> bool:
        return not self.offload and windows.shape[0] <= self.config.inline_max_windows

    def run_now(self, windows: np.ndarray) -> Result | None:
        """The fast path: run inline, now, if the backend runs on the loop, the batch is
        small and nothing else runs or waits; None when the request must go through `run`."""
        if not self._inline(windows) or not self.admission.take():
            return None
        try:
            return self.infer(windows)
        except BaseException as exc:
            self._count_error(exc)
            raise
        finally:
            self.admission.release()

    async def run(self, windows: np.ndarray, gone: Gone | None = None) -> Result:
        """Infer, through admission: the fast path, or the queue and the backend thread.

        Raises NotReadyError, RefusedError (OverloadedError, DeadlineExceededError,
        ClientGoneError: all 503), BackendError, or a bug's exception. `gone` says
        whether the client has left: asked once the request's turn has come, so no
        backend work is done for it.
        """
        result = self.run_now(windows)
        if result is not None:
            return result
        try:
            return await self._run_queued(windows, gone)
        except BaseException as exc:
            self._count_error(exc)
            raise

    async def _run_queued(self, windows: np.ndarray, gone: Gone | None) -> Result:
        if not self.ready or self.backend is None:
            raise NotReadyError(self.reason or "not ready")
        if self.health.stalled():
            raise NotReadyError(self.health.problem() or "backend stalled")
        loop = asyncio.get_running_loop()
        timeout_ms = self.config.request_deadline_ms
        deadline = loop.time() + timeout_ms / 1000
        admission = self.admission
        await admission.acquire(deadline, timeout_ms)
        handed_off = False
        try:
            if gone is not None and await gone():
                raise ClientGoneError("the client went away before its request was run")
            if self._inline(windows):
                return self.infer(windows)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, "backend")
            fut = loop.run_in_executor(self._executor, self.infer, windows)
            self._calls.add(fut)
            fut.add_done_callback(self._call_done)  # the slot is freed when the call ends
            handed_off = True
            try:
                return await asyncio.wait_for(asyncio.shield(fut), deadline - loop.time())
            except TimeoutError:
                raise DeadlineExceededError(
                    f"the backend did not answer within the request's deadline "
                    f"(REQUEST_DEADLINE_MS={timeout_ms}); retry later",
                    admission.retry_after,
                ) from None
        finally:
            if not handed_off:
                admission.release()

    def _call_done(self, fut: asyncio.Future[Result]) -> None:
        self._calls.discard(fut)
        self.admission.release()
        if not fut.cancelled():
            fut.exception()  # retrieved: the caller may have gone (deadline, disconnect)

    def _count_error(self, exc: BaseException) -> None:
        if isinstance(exc, RefusedError):
            code = exc.code
        elif isinstance(exc, NotReadyError):
            code = "not_ready"
        elif isinstance(exc, BackendError):
            code = "inference_failed"
        elif isinstance(exc, asyncio.CancelledError):
            code = "client_gone"
        else:
            code = "internal"
        self.metrics.count_inference_error(self.info.backend, code)

    def close(self) -> None:
        self.watchdog.stop()
        self.ready, self.reason = False, "shutting down"
        self.metrics.ready.set(0)
        if self._executor is not None:
            # A wedged call would hang a waiting shutdown; the thread is left to die.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self.backend is not None:
            self.backend.close()
            self.backend = None
