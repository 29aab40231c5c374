"""The sidecar's fixed contract: shapes, request/response schemas and input validation.

One window is WINDOW (100) samples of CHANNELS (9) values, in the order
ax, ay, az, gx, gy, gz, mx, my, mz. The model maps it to a LATENT_DIM (64) vector
and NUM_MOTIFS (12 by default) probabilities in [0, 1].

The hot path (`parse_infer_body`, `parse_batch_body`) goes from request bytes to a
C-contiguous float32 array of shape (N, WINDOW, CHANNELS) with orjson and numpy
only: no per-value Python objects beyond what orjson builds, no Pydantic. When the
fast checks fail, `_diagnose` walks the parsed JSON once to say exactly what is
wrong (which row, its length, which value); that walk only runs on bad input.

The Pydantic models below document the contract in OpenAPI and shape the error
bodies; they are not used to validate windows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from itertools import chain
from typing import Annotated, Any, Final

import numpy as np
import orjson
from pydantic import BaseModel, Field

WINDOW: Final = 100
CHANNELS: Final = 9
LATENT_DIM: Final = 64
DEFAULT_NUM_MOTIFS: Final = 12
CHANNEL_NAMES: Final = ("ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz")
# Shapes of the model's tensors as the reference ONNX and the manifest give them.
INPUT_NAME: Final = "x"
LATENT_NAME: Final = "latent"
MOTIFS_NAME: Final = "motif_scores"
INPUT_SHAPE: Final = (1, WINDOW, CHANNELS)

_F32_MAX: Final = float(np.finfo(np.float32).max)
_F32_MAX_SQUARED: Final = _F32_MAX * _F32_MAX
# The range check's dot product overflows to inf for values near 1e155+; that is the
# intended outcome (the exact check then reports the value), not a problem to log.
warnings.filterwarnings(
    "ignore", "overflow encountered in dot", RuntimeWarning, module=r"hailo_sidecar\.contract"
)


def output_shapes(num_motifs: int) -> dict[str, tuple[int, int]]:
    """The model's output shapes for one window, by output name."""
    return {LATENT_NAME: (1, LATENT_DIM), MOTIFS_NAME: (1, num_motifs)}


class ContractError(Exception):
    """A request that breaks the contract: always a 4xx, with a message a person can act on."""

    def __init__(
        self, status: int, code: str, message: str, loc: Sequence[str | int] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.loc = list(loc) if loc is not None else None

    def to_body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.message, "loc": self.loc}


# --------------------------------------------------------------------------- schemas
Row = Annotated[
    list[float],
    Field(
        min_length=CHANNELS,
        max_length=CHANNELS,
        description="One sample: ax, ay, az, gx, gy, gz, mx, my, mz (finite numbers)",
    ),
]
Window = Annotated[
    list[Row],
    Field(min_length=WINDOW, max_length=WINDOW, description="100 samples at 100 Hz"),
]


class InferRequest(BaseModel):
    """One window of IMU data."""

    x: Window


class BatchRequest(BaseModel):
    """Several windows in one request (at most MAX_BATCH)."""

    windows: Annotated[list[Window], Field(min_length=1)]


class WindowResult(BaseModel):
    latent: Annotated[list[float], Field(min_length=LATENT_DIM, max_length=LATENT_DIM)]
    motif_scores: Annotated[list[float], Field(description="NUM_MOTIFS probabilities in [0, 1]")]


class ModelFields(BaseModel):
    model: str = Field(description="Model name from the manifest ('stub' for the stub backend)")
    version: str = Field(description="Model version from the manifest")
    sha256: str = Field(description="sha256 of the artifact that is loaded")


class InferResponse(WindowResult, ModelFields):
    """The result for one window, plus which model produced it."""


class BatchResponse(ModelFields):
    results: list[WindowResult] = Field(description="One result per window, in order")


class ErrorResponse(BaseModel):
    """The body of every 4xx the sidecar sends for bad input, and of 503 when not ready."""

    error: str = Field(description="A stable error code, e.g. 'bad_shape', 'not_finite'")
    detail: str = Field(description="What is wrong, for a person")
    loc: list[str | int] | None = Field(
        default=None, description="Where in the body, e.g. ['x', 3] for the fourth row"
    )


class HealthResponse(BaseModel):
    ok: bool = Field(description="Always true while the process serves requests (liveness)")
    model: str
    version: str
    backend: str
    ready: bool


class ReadyResponse(BaseModel):
    ready: bool
    reason: str | None = Field(default=None, description="Why the sidecar is not ready")
    model: str
    version: str
    sha256: str
    backend: str
    golden: dict[str, Any] | None = Field(
        default=None,
        description="The golden check: per output max_abs_error and min_cosine_similarity "
        "against the compiled model's outputs, with the tolerances (null: no golden vectors)",
    )


# --------------------------------------------------------------------------- parsing
def _loads(body: bytes) -> Any:
    if not body:
        raise ContractError(400, "empty_body", 'request body is empty; send JSON like {"x": [...]}')
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ContractError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None


def _field(obj: Any, key: str, example: str) -> Any:
    if type(obj) is not dict:
        raise ContractError(
            422, "bad_body", f"request body must be a JSON object like {example}, got {_kind(obj)}"
        )
    try:
        return obj[key]
    except KeyError:
        keys = ", ".join(repr(k) for k in list(obj)[:5]) or "none"
        raise ContractError(
            422, "missing_field", f"request body has no {key!r} field (keys: {keys})", [key]
        ) from None


def _fast(value: Any, body: bytes, shape: tuple[int, ...]) -> np.ndarray | None:
    """The hot path: nested lists of JSON numbers -> float32 array of `shape`, or None.

    None means "not sure": the caller then runs the exact check. Two byte scans
    (memchr) rule out what numpy would silently convert: `null`, `true` and `false`
    contain 'u' or 'a', which no JSON number does, and a '"' at or after the first
    '[' means a string inside the array. What is left can only be lists, numbers
    and empty objects, so checking each level's lengths (map(len), C) and letting
    np.fromiter (C) reject anything that is not a number is enough.
    """
    if b"u" in body or b"a" in body:
        return None
    first = body.find(b"[")
    if first < 0 or body.find(b'"', first) >= 0:
        return None
    if type(value) is not list or len(value) != shape[0]:
        return None
    level: list[Any] = value
    try:
        for size in shape[1:-1]:
            if list(map(len, level)).count(size) != len(level):
                return None
            level = list(chain.from_iterable(level))
        if list(map(len, level)).count(shape[-1]) != len(level):
            return None
        flat = np.fromiter(chain.from_iterable(level), dtype=np.float64, count=math.prod(shape))
    except (TypeError, ValueError):
        return None
    # JSON numbers are finite doubles (orjson refuses inf/NaN); float32 holds them if
    # |v| <= _F32_MAX. One dot product (a single BLAS call, cheaper than abs + max)
    # proves it for all of them: sum(v*v) <= _F32_MAX**2 implies every |v| <= _F32_MAX.
    # A bigger sum (only with huge values) goes to the exact check, which decides.
    if not flat.dot(flat) <= _F32_MAX_SQUARED:
        return None
    return flat.astype(np.float32).reshape(shape)


def _to_windows(
    value: Any, body: bytes, shape: tuple[int, ...], loc: list[str | int]
) -> np.ndarray:
    """Parsed JSON -> float32 array of `shape`, or a ContractError that says what is wrong."""
    out = _fast(value, body, shape)
    if out is not None:
        return out
    _diagnose(value, shape, loc)  # raises on the first fault
    # Valid after all (e.g. a "u" elsewhere in the body): convert what _diagnose checked.
    return np.array(value, dtype=np.float64).astype(np.float32)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        text = value if len(value) <= 20 else value[:17] + "..."
        return f"a string ({text!r})"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    return f"a {type(value).__name__}"


def _where(loc: Sequence[str | int]) -> str:
    head, *rest = loc
    return str(head) + "".join(f"[{i}]" for i in rest)


def _diagnose(value: Any, shape: tuple[int, ...], loc: list[str | int]) -> None:
    """Walk `value` against `shape` (nested lists of finite numbers); raise on the first fault."""
    expected, inner = shape[0], shape[1:]
    what = {1: "values", 2: "rows", 3: "windows"}.get(len(shape), "items")
    if not isinstance(value, list):
        raise ContractError(
            422,
            "bad_type",
            f"{_where(loc)} must be an array of {expected} {what}, got {_kind(value)}",
            loc,
        )
    if len(value) != expected:
        if len(shape) == 1:
            msg = f"{_where(loc)} has {len(value)} values, expected {expected}"
        else:
            msg = f"{_where(loc)} has {len(value)} {what}, expected {expected}"
        raise ContractError(422, "bad_shape", msg, loc)
    for i, item in enumerate(value):
        here = [*loc, i]
        if inner:
            _diagnose(item, inner, here)
            continue
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise ContractError(
                422, "bad_type", f"{_where(here)} must be a finite number, got {_kind(item)}", here
            )
        if not math.isfinite(item):
            raise ContractError(422, "not_finite", f"{_where(here)} is {item!r}, not finite", here)
        if abs(item) > _F32_MAX:
            raise ContractError(
                422,
                "not_finite",
                f"{_where(here)} is {item!r}, outside the float32 range (max {_F32_MAX:.8g})",
                here,
            )


def parse_infer_body(body: bytes) -> np.ndarray:
    """`{"x": [[9 numbers] x 100]}` -> float32 array of shape (1, WINDOW, CHANNELS)."""
    x = _field(_loads(body), "x", '{"x": [[9 numbers] x 100]}')
    return _to_windows(x, body, (WINDOW, CHANNELS), ["x"]).reshape(INPUT_SHAPE)


def parse_batch_body(body: bytes, max_batch: int) -> np.ndarray:
    """`{"windows": [x, ...]}` -> float32 array (N, WINDOW, CHANNELS), 1 <= N <= max_batch."""
    windows = _field(_loads(body), "windows", '{"windows": [x, x, ...]}')
    if not isinstance(windows, list):
        raise ContractError(
            422,
            "bad_type",
            f"windows must be an array of windows, got {_kind(windows)}",
            ["windows"],
        )
    n = len(windows)
    if not 1 <= n <= max_batch:
        raise ContractError(
            422,
            "bad_batch_size",
            f"windows has {n} windows, expected 1 to {max_batch}",
            ["windows"],
        )
    return _to_windows(windows, body, (n, WINDOW, CHANNELS), ["windows"])


def check_windows(windows: np.ndarray) -> np.ndarray:
    """Check an array handed over without JSON (IPC, shared memory): float32, (N, 100, 9), finite.

    Returns a C-contiguous float32 view or copy; raises ContractError (422) otherwise.
    """
    if windows.ndim == 2:
        windows = windows.reshape(1, *windows.shape)
    if windows.ndim != 3 or windows.shape[1:] != (WINDOW, CHANNELS) or windows.shape[0] < 1:
        raise ContractError(
            422,
            "bad_shape",
            f"windows have shape {windows.shape}, expected (N, {WINDOW}, {CHANNELS})",
        )
    if windows.dtype != np.float32:
        raise ContractError(
            422, "bad_type", f"windows have dtype {windows.dtype}, expected float32"
        )
    if not np.isfinite(windows).all():
        n, r, c = (int(i) for i in np.argwhere(~np.isfinite(windows))[0])
        raise ContractError(
            422,
            "not_finite",
            f"window {n} row {r} value {c} is {float(windows[n, r, c])}, not finite",
        )
    return np.ascontiguousarray(windows)


# --------------------------------------------------------------------------- encoding
def encode_one(latent: np.ndarray, motifs: np.ndarray, model_fields: dict[str, str]) -> bytes:
    """The /infer response body for one window (rows of the backend's output arrays)."""
    return orjson.dumps(
        {"latent": latent, "motif_scores": motifs, **model_fields},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def encode_batch(latent: np.ndarray, motifs: np.ndarray, model_fields: dict[str, str]) -> bytes:
    """The /infer/batch response body: one {latent, motif_scores} per window, in order."""
    results = [
        {"latent": lat, "motif_scores": mot} for lat, mot in zip(latent, motifs, strict=True)
    ]
    return orjson.dumps({"results": results, **model_fields}, option=orjson.OPT_SERIALIZE_NUMPY)
