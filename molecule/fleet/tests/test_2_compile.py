"""What the converge's compile stage (playbooks/compile.yml: hef_compile, target cpu) left
on the GPUSrv stand-in and on the controller (the fetched artifacts, in the scenario's
ephemeral directory, read through testinfra's local backend).

Molecule's idempotence step, before this, checked that a second converge changes
nothing (no recompile, no image build, nothing fetched).
"""

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import testinfra
import yaml

REPO = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
ARTIFACTS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "artifacts"
CONFIG_PATH = REPO / "hailo_models" / "tcn_encoder.yaml"
CONFIG = yaml.safe_load(CONFIG_PATH.read_text())
STEM = f"{CONFIG['model']}-{CONFIG['version']}"
ARTIFACT, MANIFEST, CHECKSUMS = f"{STEM}.onnx", f"{STEM}.manifest.json", "hef_sha256sum.txt"
GOLDEN = f"{STEM}.golden.json"
GPUSRV_OUTPUT = "/var/lib/hef-compile/artifacts/cpu"
JOB_UID = 10001
COMPILER_VERSION = re.search(
    r'(?m)^version = "([^"]+)"$', (REPO / "compiler" / "pyproject.toml").read_text()
).group(1)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def local():
    return testinfra.get_host("local://")


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((ARTIFACTS / MANIFEST).read_text())


@pytest.mark.parametrize("name", [ARTIFACT, GOLDEN, MANIFEST, CHECKSUMS])
def test_fetched_to_controller(local, name):
    assert local.file(str(ARTIFACTS / name)).is_file


def test_checksum_file_verifies_on_controller(local):
    lines = (ARTIFACTS / CHECKSUMS).read_text().splitlines()
    assert lines == [
        f"{sha256(ARTIFACTS / GOLDEN)}  {GOLDEN}",
        f"{sha256(ARTIFACTS / ARTIFACT)}  {ARTIFACT}",
    ]
    check = local.run(f"cd {ARTIFACTS} && sha256sum -c {CHECKSUMS}")
    assert check.rc == 0, check.stdout + check.stderr
    assert f"{ARTIFACT}: OK" in check.stdout
    assert f"{GOLDEN}: OK" in check.stdout


def test_checksum_file_verifies_on_gpusrv(gpusrv):
    check = gpusrv.run(f"cd {GPUSRV_OUTPUT} && sha256sum -c {CHECKSUMS}")
    assert check.rc == 0, check.stdout + check.stderr


def test_controller_and_gpusrv_hold_the_same_files(gpusrv):
    for name in (ARTIFACT, GOLDEN, MANIFEST):
        assert gpusrv.file(f"{GPUSRV_OUTPUT}/{name}").sha256sum == sha256(ARTIFACTS / name)


def test_manifest_identity(manifest):
    assert manifest["model"] == CONFIG["model"] == "tcn_encoder"
    assert manifest["version"] == CONFIG["version"]
    assert manifest["target"] == "cpu"
    assert manifest["artifact"] == ARTIFACT
    assert manifest["sha256"] == sha256(ARTIFACTS / ARTIFACT)


def test_manifest_sources(manifest):
    assert manifest["source_onnx_sha256"] == sha256(REPO / CONFIG["onnx"])
    assert manifest["config_sha256"] == sha256(CONFIG_PATH)
    assert manifest["compiler"]["name"] == "hef_compiler"
    assert manifest["compiler"]["version"] == COMPILER_VERSION
    assert manifest["compiler"]["backend"].startswith("onnxruntime ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["created_at"])


def test_manifest_shapes_follow_the_contract(manifest):
    assert manifest["inputs"] == {"x": [1, 100, 9]}
    assert manifest["outputs"] == {"latent": [1, 64], "motif_scores": [1, 12]}


@pytest.mark.parametrize("output", ["latent", "motif_scores"])
def test_int8_parity_within_thresholds(manifest, output):
    parity = manifest["parity"]
    limits = parity["thresholds"]
    assert limits["max_abs_error"][output] == CONFIG["parity"]["max_abs_error"][output]
    assert 0 <= parity["max_abs_error"][output] <= limits["max_abs_error"][output]
    assert limits["min_cosine_similarity"][output] <= parity["cosine_similarity"][output] <= 1.0


def test_job_output_belongs_to_the_job_user(gpusrv):
    out = gpusrv.file(GPUSRV_OUTPUT)
    assert out.uid == JOB_UID
    assert gpusrv.file(f"{GPUSRV_OUTPUT}/{ARTIFACT}").uid == JOB_UID


def test_compiler_image_built_on_gpusrv(gpusrv):
    tags = gpusrv.check_output(
        "docker image ls --format '{{.Repository}}:{{.Tag}}' hailo-pipeline/compiler"
    ).split()
    assert len(tags) == 1
    assert re.fullmatch(
        rf"hailo-pipeline/compiler:{re.escape(COMPILER_VERSION)}-[0-9a-f]{{12}}", tags[0]
    )
    config = json.loads(
        gpusrv.check_output(f"docker image inspect --format '{{{{json .Config}}}}' {tags[0]}")
    )
    assert config["User"] == f"{JOB_UID}:{JOB_UID}"
    assert config["Entrypoint"] == ["hef-compile"]
    assert config["Labels"]["org.hailo-pipeline.compiler-version"] == COMPILER_VERSION


def test_no_dfc_or_licence_in_the_image(gpusrv):
    # The layer-by-layer check is compiler/tests/test_compiler_image.py; this looks at
    # the image the role built, as the job sees it.
    tag = gpusrv.check_output(
        "docker image ls --format '{{.Repository}}:{{.Tag}}' hailo-pipeline/compiler"
    )
    forbidden = " -o ".join(
        f"-iname '{pattern}'"
        for pattern in (
            "hailo",
            "hailo_sdk*",
            "hailo_dataflow*",
            "hailo_model_optimization*",
            "hailo_platform*",
            "hailort*",
            "*.lic",
            "*.hef",
            "*.har",
        )
    )
    found = gpusrv.run(
        f"docker run --rm --network none --entrypoint find {tag} / -xdev "
        f"\\( {forbidden} \\) -not -path '/proc/*'"
    )
    assert found.stdout.strip() == "", found.stdout
    empty = gpusrv.run(f"docker run --rm --network none --entrypoint ls {tag} -A /opt/hailo-dfc")
    assert empty.stdout.strip() == ""


def test_no_job_container_left(gpusrv):
    left = gpusrv.check_output(
        "docker ps --all --quiet --filter label=org.hailo-pipeline.job=hef-compile"
    )
    assert left == ""
