"""Issue 16, point 4: SIGTERM drains: readiness 503 first, in-flight requests finish
within DRAIN_TIMEOUT_MS, IPC replies already taken are sent, then the server stops.

`server.handle_exit(SIGTERM, None)` is what uvicorn's signal handler calls; the real
process and its signal are covered by test_server.py and test_client.py.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from pathlib import Path

import orjson
from hailo_sidecar.config import Config
from hailo_sidecar.ipc import framing
from hailo_sidecar.ipc.framing import MsgType

from .ipc_helpers import RawConn, SidecarProcess, wait_for
from .live import live_server, read_response, request_bytes
from .test_admission import GatedBackend, W, send


def test_sigterm_flips_readiness_first_then_finishes_http_and_ipc_work(sock_dir: Path) -> None:
    backend = GatedBackend()
    cfg = Config(socket_path=sock_dir / "s.sock", drain_timeout_ms=10_000)
    with live_server(cfg, backend_factory=lambda c, *a, **k: backend) as live:
        service = live.app.state.service
        http = send(live)  # running in the backend, held by the gate
        wait_for(lambda: backend.calls == 1)
        ipc = RawConn(sock_dir / "s.sock", timeout=20)
        ipc.send(framing.infer_frame(7, W[None].astype("<f4")))
        wait_for(lambda: service.admission.waiting == 1)  # queued behind the HTTP call

        live.server.handle_exit(signal.SIGTERM, None)
        assert service.readiness() == (False, "draining: shutting down (SIGTERM)")
        threads = threading.enumerate()
        assert any(t.name == "uvicorn" and t.is_alive() for t in threads)  # still draining

        backend.gate.set()
        assert read_response(http)[0] == 200  # the request in flight finished
        reply = ipc.recv()  # and the IPC reply already taken was sent
        assert (reply.type, reply.request_id) == (MsgType.RESULT, 7)
        http.close()
        ipc.close()
        wait_for(lambda: live.server.should_exit and not service.ready, timeout=20)
        assert backend.calls == 2
    assert not (sock_dir / "s.sock").exists()


def test_drain_is_bounded_when_a_call_never_returns(sock_dir: Path) -> None:
    backend = GatedBackend()
    cfg = Config(drain_timeout_ms=300, request_deadline_ms=60_000, wedge_exit_after_ms=0)
    start = time.monotonic()
    with live_server(cfg, backend_factory=lambda c, *a, **k: backend) as live:
        http = send(live)
        wait_for(lambda: backend.calls == 1)
        live.server.handle_exit(signal.SIGTERM, None)
        thread = next(t for t in threading.enumerate() if t.name == "uvicorn")
        thread.join(15)
        assert not thread.is_alive()  # stopped although the call still hangs
        http.close()
    backend.gate.set()
    assert time.monotonic() - start < 15


SLOW_SIDECAR = """
import os, sys, time
import hailo_sidecar.service as service
from hailo_sidecar.backends.stub import StubBackend

class Slow(StubBackend):  # a device-like backend whose calls take SLOW_S seconds
    offload = True
    warm = False

    def warm_up(self):
        super().warm_up()
        self.warm = True

    def infer(self, windows):
        if self.warm:
            time.sleep(float(os.environ["SLOW_S"]))
        return super().infer(windows)

service.create_backend = lambda cfg, *a, **k: Slow(cfg.num_motifs)
from hailo_sidecar.__main__ import main
sys.exit(main())
"""


def test_a_real_sigterm_drains_http_and_ipc(sock_dir: Path, tmp_path: Path) -> None:
    """`python -m hailo_sidecar` (with a slow device-like backend) gets SIGTERM while an
    HTTP request runs and an IPC request waits: both are answered, then it exits."""
    sock = sock_dir / "s.sock"
    proc = SidecarProcess(
        {"SLOW_S": "0.5", "DRAIN_TIMEOUT_MS": "8000"}, sock, tmp_path / "log",
        argv=[sys.executable, "-c", SLOW_SIDECAR],
    )  # fmt: skip
    try:
        proc.wait_ready()
        http = socket.create_connection(("127.0.0.1", proc.port), timeout=20)
        http.sendall(request_bytes("POST", "/infer", orjson.dumps({"x": W.tolist()})))
        ipc = RawConn(sock, timeout=20)
        time.sleep(0.1)  # the HTTP request has the backend; the IPC one queues behind it
        ipc.send(framing.infer_frame(3, W[None].astype("<f4")))
        time.sleep(0.1)
        proc.proc.send_signal(signal.SIGTERM)
        assert read_response(http)[0] == 200
        reply = ipc.recv()
        assert (reply.type, reply.request_id) == (MsgType.RESULT, 3)
        assert proc.proc.wait(20) in (0, -signal.SIGTERM)
    finally:
        proc.stop()
    log = (tmp_path / "log").read_text()
    assert log.index("draining: readiness is 503") < log.index("Shutting down")
    assert "Traceback" not in log


def test_a_real_sigterm_with_a_wedged_call_still_exits(sock_dir: Path, tmp_path: Path) -> None:
    """The backend thread never returns: the drain bound still ends the process."""
    env = {
        "SLOW_S": "3600", "REQUEST_DEADLINE_MS": "200", "DRAIN_TIMEOUT_MS": "300",
        "WEDGE_EXIT_AFTER_MS": "0",
    }  # fmt: skip
    proc = SidecarProcess(
        env, sock_dir / "s.sock", tmp_path / "log", argv=[sys.executable, "-c", SLOW_SIDECAR]
    )
    try:
        proc.wait_ready()
        with socket.create_connection(("127.0.0.1", proc.port), timeout=20) as http:
            http.sendall(request_bytes("POST", "/infer", orjson.dumps({"x": W.tolist()})))
            assert read_response(http)[0] == 503  # past its deadline; the call goes on
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(20) in (0, -signal.SIGTERM)
    finally:
        proc.stop()
