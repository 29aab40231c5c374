"""Issue 16, point 2: a short soak (bounded: ~3 s, loopback only) of abusive clients beside
a normal one against the real process. RSS must stay flat (it grew ~50 MB/s under one
header flood before the limits) and the normal client must be served throughout. Its
latency is printed (-s), not asserted: this machine's timing is not a test.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from .conftest import make_window
from .live import read_response, request_bytes
from .test_server import Sidecar

SOAK_SECONDS = 3.0
BODY = orjson.dumps({"x": make_window(9).tolist()})


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def header_flood(port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                for i in range(10_000):
                    if stop.is_set():
                        return
                    s.sendall(b"X-%d: %s\r\n" % (i, b"f" * 8000))
                    time.sleep(0.001)
        except OSError:
            pass  # cut off by the server: come back


def slowloris(port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\n")
                while not stop.is_set():
                    s.sendall(b"X")  # a byte at a time, never finishing the head
                    time.sleep(0.1)
        except OSError:
            pass


def half_body(port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(request_bytes("POST", "/infer", BODY)[:-1000])
                s.recv(1)  # until the server gives up on the body
        except OSError:
            pass


def test_abusive_clients_leave_rss_flat_and_normal_clients_served(tmp_path: Path) -> None:
    env = {
        "INFER_MODE": "stub", "SOCKET_PATH": "", "HTTP_HEADER_TIMEOUT_MS": "500",
        "HTTP_BODY_TIMEOUT_MS": "500", "HTTP_MAX_HEADER_BYTES": "16384",
    }  # fmt: skip
    sidecar = Sidecar(env, tmp_path / "log")
    try:
        sidecar.wait_ready()
        with socket.create_connection(("127.0.0.1", sidecar.port), timeout=10) as normal:

            def infer() -> float:
                start = time.perf_counter()
                normal.sendall(request_bytes("POST", "/infer", BODY))
                status, _, _ = read_response(normal)
                assert status == 200
                return time.perf_counter() - start

            for _ in range(200):
                infer()
            quiet = [infer() for _ in range(200)]
            before = rss_bytes(sidecar.proc.pid)

            stop = threading.Event()
            abusers: list[Callable[[int, threading.Event], None]] = [
                header_flood, header_flood, slowloris, slowloris, slowloris, half_body,
            ]  # fmt: skip
            threads = [
                threading.Thread(target=f, args=(sidecar.port, stop), daemon=True) for f in abusers
            ]
            for t in threads:
                t.start()
            loud: list[float] = []
            end = time.monotonic() + SOAK_SECONDS
            peak = before
            while time.monotonic() < end:
                loud.append(infer())
                if len(loud) % 50 == 0:
                    peak = max(peak, rss_bytes(sidecar.proc.pid))
            stop.set()
            for t in threads:
                t.join(5)
            after = rss_bytes(sidecar.proc.pid)
            peak = max(peak, after)
    finally:
        sidecar.stop()
    log = sidecar.log.read_text()
    assert "Traceback" not in log
    ms = sorted(v * 1000 for v in loud)
    print(
        f"\nsoak: {len(loud)} normal requests in {SOAK_SECONDS} s beside {len(abusers)} abusers; "
        f"p50 {statistics.median(ms):.2f} ms, p99 {ms[int(len(ms) * 0.99)]:.2f} ms "
        f"(quiet p50 {statistics.median(quiet) * 1000:.2f} ms); RSS {before / 2**20:.1f} -> "
        f"{after / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB"
    )
    assert len(loud) > 10  # the normal client was served all along (every answer a 200)
    assert peak - before < 24 * 2**20, (before, peak, after)
