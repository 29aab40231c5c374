"""sidecar_image refuses bad inputs with a message a person can act on, changing nothing.

Each case runs the role for real (ansible-playbook from the controller, through the
Docker connection) against the converged GPUSrv stand-in, with the lab's settings
and one thing wrong: a non-semver version, a wrong registry password, a registry that
is down, an unknown base image, a Buildx builder without linux/arm64, a release build
from a working tree with uncommitted changes, a platform list without linux/arm64, a
deploy model that is not built. (A run with nothing wrong and nothing new is
playbooks/build_image.yml alone, in test_1c_check_mode.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fleet import GPUSRV, REGISTRY, REPO, registry_password

PLAYBOOK = """
- hosts: all
  roles:
    - sidecar_image
"""


def run_role(tmp_path: Path, **overrides: object) -> tuple[int, str]:
    settings = {
        "sidecar_image_repo_root": str(REPO),
        "sidecar_image_release_file": str(tmp_path / "release.json"),
        "sidecar_image_platforms": ["linux/arm64", "linux/amd64"],
        "sidecar_image_base_image": "hailo-lab/runtime-base:{arch}",
        "sidecar_image_registry": REGISTRY,
        "sidecar_image_namespace": "hailo-pipeline",
        "sidecar_image_registry_username": "pusher",
        "sidecar_image_registry_password": registry_password(),
        **overrides,
    }
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(settings))
    extra.chmod(0o600)
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    proc = subprocess.run(
        [
            "ansible-playbook", "-i", f"{GPUSRV},", "-c", "community.docker.docker",
            "-e", f"@{extra}", str(tmp_path / "play.yml"),
        ],
        capture_output=True, text=True, env=env, check=False, timeout=900,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def assert_refused(rc: int, out: str, *messages: str) -> None:
    text = " ".join(out.split())
    assert rc != 0, out[-3000:]
    for message in messages:
        assert message in text, out[-3000:]
    assert "changed=0" in out, out[-3000:]


def test_refuses_a_version_that_is_not_semver(tmp_path):
    rc, out = run_role(tmp_path, sidecar_image_version="1.0")
    assert_refused(rc, out, "The runtime image version '1.0' is not a semantic version")
    assert not (tmp_path / "release.json").exists()


def test_refuses_a_wrong_registry_password(tmp_path):
    rc, out = run_role(tmp_path, sidecar_image_registry_password="not-the-password")
    assert_refused(
        rc,
        out,
        f"The registry {REGISTRY} refused user 'pusher' (HTTP 401): wrong username or password",
    )
    assert "not-the-password" not in out


def test_refuses_a_registry_that_is_down(tmp_path):
    # Nothing listens on port 5999 of the registry gpusrv.
    rc, out = run_role(tmp_path, sidecar_image_registry=f"{GPUSRV}:5999")
    assert_refused(
        rc, out, f"The registry https://{GPUSRV}:5999/v2/ does not answer", "Is it running"
    )


def test_refuses_an_unknown_base_image(tmp_path):
    rc, out = run_role(tmp_path, sidecar_image_base_image="hailo-lab/no-such-base:{arch}")
    assert_refused(
        rc,
        out,
        "Unknown base image hailo-lab/no-such-base:arm64 for linux/arm64",
        "does not have it",
    )


def test_refuses_a_buildx_builder_without_arm64(gpusrv, tmp_path):
    # A real Buildx builder that lists linux/amd64 only (never started: nothing pulled).
    gpusrv.check_output(
        "docker buildx create --name verify-noarm --driver docker-container --platform linux/amd64"
    )
    try:
        rc, out = run_role(tmp_path, sidecar_image_buildx_builder="verify-noarm")
    finally:
        gpusrv.run("docker buildx rm verify-noarm")
    assert_refused(
        rc, out, "Buildx builder 'verify-noarm'", "lacks linux/arm64", "Run the docker_host role"
    )


def test_refuses_a_release_from_a_dirty_tree(tmp_path):
    checkout = tmp_path / "checkout"
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(
        ["git", "clone", "--quiet", "--no-checkout", str(REPO), str(checkout)], check=True
    )
    subprocess.run(["git", "-C", str(checkout), "checkout", "--quiet", head], check=True)
    with (checkout / "sidecar" / "README.md").open("a") as readme:
        readme.write("\nan uncommitted change\n")
    rc, out = run_role(tmp_path, sidecar_image_repo_root=str(checkout), sidecar_image_release=True)
    assert_refused(
        rc, out, "has uncommitted changes", "M sidecar/README.md", "commit or stash them"
    )
    shutil.rmtree(checkout)


def test_refuses_platforms_without_arm64(tmp_path):
    rc, out = run_role(tmp_path, sidecar_image_platforms=["linux/amd64"])
    assert_refused(rc, out, "sidecar_image_platforms must list linux/arm64")


@pytest.mark.parametrize(
    "missing", ["sidecar_image_registry_password", "sidecar_image_registry_username"]
)
def test_refuses_missing_credentials(tmp_path, missing):
    rc, out = run_role(tmp_path, **{missing: ""})
    assert_refused(rc, out, "SIDECAR_IMAGE_REGISTRY_USERNAME and SIDECAR_IMAGE_REGISTRY_PASSWORD")


def test_refuses_a_deploy_model_that_is_not_built(tmp_path):
    rc, out = run_role(tmp_path, sidecar_image_deploy_model="hailo-runtime")
    assert_refused(
        rc, out, "sidecar_image_deploy_model (the image the Pis run) must be one of them"
    )
