"""Pydantic models of the contract, for the OpenAPI document only (openapi.py).

Not imported at start-up (pydantic and FastAPI cost most of a cold start); requests
are parsed and checked by contract.py without them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from .contract import CHANNELS, LATENT_DIM, WINDOW

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
    ok: bool = Field(description="False (and status 503) while the backend is failing or stalled")
    model: str
    version: str
    backend: str
    ready: bool
    reason: str | None = Field(default=None, description="Why the backend is unhealthy")


class ReadyResponse(BaseModel):
    ready: bool
    reason: str | None = Field(default=None, description="Why the sidecar is not ready")
    model: str
    version: str
    sha256: str
    backend: str
    ipc: str = Field(default="off", description="The IPC socket: off, listening, failed: why")
    golden: dict[str, Any] | None = Field(
        default=None,
        description="The golden check: per output max_abs_error and min_cosine_similarity "
        "against the compiled model's outputs, with the tolerances (null: no golden vectors)",
    )
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="What the loaded backend says about itself (hailo: HailoRT, driver, "
        "firmware and architecture versions, the HEF's streams); empty until it loaded",
    )
