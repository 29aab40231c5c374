"""A stand-in for HailoRT's `hailo_platform` module, for tests only. It is NOT HailoRT.

It mirrors the names, call shapes and the documented failure behaviour of pyhailort
4.23.0's InferModel API (hailo-ai/hailort, branch hailo8), so the hailo backend's call
sequence, guardrails and recovery can be tested without a Hailo-8. It proves nothing
about the device, the driver, the firmware or a real HEF: every behaviour below is
this file's reading of pyhailort's and libhailort's source, not an observation.

What it copies from that source (file names are under hailort/libhailort/):
- import: `hailo_platform/__init__.py` refuses a `_pyhailort` library of another version
  with ImportError("_pyhailort version (...) does not match pyhailort version (...)").
  Importing goes through `FINDER` (a meta-path finder) so these checks run on every import.
- numpy: pyhailort 4.x declares numpy<2 (setup.py). How a real wheel fails under numpy 2
  is NOT known (it is built with pybind11 2.10.1, which predates numpy 2 support); with
  `ENFORCE_NUMPY_LT_2 = True` this fake refuses at import, which is only one guess.
- errors: libhailort statuses become the exception classes of pyhailort's
  `ExceptionWrapper.create_exception_from_status`, raised from a
  `_pyhailort.HailoRTStatusException(str(status))`; status 76 has no class of its own.
- `ConfiguredInferModel.run()` is `run_async(bindings)` then `job.wait(timeout)`, without
  `wait_for_async_ready()` and without a callback (pyhailort.py), so a job that completes
  with an error status does not raise from run(); only its callback sees the error.
- submitting a job (`run_async`, per binding) checks the pipeline status, that the queue
  can take a frame (else HAILO_QUEUE_IS_FULL) and that every buffer is exactly the
  stream's frame size in bytes (else HAILO_INVALID_OPERATION). Any submission failure
  shuts the model down, after which every submission fails with HAILO_STREAM_ABORT
  (net_flow/pipeline/infer_model.cpp `ConfiguredInferModel::run_async`, async_infer_runner.cpp).
- a wait that times out leaves the job running: it may still write its outputs later.

Where the source says nothing, the fake chooses, and says so:
- a timed-out job's late write lands at the end of the next job that completes on ANY
  configured model, after that job's own outputs (the worst timing for a caller that
  reuses buffers); it keeps occupying its queue slots on its own model.
- `LAGGING_POOL = True`: a finished job's frames return to the queue only when someone
  waits for readiness (a window between the completion and the pool's buffers coming
  back; whether the device has one is not known).
- a job that fails on the device (`FAULTS` "job_error") writes NaN into its outputs and
  shuts the pipeline down with HAILO_DRIVER_TIMEOUT.
- a second VDevice cannot be opened while one is open (HAILO_OUT_OF_PHYSICAL_DEVICES).

The "HEF" it opens is a JSON file naming the streams, their frame shapes and, optionally,
each output's original (source-model) names:
    {"inputs": {"tcn/input_layer1": [1, 100, 9]},
     "outputs": {"tcn/fc1": [64], "tcn/fc2": [12]},
     "original_names": {"tcn/fc1": ["latent"], "tcn/fc2": ["motif_scores"]}}
A job fills the output buffers from the input buffers with a fixed projection
(deterministic, input-dependent, `fake_outputs`), and every call is recorded in `CALLS`.
"""

from __future__ import annotations

import enum
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

VERSION = "4.23.0"  # the pyhailort release whose API this fake mirrors
__version__ = VERSION

# ----------------------------------------------------------------------------- knobs
# Tests set these; `reset()` restores them.
CALLS: list[tuple[str, Any]] = []
ASYNC_QUEUE_SIZE = 4
ENFORCE_NUMPY_LT_2 = False  # refuse to import under numpy>=2 (pyhailort 4.x declares numpy<2)
LIB_VERSION = VERSION  # the fake `_pyhailort` library's version
OPEN_STATUS: int | None = None  # VDevice() fails with this libhailort status (76: driver)
IDENTIFY_STATUS: int | None = None  # Device.control.identify() fails with this status
FAULTS: list[str] = []  # one per submitted job: "timeout", "submit_error", "job_error", "ok"
LAGGING_POOL = False
ARCHITECTURE = "HAILO8L"
FIRMWARE = (4, 23, 0)
ENV_AT_IMPORT: dict[str, str | None] = {}  # HAILORT_LOGGER_PATH as the last import saw it
LATE_WRITES: list[tuple[list[np.ndarray], list[np.ndarray], Callable[..., None] | None]] = []
OPEN: dict[str, int] = {"VDevice": 0, "Device": 0}


def reset() -> None:
    global ASYNC_QUEUE_SIZE, ENFORCE_NUMPY_LT_2, LIB_VERSION, OPEN_STATUS, IDENTIFY_STATUS
    global LAGGING_POOL, ARCHITECTURE, FIRMWARE
    ASYNC_QUEUE_SIZE, ENFORCE_NUMPY_LT_2, LIB_VERSION = 4, False, VERSION
    OPEN_STATUS = IDENTIFY_STATUS = None
    LAGGING_POOL, ARCHITECTURE, FIRMWARE = False, "HAILO8L", (4, 23, 0)
    CALLS.clear()
    FAULTS.clear()
    ENV_AT_IMPORT.clear()
    LATE_WRITES.clear()
    OPEN.update(VDevice=0, Device=0)


# ----------------------------------------------------------------------------- import
class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes `import hailo_platform` run this fake's import-time checks every time."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "hailo_platform":
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        ENV_AT_IMPORT["HAILORT_LOGGER_PATH"] = os.environ.get("HAILORT_LOGGER_PATH")
        if ENFORCE_NUMPY_LT_2 and int(np.__version__.split(".")[0]) >= 2:
            raise ImportError(
                f"fake hailo_platform {VERSION} is built for numpy<2 and numpy "
                f"{np.__version__} is installed (a guess at how a real ABI mismatch shows)"
            )
        module.__dict__.update({n: globals()[n] for n in __all__})
        if _pyhailort.__version__ != module.__version__:
            raise ImportError(
                f"_pyhailort version ({_pyhailort.__version__}) does not match pyhailort "
                f"version ({module.__version__})"
            )


FINDER = _Finder()


class _PyHailortModule:
    """Stands in for hailo_platform.pyhailort._pyhailort (the compiled library)."""

    class HailoRTStatusException(Exception):  # noqa: N818 - pyhailort's name
        pass

    @property
    def __version__(self) -> str:
        return LIB_VERSION


_pyhailort = _PyHailortModule()


# ----------------------------------------------------------------------------- errors
class HailoRTException(Exception):  # noqa: N818 - HailoRT's name
    pass


class HailoRTTimeout(HailoRTException):
    pass


class HailoRTStreamAborted(HailoRTException):
    pass


class HailoRTInvalidOperationException(HailoRTException):
    pass


class HailoRTNotFoundException(HailoRTException):
    pass


class HailoRTDriverOperationFailedException(HailoRTException):
    pass


STATUS_NAMES = {
    4: "HAILO_TIMEOUT",
    6: "HAILO_INVALID_OPERATION",
    36: "HAILO_DRIVER_OPERATION_FAILED",
    61: "HAILO_NOT_FOUND",
    63: "HAILO_STREAM_ABORT",
    74: "HAILO_OUT_OF_PHYSICAL_DEVICES",
    76: "HAILO_INVALID_DRIVER_VERSION",
    82: "HAILO_QUEUE_IS_FULL",
    85: "HAILO_DRIVER_INVALID_RESPONSE",
    86: "HAILO_DRIVER_INVALID_IOCTL",
    87: "HAILO_DRIVER_TIMEOUT",
}
_CLASSES: dict[int, tuple[type[HailoRTException], str]] = {
    4: (HailoRTTimeout, "Received a timeout - hailort has failed because a timeout had occurred"),
    6: (
        HailoRTInvalidOperationException,
        "Invalid operation. See hailort.log for more information",
    ),
    36: (
        HailoRTDriverOperationFailedException,
        "Failure in hailort driver ioctl. run 'dmesg | grep hailo' for more information",
    ),
    61: (HailoRTNotFoundException, "Item not found. See hailort.log for more information"),
    63: (HailoRTStreamAborted, "Stream was aborted"),
}


def status_exception(status: int) -> HailoRTException:
    """What pyhailort's ExceptionWrapper.create_exception_from_status makes of a status."""
    cls, message = _CLASSES.get(
        status,
        (
            HailoRTException,
            f"libhailort failed with error: {status} ({STATUS_NAMES.get(status, '?')})",
        ),
    )
    return cls(message)


def fail(status: int) -> None:
    raise status_exception(status) from _pyhailort.HailoRTStatusException(str(status))


# ----------------------------------------------------------------------------- enums
class HailoSchedulingAlgorithm(enum.IntEnum):
    NONE = 0
    ROUND_ROBIN = 1


class FormatType(enum.IntEnum):
    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3


_BYTES = {FormatType.AUTO: 1, FormatType.UINT8: 1, FormatType.UINT16: 2, FormatType.FLOAT32: 4}


class DeviceArchitectureTypes(enum.IntEnum):
    HAILO8_A0 = 0
    HAILO8 = 1
    HAILO8L = 2

    def __str__(self) -> str:
        return self.name


# ----------------------------------------------------------------------------- HEF
class HEF:
    def __init__(self, hef_source: str | bytes) -> None:
        if not isinstance(hef_source, str):
            raise ValueError("the fake only opens HEF paths")
        self._spec = json.loads(Path(hef_source).read_text())
        self.path = hef_source

    def get_network_group_names(self) -> list[str]:
        return [self._spec.get("network_group", "tcn_encoder")]

    def get_original_names_from_vstream_name(
        self, vstream_name: str, network_group_name: str | None = None
    ) -> list[str]:
        CALLS.append(("get_original_names_from_vstream_name", vstream_name))
        names = self._spec.get("original_names", {})
        if vstream_name not in names:
            fail(61)
        return list(names[vstream_name])


# ----------------------------------------------------------------------------- InferModel
class _VDeviceParams:
    def __init__(self) -> None:
        self.scheduling_algorithm = HailoSchedulingAlgorithm.NONE
        self.group_id = ""


class _Stream:
    def __init__(self, name: str, shape: list[int]) -> None:
        self._name = name
        self._shape = [int(d) for d in shape]
        self.format_type = FormatType.AUTO

    @property
    def name(self) -> str:
        return self._name

    @property
    def shape(self) -> list[int]:
        return list(self._shape)

    def frame_size(self) -> int:
        return int(np.prod(self._shape)) * _BYTES[self.format_type]

    def set_format_type(self, type: FormatType) -> None:
        CALLS.append(("set_format_type", (self._name, type)))
        self.format_type = type


class InferModel:
    def __init__(self, hef_path: str) -> None:
        self._hef_path = hef_path
        spec = json.loads(Path(hef_path).read_text())
        self._inputs = {n: _Stream(n, s) for n, s in spec["inputs"].items()}
        self._outputs = {n: _Stream(n, s) for n, s in spec["outputs"].items()}
        self.batch_size = 0
        self.fail_run = spec.get("fail_run", False)  # every job times out

    @property
    def hef(self) -> HEF:
        return HEF(self._hef_path)

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def _pick(self, streams: dict[str, _Stream], name: str) -> _Stream:
        if name == "" and len(streams) == 1:
            return next(iter(streams.values()))
        if name not in streams:
            fail(61)
        return streams[name]

    def input(self, name: str = "") -> _Stream:
        return self._pick(self._inputs, name)

    def output(self, name: str = "") -> _Stream:
        return self._pick(self._outputs, name)

    def set_batch_size(self, batch_size: int) -> None:
        CALLS.append(("set_batch_size", batch_size))
        self.batch_size = batch_size

    def configure(self) -> ConfiguredInferModel:
        CALLS.append(("configure", None))
        return ConfiguredInferModel(self)


class _BoundStream:
    def __init__(self, stream: _Stream) -> None:
        self.stream = stream
        self._buffer: np.ndarray | None = None

    def set_buffer(self, buffer: np.ndarray) -> None:
        # pyhailort checks only contiguity here; sizes are checked when a job is submitted.
        if not buffer.flags.c_contiguous:
            raise HailoRTException("Buffer must be C_CONTIGUOUS")
        self._buffer = buffer

    def get_buffer(self, tf_format: bool | None = False) -> np.ndarray | None:
        return self._buffer


class Bindings:
    def __init__(self, model: InferModel) -> None:
        self._in = {n: _BoundStream(s) for n, s in model._inputs.items()}
        self._out = {n: _BoundStream(s) for n, s in model._outputs.items()}

    def input(self, name: str = "") -> _BoundStream:
        return self._in[next(iter(self._in))] if name == "" else self._in[name]

    def output(self, name: str = "") -> _BoundStream:
        return self._out[next(iter(self._out))] if name == "" else self._out[name]


def fake_outputs(x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """What the fake 'device' computes for one frame: a fixed projection per output."""
    flat = x.reshape(-1).astype(np.float64)
    outs = []
    for i, size in enumerate(sizes):
        w = np.random.default_rng(1000 + i).standard_normal((flat.size, size)) / 30.0
        y = flat @ w
        outs.append((1.0 / (1.0 + np.exp(-y)) if i else np.tanh(y)).astype(np.float32))
    return outs


class AsyncInferCompletionInfo:
    def __init__(self, exception: Exception | None) -> None:
        self._exception = exception

    @property
    def exception(self) -> Exception | None:
        return self._exception


class AsyncInferJob:
    def __init__(self, done: bool) -> None:
        self._done = done

    def wait(self, timeout_ms: int) -> None:
        CALLS.append(("wait", timeout_ms))
        if not self._done:
            fail(4)


class ConfiguredInferModel:
    def __init__(self, model: InferModel) -> None:
        self._model = model
        self.status = 0  # the pipeline's status: 0 is HAILO_SUCCESS
        self.queued = 0  # frames in the async queue
        self.lagging = 0  # of those, frames whose job has finished (LAGGING_POOL)

    @property
    def shut_down(self) -> bool:
        return self.status != 0

    def __enter__(self) -> ConfiguredInferModel:
        return self

    def __exit__(self, *args: object) -> None:
        pass

    def create_bindings(
        self,
        input_buffers: dict[str, np.ndarray] | None = None,
        output_buffers: dict[str, np.ndarray] | None = None,
    ) -> Bindings:
        CALLS.append(("create_bindings", None))
        bindings = Bindings(self._model)
        for name, buf in (input_buffers or {}).items():
            bindings.input(name).set_buffer(buf)
        for name, buf in (output_buffers or {}).items():
            bindings.output(name).set_buffer(buf)
        return bindings

    def get_async_queue_size(self) -> int:
        return ASYNC_QUEUE_SIZE

    def wait_for_async_ready(self, timeout_ms: int = 1000, frames_count: int = 1) -> None:
        CALLS.append(("wait_for_async_ready", (timeout_ms, frames_count)))
        if self.status:
            fail(self.status)
        self.queued -= self.lagging  # the finished jobs' frames are back
        self.lagging = 0
        if frames_count > ASYNC_QUEUE_SIZE - self.queued:
            fail(4)

    def _refuse(self, status: int) -> None:
        """A failed submission: libhailort shuts the model down, then raises."""
        if not self.status:
            self.shutdown(internal=True)
        fail(status)

    def _check(self, b: Bindings) -> None:
        if self.status:
            fail(self.status)
        if self.queued >= ASYNC_QUEUE_SIZE:
            self._refuse(82)
        streams = [*b._in.values(), *b._out.values()]
        for s in streams:
            buf = s.get_buffer()
            if buf is None:
                self._refuse(61)
            assert buf is not None
            if buf.nbytes != s.stream.frame_size():
                self._refuse(6)

    def run_async(
        self, bindings: list[Bindings], callback: Callable[..., None] | None = None
    ) -> AsyncInferJob:
        CALLS.append(("run_async", len(bindings)))
        fault = FAULTS.pop(0) if FAULTS else ("timeout" if self._model.fail_run else "ok")
        for b in bindings:  # submitted one by one, like libhailort
            self._check(b)
            if fault == "submit_error":
                self._refuse(36)
            self.queued += 1
        names = self._model.output_names
        outs = [[b.output(n).get_buffer() for n in names] for b in bindings]
        values = [
            fake_outputs(b.input().get_buffer(), [o.size for o in bufs])  # type: ignore[arg-type]
            for b, bufs in zip(bindings, outs, strict=True)
        ]
        if fault == "timeout":  # still running: it writes when it ends, after some other job
            flat = [buf for bufs in outs for buf in bufs]
            LATE_WRITES.append((flat, [v for vals in values for v in vals], callback))  # type: ignore[misc]
            return AsyncInferJob(done=False)
        if fault == "job_error":
            for bufs in outs:
                for buf in bufs:
                    buf[...] = np.nan
            self.status = 87
            if callback is not None:
                callback(completion_info=AsyncInferCompletionInfo(status_exception(87)))
            return AsyncInferJob(done=True)
        for bufs, vals in zip(outs, values, strict=True):
            for buf, value in zip(bufs, vals, strict=True):
                buf[...] = value.reshape(buf.shape)  # type: ignore[union-attr]
        if LAGGING_POOL:
            self.lagging += len(bindings)
        else:
            self.queued -= len(bindings)
        _land_late_writes()
        if callback is not None:
            callback(completion_info=AsyncInferCompletionInfo(None))
        return AsyncInferJob(done=True)

    def run(self, bindings: list[Bindings], timeout: int) -> None:
        """pyhailort 4.23's run(): run_async without a callback, then wait."""
        CALLS.append(("run", (len(bindings), timeout)))
        job = self.run_async(bindings)
        job.wait(timeout)

    def shutdown(self, internal: bool = False) -> None:
        if not internal:
            CALLS.append(("shutdown", None))
        self.status = 63  # aborted: every later submission fails with HAILO_STREAM_ABORT


def _land_late_writes() -> None:
    while LATE_WRITES:
        bufs, vals, callback = LATE_WRITES.pop(0)
        for buf, value in zip(bufs, vals, strict=True):
            buf[...] = value.reshape(buf.shape)
        if callback is not None:
            callback(completion_info=AsyncInferCompletionInfo(None))


# ----------------------------------------------------------------------------- devices
class _FirmwareVersion:
    def __init__(self, major: int, minor: int, revision: int) -> None:
        self.major, self.minor, self.revision = major, minor, revision

    def __str__(self) -> str:
        version = f"{self.major}.{self.minor}.{self.revision}"
        return f"{version} (release,app,extended context switch buffer)"


class BoardInformation:
    def __init__(self) -> None:
        self.firmware_version = _FirmwareVersion(*FIRMWARE)
        self.device_architecture = DeviceArchitectureTypes[ARCHITECTURE]
        self.board_name = "Hailo-8"


class Control:
    def __init__(self, device: Device) -> None:
        self._device = device

    def identify(self) -> BoardInformation:
        CALLS.append(("identify", self._device.device_id))
        if not self._device.is_open:
            raise HailoRTInvalidOperationException("The device in use has been released.")
        if IDENTIFY_STATUS is not None:
            fail(IDENTIFY_STATUS)
        return BoardInformation()


class Device:
    def __init__(self, device_id: str | None = None) -> None:
        self._device_id = device_id or "0000:01:00.0"
        CALLS.append(("Device", self._device_id))
        self.is_open = True
        OPEN["Device"] += 1
        self._control = Control(self)
        try:
            self._control.identify()  # pyhailort's Control() identifies the board once
        except Exception:
            self.release()  # what Device.__del__ would do
            raise

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def control(self) -> Control:
        return self._control

    def release(self) -> None:
        if self.is_open:
            CALLS.append(("Device.release", self._device_id))
            self.is_open = False
            OPEN["Device"] -= 1


class VDevice:
    def __init__(
        self, params: _VDeviceParams | None = None, *, device_ids: list[str] | None = None
    ):
        self.params = params if params is not None else VDevice.create_params()
        CALLS.append(("VDevice", self.params.scheduling_algorithm))
        if OPEN_STATUS is not None:
            fail(OPEN_STATUS)
        if OPEN["VDevice"]:
            fail(74)
        OPEN["VDevice"] += 1
        self.released = False

    @staticmethod
    def create_params() -> _VDeviceParams:
        return _VDeviceParams()

    def create_infer_model(self, hef_source: str | bytes, name: str = "") -> InferModel:
        CALLS.append(("create_infer_model", hef_source))
        if not isinstance(hef_source, str):
            raise ValueError("the fake only opens HEF paths")
        return InferModel(hef_source)

    def get_physical_devices_ids(self) -> list[str]:
        return ["0000:01:00.0"]

    def get_physical_devices(self) -> list[Device]:
        return [Device(i) for i in self.get_physical_devices_ids()]

    def release(self) -> None:
        CALLS.append(("release", None))
        if not self.released:
            OPEN["VDevice"] -= 1
        self.released = True

    def __enter__(self) -> VDevice:
        return self

    def __exit__(self, *args: object) -> None:
        self.release()


# What `import hailo_platform` exposes (a subset of the real __all__; HailoRTTimeout and
# the InferModel classes live in hailo_platform.pyhailort.pyhailort there).
__all__ = [
    "HEF",
    "AsyncInferJob",
    "Device",
    "FormatType",
    "HailoRTException",
    "HailoSchedulingAlgorithm",
    "VDevice",
    "__version__",
]
