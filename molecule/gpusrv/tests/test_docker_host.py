"""Host state after the docker_host role, on the GPUSrv stand-in (Debian 13, distro source)."""

import json
from pathlib import Path

import pytest

EXPECTED_DAEMON_CONFIG = {
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m", "max-file": "3"},
    "features": {"buildkit": True},
}
REGISTRY = "registry.lab.test:5000"
TEST_CA = (Path(__file__).parents[1] / "files" / "test-ca.crt").read_text().strip()


@pytest.mark.parametrize(
    "package",
    ["docker.io", "docker-buildx", "docker-compose", "qemu-user-static", "binfmt-support"],
)
def test_package_installed(host, package):
    assert host.package(package).is_installed


def test_docker_running_and_enabled(host):
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_binfmt_support_enabled_for_boot(host):
    assert host.service("binfmt-support").is_enabled


def test_aarch64_handler_enabled_with_fix_binary_flag(host):
    handler = host.file("/proc/sys/fs/binfmt_misc/qemu-aarch64").content_string.splitlines()
    assert handler[0] == "enabled"
    flags = next(line for line in handler if line.startswith("flags:"))
    assert "F" in flags.split(":", 1)[1]


def test_buildx_lists_arm64(host):
    builders = [
        json.loads(line)
        for line in host.check_output("docker buildx ls --format json").splitlines()
    ]
    default = next(b for b in builders if b["Name"] == "default")
    platforms = {p for node in default["Nodes"] for p in node["Platforms"]}
    assert {"linux/amd64", "linux/arm64"} <= platforms


def test_compose_works(host):
    assert "Docker Compose" in host.check_output("docker compose version")


def test_builder_in_docker_group(host):
    assert "docker" in host.user("builder").groups


def test_daemon_json(host):
    daemon = host.file("/etc/docker/daemon.json")
    assert daemon.mode == 0o644
    assert json.loads(daemon.content_string) == EXPECTED_DAEMON_CONFIG
    # The running daemon took it: the default log driver comes from daemon.json.
    assert host.check_output("docker info --format '{{.LoggingDriver}}'") == "json-file"


def test_registry_ca_trusted(host):
    ca = host.file(f"/etc/docker/certs.d/{REGISTRY}/ca.crt")
    assert ca.is_file
    assert ca.content_string.strip() == TEST_CA


def test_preloaded_image_present(host):
    # The inner engine cannot pull: the role loaded the lab's arm64 base image.
    arch = host.check_output(
        "docker image inspect -f '{{.Architecture}}' hailo-lab/runtime-base:arm64"
    )
    assert arch == "arm64"


def test_buildx_builds_and_runs_arm64_image(host):
    ctx = host.check_output("mktemp -d")
    dockerfile = "FROM hailo-lab/runtime-base:arm64\\nRUN uname -m > /built-on\\n"
    host.check_output(f"printf '{dockerfile}' > {ctx}/Dockerfile")
    build = host.run(
        f"docker buildx build --platform linux/arm64 --load -t molecule/arm64-probe {ctx}"
    )
    assert build.rc == 0, build.stderr
    arch = host.check_output("docker image inspect -f '{{.Architecture}}' molecule/arm64-probe")
    assert arch == "arm64"
    assert host.check_output("docker run --rm molecule/arm64-probe cat /built-on") == "aarch64"
