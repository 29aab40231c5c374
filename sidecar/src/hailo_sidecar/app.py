"""The HTTP face of the sidecar: the app factory, its lifespan and routes (Starlette).

    POST /infer        {"x": [[9 floats] x 100]}
                       -> {"latent", "motif_scores", "model", "version", "sha256"}
    POST /infer/batch  {"windows": [x, ...]}
                       -> {"results": [{"latent", "motif_scores"}, ...], "model", ...}
    GET  /healthz      200 {"ok": true, "model", ...}; 503 {"ok": false, "reason"} while the
                       backend is failing or stalled (health.py); EdgeInfer and Docker read it
    GET  /readyz       readiness: 200 when ready and healthy, 503 {"ready": false, "reason"}
    GET  /livez        pure liveness: 200 while the process answers at all
    GET  /metrics      Prometheus text format
    GET  /docs, /openapi.json   the contract (openapi.py: built with FastAPI on first use)
    /v2/...            the Open Inference Protocol (KServe V2), v2.py

Beside HTTP, on the same event loop and the same Service, the Unix-socket IPC server
(ipc/server.py) listens on SOCKET_PATH; the lifespan starts and stops it.

Plain Starlette routes: each takes the raw `Request` and returns a prebuilt
`Response`; the body goes through `contract.parse_*` (orjson + numpy) and the result
through orjson. Admission, deadlines and health are the Service's (`Service.run`),
shared with IPC. FastAPI and pydantic are not imported to serve: they cost about
300 ms of a cold start; openapi.py loads them for the document only.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from time import monotonic
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from . import contract, v2
from .admission import ClientGoneError, RefusedError
from .backends import BackendError
from .config import Config
from .contract import ContractError
from .http_body import BodyNotReadError, parse, read_json_body
from .ipc.server import IpcServer, IpcSetupError
from .metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from .service import BackendFactory, NotReadyError, Service

log = logging.getLogger(__name__)

ENDPOINTS = (
    "/infer", "/infer/batch", "/healthz", "/readyz", "/livez", "/metrics", "/docs",
    "/openapi.json", "/v2", "/v2/health/live", "/v2/health/ready",
)  # fmt: skip
JSON = "application/json"
CLIENT_CLOSED = 499  # the client went away before its answer (nginx's code)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def _error(status: int, code: str, detail: str, loc: list[str | int] | None = None) -> Response:
    return _json({"error": code, "detail": detail, "loc": loc}, status)


async def start_ipc(service: Service, cfg: Config, metrics: Metrics) -> IpcServer | None:
    """The Unix-socket server beside HTTP (SOCKET_PATH).

    A socket that cannot be created is reported (the `ipc` field of /readyz, the
    `sidecar_ipc_up` metric, the log) and HTTP serves on; it makes the sidecar not
    ready only with IPC_REQUIRED=1.
    """
    metrics.ipc_up.set(0)
    if cfg.socket_path is None:
        log.info("IPC: off (SOCKET_PATH is empty)")
        service.ipc_state = "off"
        return None
    ipc = IpcServer(service, cfg, metrics)
    try:
        note = await ipc.start()
    except IpcSetupError as exc:
        service.ipc_state = f"failed: {exc}"
        if cfg.ipc_required:
            service.fail(f"IPC socket: {exc}")
        else:
            log.error(
                "IPC socket failed (HTTP serves on; IPC_REQUIRED=1 makes this fatal): %s", exc
            )
        return None
    service.ipc_state = "listening"
    metrics.ipc_up.set(1)
    log.info("IPC: listening on %s (%s)", cfg.socket_path, note)
    return ipc


def create_app(
    config: Config | None = None, *, backend_factory: BackendFactory | None = None
) -> Starlette:
    """Build the app. The model is loaded, verified and warmed up in the lifespan."""
    cfg = config if config is not None else Config.from_env()
    metrics = Metrics(ENDPOINTS)
    service = Service(cfg, metrics, backend_factory)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
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
        try:
            yield
        finally:
            # Drain: readiness 503 first (SIGTERM already did it: http_server.py), the
            # requests still here finish (HTTP's are waited for by uvicorn), the IPC
            # replies are sent, then the backend is closed.
            service.begin_drain()
            bound = cfg.drain_timeout_ms / 1000  # from the signal, for HTTP, IPC and the rest
            if ipc is not None:
                await ipc.stop(max(0.0, bound - (monotonic() - service.drain_started)))
            left = max(0.0, bound - (monotonic() - service.drain_started))
            if not await service.drain(left):
                log.warning("drain: requests still running after %.1f s; closing anyway", bound)
            service.close()

    run = service.run
    limit = cfg.max_body_bytes
    max_batch = cfg.max_batch

    def model_response(body: bytes) -> Response:
        response = Response(body, media_type=JSON)
        response.raw_headers.extend(service.raw_headers)  # X-Model-*: encoded once
        return response

    # ------------------------------------------------------------------ inference
    async def infer(request: Request) -> Response:
        body = await read_json_body(request, limit)
        windows = await parse(contract.parse_infer_body, body)
        latent, motifs = await run(windows, request.is_disconnected)
        return model_response(contract.encode_one(latent[0], motifs[0], service.model_fields))

    async def infer_batch(request: Request) -> Response:
        body = await read_json_body(request, limit)
        windows = await parse(contract.parse_batch_body, body, max_batch)
        latent, motifs = await run(windows, request.is_disconnected)
        return model_response(contract.encode_batch(latent, motifs, service.model_fields))

    # ------------------------------------------------------------------ health
    async def healthz(request: Request) -> Response:
        info = service.info
        problem = service.health_problem()
        body = {
            "ok": problem is None,
            "model": info.model,
            "version": info.version,
            "backend": info.backend,
            "ready": service.readiness()[0],
        }
        if problem is not None:
            body["reason"] = problem
        return _json(body, 200 if problem is None else 503)

    async def livez(request: Request) -> Response:
        return _json({"ok": True})

    async def readyz(request: Request) -> Response:
        info = service.info
        ready, reason = service.readiness()
        body = {
            "ready": ready,
            "reason": reason,
            "model": info.model,
            "version": info.version,
            "sha256": info.sha256,
            "backend": info.backend,
            "ipc": service.ipc_state,
            "golden": service.golden,
            "details": info.details,
        }
        return _json(body, 200 if ready else 503)

    async def prometheus_metrics(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # ------------------------------------------------------------------ documents
    documents: dict[str, bytes] = {}

    async def openapi_json(request: Request) -> Response:
        if "openapi" not in documents:
            from . import openapi

            documents["openapi"] = orjson.dumps(openapi.build(max_batch))
        return Response(documents["openapi"], media_type=JSON)

    async def docs(request: Request) -> Response:
        if "docs" not in documents:
            from . import openapi

            documents["docs"] = openapi.docs_html()
        return HTMLResponse(documents["docs"])

    # ------------------------------------------------------------------ errors
    async def on_contract_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ContractError)
        response = _error(exc.status, exc.code, exc.message, exc.loc)
        if isinstance(exc, BodyNotReadError):
            response.headers["connection"] = "close"
        return response

    async def on_client_disconnect(request: Request, exc: Exception) -> Response:
        # The client left in the middle of its body: nobody to answer; 499 in the
        # metrics (nginx's "client closed request"), not a 5xx, and no traceback.
        log.debug("client disconnected before sending its whole body")
        return Response(status_code=CLIENT_CLOSED)

    async def on_not_ready(request: Request, exc: Exception) -> Response:
        return _error(503, "not_ready", f"the sidecar is not ready: {exc}")

    async def on_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RefusedError)
        if isinstance(exc, ClientGoneError):
            return Response(status_code=CLIENT_CLOSED)
        response = _error(503, exc.code, exc.message)
        if exc.retry_after is not None:
            response.headers["retry-after"] = str(exc.retry_after)
        return response

    async def on_backend_error(request: Request, exc: Exception) -> Response:
        log.error("inference failed: %s", exc)
        return _error(503, "inference_failed", str(exc))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        response = _error(exc.status_code, f"http_{exc.status_code}", str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    app = Starlette(
        routes=[
            Route("/infer", infer, methods=["POST"]),
            Route("/infer/batch", infer_batch, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/livez", livez, methods=["GET"]),
            Route("/metrics", prometheus_metrics, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/docs", docs, methods=["GET"]),
            *v2.routes(service, max_batch, limit),  # the Open Inference Protocol (KServe V2)
        ],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
        exception_handlers={
            ContractError: on_contract_error,
            ClientDisconnect: on_client_disconnect,
            NotReadyError: on_not_ready,
            RefusedError: on_refused,
            BackendError: on_backend_error,
            StarletteHTTPException: on_http_error,
        },
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.metrics = metrics
    app.state.ipc = None
    app.state.config = cfg
    return app
