"""Issue 16, point 1: health that tells the truth about a failing or wedged backend.

Fakes stand in for the device: a stub that fails on demand, and one that runs in the
backend thread (like hailo) and hangs until released, ignoring any timeout.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hailo_sidecar import watchdog
from hailo_sidecar.backends import BackendError
from hailo_sidecar.backends.stub import StubBackend
from hailo_sidecar.config import Config

from .conftest import client_for, make_window
from .ipc_helpers import SidecarProcess, wait_for
from .live import get, post_json

GOOD = {"x": make_window(4).tolist()}


class SwitchableBackend(StubBackend):
    """Fails (HailoRT-style timeout error) while `fail` is set; hangs while `hang` is set."""

    def __init__(self, num_motifs: int, offload: bool = False) -> None:
        super().__init__(num_motifs)
        self.offload = offload  # type: ignore[misc]
        self.fail = False
        self.hang = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        if self.fail:
            raise BackendError("HailoRT inference failed: HailoRTTimeout: timed out")
        if self.hang.is_set():
            self.release.wait(10)  # a call that ignores its timeout
        return super().infer(windows)


def factory_for(backend: StubBackend) -> Any:
    return lambda cfg, *a, **k: backend


def test_a_failing_backend_flips_healthz_and_readyz_and_recovers() -> None:
    backend = SwitchableBackend(12)
    cfg = Config(unhealthy_after_failures=2)
    with client_for(cfg, backend_factory=factory_for(backend)) as c:
        assert c.get("/healthz").status_code == 200
        backend.fail = True
        assert c.post("/infer", json=GOOD).status_code == 503
        assert c.get("/healthz").status_code == 200  # one failure is below the limit
        assert c.post("/infer", json=GOOD).json()["error"] == "inference_failed"
        h = c.get("/healthz")
        assert h.status_code == 503
        reason = (
            "backend failing: the last 2 calls failed (UNHEALTHY_AFTER_FAILURES=2); "
            "the last error: HailoRT inference failed: HailoRTTimeout: timed out"
        )
        assert h.json()["ok"] is False
        assert h.json()["reason"] == reason
        r = c.get("/readyz")
        assert (r.status_code, r.json()["reason"]) == (503, reason)
        assert c.get("/livez").status_code == 200  # the process itself is alive
        metrics = c.get("/metrics").text
        assert 'sidecar_inference_errors_total{backend="stub",code="inference_failed"} 2.0' in (
            metrics
        )
        assert 'sidecar_inference_failed_duration_seconds_count{backend="stub"} 2.0' in metrics
        assert "sidecar_backend_consecutive_failures 2.0" in metrics
        assert "sidecar_healthy 0.0" in metrics
        # Calls still go through while unhealthy: the first success heals.
        backend.fail = False
        assert c.post("/infer", json=GOOD).status_code == 200
        assert c.get("/healthz").json()["ok"] is True
        assert c.get("/readyz").status_code == 200
        assert "sidecar_healthy 1.0" in c.get("/metrics").text


def test_a_call_that_ignores_its_timeout_flips_health_and_does_not_hold_the_service() -> None:
    backend = SwitchableBackend(12, offload=True)
    cfg = Config(stall_after_ms=100, request_deadline_ms=300, wedge_exit_after_ms=0)
    with client_for(cfg, backend_factory=factory_for(backend)) as c:
        assert c.post("/infer", json=GOOD).status_code == 200
        backend.hang.set()
        r = c.post("/infer", json=GOOD)  # held by the device past its deadline
        assert r.status_code == 503
        assert r.json()["error"] == "deadline_exceeded"
        assert r.headers["retry-after"] == "1"
        wait_for(lambda: c.get("/healthz").status_code == 503)
        reason = c.get("/healthz").json()["reason"]
        assert reason.startswith("backend stalled: a call has been running for ")
        assert reason.endswith(" s (STALL_AFTER_MS=100)")
        assert c.get("/readyz").status_code == 503
        # While stalled, requests are refused at once instead of queueing behind it.
        r = c.post("/infer", json=GOOD)
        assert r.status_code == 503
        assert r.json()["detail"].startswith("the sidecar is not ready: backend stalled")
        metrics = c.get("/metrics").text
        assert "sidecar_inference_in_flight 1.0" in metrics
        assert 'code="deadline_exceeded"} 1.0' in metrics
        # The call returns: health comes back by itself.
        backend.hang.clear()
        backend.release.set()
        wait_for(lambda: c.get("/healthz").status_code == 200)
        assert c.get("/readyz").status_code == 200
        assert c.post("/infer", json=GOOD).status_code == 200


def test_a_longer_wedge_ends_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    monkeypatch.setattr(watchdog, "hard_exit", exits.append)
    backend = SwitchableBackend(12, offload=True)
    cfg = Config(stall_after_ms=50, request_deadline_ms=100, wedge_exit_after_ms=200)
    with client_for(cfg, backend_factory=factory_for(backend)) as c:
        backend.hang.set()
        assert c.post("/infer", json=GOOD).status_code == 503
        wait_for(lambda: exits == [watchdog.EXIT_WEDGED])
        backend.release.set()


def test_the_watchdog_exits_the_real_process_with_status_4() -> None:
    code = (
        "import time\n"
        "from hailo_sidecar.health import Health\n"
        "from hailo_sidecar.watchdog import Watchdog\n"
        "h = Health(1, 0.01)\n"
        "h.begin()\n"
        "Watchdog(h, 0.05).start()\n"
        "time.sleep(10)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20)
    assert proc.returncode == watchdog.EXIT_WEDGED


def test_failures_count_towards_the_wedge_only_in_a_row() -> None:
    now = [0.0]
    h = watchdog.Health(3, 1.0, clock=lambda: now[0])
    for _ in range(2):
        h.end(h.begin(), "boom")
    assert (h.problem(), h.wedged_for()) == (None, 0.0)
    h.end(h.begin(), "boom")
    now[0] = 5.0
    assert h.wedged_for() == 5.0
    h.end(h.begin())
    assert (h.problem(), h.wedged_for(), h.failures) == (None, 0.0, 0)


def test_a_real_process_with_a_wedged_device_says_so_then_exits_4(
    sock_dir: Path, tmp_path: Path
) -> None:
    """End to end: the call never returns; /healthz turns 503 with the reason while the
    process still answers, then it exits with status 4 for the restart policy."""
    from .test_drain import SLOW_SIDECAR

    env = {
        "SLOW_S": "3600", "STALL_AFTER_MS": "100", "REQUEST_DEADLINE_MS": "200",
        "WEDGE_EXIT_AFTER_MS": "1000",
    }  # fmt: skip
    proc = SidecarProcess(
        env, sock_dir / "s.sock", tmp_path / "log", argv=[sys.executable, "-c", SLOW_SIDECAR]
    )
    try:
        proc.wait_ready()
        status, _, body = post_json(proc.port, "/infer", GOOD)
        assert (status, body["error"]) == (503, "deadline_exceeded")
        status, _, raw = get(proc.port, "/healthz")
        assert status == 503
        assert orjson.loads(raw)["reason"].startswith("backend stalled: a call has been running")
        assert proc.proc.wait(20) == watchdog.EXIT_WEDGED
    finally:
        proc.stop()
    assert (
        "exiting (status 4): the backend has been unhealthy for" in (tmp_path / "log").read_text()
    )
