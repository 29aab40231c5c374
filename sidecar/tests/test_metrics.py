"""/metrics: Prometheus text with requests, latency, inference time, model info, readiness."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from .conftest import make_window

GOOD = {"x": make_window(4).tolist()}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, frozenset(labels.items()))]


def test_metrics_content_after_traffic(onnx_client: TestClient) -> None:
    for _ in range(5):
        assert onnx_client.post("/infer", json=GOOD).status_code == 200
    onnx_client.post("/infer/batch", json={"windows": [GOOD["x"]] * 3})
    onnx_client.post("/infer", content=b"{}", headers={"content-type": "application/json"})
    onnx_client.get("/healthz")
    onnx_client.get("/not-a-route")
    r = onnx_client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    text = r.text

    # requests by endpoint, method and status; unknown paths folded into "other"
    req = "sidecar_http_requests_total"
    assert value(text, req, endpoint="/infer", method="POST", status="200") == 5
    assert value(text, req, endpoint="/infer", method="POST", status="422") == 1
    assert value(text, req, endpoint="/infer/batch", method="POST", status="200") == 1
    assert value(text, req, endpoint="/healthz", method="GET", status="200") == 1
    assert value(text, req, endpoint="other", method="GET", status="404") == 1
    assert "/not-a-route" not in text

    # request latency histogram, seconds, with sub-millisecond buckets
    lat = "sidecar_http_request_duration_seconds"
    for le in ("5e-05", "0.0001", "0.00025", "0.0005", "0.00075", "0.001"):
        assert (f"{lat}_bucket", frozenset({("endpoint", "/infer"), ("le", le)})) in samples(text)
    assert value(text, f"{lat}_count", endpoint="/infer") == 6
    assert 0 < value(text, f"{lat}_sum", endpoint="/infer") < 5

    # backend inference time, labelled by backend: 5 single + 1 batch call (not warm-up)
    inf = "sidecar_inference_duration_seconds"
    assert value(text, f"{inf}_count", backend="onnx") == 6
    assert (f"{inf}_bucket", frozenset({("backend", "onnx"), ("le", "1e-05")})) in samples(text)
    assert value(text, "sidecar_inference_windows_total", backend="onnx") == 8

    # model info and readiness
    sha = onnx_client.get("/readyz").json()["sha256"]
    info = {"model": "tcn_encoder", "version": "0.1.0", "sha256": sha, "backend": "onnx"}
    assert value(text, "sidecar_model_info", **info) == 1
    assert value(text, "sidecar_ready") == 1
    assert "_created" not in text


def test_stub_metrics_say_stub(client: TestClient) -> None:
    client.post("/infer", json=GOOD)
    text = client.get("/metrics").text
    assert re.search(r'sidecar_model_info\{backend="stub",model="stub",sha256="[0-9a-f]{64}"', text)
    assert value(text, "sidecar_inference_duration_seconds_count", backend="stub") == 1


def test_process_queue_and_error_metrics(client: TestClient) -> None:
    """Issue 16, point 9: process figures, errors by code, in-flight and queued gauges."""
    assert client.post("/infer", json={"x": [[0.0] * 9] * 99}).status_code == 422
    text = client.get("/metrics").text
    got = samples(text)
    names = {name for name, _ in got}
    for name in (
        "process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total",
        "sidecar_inference_in_flight", "sidecar_inference_queued", "sidecar_healthy",
        "sidecar_backend_consecutive_failures", "sidecar_backend_oldest_call_seconds",
        "sidecar_ipc_up",
    ):  # fmt: skip
        assert name in names, name
    assert value(text, "process_resident_memory_bytes") > 0
    assert value(text, "sidecar_inference_in_flight") == 0
    assert value(text, "sidecar_healthy") == 1
    # Bad input is the client's error, not an inference error.
    assert not any(n == "sidecar_inference_errors_total" for n, _ in got)


def test_metrics_pass_promtool_check(client: TestClient, tmp_path: Any) -> None:
    """`promtool check metrics` (Prometheus' own linter) when it is installed (Debian:
    the prometheus package); the text always parses with prometheus-client's parser."""
    client.post("/infer", json=GOOD)
    text = client.get("/metrics").text
    assert list(text_string_to_metric_families(text))
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    out = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
