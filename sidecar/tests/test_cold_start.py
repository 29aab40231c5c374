"""Issue 16, point 10: what a cold start imports. The time itself is the benchmark's
(bench/sidecar_latency.py, cold_start); here: FastAPI and pydantic (~300 ms of imports
on the lab machine) stay out of the serving path until /openapi.json or /docs."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from hailo_sidecar.app import create_app
from hailo_sidecar.config import Config
from hailo_sidecar.http_server import build_server
app = create_app(Config())
app.state.service.start()
build_server(app, Config())
heavy = [m for m in ("fastapi", "pydantic", "onnxruntime", "hailo_platform") if m in sys.modules]
print(",".join(heavy) or "none")
"""


def test_serving_imports_neither_fastapi_nor_pydantic() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "none", out.stdout + out.stderr
