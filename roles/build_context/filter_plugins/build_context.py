"""Decisions of the build_context role, as filters (tests/test_build_context_filters.py).

pip_downloads: the `pip download` command lines that fill a wheelhouse, one per set of
platform tags: exact pins only (--no-deps), wheels only, for one CPython version, each
wheel checked against its pinned sha256 unless told otherwise (--require-hashes).
outside_paths: the paths of a list that are not relative paths inside their root.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import Any

# "3.11": what pip's --python-version takes (and the wheels' cp311 tag).
_PYTHON_VERSION = re.compile(r"^3\.[0-9]+$")
# pip's own first arguments: quiet, no self-update check, no dependency resolution
# (the requirement files pin the whole closure), wheels only (nothing is built here).
_PIP = [
    "python3",
    "-m",
    "pip",
    "download",
    "--quiet",
    "--disable-pip-version-check",
    "--no-deps",
    "--only-binary=:all:",
]


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValueError(f"{what} must be a list of strings, not {value!r}")
    if not value or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"{what} must be a non-empty list of non-empty strings, not {value!r}")
    return list(value)


def outside_paths(paths: Any) -> list[str]:
    """Those of ``paths`` that are absolute, empty, or climb out of their root with ".."."""
    return [
        str(path)
        for path in paths or []
        if not str(path) or str(path).startswith("/") or ".." in str(path).split("/")
    ]


def pip_downloads(
    platform_sets: Any,
    python_version: str,
    requirements: Any,
    context: str,
    dest: str,
    require_hashes: bool = True,
) -> list[list[str]]:
    """One argv per set in ``platform_sets`` (each a list of wheel platform tags, e.g.
    manylinux_2_28_aarch64): `python3 -m pip download` of the ``requirements`` (paths
    relative to the build context ``context``, where they were unpacked) into ``dest``,
    for CPython ``python_version``."""
    if not isinstance(python_version, str) or not _PYTHON_VERSION.match(python_version):
        raise ValueError(f"python_version must be like 3.11, not {python_version!r}")
    if isinstance(platform_sets, str | bytes) or not isinstance(platform_sets, Sequence):
        raise ValueError(f"platform_sets must be a list of lists of tags, not {platform_sets!r}")
    if not platform_sets:
        raise ValueError("platform_sets is empty: give at least one list of wheel platform tags")
    sets = [_strings(tags, "each platform set") for tags in platform_sets]
    files = [posixpath.join(context, path) for path in _strings(requirements, "requirements")]
    bad = outside_paths(requirements)
    if bad:
        raise ValueError(f"requirements must be relative paths inside the context: {bad}")
    head = [*_PIP, *(["--require-hashes"] if require_hashes else [])]
    head += ["--implementation", "cp", "--python-version", python_version]
    return [
        [
            *head,
            *(f"--platform={tag}" for tag in tags),
            *(f"--requirement={path}" for path in files),
            "--dest",
            dest,
        ]
        for tags in sets
    ]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "build_context_pip_downloads": pip_downloads,
            "build_context_outside_paths": outside_paths,
        }
