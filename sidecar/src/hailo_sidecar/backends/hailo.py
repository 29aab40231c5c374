"""The hailo backend: HailoRT's InferModel API on a Hailo-8 at /dev/hailo0.

Written against pyhailort's source (`hailo_platform`, hailo-ai/hailort, 4.18 to 4.23):

    params = VDevice.create_params()
    params.scheduling_algorithm = HailoSchedulingAlgorithm.ROUND_ROBIN
    vdevice = VDevice(params)
    infer_model = vdevice.create_infer_model(hef_path)
    infer_model.input(name).set_format_type(FormatType.FLOAT32)   # and each output
    configured = infer_model.configure()                           # at load
    bindings = configured.create_bindings(input_buffers=..., output_buffers=...)  # at load
    configured.wait_for_async_ready(timeout_ms, k)                 # per job
    configured.run_async(bindings[:k], callback).wait(timeout_ms)  # per job

That is `ConfiguredInferModel.run()` plus what it leaves out: it neither waits for the
async queue nor passes a callback, so it can overfill the queue (which shuts the model
down) and it returns normally from a job that failed on the device.

After any failed job the configured model is shut down and the VDevice released at
once, and its buffers are never used again (a timed-out job may still write into them);
the next call loads the model again (VDevice, infer model, configure, new buffers and
bindings), or says why it cannot.

NOT EXERCISED ON HARDWARE: no Hailo-8 and no HailoRT exist where this was written.
The guardrails, the call sequence and the recovery are tested against a fake
`hailo_platform` (tests/fake_hailo_platform.py) that follows pyhailort's source; the
first real run must be on a Pi 5 with the Hailo-8 (see sidecar/README.md).
`hailo_platform` is imported only when this backend loads.
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
import re
import stat
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from time import monotonic
from types import ModuleType
from typing import Any

import numpy as np

from .. import contract
from .base import Backend, BackendError, BackendInfo

log = logging.getLogger(__name__)
AARCH64 = ("aarch64", "arm64")
LOGGER_PATH_VAR = "HAILORT_LOGGER_PATH"
# The loaded hailo_pci module's version (MODULE_VERSION in hailort-drivers' pcie.c): the
# host's sysfs, which containers see read-only.
DRIVER_VERSION_FILE = Path("/sys/module/hailo_pci/version")
HAILO_INVALID_DRIVER_VERSION = 76
# libhailort's own words for these: "Make sure the driver version is the same as
# libhailort" (85), "Can happen on libhailort vs driver version mismatch" (86).
DRIVER_MISMATCH_HINTS = {85: "HAILO_DRIVER_INVALID_RESPONSE", 86: "HAILO_DRIVER_INVALID_IOCTL"}
# Sessions discarded after a failure stay referenced: a job that timed out may still write
# into their buffers, which must not be freed under it.
KEEP_DISCARDED = 8


def _squeeze(shape: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in shape if int(d) != 1)


@dataclass(eq=False)
class _Session:
    """One load of the model: the VDevice, the configured model and its bound buffers."""

    vdevice: Any
    configured: Any
    bindings: list[Any]  # one per batch slot, bound to row i of each buffer
    x: np.ndarray
    latent: np.ndarray
    motifs: np.ndarray
    chunk: int  # most bindings in one job: the async queue's size


def hailo_status(exc: BaseException) -> int | None:
    """The libhailort status behind a pyhailort exception, or None.

    pyhailort raises its exceptions from a _pyhailort.HailoRTStatusException whose only
    argument is the status number; a status it has no class for reads "libhailort failed
    with error: <status> (<name>)".
    """
    for e in (exc, exc.__cause__):
        if e is not None and type(e).__name__ == "HailoRTStatusException" and e.args:
            try:
                return int(e.args[0])
            except (TypeError, ValueError):
                pass
    m = re.search(r"libhailort failed with error: (\d+)", str(exc))
    return int(m.group(1)) if m else None


def read_driver_version() -> tuple[str | None, str | None]:
    """(the loaded hailo_pci driver's version, None) or (None, why it cannot be read)."""
    try:
        version = DRIVER_VERSION_FILE.read_text().strip()
    except OSError as exc:
        return None, f"{DRIVER_VERSION_FILE}: {exc.strerror or exc}"
    return (version, None) if version else (None, f"{DRIVER_VERSION_FILE} is empty")


def _cannot_import(exc: Exception) -> str:
    said = (
        "hailo_platform (HailoRT's Python binding, pyhailort) is installed but cannot be "
        f"imported: {type(exc).__name__}: {exc}"
    )
    if "_pyhailort version" in str(exc):  # hailo_platform/__init__.py's self-check
        return (
            f"{said}; its Python files and its _pyhailort library come from different "
            "HailoRT releases: install one hailort wheel, of the driver's version"
        )
    if not isinstance(exc, ModuleNotFoundError) and int(np.__version__.split(".")[0]) >= 2:
        return f"{said}; numpy is {np.__version__} here, and pyhailort 4.x wheels declare numpy<2"
    return said


def _release_tuple(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def numpy_conflict() -> str | None:
    """Why the installed hailort wheel's own numpy requirement excludes this numpy, or None.

    pyhailort 4.x declares numpy<2 (setup.py) and is built with pybind11 2.10.1, older
    than pybind11's numpy 2 support; how it fails under numpy 2 is not known, and may
    not be an import error. Nothing is known without the wheel's metadata: None.
    """
    try:
        requires = metadata.requires("hailort") or []
        installed = metadata.version("hailort")
    except metadata.PackageNotFoundError:
        return None
    have = _release_tuple(np.__version__)
    for requirement in requires:
        spec, _, marker = requirement.partition(";")
        found = re.fullmatch(r"\s*numpy\s*\(?([^)]*)\)?\s*", spec, re.IGNORECASE)
        if found is None or marker.strip():  # a marker is not evaluated here
            continue
        for clause in found.group(1).split(","):
            bound = re.fullmatch(r"\s*(<=?)\s*(\d[\d.]*)\s*", clause)
            if bound is None:
                continue
            limit = _release_tuple(bound.group(2))
            if have > limit or (have == limit and bound.group(1) == "<"):
                return (
                    f"the installed hailort {installed} (pyhailort) requires {spec.strip()}, "
                    f"but numpy is {np.__version__} here. Run the hailo backend in an image "
                    "with numpy<2, or with a HailoRT built and declared for numpy 2"
                )
    return None


def _release(vdevice: Any, configured: Any = None) -> None:
    """Shut the configured model down and release the VDevice; log, never raise."""
    if configured is not None:
        try:
            configured.shutdown()
        except Exception:
            log.warning("HailoRT shutdown() failed", exc_info=True)
    if vdevice is not None:
        try:
            vdevice.release()
        except Exception:
            log.warning("HailoRT VDevice.release() failed", exc_info=True)


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
        self._session: _Session | None = None
        self._state = "new"  # new -> ready <-> broken; closed
        self._discarded: list[_Session] = []
        self.reloads = 0
        self._device_info: dict[str, Any] = {}
        self._names: dict[str, str] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._matched_by: dict[str, str] = {}
        self._originals: dict[str, list[str]] = {}

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
        conflict = numpy_conflict()
        if conflict is not None:
            raise BackendError(conflict)
        # Unset (or empty), HailoRT writes hailort.log into the working directory and into
        # $HOME/.hailo/hailort, neither writable in the container; NONE turns both files
        # off, and its errors still reach stderr (libhailort's hailort_logger.cpp).
        if not os.environ.get(LOGGER_PATH_VAR):
            os.environ[LOGGER_PATH_VAR] = "NONE"
        try:
            return importlib.import_module("hailo_platform")
        except ModuleNotFoundError as exc:
            if exc.name != "hailo_platform":
                raise BackendError(_cannot_import(exc)) from exc
            raise BackendError(
                f"hailo_platform (HailoRT's Python binding, pyhailort) is not installed ({exc}); "
                "install the hailort wheel that matches the driver version on this host"
            ) from exc
        except Exception as exc:  # ImportError, or pyhailort's own MissingPyHRTLib
            raise BackendError(_cannot_import(exc)) from exc

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
        originals = self._original_names(infer_model, outputs)
        want = {contract.LATENT_NAME: contract.LATENT_DIM, contract.MOTIFS_NAME: self.num_motifs}

        def fits(name: str, size: int) -> bool:
            return _squeeze(shapes[name]) == (size,) or (size == 1 and not _squeeze(shapes[name]))

        names: dict[str, str] = {}
        matched_by: dict[str, str] = {}
        for role, size in want.items():  # by the source model's name first
            named = [n for n in outputs if role in originals.get(n, [])]
            if len(named) != 1:
                continue
            if not fits(named[0], size):
                motifs = f" (NUM_MOTIFS={size})" if role == contract.MOTIFS_NAME else ""
                raise BackendError(
                    f"HEF {hef}: output {named[0]!r} is {role} in the source model (original "
                    f"names {originals[named[0]]}) but has shape {list(shapes[named[0]])}; the "
                    f"contract's {role} has {size} values{motifs}"
                )
            names[role], matched_by[role] = named[0], "original name"
        for role, size in want.items():  # then by shape, then by name
            if role in names:
                continue
            free = [n for n in outputs if n not in names.values()]
            found = [n for n in free if fits(n, size)]
            matched_by[role] = "shape"
            if len(found) > 1:  # same size (NUM_MOTIFS=64): a name must say which
                stem = role.split("_")[0]
                found = [
                    n
                    for n in found
                    if stem in n.lower() or any(stem in o.lower() for o in originals.get(n, []))
                ]
                matched_by[role] = "shape and name"
            if len(found) != 1:
                shown = {n: list(s) for n, s in shapes.items()}
                raise BackendError(
                    f"HEF {hef}: outputs {shown} do not match the contract: expected "
                    f"latent of {contract.LATENT_DIM} and motif_scores of {self.num_motifs} "
                    f"values (NUM_MOTIFS={self.num_motifs})"
                )
            names[role] = found[0]
        if len(outputs) != len(want):
            raise BackendError(
                f"HEF {hef} has {len(outputs)} outputs {outputs}; the contract has 2"
            )
        self._names = {contract.INPUT_NAME: inputs[0], **names}
        self._shapes = {contract.INPUT_NAME: in_shape, **{r: shapes[n] for r, n in names.items()}}
        self._matched_by = matched_by
        self._originals = originals

    def _original_names(self, infer_model: Any, outputs: list[str]) -> dict[str, list[str]]:
        """Each output stream's names in the source model (ONNX), as the HEF records them.

        The streams are Hailo layer names (e.g. tcn_encoder/fc1). InferModel.hef opens
        the model's HEF (pyhailort 4.18+); a stream it has no original names for, or a
        HEF it cannot open, gets none, and shapes decide.
        """
        try:
            hef = infer_model.hef
        except Exception as exc:
            log.info("HailoRT: no HEF object for original names: %s: %s", type(exc).__name__, exc)
            return {}
        found: dict[str, list[str]] = {}
        for name in outputs:
            try:
                found[name] = [str(o) for o in hef.get_original_names_from_vstream_name(name)]
            except Exception as exc:
                log.info("HailoRT: no original names for %r: %s", name, exc)
        return found

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        hp = self.preflight()
        self._hp = hp
        self._session = self._open(hp)
        self._state = "ready"
        driver, driver_error = read_driver_version()
        self._device_info = {
            "driver": driver,
            "driver_error": driver_error,
            **self._identify(self._session.vdevice),
        }

    def _cannot_open(self, hp: ModuleType, exc: Exception) -> str:
        """Why the VDevice cannot be opened; a driver/HailoRT mismatch in plain words."""
        said = f"{type(exc).__name__}: {exc}"
        status = hailo_status(exc)
        if status != HAILO_INVALID_DRIVER_VERSION and status not in DRIVER_MISMATCH_HINTS:
            return f"HailoRT cannot open {self.device}: {said}"
        hailort = getattr(hp, "__version__", "(unknown)")
        driver, why = read_driver_version()
        if driver is not None:
            host = f"hailo_pci {driver}, from {DRIVER_VERSION_FILE}"
        else:
            host = (
                f"hailo_pci, version unknown here: {why}; on the host, "
                "`cat /sys/module/hailo_pci/version` shows the loaded driver's version and "
                "`modinfo -F version hailo_pci` the installed one"
            )
        if status == HAILO_INVALID_DRIVER_VERSION:
            verdict = f"refused to open {self.device} (status 76, HAILO_INVALID_DRIVER_VERSION)"
        else:
            verdict = (
                f"could not talk to the driver on {self.device} (status {status}, "
                f"{DRIVER_MISMATCH_HINTS[status]}, which HailoRT says can mean the versions differ)"
            )
        image = f"HailoRT {driver}" if driver is not None else "the driver's HailoRT version"
        # libhailort compares major, minor and revision (hailort_driver.cpp,
        # validate_driver_version()): no range is compatible.
        return (
            f"the Hailo PCIe driver on the host ({host}) does not match this image's HailoRT "
            f"{hailort} (hailo_platform): HailoRT needs both to be the same "
            f"major.minor.revision and {verdict}. Fix: install hailo_pci {hailort} on the "
            f"host and reload it (or reboot), or deploy an image with {image}. ({said})"
        )

    def _identify(self, vdevice: Any) -> dict[str, Any]:
        """Firmware and architecture of the (first) physical device, once, at load.

        Never raises: what cannot be read is None, and device_error says why.
        """
        info: dict[str, Any] = {
            "firmware": None, "architecture": None, "device_id": None, "device_error": None,
        }  # fmt: skip
        devices: list[Any] = []
        try:
            devices = list(vdevice.get_physical_devices())
            if not devices:
                info["device_error"] = "the VDevice has no physical device"
                return info
            board = devices[0].control.identify()
            info["firmware"] = str(board.firmware_version)
            info["architecture"] = str(board.device_architecture)
            info["device_id"] = str(devices[0].device_id)
        except Exception as exc:
            info["device_error"] = f"identify failed: {type(exc).__name__}: {exc}"
            log.warning("HailoRT: cannot identify the device: %s", info["device_error"])
        finally:
            for device in devices:  # each is a second handle on the device: close it
                try:
                    device.release()
                except Exception:
                    log.warning("HailoRT Device.release() failed", exc_info=True)
        return info

    def _open(self, hp: ModuleType) -> _Session:
        """VDevice, infer model, shapes, formats, configure, buffers and bindings; or refuse."""
        try:
            params = hp.VDevice.create_params()
            params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
            vdevice = hp.VDevice(params)
        except Exception as exc:
            raise BackendError(self._cannot_open(hp, exc)) from exc
        configured = None
        try:
            infer_model = vdevice.create_infer_model(str(self.hef_path))
        except Exception as exc:
            _release(vdevice)
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
            configured = infer_model.configure()
            return self._allocate(vdevice, configured)
        except BackendError:
            _release(vdevice, configured)
            raise
        except Exception as exc:
            _release(vdevice, configured)
            raise BackendError(
                f"HailoRT cannot configure {self.hef_path}: {type(exc).__name__}: {exc}"
            ) from exc

    def _allocate(self, vdevice: Any, configured: Any) -> _Session:
        """New buffers, one row per batch slot, and one bindings object per slot."""
        n = self.max_batch
        buf = {
            role: np.zeros((n, *shape), dtype=np.float32) for role, shape in self._shapes.items()
        }
        bindings = [
            configured.create_bindings(
                input_buffers={self._names[contract.INPUT_NAME]: buf[contract.INPUT_NAME][i]},
                output_buffers={
                    self._names[role]: buf[role][i]
                    for role in (contract.LATENT_NAME, contract.MOTIFS_NAME)
                },
            )
            for i in range(n)
        ]
        # A job queues all its bindings at once: never more than the async queue holds.
        chunk = max(1, min(n, int(configured.get_async_queue_size())))
        return _Session(
            vdevice, configured, bindings, buf[contract.INPUT_NAME],
            buf[contract.LATENT_NAME], buf[contract.MOTIFS_NAME], chunk,
        )  # fmt: skip

    def _reload(self) -> _Session:
        """Load the model again after a failure (the previous session is already gone)."""
        if self._state != "broken" or self._hp is None:
            raise RuntimeError(f"HailoBackend.infer() in state {self._state!r} (before load()?)")
        try:
            session = self._open(self._hp)
        except BackendError as exc:
            log.warning("HailoRT: reloading %s failed: %s", self.hef_path, exc)
            raise BackendError(f"HailoRT failed and reloading the model failed: {exc}") from exc
        self._session, self._state = session, "ready"
        self.reloads += 1
        log.warning("HailoRT: reloaded %s after a failure (reload %d)", self.hef_path, self.reloads)
        return session

    def _discard(self, session: _Session) -> None:
        """Never use this session again: shut it down and release its VDevice now."""
        if self._session is session:
            self._session, self._state = None, "broken"
        self._discarded = [*self._discarded[-(KEEP_DISCARDED - 1) :], session]
        _release(session.vdevice, session.configured)

    def _run(self, s: _Session, k: int) -> None:
        """One job of k bindings, bounded by timeout_ms (pyhailort's wait may take longer)."""
        timeout = self.timeout_ms
        deadline = monotonic() + timeout / 1000
        configured = s.configured
        # run() would submit at once; a queue that is not ready refuses the job with
        # HAILO_QUEUE_IS_FULL and shuts the model down (libhailort's own C++ run() waits).
        configured.wait_for_async_ready(timeout, k)
        failed: list[Any] = []  # this job's own: a late callback of an old job cannot reach it
        job = configured.run_async(
            s.bindings[:k], lambda completion_info: failed.append(completion_info.exception)
        )
        job.wait(max(1, int((deadline - monotonic()) * 1000)))
        if failed and failed[0] is not None:  # run() would have returned normally
            raise failed[0]

    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = windows.shape[0]
        latent = np.empty((n, contract.LATENT_DIM), dtype=np.float32)
        motifs = np.empty((n, self.num_motifs), dtype=np.float32)
        with self._lock:
            s = self._session
            if s is None:
                s = self._reload()
            for start in range(0, n, s.chunk):
                k = min(s.chunk, n - start)
                s.x[:k] = windows[start : start + k].reshape(k, *s.x.shape[1:])
                try:
                    self._run(s, k)
                except Exception as exc:
                    self._discard(s)
                    raise BackendError(
                        f"HailoRT inference failed: {type(exc).__name__}: {exc}; the model was "
                        "shut down and is reloaded on the next call"
                    ) from exc
                latent[start : start + k] = s.latent[:k].reshape(k, contract.LATENT_DIM)
                motifs[start : start + k] = s.motifs[:k].reshape(k, self.num_motifs)
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
                **self._device_info,
                "scheduler": "ROUND_ROBIN",
                "streams": dict(self._names),
                "matched_by": dict(self._matched_by),
                "original_names": dict(self._originals),
                "shapes": {k: list(v) for k, v in self._shapes.items()},
            },
        )

    def close(self) -> None:
        session, self._session = self._session, None
        self._state = "closed"
        self._discarded = []
        if session is not None:
            _release(session.vdevice, session.configured)
