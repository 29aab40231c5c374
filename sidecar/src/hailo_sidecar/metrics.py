"""Prometheus metrics (prometheus-client text format), one registry per app.

    sidecar_http_requests_total{endpoint,method,status}       counter
    sidecar_http_request_duration_seconds{endpoint}           histogram, 50 us .. 2.5 s
    sidecar_inference_duration_seconds{backend}               histogram, 10 us .. 0.5 s
    sidecar_inference_windows_total{backend}                  counter
    sidecar_model_info{model,version,sha256,backend}          gauge (1 for the loaded model)
    sidecar_ready                                             gauge (1 ready, 0 not)
    sidecar_ipc_requests_total{kind,result}                   counter (result: ok or error code)
    sidecar_ipc_connections                                   gauge (open IPC connections)
    sidecar_ipc_up                                            gauge (1 listening, 0 not)
    sidecar_inference_errors_total{backend,code}              counter (requests not answered)
    sidecar_inference_failed_duration_seconds{backend}        histogram (failed backend calls)
    sidecar_inference_in_flight                               gauge (backend calls running)
    sidecar_inference_queued                                  gauge (requests waiting)
    sidecar_backend_consecutive_failures                      gauge
    sidecar_backend_oldest_call_seconds                       gauge (age of the oldest call)
    sidecar_healthy                                           gauge (1 healthy, 0 not)
    sidecar_http_connections_cut_total{reason}                counter (limits in http_server.py)
    process_*                                                 RSS, CPU, open fds, ...

Label children are cached so the per-request cost is a dict lookup and an
observe(); the middleware is plain ASGI (no BaseHTTPMiddleware).
"""

from __future__ import annotations

from collections.abc import Iterable
from time import perf_counter
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

# No *_created series: they double the output and nothing here reads them.
disable_created_metrics()

# Sub-millisecond resolution where the sidecar lives (a window costs ~0.1-1 ms), up to seconds.
REQUEST_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003,
    0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
INFERENCE_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
)  # fmt: skip
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, endpoints: Iterable[str]) -> None:
        self.endpoints = frozenset(endpoints)
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sidecar_http_requests", "HTTP requests by endpoint, method and status code",
            ["endpoint", "method", "status"], registry=r,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "sidecar_http_request_duration_seconds", "HTTP request latency in the server, seconds",
            ["endpoint"], buckets=REQUEST_BUCKETS, registry=r,
        )  # fmt: skip
        self.inference_seconds = Histogram(
            "sidecar_inference_duration_seconds", "Backend inference time per call in seconds",
            ["backend"], buckets=INFERENCE_BUCKETS, registry=r,
        )  # fmt: skip
        self.inference_windows = Counter(
            "sidecar_inference_windows", "Windows run through the backend", ["backend"], registry=r
        )
        self.model_info = Gauge(
            "sidecar_model_info", "The model being served (value 1)",
            ["model", "version", "sha256", "backend"], registry=r,
        )  # fmt: skip
        self.ready = Gauge(
            "sidecar_ready", "1 when the model is loaded, verified and warmed up", registry=r
        )
        self.ipc_requests = Counter(
            "sidecar_ipc_requests", "IPC requests by kind (infer, infer_shm, info, invalid) "
            "and result (ok or the error code)", ["kind", "result"], registry=r,
        )  # fmt: skip
        self.ipc_connections = Gauge(
            "sidecar_ipc_connections", "Open connections on the IPC socket", registry=r
        )
        self.ipc_up = Gauge(
            "sidecar_ipc_up", "1 when the IPC socket is listening, 0 when it is off or failed",
            registry=r,
        )  # fmt: skip
        self.inference_errors = Counter(
            "sidecar_inference_errors", "Inference requests that got no result, by error code "
            "(not_ready, overloaded, deadline_exceeded, client_gone, inference_failed, internal)",
            ["backend", "code"], registry=r,
        )  # fmt: skip
        self.inference_failed_seconds = Histogram(
            "sidecar_inference_failed_duration_seconds",
            "Backend time of calls that failed, seconds", ["backend"],
            buckets=(*INFERENCE_BUCKETS, 1.0, 2.5, 5.0, 10.0), registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "sidecar_inference_in_flight", "Backend calls running now", registry=r
        )
        self.queued = Gauge(
            "sidecar_inference_queued", "Inference requests waiting for the backend", registry=r
        )
        self.consecutive_failures = Gauge(
            "sidecar_backend_consecutive_failures", "Backend calls failed in a row", registry=r
        )
        self.oldest_call = Gauge(
            "sidecar_backend_oldest_call_seconds",
            "How long the oldest running backend call has been running", registry=r,
        )  # fmt: skip
        self.healthy = Gauge(
            "sidecar_healthy", "1 unless the backend is failing or stalled (/healthz)", registry=r
        )
        self.http_cut = Counter(
            "sidecar_http_connections_cut", "HTTP connections closed by the server's limits "
            "(headers_too_large, request_timeout, body_timeout)", ["reason"], registry=r,
        )  # fmt: skip
        ProcessCollector(registry=r)
        self._err_children: dict[tuple[str, str], Any] = {}
        self._req_children: dict[tuple[str, str, int], Any] = {}
        self._lat_children: dict[str, Any] = {}
        self._ipc_children: dict[tuple[str, str], Any] = {}

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        child = self._req_children.get(key)
        if child is None:
            child = self._req_children[key] = self.requests.labels(endpoint, method, str(status))
        child.inc()
        hist = self._lat_children.get(endpoint)
        if hist is None:
            hist = self._lat_children[endpoint] = self.request_seconds.labels(endpoint)
        hist.observe(seconds)

    def count_ipc(self, kind: str, result: str) -> None:
        """One IPC request (no duration histogram: the backend time is in the inference
        histogram, and the transport's few microseconds are the benchmark's business)."""
        key = (kind, result)
        child = self._ipc_children.get(key)
        if child is None:
            child = self._ipc_children[key] = self.ipc_requests.labels(kind, result)
        child.inc()

    def count_http_cut(self, reason: str) -> None:
        self.http_cut.labels(reason).inc()

    def count_inference_error(self, backend: str, code: str) -> None:
        key = (backend, code)
        child = self._err_children.get(key)
        if child is None:
            child = self._err_children[key] = self.inference_errors.labels(backend, code)
        child.inc()

    def inference_observer(self, backend: str) -> tuple[Any, Any]:
        """(histogram child, counter child) for one backend, to bind once at start-up."""
        return self.inference_seconds.labels(backend), self.inference_windows.labels(backend)

    def set_model(self, model: str, version: str, sha256: str, backend: str) -> None:
        self.model_info.clear()
        self.model_info.labels(model, version, sha256, backend).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _v2_template(path: str) -> str:
    """/v2/models/NAME[/versions/V][/ready|/infer] -> the same with {name} and {version}
    (the label stays bounded whatever names clients send)."""
    parts = path.split("/")  # "", "v2", "models", NAME, ...
    parts[3] = "{name}"
    if len(parts) > 5 and parts[4] == "versions":
        parts[5] = "{version}"
    tail = parts[4:]
    if tail not in (
        [],
        ["ready"],
        ["infer"],
        ["versions", "{version}"],
        ["versions", "{version}", "ready"],
        ["versions", "{version}", "infer"],
    ):
        return "other"
    return "/".join(parts)


class MetricsMiddleware:
    """Count and time every HTTP request; unknown paths are labelled 'other'."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = scope["path"]
            if path in self.metrics.endpoints:
                endpoint = path
            elif path.startswith("/v2/models/"):
                endpoint = _v2_template(path)
            else:
                endpoint = "other"
            self.metrics.observe_request(endpoint, scope["method"], status, perf_counter() - start)
