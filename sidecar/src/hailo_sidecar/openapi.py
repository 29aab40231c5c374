"""The OpenAPI document and /docs page, built with FastAPI on first request.

The app that serves (app.py) is plain Starlette: FastAPI and pydantic cost about
300 ms of imports on this machine, more than the whole cold-start target, and no
inference request needs them. The first GET of /openapi.json or /docs imports them
and builds the document from the same paths, the Pydantic models in schemas.py
and the descriptions below; it is cached after that.
"""

from __future__ import annotations

from typing import Any

from . import __version__, contract

JSON = "application/json"
TITLE = "hailo-sidecar"
SUMMARY = "TCN encoder inference: a window of 100 x 9 IMU samples -> latent + motif scores"

_MODEL_HEADERS = {
    "X-Model-Version": {"description": "Model version", "schema": {"type": "string"}},
    "X-Model-Sha256": {
        "description": "sha256 of the loaded artifact",
        "schema": {"type": "string"},
    },
}


def _body(model: Any, example: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": model.model_json_schema(), "example": example}},
        }
    }


def build(max_batch: int) -> dict[str, Any]:
    """The OpenAPI document of the routes app.py serves."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    from . import schemas

    described = {
        400: "Empty or non-JSON body",
        413: "Body over MAX_BODY_BYTES",
        415: "Content-Type is not application/json",
        422: "Wrong shape, type or a non-finite value",
        503: "Not ready, unhealthy, overloaded or past its deadline (Retry-After); the reason "
        "in detail",
    }
    errors: dict[int | str, dict[str, Any]] = {
        status: {"model": schemas.ErrorResponse, "description": text}
        for status, text in described.items()
    }
    app = FastAPI(title=TITLE, version=__version__, summary=SUMMARY)

    async def documented() -> None:  # never called: the document only
        return None

    window = [[0.0] * contract.CHANNELS] * contract.WINDOW
    app.add_api_route(
        "/infer", documented, methods=["POST"], response_class=Response,
        responses={200: {"model": schemas.InferResponse, "description": "The window's result",
                         "headers": _MODEL_HEADERS}, **errors},
        openapi_extra=_body(schemas.InferRequest, {"x": window}), summary="Infer one window",
    )  # fmt: skip
    app.add_api_route(
        "/infer/batch", documented, methods=["POST"], response_class=Response,
        responses={200: {"model": schemas.BatchResponse, "description": "One result per window",
                         "headers": _MODEL_HEADERS}, **errors},
        openapi_extra=_body(schemas.BatchRequest, {"windows": [window]}),
        summary=f"Infer up to MAX_BATCH ({max_batch}) windows",
    )  # fmt: skip
    app.add_api_route(
        "/healthz", documented, response_model=schemas.HealthResponse,
        responses={503: {"model": schemas.HealthResponse,
                         "description": "The backend is failing or stalled (reason)"}},
        summary="Health: the process serves and its backend is not failing or stalled",
    )  # fmt: skip
    app.add_api_route(
        "/readyz", documented, response_model=schemas.ReadyResponse,
        responses={503: {"model": schemas.ReadyResponse,
                         "description": "Not ready, with the reason"}},
        summary="Readiness: model loaded, sha256 verified, warm-up passed, backend healthy, "
        "not draining",
    )  # fmt: skip
    app.add_api_route("/livez", documented, summary="Liveness only: 200 while the process answers")
    app.add_api_route("/metrics", documented, response_class=Response, summary="Prometheus metrics")
    return app.openapi()


def docs_html() -> bytes:
    """Swagger UI for /openapi.json, as FastAPI serves it."""
    from fastapi.openapi.docs import get_swagger_ui_html

    return bytes(
        get_swagger_ui_html(openapi_url="/openapi.json", title=f"{TITLE} - Swagger UI").body
    )
