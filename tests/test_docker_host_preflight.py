"""The docker_host role stops before changing anything on a host it must not touch.

The role runs for real (ansible-playbook, facts gathered from the host) against
throwaway containers: an arm64 Debian 12 (a Pi, not a build server), a Debian 12
amd64 that claims to be Debian 11 (an unsupported OS), and a plain Debian 12 amd64
for bad variables.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from labtools import REPO, container, docker

PLAYBOOK = """
- hosts: all
  roles:
    - docker_host
"""


def run_role(target: str, tmp_path: Path, **extra_vars: object) -> tuple[int, str]:
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_NOCOLOR": "1",
    }
    result = subprocess.run(
        [
            "ansible-playbook", "-i", f"{target},", "-c", "community.docker.docker",
            "-e", json.dumps(extra_vars), str(tmp_path / "play.yml"),
        ],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def assert_stopped_unchanged(rc: int, out: str, message: str) -> None:
    assert rc != 0, out
    assert message in " ".join(out.split()), out
    assert "changed=0" in out, out


@pytest.fixture(scope="module")
def debian12() -> Iterator[str]:
    with container("hailo-lab/runtime-base:amd64", "--network", "none") as name:
        yield name


def test_refuses_an_arm64_host(tmp_path: Path) -> None:
    with container("hailo-lab/pi:arm64", "--platform", "linux/arm64", "--network", "none") as pi:
        rc, out = run_role(pi, tmp_path)
    assert_stopped_unchanged(rc, out, "docker_host prepares the x86_64 build server (GPUSrv), but")
    assert "is aarch64" in out
    assert "out of the gpusrv group" in " ".join(out.split())


def test_refuses_an_unsupported_os(tmp_path: Path) -> None:
    with container("hailo-lab/runtime-base:amd64", "--network", "none") as old:
        # Make it look like Debian 11 to fact gathering.
        docker(
            "exec", old, "sh", "-c",
            "echo 11.11 > /etc/debian_version && "
            "sed -i 's/^VERSION_ID=.*/VERSION_ID=\"11\"/' /usr/lib/os-release",
        )  # fmt: skip
        rc, out = run_role(old, tmp_path)
    assert_stopped_unchanged(
        rc, out, "docker_host supports Debian 12 and 13 and Ubuntu 22.04 and 24.04"
    )
    assert "runs Debian 11.11" in out


def test_refuses_distro_source_without_buildx(debian12: str, tmp_path: Path) -> None:
    rc, out = run_role(debian12, tmp_path, docker_host_source="distro")
    assert_stopped_unchanged(rc, out, "Debian 12")
    assert "has no docker-buildx package" in out
    assert "Set docker_host_source to 'official'" in out


def test_refuses_unknown_user(debian12: str, tmp_path: Path) -> None:
    rc, out = run_role(debian12, tmp_path, docker_host_users=["nosuchuser"])
    assert_stopped_unchanged(rc, out, "docker_host_users lists 'nosuchuser', which is not a user")


def test_refuses_a_registry_with_a_scheme(debian12: str, tmp_path: Path) -> None:
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    rc, out = run_role(
        debian12,
        tmp_path,
        docker_host_registry_ca_certs=[{"registry": "https://reg:5000", "ca": ca}],
    )
    assert_stopped_unchanged(rc, out, "needs registry as host or host:port (no scheme, no path)")


def test_argument_spec_rejects_a_wrong_type(debian12: str, tmp_path: Path) -> None:
    rc, out = run_role(debian12, tmp_path, docker_host_source="snap")
    assert_stopped_unchanged(rc, out, "docker_host_source")
    assert "auto, official, distro" in out
