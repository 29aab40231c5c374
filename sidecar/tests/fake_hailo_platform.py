"""A stand-in for HailoRT's `hailo_platform` module, for tests only.

It mirrors the names and call shapes of the documented InferModel API
(pyhailort 4.18+: VDevice.create_params, HailoSchedulingAlgorithm.ROUND_ROBIN,
VDevice.create_infer_model, InferModel.input/output/input_names/output_names,
InferStream.shape/set_format_type, InferModel.set_batch_size/configure,
ConfiguredInferModel.create_bindings/run/get_async_queue_size/shutdown,
Bindings.input/output, InferStream.set_buffer/get_buffer, VDevice.release) so the
hailo backend's call sequence and guardrails can be tested without a Hailo-8.
It is NOT HailoRT: it proves nothing about the device, the HEF or the driver.

The "HEF" it opens is a JSON file naming the streams and their frame shapes:
    {"inputs": {"tcn/input_layer1": [1, 100, 9]},
     "outputs": {"tcn/fc1": [64], "tcn/fc2": [12]}}
`run()` fills the output buffers from the input buffers with a fixed projection
(deterministic, input-dependent) and records every call in `CALLS`.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any

import numpy as np

__version__ = "4.20.0-fake"
CALLS: list[tuple[str, Any]] = []
ASYNC_QUEUE_SIZE = 4


class HailoRTException(Exception):  # noqa: N818 - HailoRT's name
    pass


class HailoRTTimeout(HailoRTException):
    pass


class HailoSchedulingAlgorithm(enum.IntEnum):
    NONE = 0
    ROUND_ROBIN = 1


class FormatType(enum.IntEnum):
    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3


class _VDeviceParams:
    def __init__(self) -> None:
        self.scheduling_algorithm = HailoSchedulingAlgorithm.NONE
        self.group_id = ""


class _Stream:
    def __init__(self, name: str, shape: list[int]) -> None:
        self._name = name
        self._shape = tuple(shape)
        self.format_type = FormatType.AUTO

    @property
    def name(self) -> str:
        return self._name

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    def set_format_type(self, type: FormatType) -> None:
        CALLS.append(("set_format_type", (self._name, type)))
        self.format_type = type


class InferModel:
    def __init__(self, hef_path: str) -> None:
        spec = json.loads(Path(hef_path).read_text())
        self._inputs = {n: _Stream(n, s) for n, s in spec["inputs"].items()}
        self._outputs = {n: _Stream(n, s) for n, s in spec["outputs"].items()}
        self.batch_size = 0
        self.fail_run = spec.get("fail_run", False)

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
            raise HailoRTException(f"stream {name!r} not found")
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
        self._stream = stream
        self._buffer: np.ndarray | None = None

    def set_buffer(self, buffer: np.ndarray) -> None:
        if not buffer.flags.c_contiguous:
            raise HailoRTException("Buffer must be C_CONTIGUOUS")
        want = np.float32 if self._stream.format_type == FormatType.FLOAT32 else np.uint8
        if buffer.dtype != want or buffer.shape != self._stream.shape:
            raise HailoRTException(
                f"buffer {buffer.dtype}{buffer.shape} does not fit "
                f"{want.__name__}{self._stream.shape}"
            )
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


class ConfiguredInferModel:
    def __init__(self, model: InferModel) -> None:
        self._model = model
        self.shut_down = False

    def __enter__(self) -> ConfiguredInferModel:
        return self

    def __exit__(self, *args: object) -> None:
        self.shut_down = True

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

    def run(self, bindings: list[Bindings], timeout: int) -> None:
        CALLS.append(("run", (len(bindings), timeout)))
        if self.shut_down:
            raise HailoRTException("configured infer model was shut down")
        if self._model.fail_run:
            raise HailoRTTimeout(
                "Received a timeout - hailort has failed because a timeout had occurred"
            )
        if len(bindings) > ASYNC_QUEUE_SIZE:
            raise HailoRTTimeout("more bindings than the async queue holds")
        names = self._model.output_names
        for b in bindings:
            x = b.input().get_buffer()
            outs = [b.output(n).get_buffer() for n in names]
            if x is None or any(o is None for o in outs):
                raise HailoRTException("bindings without buffers")
            for buf, value in zip(outs, fake_outputs(x, [o.size for o in outs]), strict=True):
                buf[...] = value.reshape(buf.shape)

    def shutdown(self) -> None:
        CALLS.append(("shutdown", None))
        self.shut_down = True


class VDevice:
    def __init__(
        self, params: _VDeviceParams | None = None, *, device_ids: list[str] | None = None
    ):
        self.params = params if params is not None else VDevice.create_params()
        CALLS.append(("VDevice", self.params.scheduling_algorithm))
        self.released = False

    @staticmethod
    def create_params() -> _VDeviceParams:
        return _VDeviceParams()

    def create_infer_model(self, hef_source: str | bytes, name: str = "") -> InferModel:
        CALLS.append(("create_infer_model", hef_source))
        if not isinstance(hef_source, str):
            raise ValueError("the fake only opens HEF paths")
        return InferModel(hef_source)

    def release(self) -> None:
        CALLS.append(("release", None))
        self.released = True

    def __enter__(self) -> VDevice:
        return self

    def __exit__(self, *args: object) -> None:
        self.release()
