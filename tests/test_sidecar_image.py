"""The sidecar runtime image (hailo-runtime) and the tcn-encoder model image.

Built here by sidecar/build-image.sh on the lab host's engine (make lab), offline from
a wheelhouse: the amd64 images are run hardened (uid 10001, read-only root, no
capabilities) and serve /healthz; the onnx backend serves the reference model mounted at
/models in the documented layout; no layer holds an artifact, licence, key or
credential. The arm64 images are built once and checked under emulation (QEMU): what is
checked there is that they are arm64 and import, never how fast anything runs.

Skipped only when no Docker engine answers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hailort_standin
import image_layers
import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")
BUILD = REPO / "sidecar" / "build-image.sh"
VERSION = re.search(
    r'^__version__ = "(.+)"$',
    (REPO / "sidecar/src/hailo_sidecar/__init__.py").read_text(),
    re.M,
)[1]  # type: ignore[index]
RUNTIME = f"hailo-runtime:{VERSION}"
MODEL = "tcn-encoder:0.1.0"
# Hardened, without the socket directory's mount (tests choose it).
BASE_FLAGS = [
    "--user", "10001", "--read-only", "--tmpfs", "/tmp",
    "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
]  # fmt: skip
# The socket directory as IMAGE.md documents it: a tmpfs the sidecar user owns (the
# sidecar is not ready while it cannot make its IPC socket there).
HARDENED = [*BASE_FLAGS, "--tmpfs", "/run/hailo-sidecar:uid=10001,gid=10001,mode=0770"]


def _engine_answers() -> bool:
    if not Path(DOCKER).exists():
        return False
    try:
        run = subprocess.run([DOCKER, "info"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0


pytestmark = pytest.mark.skipif(
    not _engine_answers(), reason=f"no Docker engine answers to {DOCKER} info (start one: make lab)"
)


def docker(
    *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def build(platforms: str, **env: str) -> dict[str, Any]:
    start = time.monotonic()
    proc = subprocess.run(
        [str(BUILD)],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DOCKER": DOCKER,
            "PYTHON": sys.executable,
            "PLATFORMS": platforms,
            **env,
        },
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["seconds"] = time.monotonic() - start
    result["stderr"] = proc.stderr
    for image in result["images"]:
        print(
            f"{image['tags'][0]} ({image['platform']}): {image['size_bytes'] / 1e6:.0f} MB, "
            f"{image['seconds']} s, changed={image['changed']}"
        )
    return result


def image_of(result: dict[str, Any], name: str, platform: str) -> dict[str, Any]:
    return next(i for i in result["images"] if i["image"] == name and i["platform"] == platform)


def inspect(ref: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(docker("image", "inspect", ref).stdout)[0]
    return info


@pytest.fixture(scope="module")
def amd64() -> dict[str, Any]:
    return build("linux/amd64")


@pytest.fixture
def running(amd64: dict[str, Any]) -> Iterator[str]:
    """The runtime image, hardened, stub backend, health checked every second."""
    name = f"pytest-sidecar-{uuid.uuid4().hex[:8]}"
    docker(
        "run", "-d", "--name", name, *HARDENED, "--health-interval", "1s",
        "-p", "127.0.0.1::9000", RUNTIME,
    )  # fmt: skip
    try:
        yield name
    finally:
        docker("rm", "-f", "-v", name, check=False)


def published(container: str) -> str:
    return docker("port", container, "9000/tcp").stdout.splitlines()[0].strip()


def get(url: str, deadline: float = 60) -> tuple[int, dict[str, Any]]:
    end = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if time.monotonic() > end:
                return exc.code, json.loads(exc.read() or b"{}")
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > end:
                raise
        time.sleep(0.5)


def wait_healthy(container: str, deadline: float = 60) -> str:
    end = time.monotonic() + deadline
    status = ""
    while time.monotonic() < end:
        status = docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()
        if status in ("healthy", "unhealthy"):
            break
        time.sleep(0.5)
    return status


# --- the build --------------------------------------------------------------------------


def test_build_tags_and_prints_digests(amd64: dict[str, Any]) -> None:
    runtime = image_of(amd64, "hailo-runtime", "linux/amd64")
    assert set(runtime["tags"]) == {
        f"hailo-runtime:{VERSION}", "hailo-runtime:latest",
        f"hailo-runtime:{VERSION}-amd64", "hailo-runtime:latest-amd64",
    }  # fmt: skip
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", runtime["id"])
    assert f"digest {runtime['id']}" in amd64["stderr"]
    for tag in runtime["tags"]:
        assert inspect(tag)["Id"] == runtime["id"]
    model = image_of(amd64, "tcn-encoder", "linux/amd64")
    assert set(model["tags"]) == {MODEL, f"{MODEL}-amd64"}


def test_rebuild_without_change_is_a_no_op(amd64: dict[str, Any]) -> None:
    again = build("linux/amd64")
    assert "wheelhouse up to date" in again["stderr"]
    for image in again["images"]:
        assert image["changed"] is False, image
        assert image["id"] == image_of(amd64, image["image"], image["platform"])["id"]


def test_version_prints(amd64: dict[str, Any]) -> None:
    out = docker(
        "run", "--rm", RUNTIME, "python3", "-c",
        "import hailo_sidecar; print(hailo_sidecar.__version__)",
    )  # fmt: skip
    assert out.stdout.strip() == VERSION


def test_numpy_starts_no_blas_worker_threads(amd64: dict[str, Any]) -> None:
    """An OpenBLAS worker spins while idle (under arm64 emulation without end: each idle
    lab sidecar burned half a core); the image's numpy starts none (OPENBLAS_NUM_THREADS)."""
    out = docker(
        "run", "--rm", RUNTIME, "python3", "-c",
        "import os, numpy; print(len(os.listdir('/proc/self/task')))",
    )  # fmt: skip
    assert out.stdout.strip() == "1"


def test_runtime_image_config(amd64: dict[str, Any]) -> None:
    info = inspect(RUNTIME)
    config = info["Config"]
    assert info["Architecture"] == "amd64"
    assert config["User"] == "10001:10001"
    assert "9000/tcp" in config["ExposedPorts"]
    assert config["Cmd"] == ["/opt/hailo-sidecar/bin/python3", "-m", "hailo_sidecar"]
    health = " ".join(config["Healthcheck"]["Test"])
    assert "urllib" in health
    assert "/healthz" in health
    assert "curl" not in health
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert re.fullmatch(r"[0-9a-f]{7,}(-dirty)?", labels["org.opencontainers.image.revision"])
    assert labels["org.opencontainers.image.source"]
    assert labels["org.opencontainers.image.base.name"] == "hailo-lab/runtime-base:amd64"
    # Built without HailoRT: the deploy refuses it for a hailo release.
    assert labels["org.hailo-pipeline.hailort.version"] == ""
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PATH"].startswith("/opt/hailo-sidecar/bin:")
    assert "MODEL_NAME" not in env  # the base carries no model


def pins(closure: str) -> dict[str, str]:
    return {
        re.sub(r"[-_.]+", "-", m[1]).lower(): m[2]
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / closure).read_text(), re.M)
    }


def installed(image: str) -> dict[str, str]:
    listing = docker(
        "run", "--rm", image, "python3", "-c",
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
    )  # fmt: skip
    return {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in json.loads(listing.stdout).items()}


def test_installed_closure_is_exactly_the_pins(amd64: dict[str, Any]) -> None:
    found = installed(RUNTIME)
    assert found.pop("hailo-sidecar") == VERSION
    # pip and setuptools were removed after the build; nothing else came in.
    assert found == pins("sidecar/requirements-image.txt")


def test_runs_hardened_and_answers_healthz(running: str) -> None:
    assert docker("exec", running, "id", "-u").stdout.strip() == "10001"
    assert docker("exec", running, "id", "-g").stdout.strip() == "10001"
    status, body = get(f"http://{published(running)}/healthz")
    assert status == 200
    assert body["ok"] is True
    assert body["backend"] == "stub"
    assert wait_healthy(running) == "healthy"  # the image's own HEALTHCHECK (urllib)
    write = docker("exec", running, "touch", "/opt/hailo-sidecar/x", check=False)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    caps = docker("exec", running, "grep", "^CapEff", "/proc/self/status").stdout
    assert caps.split()[1] == "0000000000000000"


def test_socket_directory_is_writable_by_the_sidecar_user(amd64: dict[str, Any]) -> None:
    """As documented: a tmpfs (uid/gid 10001) or a new named volume at /run/hailo-sidecar."""
    bind = (
        "import socket; s = socket.socket(socket.AF_UNIX); "
        "s.bind('/run/hailo-sidecar/probe.sock'); print('bound')"
    )
    tmpfs = docker(
        "run", "--rm", *BASE_FLAGS, "--tmpfs", "/run/hailo-sidecar:uid=10001,gid=10001,mode=0770",
        RUNTIME, "python3", "-c", bind,
    )  # fmt: skip
    assert tmpfs.stdout.strip() == "bound"
    volume = f"pytest-sidecar-run-{uuid.uuid4().hex[:8]}"
    try:
        out = docker(
            "run", "--rm", *BASE_FLAGS, "-v", f"{volume}:/run/hailo-sidecar", RUNTIME,
            "sh", "-c", f"stat -c '%u:%g %a' /run/hailo-sidecar && python3 -c \"{bind}\"",
        )  # fmt: skip
        assert out.stdout.split() == ["10001:10001", "770", "bound"]
    finally:
        docker("volume", "rm", "-f", volume, check=False)


@pytest.mark.parametrize("ref", [RUNTIME, MODEL])
def test_no_layer_holds_an_artifact_licence_key_or_credential(
    amd64: dict[str, Any], ref: str, tmp_path: Path
) -> None:
    saved = tmp_path / "image.tar"
    docker("save", "-o", str(saved), ref)
    offending, paths = image_layers.scan(str(saved))
    print(f"{ref}: {len(paths)} paths inspected")
    # The listing saw our files: the inspection itself works.
    assert "opt/hailo-sidecar/bin/python3" in paths
    assert any(
        p.startswith("opt/hailo-sidecar/lib/python3.11/site-packages/hailo_sidecar/") for p in paths
    )
    assert offending == []


def test_model_image_adds_settings_not_the_model(amd64: dict[str, Any]) -> None:
    info = inspect(MODEL)
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["MODEL_NAME"] == "tcn_encoder"
    assert env["NUM_MOTIFS"] == "12"
    assert env["MODELS_DIR"] == "/models"
    assert env["MODEL_MANIFEST"] == "/models/tcn_encoder-0.1.0/tcn_encoder-0.1.0.manifest.json"
    assert info["Config"]["User"] == "10001:10001"
    labels = info["Config"]["Labels"]
    assert labels["org.hailo-pipeline.model.dir"] == "/models/tcn_encoder-0.1.0"
    assert labels["org.opencontainers.image.base.name"] == f"hailo-runtime:{VERSION}-amd64"
    # Its own layers (beyond the runtime's) add nothing but the README.
    base_layers = inspect(RUNTIME)["RootFS"]["Layers"]
    assert info["RootFS"]["Layers"][: len(base_layers)] == base_layers
    listing = docker("run", "--rm", MODEL, "ls", "-A", "/models").stdout.split()
    assert listing == []


def test_model_image_serves_a_mounted_artifact(amd64: dict[str, Any], tmp_path: Path) -> None:
    """The reference ONNX in the documented layout, mounted read-only, onnx backend."""
    serve_reference_model(MODEL, tmp_path)


def serve_reference_model(image: str, tmp_path: Path, *env: str) -> None:
    from hailo_sidecar.manifest import write_manifest

    models = tmp_path / "models"
    model_dir = models / "tcn_encoder-0.1.0"
    model_dir.mkdir(parents=True)
    artifact = model_dir / "tcn_encoder-0.1.0.onnx"
    shutil.copy(REPO / "exports" / "tcn_encoder.onnx", artifact)
    write_manifest(model_dir, artifact).rename(model_dir / "tcn_encoder-0.1.0.manifest.json")
    for path in (models, model_dir, *model_dir.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    name = f"pytest-model-{uuid.uuid4().hex[:8]}"
    docker(
        "run", "-d", "--name", name, *HARDENED, "-e", "INFER_MODE=onnx", *env,
        "-v", f"{models}:/models:ro", "-p", "127.0.0.1::9000", image,
    )  # fmt: skip
    try:
        address = published(name)
        status, ready = get(f"http://{address}/readyz")
        assert status == 200, (ready, docker("logs", name).stderr[-2000:])
        window = {"x": [[0.01 * (i + c) for c in range(9)] for i in range(100)]}
        request = urllib.request.Request(
            f"http://{address}/infer",
            data=json.dumps(window).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
        assert len(body["latent"]) == 64
        assert len(body["motif_scores"]) == 12
        assert body["model"] == "tcn_encoder"
        assert body["version"] == "0.1.0"
    finally:
        docker("rm", "-f", "-v", name, check=False)


@pytest.mark.parametrize(
    ("runtime_image", "message"),
    [
        ("hailo-runtime:latest", "never latest"),
        ("hailo-runtime:latest-amd64", "never latest"),
        ("hailo-runtime", "pin a runtime version"),
    ],
)
def test_model_image_refuses_an_unpinned_runtime(
    amd64: dict[str, Any], runtime_image: str, message: str
) -> None:
    context = REPO / "models" / "tcn-encoder"
    proc = subprocess.run(
        [DOCKER, "build", "--platform", "linux/amd64",
         "--build-arg", f"RUNTIME_IMAGE={runtime_image}",
         "-t", f"pytest-unpinned:{uuid.uuid4().hex[:8]}", str(context)],
        capture_output=True, text=True, env={**os.environ, "DOCKER_BUILDKIT": "1"},
        timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


# --- HailoRT in the image: a LAB STAND-IN (tests/hailort_standin.py), not HailoRT -------

HAILORT = "4.23.0"
STANDIN = "pytest-hailort-standin"
# What the model image sets, for the runtime variant (built without model images).
MODEL_ENV = [
    "-e", "MODEL_NAME=tcn_encoder", "-e", "MODEL_VERSION=0.1.0", "-e", "NUM_MOTIFS=12",
    "-e", "MODEL_MANIFEST=/models/tcn_encoder-0.1.0/tcn_encoder-0.1.0.manifest.json",
]  # fmt: skip


def build_standin(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILD)],
        capture_output=True, text=True, timeout=1800, check=False,
        env={**os.environ, "DOCKER": DOCKER, "PYTHON": sys.executable,
             "PLATFORMS": "linux/amd64", "IMAGE": STANDIN, "MODELS": "", **env},
    )  # fmt: skip


@pytest.fixture(scope="module")
def standin(amd64: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The runtime built with the stand-in HailoRT files (HAILORT_VERSION, HAILORT_DIR)."""
    root = hailort_standin.sources(tmp_path_factory.mktemp("hailort"), HAILORT)
    proc = build_standin(root, HAILORT_VERSION=HAILORT, HAILORT_DIR=str(root))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return f"{STANDIN}:{VERSION}"


def test_hailort_variant_holds_the_sites_hailort_and_numpy_1(standin: str) -> None:
    labels = inspect(standin)["Config"]["Labels"]
    assert labels["org.hailo-pipeline.hailort.version"] == HAILORT
    out = docker(
        "run", "--rm", *HARDENED, standin, "python3", "-c",
        "import shutil, numpy, hailo_platform as h; "
        "print(h.__version__, numpy.__version__, shutil.which('hailortcli'), h.STAND_IN)",
    )  # fmt: skip
    version, numpy, cli, stand_in = out.stdout.strip().split(" ", 3)
    assert (version, numpy, cli) == (HAILORT, "1.26.4", "/usr/bin/hailortcli")
    assert stand_in == hailort_standin.STAND_IN
    # The closure with numpy<2, pyhailort's wheel, and nothing else (no pip, setuptools).
    found = installed(standin)
    assert found.pop("hailo-sidecar") == VERSION
    assert found.pop("hailort") == HAILORT
    assert found == pins("sidecar/requirements-image-hailort.txt")


def test_hailort_variant_serves_the_onnx_backend_with_numpy_1(standin: str, tmp_path: Path) -> None:
    serve_reference_model(standin, tmp_path, *MODEL_ENV)


def test_hailort_variant_layers_hold_hailort_and_nothing_else(standin: str, tmp_path: Path) -> None:
    saved = tmp_path / "image.tar"
    docker("save", "-o", str(saved), standin)
    offending, paths = image_layers.scan(str(saved), hailort=True)
    assert offending == []
    assert f"usr/lib/libhailort.so.{HAILORT}" in paths
    # Not the .deb or the wheel: only what they install.
    assert not [p for p in paths if re.search(r"hailo[^/]*\.(deb|whl)$", p)]
    # Any other image refuses these files.
    assert image_layers.scan(str(saved))[0]


def test_hailort_version_without_its_files_says_what_to_provide(tmp_path: Path) -> None:
    proc = build_standin(tmp_path, HAILORT_VERSION=HAILORT)
    assert proc.returncode == 1
    assert "needs HAILORT_DIR" in proc.stderr
    assert "libhailort .deb" in proc.stderr
    assert f"hailort-{HAILORT}-*.whl" in proc.stderr
    empty = tmp_path / "hailort" / "amd64"
    empty.mkdir(parents=True)
    proc = build_standin(tmp_path, HAILORT_VERSION=HAILORT, HAILORT_DIR=str(empty.parent))
    assert proc.returncode == 1
    assert "holds 0 .deb and 0 hailort-4.23.0-*.whl" in proc.stderr


def test_hailort_library_of_another_version_fails_the_build(
    amd64: dict[str, Any], tmp_path: Path
) -> None:
    """The .deb's library reports 4.22.0 to a 4.23.0 wheel: refused in the build."""
    root = hailort_standin.sources(tmp_path / "hailort", HAILORT, library_version="4.22.0")
    proc = build_standin(
        root, HAILORT_VERSION=HAILORT, HAILORT_DIR=str(root), IMAGE="pytest-hailort-mismatch"
    )
    assert proc.returncode != 0
    assert "_pyhailort version (4.22.0) does not match pyhailort version (4.23.0)" in proc.stderr


# --- arm64, under emulation --------------------------------------------------------------


@pytest.fixture(scope="module")
def arm64() -> dict[str, Any]:
    return build("linux/arm64")


def test_arm64_images(arm64: dict[str, Any]) -> None:
    runtime = image_of(arm64, "hailo-runtime", "linux/arm64")
    assert set(runtime["tags"]) == {f"hailo-runtime:{VERSION}-arm64", "hailo-runtime:latest-arm64"}
    for ref in (f"hailo-runtime:{VERSION}-arm64", f"{MODEL}-arm64"):
        info = inspect(ref)
        assert (info["Os"], info["Architecture"]) == ("linux", "arm64"), ref
        assert info["Config"]["User"] == "10001:10001"
        assert info["Config"]["Labels"]["org.opencontainers.image.version"]
    out = docker(
        "run", "--rm", "--platform", "linux/arm64", *HARDENED, f"hailo-runtime:{VERSION}-arm64",
        "python3", "-c",
        "import platform, hailo_sidecar, hailo_sidecar.app; "
        "print(platform.machine(), hailo_sidecar.__version__)",
    )  # fmt: skip
    assert out.stdout.split() == ["aarch64", VERSION]
