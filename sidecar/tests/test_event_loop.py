"""Issue 16, point 6: big bodies and batches stay off the event loop.

Which thread did the work is what matters (a timed /healthz probe would be a
performance assertion): small requests run inline on the loop (the fast path), a
body over PARSE_INLINE_BYTES is parsed in a worker thread, and a batch over
INLINE_MAX_WINDOWS runs in the backend thread.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from hailo_sidecar import contract, http_body
from hailo_sidecar.backends.stub import StubBackend
from hailo_sidecar.config import Config

from .conftest import client_for, make_window


class ThreadRecorder(StubBackend):
    def __init__(self) -> None:
        super().__init__(12)
        self.threads: list[tuple[int, str]] = []

    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.threads.append((windows.shape[0], threading.current_thread().name))
        return super().infer(windows)


def test_big_bodies_and_batches_leave_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = ThreadRecorder()
    parsed_on: list[str] = []
    real = contract.parse_batch_body

    def recording(body: bytes, max_batch: int) -> np.ndarray:
        parsed_on.append(threading.current_thread().name)
        return real(body, max_batch)

    monkeypatch.setattr(contract, "parse_batch_body", recording)
    cfg = Config(max_batch=64, inline_max_windows=8)
    with client_for(cfg, backend_factory=lambda c, *a, **k: backend) as c:
        backend.threads.clear()  # the warm-up
        one = [make_window(1).tolist()]
        many: list[Any] = [make_window(i).tolist() for i in range(16)]
        assert c.post("/infer/batch", json={"windows": one}).status_code == 200
        assert c.post("/infer/batch", json={"windows": many}).status_code == 200
    (n1, loop_thread), (n16, big_thread) = backend.threads
    assert (n1, n16) == (1, 16)
    assert not loop_thread.startswith("backend")  # inline, on the event loop
    assert big_thread.startswith("backend")  # Service's backend thread
    assert parsed_on[0] == loop_thread  # a small body: parsed inline
    assert parsed_on[1] != loop_thread  # over PARSE_INLINE_BYTES: a worker thread
    assert http_body.PARSE_INLINE_BYTES < 16 * 18_000  # 16 windows are well over it
