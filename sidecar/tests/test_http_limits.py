"""Issue 16, points 2 and 5: abusive HTTP clients are cut off; early errors close.

Against the real uvicorn server (tests/live.py) with small limits, on loopback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import orjson
import pytest
from hailo_sidecar.config import Config

from .conftest import make_window
from .ipc_helpers import wait_for
from .live import Live, closed, get, live_server, post_json, read_response, request_bytes

GOOD = {"x": make_window(6).tolist()}
LIMITS = Config(
    http_max_header_bytes=4096,
    http_header_timeout_ms=300,
    http_body_timeout_ms=300,
    http_keepalive_s=1,
)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with live_server(LIMITS) as server:
        yield server


def served(live: Live) -> None:
    """A normal client is still served."""
    status, _, body = post_json(live.port, "/infer", GOOD)
    assert status == 200, body
    assert len(body["latent"]) == 64


def value(metrics: str, series: str) -> float:
    """A sample's value in the Prometheus text (0 if the series is absent)."""
    m = re.search(re.escape(series) + r" (\S+)", metrics)
    return float(m.group(1)) if m else 0.0


def cut(live: Live, reason: str) -> float:
    return value(live.metrics(), f'sidecar_http_connections_cut_total{{reason="{reason}"}}')


def count_499(live: Live, endpoint: str) -> float:
    series = f'sidecar_http_requests_total{{endpoint="{endpoint}",method="POST",status="499"}}'
    return value(live.metrics(), series)


def test_a_header_flood_gets_431_and_is_cut_off(live: Live) -> None:
    before = cut(live, "headers_too_large")
    with live.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sent = 0
        try:
            for i in range(2000):  # far more than the limit allows, if nothing stopped it
                s.sendall(b"X-Flood-%d: %s\r\n" % (i, b"a" * 1000))
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, body = read_response(s)
        assert status == 431
        assert headers["connection"] == "close"
        assert orjson.loads(body)["error"] == "headers_too_large"
        assert closed(s)
    assert cut(live, "headers_too_large") == before + 1
    served(live)


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half"])
def test_idle_and_slow_header_connections_get_408_and_are_closed(live: Live, sent: bytes) -> None:
    before = cut(live, "request_timeout")
    with live.connect(timeout=10) as s:
        s.sendall(sent)
        status, headers, _ = read_response(s)  # within HTTP_HEADER_TIMEOUT_MS, not the 10 s
        assert (status, headers["connection"]) == (408, "close")
        assert closed(s)
    assert cut(live, "request_timeout") == before + 1
    served(live)


def test_half_a_body_is_cut_off_and_counted_499_not_5xx(live: Live) -> None:
    body = orjson.dumps(GOOD)
    with live.connect(timeout=10) as s:
        s.sendall(request_bytes("POST", "/infer", body)[: -len(body) // 2])
        assert closed(s)  # within HTTP_BODY_TIMEOUT_MS
    wait_for(lambda: cut(live, "body_timeout") == 1)
    wait_for(lambda: count_499(live, "/infer") == 1)
    assert 'status="500"' not in live.metrics()
    served(live)


def test_a_client_that_leaves_mid_body_is_a_499_without_a_traceback(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    body = orjson.dumps({"windows": [GOOD["x"]]})
    s = live.connect()
    s.sendall(request_bytes("POST", "/infer/batch", body)[: -len(body) // 2])
    s.close()
    wait_for(lambda: count_499(live, "/infer/batch") == 1)
    assert 'status="500"' not in live.metrics()
    assert "Traceback" not in caplog.text
    assert "Exception in ASGI application" not in caplog.text
    served(live)


@pytest.mark.parametrize(
    ("ctype", "length", "status"),
    [("text/plain", 10_000_000, 415), ("application/json", 10_000_000, 413)],
)
def test_errors_before_the_body_close_the_connection(
    live: Live, ctype: str, length: int, status: int
) -> None:
    with live.connect() as s:
        s.sendall(
            f"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
            + b"[" * 1000
        )
        got, headers, _ = read_response(s)
        assert (got, headers["connection"]) == (status, "close")
        assert closed(s)  # without reading (and discarding) the 10 MB first


def test_many_connections_beyond_the_limit_get_503() -> None:
    with live_server(Config(http_max_connections=4)) as live:
        idle = [live.connect() for _ in range(4)]
        try:
            wait_for(lambda: len(live.server.server_state.connections) == 4)
            status, _, body = get(live.port, "/healthz")
            assert status == 503
            assert body == b"Service Unavailable"  # uvicorn's own answer
        finally:
            for s in idle:
                s.close()
        wait_for(lambda: get(live.port, "/healthz")[0] == 200)


def test_the_keepalive_connection_is_reused_and_closed_when_idle(live: Live) -> None:
    with live.connect() as s:
        for _ in range(3):
            s.sendall(request_bytes("GET", "/livez"))
            assert read_response(s)[0] == 200
        s.settimeout(10)
        assert closed(s)  # after HTTP_KEEPALIVE_S / HTTP_HEADER_TIMEOUT_MS of silence


def test_a_pipelined_head_waiting_behind_a_slow_answer_is_not_timed_out() -> None:
    """The head timer must not fire into the middle of the previous response."""
    import time

    from .test_admission import GatedBackend

    backend = GatedBackend()
    with (
        live_server(LIMITS, backend_factory=lambda c, *a, **k: backend) as live,
        live.connect() as s,
    ):
        second = request_bytes("GET", "/livez")
        s.sendall(request_bytes("POST", "/infer", orjson.dumps(GOOD)) + second[:10])
        wait_for(lambda: backend.calls == 1)
        time.sleep(3 * LIMITS.http_header_timeout_ms / 1000)  # the first answer is slow
        backend.gate.set()
        assert read_response(s)[0] == 200
        s.sendall(second[10:])
        assert read_response(s)[0] == 200
