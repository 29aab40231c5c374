"""Decisions more than one role takes, as filters (tests/test_shared_filters.py).

Loaded through ansible.cfg (filter_plugins = filter_plugins) and, under Molecule, through
ANSIBLE_FILTER_PLUGINS in .config/molecule/config.yml.

buildx_builder_platforms: the platforms a named Buildx builder lists, from the lines of
`docker buildx ls --format json` (one JSON object per builder).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


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


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"hailo_buildx_builder_platforms": buildx_builder_platforms}
