"""The compiler image: built offline from the wheelhouse, no DFC / licence / .hef in any
layer, non-root, and it compiles the reference model into a bind mount.

Needs a Docker engine (the lab starts one: make lab); skipped only when none answers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")
IMAGE = "hailo-pipeline/compiler:0.1.0"

FORBIDDEN = [
    re.compile(
        r"(^|/)hailo_(dataflow_compiler|sdk_client|sdk_common|sdk_server|model_optimization|platform)",
        re.I,
    ),
    re.compile(r"(^|/)hailort", re.I),
    re.compile(r"(^|/)hailo[^/]*\.(whl|deb)$", re.I),
    re.compile(r"(^|/)bin/hailo$"),
    re.compile(r"\.(hef|har)$", re.I),
    re.compile(r"\.lic$", re.I),
    re.compile(r"hailo[^/]*licen[cs]e", re.I),
    re.compile(r"(^|/)opt/hailo-dfc/."),
]


def _engine_answers() -> bool:
    if not Path(DOCKER).exists():
        return False
    try:
        return (
            subprocess.run(
                [DOCKER, "info"], capture_output=True, timeout=30, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(
    not _engine_answers(), reason=f"no Docker engine answers to {DOCKER} info (start one: make lab)"
)


@pytest.fixture(scope="module")
def built_image() -> dict[str, Any]:
    start = time.monotonic()
    proc = subprocess.run(
        [str(REPO / "compiler" / "build-image.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER": DOCKER, "PYTHON": sys.executable},
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["seconds"] = time.monotonic() - start
    print(
        f"compiler image {result['image']}: {result['size_bytes'] / 1e6:.0f} MB, "
        f"built in {result['seconds']:.1f} s (changed={result['changed']})"
    )
    return result


def test_build_is_idempotent(built_image: dict[str, Any]) -> None:
    again = subprocess.run(
        [str(REPO / "compiler" / "build-image.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result = json.loads(again.stdout.strip().splitlines()[-1])
    assert result["changed"] is False
    assert result["id"] == built_image["id"]
    assert "wheelhouse up to date" in again.stderr


def test_image_config(built_image: dict[str, Any]) -> None:
    info = json.loads(
        subprocess.run(
            [DOCKER, "image", "inspect", built_image["image"]],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]
    assert info["Architecture"] == "amd64"
    assert info["Config"]["User"] == "10001:10001"
    assert info["Config"]["Entrypoint"] == ["hef-compile"]
    assert "HAILO_DFC_HOME=/opt/hailo-dfc" in info["Config"]["Env"]


def test_no_layer_holds_the_dfc_a_licence_or_a_hef(
    built_image: dict[str, Any], tmp_path: Path
) -> None:
    saved = tmp_path / "image.tar"
    subprocess.run([DOCKER, "save", "-o", str(saved), built_image["image"]], check=True)
    offending: list[str] = []
    seen = 0
    ours = False
    with tarfile.open(saved) as outer:
        layers = [m for m in outer.getmembers() if m.name.endswith("layer.tar")]
        assert layers, "docker save produced no layers"
        for member in layers:
            fh = outer.extractfile(member)
            assert fh is not None
            with tarfile.open(fileobj=fh) as layer:
                for entry in layer:
                    seen += 1
                    name = entry.name.lstrip("./")
                    ours = ours or name == "opt/hef-compiler/bin/hef-compile"
                    if any(p.search(name) for p in FORBIDDEN):
                        offending.append(f"{member.name}: {name}")
    print(f"inspected {len(layers)} layers, {seen} entries")
    assert ours, "the listing did not see the hef-compile entry point: inspection is broken"
    assert offending == []


def test_container_compiles_the_reference_model(
    built_image: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "artifacts"
    out.mkdir()
    shutil.chown(out, 10001, 10001) if os.geteuid() == 0 else out.chmod(0o777)
    run = [
        DOCKER, "run", "--rm", "--network", "none", "--read-only",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "-v", f"{REPO / 'exports'}:/work/exports:ro",
        "-v", f"{REPO / 'hailo_models'}:/work/hailo_models:ro",
        "-v", f"{out}:/artifacts",
        built_image["image"],
        "--model", "hailo_models/tcn_encoder.yaml", "--target", "cpu", "--output", "/artifacts",
    ]  # fmt: skip
    first = subprocess.run(run, capture_output=True, text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["status"] == "compiled"
    print(f"container INT8 parity: {summary['parity']}")
    check = subprocess.run(
        ["sha256sum", "-c", "hef_sha256sum.txt"],
        cwd=out,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.splitlines() == [
        "tcn_encoder-0.1.0.golden.json: OK",
        "tcn_encoder-0.1.0.onnx: OK",
    ]
    manifest = json.loads((out / "tcn_encoder-0.1.0.manifest.json").read_text())
    assert manifest["target"] == "cpu"
    assert manifest["sha256"] == summary["sha256"]
    second = subprocess.run(run, capture_output=True, text=True, timeout=600, check=False)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout.strip().splitlines()[-1])["changed"] is False


def test_container_without_dfc_fails_clearly(built_image: dict[str, Any]) -> None:
    argv = [
        DOCKER, "run", "--rm", "--network", "none",
        "-v", f"{REPO / 'exports'}:/work/exports:ro",
        "-v", f"{REPO / 'hailo_models'}:/work/hailo_models:ro",
        built_image["image"],
        "--model", "hailo_models/tcn_encoder.yaml", "--target", "hailo8", "--output", "/tmp/out",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 4
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "/opt/hailo-dfc/bin" in summary["error"]
    assert "Hailo Developer Zone" in summary["error"]
