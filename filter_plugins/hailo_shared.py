"""Decisions more than one role takes, as filters (tests/test_shared_filters.py).

Loaded through ansible.cfg (filter_plugins = filter_plugins) and, under Molecule, through
ANSIBLE_FILTER_PLUGINS in .config/molecule/config.yml.

buildx_builder_platforms: the platforms a named Buildx builder lists, from the lines of
`docker buildx ls --format json` (one JSON object per builder).
supported_os: whether a host's system is one docker_host and registry support (the one
table of them, SUPPORTED_OS), and which Docker package source docker_host's `auto` picks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

# The systems docker_host (GPUSrv) and registry support, and where docker_host's `auto`
# takes Docker from on each: "official" (Docker's apt repository: the archive lacks a
# usable Buildx) or "distro". Debian by major version, Ubuntu by full version. Each has
# the docker-registry 2.8 package the registry role configures (exercised: Debian 13 in
# Molecule; not here: Debian 12, Ubuntu 22.04 and 24.04).
SUPPORTED_OS: dict[str, dict[str, str]] = {
    "Debian": {"12": "official", "13": "distro"},
    "Ubuntu": {"22.04": "official", "24.04": "distro"},
}


def buildx_builder_platforms(lines: Iterable[str] | str, builder: str) -> list[str]:
    """Every platform the nodes of ``builder`` list, each once, in the order listed.

    ``lines`` is the stdout (or stdout_lines) of `docker buildx ls --format json`. Lines
    that are not a JSON object (warnings, blank lines) are passed over; a node without
    Platforms (e.g. an inactive one) adds none. An unknown builder lists nothing.
    """
    if isinstance(lines, str):
        lines = lines.splitlines()
    platforms: list[str] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("Name") != builder:
            continue
        for node in entry.get("Nodes") or []:
            if not isinstance(node, dict):
                continue
            for platform in node.get("Platforms") or []:
                if isinstance(platform, str) and platform not in platforms:
                    platforms.append(platform)
    return platforms


def supported_os(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The host's system from its facts (ansible_facts), as the roles check it.

    Returns name, version (Debian "12", Ubuntu "24.04"), supported, docker_source ("" when
    not supported) and systems (the supported ones, for messages: "Debian 12 and 13 and
    Ubuntu 22.04 and 24.04").
    """
    name = str(facts.get("distribution", ""))
    key = "distribution_major_version" if name == "Debian" else "distribution_version"
    version = str(facts.get(key, ""))
    source = SUPPORTED_OS.get(name, {}).get(version, "")
    systems = " and ".join(
        f"{os} {' and '.join(versions)}" for os, versions in SUPPORTED_OS.items()
    )
    return {
        "name": name,
        "version": version,
        "supported": bool(source),
        "docker_source": source,
        "systems": systems,
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "hailo_buildx_builder_platforms": buildx_builder_platforms,
            "hailo_supported_os": supported_os,
        }
