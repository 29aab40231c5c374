"""The hailo backend: HailoRT's InferModel API on a Hailo-8 at /dev/hailo0.

Written against HailoRT's documented Python API (`hailo_platform`, pyhailort 4.18+):

    params = VDevice.create_params()
    params.scheduling_algorithm = HailoSchedulingAlgorithm.ROUND_ROBIN
    vdevice = VDevice(params)
    infer_model = vdevice.create_infer_model(hef_path)
    infer_model.input(name).set_format_type(FormatType.FLOAT32)   # and each output
    configured = infer_model.configure()                           # once, at start-up
    bindings = configured.create_bindings(input_buffers=..., output_buffers=...)  # once
    configured.run([bindings], timeout_ms)                         # per request

NOT EXERCISED ON HARDWARE: no Hailo-8 and no HailoRT exist where this was written.
The guardrails (architecture, /dev/hailo0, the module, the HEF's shapes) and the
call sequence are tested against a fake `hailo_platform` that mirrors those names;
the first real run must be on a Pi 5 with the Hailo-8 (see sidecar/README.md).
`hailo_platform` is imported only when this backend loads.
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
import stat
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .. import contract
from .base import Backend, BackendError, BackendInfo

log = logging.getLogger(__name__)
AARCH64 = ("aarch64", "arm64")


def _squeeze(shape: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in shape if int(d) != 1)


class HailoBackend(Backend):
    name = "hailo"
    offload = True  # device I/O: run it off the event loop

    def __init__(
        self,
        hef_path: Path,
        num_motifs: int,
        *,
        model: str,
        version: str,
        sha256: str,
        max_batch: int = 64,
        device: Path = Path("/dev/hailo0"),
        timeout_ms: int = 1000,
    ) -> None:
        super().__init__(num_motifs)
        self.hef_path = hef_path
        self.device = device
        self.timeout_ms = timeout_ms
        self.max_batch = max_batch
        self._identity = (model, version, sha256)
        self._lock = threading.Lock()
        self._hp: ModuleType | None = None
        self._vdevice: Any = None
        self._configured: Any = None
        self._bindings: list[Any] = []
        self._chunk = 1
        self._names: dict[str, str] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}

    # ------------------------------------------------------------------ guardrails
    def preflight(self) -> ModuleType:
        """Refuse, saying why, anything but an aarch64 host with /dev/hailo0 and HailoRT."""
        machine = platform.machine()
        if machine.lower() not in AARCH64:
            raise BackendError(
                f"INFER_MODE=hailo needs an aarch64 host (a Raspberry Pi 5 with a Hailo-8); this "
                f"machine is {machine}. Use INFER_MODE=onnx (CPU) or INFER_MODE=stub here."
            )
        try:
            mode = os.stat(self.device).st_mode
        except FileNotFoundError:
            raise BackendError(
                f"{self.device} is missing: is the Hailo PCIe driver loaded "
                f"(lsmod | grep hailo_pci) and the device passed to the container "
                f"(--device {self.device})?"
            ) from None
        if not stat.S_ISCHR(mode):
            raise BackendError(f"{self.device} exists but is not a character device")
        try:
            return importlib.import_module("hailo_platform")
        except ImportError as exc:
            raise BackendError(
                f"hailo_platform (HailoRT's Python binding, pyhailort) is not installed ({exc}); "
                "install the hailort wheel that matches the driver version on this host"
            ) from exc

    def _match_shapes(self, infer_model: Any) -> None:
        """Map the HEF's streams to the contract, or refuse the HEF."""
        hef = self.hef_path
        inputs = list(infer_model.input_names)
        if len(inputs) != 1:
            raise BackendError(
                f"HEF {hef} has inputs {inputs}; the contract has one input, x (1, 100, 9)"
            )
        in_shape = tuple(int(d) for d in infer_model.input(inputs[0]).shape)
        if _squeeze(in_shape) != (contract.WINDOW, contract.CHANNELS):
            raise BackendError(
                f"HEF {hef}: input {inputs[0]!r} has shape {list(in_shape)}; the contract is one "
                f"window of {contract.WINDOW} x {contract.CHANNELS} "
                f"(x: {list(contract.INPUT_SHAPE)})"
            )
        outputs = list(infer_model.output_names)
        shapes = {name: tuple(int(d) for d in infer_model.output(name).shape) for name in outputs}
        want = {contract.LATENT_NAME: contract.LATENT_DIM, contract.MOTIFS_NAME: self.num_motifs}
        names: dict[str, str] = {}
        for role, size in want.items():
            fits = [
                n
                for n in outputs
                if _squeeze(shapes[n]) == (size,) or (size == 1 and not _squeeze(shapes[n]))
            ]
            if len(fits) > 1:  # same size (NUM_MOTIFS=64): fall back to the stream names
                fits = [n for n in fits if role.split("_")[0] in n.lower()]
            if len(fits) != 1:
                shown = {n: list(s) for n, s in shapes.items()}
                raise BackendError(
                    f"HEF {hef}: outputs {shown} do not match the contract: expected "
                    f"latent of {contract.LATENT_DIM} and motif_scores of {self.num_motifs} "
                    f"values (NUM_MOTIFS={self.num_motifs})"
                )
            names[role] = fits[0]
        if len(outputs) != len(want):
            raise BackendError(
                f"HEF {hef} has {len(outputs)} outputs {outputs}; the contract has 2"
            )
        self._names = {contract.INPUT_NAME: inputs[0], **names}
        self._shapes = {contract.INPUT_NAME: in_shape, **{r: shapes[n] for r, n in names.items()}}

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        hp = self.preflight()
        self._hp = hp
        try:
            params = hp.VDevice.create_params()
            params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
            self._vdevice = hp.VDevice(params)
            infer_model = self._vdevice.create_infer_model(str(self.hef_path))
        except Exception as exc:
            self.close()
            raise BackendError(
                f"HailoRT cannot open {self.hef_path}: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            self._match_shapes(infer_model)
            infer_model.set_batch_size(1)
            infer_model.input(self._names[contract.INPUT_NAME]).set_format_type(
                hp.FormatType.FLOAT32
            )
            for role in (contract.LATENT_NAME, contract.MOTIFS_NAME):
                infer_model.output(self._names[role]).set_format_type(hp.FormatType.FLOAT32)
            self._configured = infer_model.configure()
            self._allocate()
        except BackendError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise BackendError(
                f"HailoRT cannot configure {self.hef_path}: {type(exc).__name__}: {exc}"
            ) from exc

    def _allocate(self) -> None:
        """Preallocate one input and two output buffers per batch slot, and bind them once."""
        configured, n = self._configured, self.max_batch
        self._buffers = {
            role: np.zeros((n, *shape), dtype=np.float32) for role, shape in self._shapes.items()
        }
        self._bindings = [
            configured.create_bindings(
                input_buffers={
                    self._names[contract.INPUT_NAME]: self._buffers[contract.INPUT_NAME][i]
                },
                output_buffers={
                    self._names[role]: self._buffers[role][i]
                    for role in (contract.LATENT_NAME, contract.MOTIFS_NAME)
                },
            )
            for i in range(n)
        ]
        # run() queues every binding at once: never more than the device's async queue holds.
        self._chunk = max(1, min(n, int(configured.get_async_queue_size())))

    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        configured = self._configured
        if configured is None:
            raise RuntimeError("HailoBackend.infer() before load()")
        n = windows.shape[0]
        latent = np.empty((n, contract.LATENT_DIM), dtype=np.float32)
        motifs = np.empty((n, self.num_motifs), dtype=np.float32)
        x_buf = self._buffers[contract.INPUT_NAME]
        lat_buf, mot_buf = self._buffers[contract.LATENT_NAME], self._buffers[contract.MOTIFS_NAME]
        with self._lock:
            for start in range(0, n, self._chunk):
                k = min(self._chunk, n - start)
                x_buf[:k] = windows[start : start + k].reshape(k, *x_buf.shape[1:])
                try:
                    configured.run(self._bindings[:k], self.timeout_ms)
                except Exception as exc:
                    raise BackendError(
                        f"HailoRT inference failed: {type(exc).__name__}: {exc}"
                    ) from exc
                latent[start : start + k] = lat_buf[:k].reshape(k, contract.LATENT_DIM)
                motifs[start : start + k] = mot_buf[:k].reshape(k, self.num_motifs)
        return latent, motifs

    def describe(self) -> BackendInfo:
        model, version, sha256 = self._identity
        return BackendInfo(
            backend=self.name,
            model=model,
            version=version,
            sha256=sha256,
            details={
                "hef": str(self.hef_path),
                "device": str(self.device),
                "hailort": getattr(self._hp, "__version__", None),
                "scheduler": "ROUND_ROBIN",
                "streams": dict(self._names),
                "shapes": {k: list(v) for k, v in self._shapes.items()},
            },
        )

    def close(self) -> None:
        configured, self._configured = self._configured, None
        self._bindings = []
        if configured is not None:
            try:
                configured.shutdown()
            except Exception:  # closing must not raise; log what HailoRT said
                log.warning("HailoRT shutdown() failed", exc_info=True)
        vdevice, self._vdevice = self._vdevice, None
        if vdevice is not None:
            try:
                vdevice.release()
            except Exception:
                log.warning("HailoRT VDevice.release() failed", exc_info=True)
