"""filter_plugins/hailo_shared.py: the decisions docker_host and sidecar_image share."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ansible_local import ANSIBLE, ansible_env, load_plugin

filters = load_plugin("filter_plugins/hailo_shared.py")
platforms = filters.buildx_builder_platforms

# Lines as `docker buildx ls --format json` prints them (Buildx 0.13+): one object per
# builder; the docker driver's "default" builder, a docker-container builder with two
# nodes, one inactive (no Platforms), and a builder without QEMU (no linux/arm64).
DEFAULT = {
    "Name": "default",
    "Driver": "docker",
    "LastActivity": "0001-01-01T00:00:00Z",
    "Dynamic": False,
    "Nodes": [
        {
            "Name": "default",
            "Endpoint": "default",
            "Status": "running",
            "BuildkitVersion": "v0.13.2",
            "Platforms": [
                "linux/amd64",
                "linux/amd64/v2",
                "linux/amd64/v3",
                "linux/arm64",
                "linux/386",
            ],
            "Labels": {"org.mobyproject.buildkit.worker.moby.host-gateway-ip": "172.17.0.1"},
        }
    ],
}
HAILO = {
    "Name": "hailo",
    "Driver": "docker-container",
    "LastActivity": "2026-11-28T10:00:00Z",
    "Dynamic": False,
    "Nodes": [
        {
            "Name": "hailo0",
            "Endpoint": "unix:///var/run/docker.sock",
            "Status": "running",
            "BuildkitVersion": "v0.16.0",
            "Platforms": ["linux/amd64", "linux/arm64", "linux/amd64/v2"],
        },
        {"Name": "hailo1", "Endpoint": "ssh://builder@other", "Status": "inactive"},
        {
            "Name": "hailo2",
            "Endpoint": "tcp://b:1234",
            "Status": "running",
            "Platforms": ["linux/arm/v7"],
        },
    ],
}
NO_QEMU = {
    "Name": "noqemu",
    "Driver": "docker-container",
    "Nodes": [{"Name": "noqemu0", "Status": "running", "Platforms": ["linux/amd64", "linux/386"]}],
}
LINES = [json.dumps(DEFAULT), json.dumps(HAILO), json.dumps(NO_QEMU)]


def test_the_docker_driver_builder_lists_its_node_platforms() -> None:
    assert platforms(LINES, "default") == [
        "linux/amd64",
        "linux/amd64/v2",
        "linux/amd64/v3",
        "linux/arm64",
        "linux/386",
    ]


def test_every_node_counts_once_and_an_inactive_node_adds_none() -> None:
    assert platforms(LINES, "hailo") == [
        "linux/amd64",
        "linux/arm64",
        "linux/amd64/v2",
        "linux/arm/v7",
    ]


def test_a_builder_without_qemu_lacks_linux_arm64() -> None:
    assert "linux/arm64" not in platforms(LINES, "noqemu")
    assert platforms(LINES, "noqemu") == ["linux/amd64", "linux/386"]


def test_an_unknown_builder_lists_nothing() -> None:
    assert platforms(LINES, "missing") == []
    assert platforms([], "default") == []


def test_lines_that_are_not_json_objects_are_passed_over() -> None:
    noisy = [
        "WARNING: buildx: failed to read current commit information with git rev-parse",
        "",
        "[1, 2]",
        '"default"',
        "{not json",
        json.dumps(NO_QEMU),
    ]
    assert platforms(noisy, "noqemu") == ["linux/amd64", "linux/386"]


def test_stdout_as_one_string_is_split_into_lines() -> None:
    assert platforms("\n".join(LINES), "noqemu") == ["linux/amd64", "linux/386"]


def test_ansible_finds_the_filter_through_the_repo_config(tmp_path: Path) -> None:
    """Roles get the filter from ansible.cfg's filter_plugins (no role ships it)."""
    (tmp_path / "lines.json").write_text(json.dumps(LINES))
    run = subprocess.run(
        [
            ANSIBLE,
            "localhost",
            "-c",
            "local",
            "-i",
            "localhost,",
            "-m",
            "ansible.builtin.debug",
            "-a",
            f"msg={{{{ lookup('ansible.builtin.file', '{tmp_path / 'lines.json'}') | from_json"
            " | hailo_buildx_builder_platforms('noqemu') | join(',') }}",
        ],
        env=ansible_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "linux/amd64,linux/386" in run.stdout


def test_every_supported_system_and_its_docker_source() -> None:
    cases = {
        ("Debian", "12", "12.8"): "official",
        ("Debian", "13", "13.1"): "distro",
        ("Ubuntu", "22", "22.04"): "official",
        ("Ubuntu", "24", "24.04"): "distro",
    }
    for (name, major, version), source in cases.items():
        facts = {
            "distribution": name,
            "distribution_major_version": major,
            "distribution_version": version,
        }
        os = filters.supported_os(facts)
        assert os["supported"], facts
        assert os["docker_source"] == source


def test_unsupported_systems_and_missing_facts() -> None:
    for facts in (
        {
            "distribution": "Debian",
            "distribution_major_version": "11",
            "distribution_version": "11.9",
        },
        {
            "distribution": "Ubuntu",
            "distribution_major_version": "20",
            "distribution_version": "20.04",
        },
        {
            "distribution": "Ubuntu",
            "distribution_major_version": "24",
            "distribution_version": "24.10",
        },
        {
            "distribution": "Fedora",
            "distribution_major_version": "40",
            "distribution_version": "40",
        },
        {},
    ):
        os = filters.supported_os(facts)
        assert not os["supported"], facts
        assert os["docker_source"] == ""


def test_the_systems_as_the_preflight_messages_name_them() -> None:
    # tests/test_docker_host_preflight.py expects this text in docker_host's message.
    assert filters.supported_os({})["systems"] == "Debian 12 and 13 and Ubuntu 22.04 and 24.04"
