"""Issue 16, point 3: one bounded queue and one deadline for HTTP and IPC, in Service.

A backend that runs in the backend thread (like hailo) and holds each call until the
test releases it makes the queue observable without timing anything.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hailo_sidecar.backends.stub import StubBackend
from hailo_sidecar.config import Config
from hailo_sidecar.ipc.framing import ErrorCode, MsgType

from .conftest import make_window
from .ipc_helpers import RawConn, wait_for
from .live import Live, live_server, post_json, read_response, request_bytes

W = make_window(7)
BODY = orjson.dumps({"x": W.tolist()})


class GatedBackend(StubBackend):
    """Each call waits for `gate` (set: calls pass straight through)."""

    offload = True

    def __init__(self) -> None:
        super().__init__(12)
        self.gate = threading.Event()
        self.calls = 0
        self.warm = False

    def warm_up(self) -> None:
        super().warm_up()
        self.warm = True

    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.warm:
            self.calls += 1
            self.gate.wait(20)
        return super().infer(windows)


@pytest.fixture
def backend() -> Iterator[GatedBackend]:
    b = GatedBackend()
    yield b
    b.gate.set()


def serve(cfg: Config, backend: GatedBackend, sock: Path | None = None) -> Any:
    cfg = dataclasses.replace(cfg, socket_path=sock)
    return live_server(cfg, backend_factory=lambda c, *a, **k: backend)


def send(live: Live) -> socket.socket:
    s = live.connect(timeout=20)
    s.sendall(request_bytes("POST", "/infer", BODY))
    return s


def service(live: Live) -> Any:
    return live.app.state.service


def test_the_queue_refuses_beyond_its_limit_for_http_and_ipc(
    backend: GatedBackend, sock_dir: Path
) -> None:
    cfg = Config(max_queue=2, request_deadline_ms=20_000, retry_after_s=3)
    with serve(cfg, backend, sock_dir / "s.sock") as live:
        first = send(live)
        wait_for(lambda: backend.calls == 1)
        queued = [send(live), send(live)]
        wait_for(lambda: service(live).admission.waiting == 2)
        status, headers, body = post_json(live.port, "/infer", {"x": W.tolist()})
        assert status == 503
        assert headers["retry-after"] == "3"
        assert body["error"] == "overloaded"
        assert body["detail"] == (
            "the sidecar is busy: 2 requests already waiting (MAX_QUEUE=2); retry later"
        )
        with RawConn(sock_dir / "s.sock") as conn:  # the same queue for the IPC door
            reply = conn.infer(5, W[None])
            assert reply.error[0] == ErrorCode.OVERLOADED
        backend.gate.set()
        for s in [first, *queued]:
            assert read_response(s)[0] == 200
            s.close()
        assert backend.calls == 3
        assert 'code="overloaded"} 2.0' in live.metrics()


def test_a_request_that_waits_past_its_deadline_is_refused_and_never_run(
    backend: GatedBackend,
) -> None:
    with serve(Config(request_deadline_ms=300), backend) as live:
        running = send(live)
        wait_for(lambda: backend.calls == 1)
        status, headers, body = post_json(live.port, "/infer", {"x": W.tolist()})
        assert (status, body["error"]) == (503, "deadline_exceeded")
        assert headers["retry-after"] == "1"
        # The running call is past its deadline too: its client is told, the call goes on.
        assert read_response(running)[0] == 503
        running.close()
        backend.gate.set()
        wait_for(lambda: service(live).admission.idle())
        assert backend.calls == 1  # the one that waited was never run


def test_clients_that_left_cost_no_inference(backend: GatedBackend) -> None:
    """Seen before: 20 clients that gave up after 0.5 s still cost 20 inferences."""
    with serve(Config(request_deadline_ms=20_000), backend) as live:
        first = send(live)
        wait_for(lambda: backend.calls == 1)
        quitters = [send(live) for _ in range(5)]
        wait_for(lambda: service(live).admission.waiting == 5)
        for s in [first, *quitters]:
            s.close()
        backend.gate.set()
        wait_for(lambda: service(live).admission.idle())
        assert backend.calls == 1  # only the call already running when they left
        metrics = live.metrics()
        assert 'code="client_gone"} 5.0' in metrics
        assert 'endpoint="/infer",method="POST",status="499"} 5.0' in metrics
        assert post_json(live.port, "/infer", {"x": W.tolist()})[0] == 200


def test_an_ipc_client_that_leaves_leaves_the_queue_at_once(
    backend: GatedBackend, sock_dir: Path
) -> None:
    with serve(Config(request_deadline_ms=20_000), backend, sock_dir / "s.sock") as live:
        running = send(live)
        wait_for(lambda: backend.calls == 1)
        conn = RawConn(sock_dir / "s.sock")
        conn.send(b"".join(bytes(b) for b in _infer_frame(1)))
        wait_for(lambda: service(live).admission.waiting == 1)
        conn.close()
        wait_for(lambda: service(live).admission.waiting == 0)
        backend.gate.set()
        assert read_response(running)[0] == 200
        running.close()
        assert backend.calls == 1
        with RawConn(sock_dir / "s.sock") as again:
            assert again.infer(2, W[None]).type == MsgType.RESULT


def _infer_frame(rid: int) -> list[bytes | memoryview]:
    from hailo_sidecar.ipc import framing

    return framing.infer_frame(rid, np.ascontiguousarray(W[None], dtype="<f4"))


def test_an_ipc_request_past_its_deadline_gets_code_19(
    backend: GatedBackend, sock_dir: Path
) -> None:
    with serve(Config(request_deadline_ms=300), backend, sock_dir / "s.sock") as live:
        running = send(live)
        wait_for(lambda: backend.calls == 1)
        with RawConn(sock_dir / "s.sock") as conn:
            code, message = conn.infer(4, W[None]).error
            assert code == ErrorCode.DEADLINE_EXCEEDED
            assert "REQUEST_DEADLINE_MS=300" in message
            backend.gate.set()
            assert conn.infer(5, W[None]).type == MsgType.RESULT  # the connection goes on
        running.close()
        assert backend.calls == 2  # the refused request never ran
