"""The HTTP face of the sidecar: FastAPI app factory and lifespan.

    POST /infer        {"x": [[9 floats] x 100]}
                       -> {"latent", "motif_scores", "model", "version", "sha256"}
    POST /infer/batch  {"windows": [x, ...]}
                       -> {"results": [{"latent", "motif_scores"}, ...], "model", ...}
    GET  /healthz      liveness: 200 {"ok": true, "model", ...} while the process serves
    GET  /readyz       readiness: 200 when ready, 503 {"ready": false, "reason": ...} otherwise
    GET  /metrics      Prometheus text format
    GET  /docs, /openapi.json   the contract, as FastAPI serves it

Beside HTTP, on the same event loop and the same Service, the Unix-socket IPC server
(ipc/server.py) listens on SOCKET_PATH; the lifespan starts and stops it.

The inference routes take the raw `Request` and return a prebuilt `Response`, so
FastAPI does no per-value validation or serialisation on the hot path: the body
goes through `contract.parse_*` (orjson + numpy) and the result through orjson.
The Pydantic models in `contract` describe the same shapes for OpenAPI.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import request_response

from . import __version__, contract
from .backends import BackendError
from .config import Config
from .contract import ContractError
from .ipc.server import IpcServer, IpcSetupError
from .metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from .service import BackendFactory, NotReadyError, Service

log = logging.getLogger(__name__)

ENDPOINTS = ("/infer", "/infer/batch", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")
JSON = "application/json"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def _error(status: int, code: str, detail: str, loc: list[str | int] | None = None) -> Response:
    return _json({"error": code, "detail": detail, "loc": loc}, status)


async def read_json_body(request: Request, limit: int) -> bytes:
    """The request body, if its Content-Type is JSON and it is at most `limit` bytes."""
    headers = request.headers
    ctype = headers.get("content-type")
    if ctype is None:
        raise ContractError(
            415, "unsupported_media_type", "Content-Type is missing; send application/json"
        )
    media = ctype.split(";", 1)[0].strip().lower()
    if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
        raise ContractError(
            415, "unsupported_media_type", f"Content-Type must be application/json, got {ctype!r}"
        )
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ContractError(
                400, "bad_content_length", f"Content-Length {length!r} is not a number"
            )
        if int(length) > limit:
            raise ContractError(
                413,
                "body_too_large",
                f"request body is {int(length)} bytes, the limit is {limit} (MAX_BODY_BYTES)",
            )
        return await request.body()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ContractError(
                413,
                "body_too_large",
                f"request body is over the limit of {limit} bytes (MAX_BODY_BYTES)",
            )
        chunks.append(chunk)
    return b"".join(chunks)


class RawRoute(APIRoute):
    """A route FastAPI documents in OpenAPI but runs as a plain `(Request) -> Response` handler.

    No dependency solving, body validation or response serialisation per request,
    and Starlette's request wrapper instead of FastAPI's (no per-request exit
    stacks: these handlers have no dependencies): the inference handlers do their
    own parsing and encoding (contract.parse_*, contract.encode_*).
    """

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = request_response(endpoint)

    def get_route_handler(self) -> Any:
        return self.endpoint


def _openapi_body(model: type[Any], example: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": schema, "example": example}},
        }
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": contract.ErrorResponse, "description": "Empty or non-JSON body"},
    413: {"model": contract.ErrorResponse, "description": "Body over MAX_BODY_BYTES"},
    415: {"model": contract.ErrorResponse, "description": "Content-Type is not application/json"},
    422: {
        "model": contract.ErrorResponse,
        "description": "Wrong shape, type or a non-finite value",
    },
    503: {"model": contract.ErrorResponse, "description": "Not ready (reason in detail)"},
}
_MODEL_HEADERS = {
    "X-Model-Version": {"description": "Model version", "schema": {"type": "string"}},
    "X-Model-Sha256": {
        "description": "sha256 of the loaded artifact",
        "schema": {"type": "string"},
    },
}


async def start_ipc(service: Service, cfg: Config, metrics: Metrics) -> IpcServer | None:
    """The Unix-socket server beside HTTP (SOCKET_PATH); its failure is a readiness reason."""
    if cfg.socket_path is None:
        log.info("IPC: off (SOCKET_PATH is empty)")
        return None
    ipc = IpcServer(service, cfg, metrics)
    try:
        note = await ipc.start()
    except IpcSetupError as exc:
        service.fail(f"IPC socket: {exc}")
        return None
    log.info("IPC: listening on %s (%s)", cfg.socket_path, note)
    return ipc


def create_app(
    config: Config | None = None, *, backend_factory: BackendFactory | None = None
) -> FastAPI:
    """Build the app. The model is loaded, verified and warmed up in the lifespan."""
    cfg = config if config is not None else Config.from_env()
    metrics = Metrics(ENDPOINTS)
    service = Service(cfg, metrics, backend_factory)
    limiter: list[anyio.CapacityLimiter] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        ipc = await start_ipc(service, cfg, metrics)
        app.state.ipc = ipc
        if service.ready:
            info = service.info
            log.info(
                "ready: backend=%s model=%s version=%s sha256=%s",
                info.backend, info.model, info.version, info.sha256,
            )  # fmt: skip
        else:
            log.error("NOT READY: %s", service.reason)
            if cfg.strict_startup:
                raise RuntimeError(
                    f"STRICT_STARTUP is set and the sidecar is not ready: {service.reason}"
                )
        limiter.append(anyio.CapacityLimiter(1))
        try:
            yield
        finally:
            if ipc is not None:
                await ipc.stop()
            service.close()

    app = FastAPI(
        title="hailo-sidecar",
        version=__version__,
        summary="TCN encoder inference: a window of 100 x 9 IMU samples -> latent + motif scores",
        lifespan=lifespan,
        # Metrics are Prometheus (/metrics); FastAPI's native OpenTelemetry hooks cost
        # three provider look-ups per request even when nothing is configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = service
    app.state.metrics = metrics
    app.state.ipc = None
    app.state.config = cfg
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    async def run(windows: Any) -> Any:
        if service.offload:
            return await anyio.to_thread.run_sync(service.infer, windows, limiter=limiter[0])
        return service.infer(windows)

    limit = cfg.max_body_bytes

    def model_response(body: bytes) -> Response:
        response = Response(body, media_type=JSON)
        response.raw_headers.extend(service.raw_headers)  # X-Model-*: encoded once
        return response

    def route(path: str, **kwargs: Any) -> Any:
        def register(endpoint: Any) -> Any:
            app.router.add_api_route(
                path,
                endpoint,
                methods=["POST"],
                response_class=Response,
                route_class_override=RawRoute,
                **kwargs,
            )
            return endpoint

        return register

    max_batch = cfg.max_batch

    @route(
        "/infer",
        responses={
            200: {
                "model": contract.InferResponse,
                "description": "The window's result",
                "headers": _MODEL_HEADERS,
            },
            **_ERRORS,
        },
        openapi_extra=_openapi_body(
            contract.InferRequest, {"x": [[0.0] * contract.CHANNELS] * contract.WINDOW}
        ),
        summary="Infer one window",
    )
    async def infer(request: Request) -> Response:
        body = await read_json_body(request, limit)
        latent, motifs = await run(contract.parse_infer_body(body))
        return model_response(contract.encode_one(latent[0], motifs[0], service.model_fields))

    @route(
        "/infer/batch",
        responses={
            200: {
                "model": contract.BatchResponse,
                "description": "One result per window",
                "headers": _MODEL_HEADERS,
            },
            **_ERRORS,
        },
        openapi_extra=_openapi_body(
            contract.BatchRequest, {"windows": [[[0.0] * contract.CHANNELS] * contract.WINDOW]}
        ),
        summary=f"Infer up to MAX_BATCH ({max_batch}) windows",
    )
    async def infer_batch(request: Request) -> Response:
        body = await read_json_body(request, limit)
        latent, motifs = await run(contract.parse_batch_body(body, max_batch))
        return model_response(contract.encode_batch(latent, motifs, service.model_fields))

    # Match the hot routes first (FastAPI registers /openapi.json and /docs before them).
    app.router.routes.sort(key=lambda r: not isinstance(r, RawRoute))

    @app.get("/healthz", response_model=contract.HealthResponse, summary="Liveness")
    async def healthz() -> Response:
        info = service.info
        return _json(
            {
                "ok": True,
                "model": info.model,
                "version": info.version,
                "backend": info.backend,
                "ready": service.ready,
            }
        )

    @app.get(
        "/readyz",
        response_model=contract.ReadyResponse,
        responses={
            503: {"model": contract.ReadyResponse, "description": "Not ready, with the reason"}
        },
        summary="Readiness: model loaded, sha256 verified, warm-up passed",
    )
    async def readyz() -> Response:
        info = service.info
        body = {
            "ready": service.ready,
            "reason": service.reason,
            "model": info.model,
            "version": info.version,
            "sha256": info.sha256,
            "backend": info.backend,
            "golden": service.golden,
        }
        return _json(body, 200 if service.ready else 503)

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.exception_handler(ContractError)
    async def on_contract_error(request: Request, exc: ContractError) -> Response:
        return _error(exc.status, exc.code, exc.message, exc.loc)

    @app.exception_handler(NotReadyError)
    async def on_not_ready(request: Request, exc: NotReadyError) -> Response:
        return _error(503, "not_ready", f"the sidecar is not ready: {exc}")

    @app.exception_handler(BackendError)
    async def on_backend_error(request: Request, exc: BackendError) -> Response:
        log.error("inference failed: %s", exc)
        return _error(503, "inference_failed", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = _error(exc.status_code, f"http_{exc.status_code}", str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    return app
