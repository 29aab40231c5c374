"""The compose files: the settings the image and the deploy role rely on.

The structure is checked from the YAML always; `docker-compose config` (Compose v1,
Debian's package) or `docker compose config` (v2) also validates and interpolates
them when either is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hailo_sidecar.config import DEFAULT_SOCKET_PATH

SIDECAR = Path(__file__).resolve().parents[1]
GPUSRV = SIDECAR / "docker-compose.gpusrv.yaml"
PI = SIDECAR / "docker-compose.pi.yaml"
IMAGE = "registry.lab:5000/hailo-runtime@sha256:" + "a" * 64


def service(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert list(doc["services"]) == ["hailo-inference"]
    svc: dict[str, Any] = doc["services"]["hailo-inference"]
    return svc


def hardened(svc: dict[str, Any]) -> None:
    assert svc["image"].startswith("${SIDECAR_IMAGE:?")
    assert svc["user"] == "10001:10001"
    assert svc["read_only"] is True
    assert svc["cap_drop"] == ["ALL"]
    assert svc["security_opt"] == ["no-new-privileges:true"]
    assert "privileged" not in svc
    assert any(t.split(":")[0] == "/tmp" for t in svc["tmpfs"])
    assert svc["restart"] == "unless-stopped"
    assert svc["logging"]["driver"] == "json-file"
    assert set(svc["logging"]["options"]) == {"max-size", "max-file"}
    env = svc["environment"]
    assert env["PORT"] == "9000"
    assert env["SOCKET_PATH"] == str(DEFAULT_SOCKET_PATH)
    assert svc["ports"] == ["${SIDECAR_PUBLISH:-127.0.0.1:9000}:9000"]
    test = svc["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python3", "-c"]  # no curl in the image
    assert "urllib.request" in test[3]
    assert "http://127.0.0.1:9000/readyz" in test[3]


def test_gpusrv_stub_without_a_device() -> None:
    svc = service(GPUSRV)
    hardened(svc)
    assert svc["environment"]["INFER_MODE"] == "stub"
    assert "devices" not in svc
    assert "volumes" not in svc  # no model
    # The socket directory: a private tmpfs the sidecar's uid owns (not world-writable).
    (run,) = [t for t in svc["tmpfs"] if t.startswith("/run/hailo-sidecar:")]
    assert "uid=10001" in run
    assert "gid=10001" in run
    assert "mode=0750" in run


def test_pi_hailo_with_the_device_models_and_shared_socket_volume() -> None:
    doc = yaml.safe_load(PI.read_text())
    svc = service(PI)
    hardened(svc)
    env = svc["environment"]
    assert env["INFER_MODE"] == "${INFER_MODE:-hailo}"
    assert env["MODELS_DIR"] == "/models"
    assert env["MODEL_NAME"] == "${MODEL_NAME:-tcn_encoder}"
    assert env["MODEL_VERSION"].startswith("${MODEL_VERSION:?")
    assert env["HAILO_DEVICE"] == "/dev/hailo0"
    assert "MODEL_MANIFEST" not in env  # discovery
    assert svc["devices"] == ["/dev/hailo0:/dev/hailo0"]
    assert "/opt/hailo-sidecar/models:/models:ro" in svc["volumes"]
    assert "hailo-sidecar-run:/run/hailo-sidecar" in svc["volumes"]
    assert doc["volumes"]["hailo-sidecar-run"]["name"] == "hailo-sidecar-run"
    assert svc["ipc"] == "shareable"  # shared-memory clients join this IPC namespace


def _compose() -> list[str] | None:
    """docker-compose (v1), else the docker CLI's compose plugin (v2), else None."""
    if v1 := shutil.which("docker-compose"):
        return [v1]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


COMPOSE = _compose()
needs_compose = pytest.mark.skipif(COMPOSE is None, reason="no docker-compose / docker compose")


def compose_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    clean = {k: v for k, v in os.environ.items() if k not in ("SIDECAR_IMAGE", "MODEL_VERSION")}
    return subprocess.run(
        [*COMPOSE, "-f", str(path), "config"],
        env={**clean, **env}, capture_output=True, text=True, timeout=60, cwd=SIDECAR,
    )  # fmt: skip


@needs_compose
def test_compose_validates_and_interpolates() -> None:
    out = compose_config(GPUSRV, {"SIDECAR_IMAGE": IMAGE})
    assert out.returncode == 0, out.stderr
    rendered = yaml.safe_load(out.stdout)["services"]["hailo-inference"]
    assert rendered["image"] == IMAGE
    out = compose_config(PI, {"SIDECAR_IMAGE": IMAGE, "MODEL_VERSION": "0.1.0"})
    assert out.returncode == 0, out.stderr
    rendered = yaml.safe_load(out.stdout)["services"]["hailo-inference"]
    assert rendered["environment"]["MODEL_VERSION"] == "0.1.0"
    assert rendered["environment"]["MODEL_NAME"] == "tcn_encoder"


@needs_compose
@pytest.mark.parametrize(
    ("path", "env", "missing"),
    [
        (GPUSRV, {}, "set SIDECAR_IMAGE"),
        (PI, {"MODEL_VERSION": "0.1.0"}, "set SIDECAR_IMAGE"),
        (PI, {"SIDECAR_IMAGE": IMAGE}, "set MODEL_VERSION"),
    ],
)
def test_compose_refuses_missing_variables(path: Path, env: dict[str, str], missing: str) -> None:
    out = compose_config(path, env)
    assert out.returncode != 0
    assert missing in out.stderr
