"""Decisions of the sidecar_image role, as filters (tests/test_sidecar_image_filters.py).

hailort_plan: which of the site's HailoRT files each platform's runtime build takes, or
what is wrong with sidecar_image_hailort_version / sidecar_image_hailort_sources.
hailort_file_problems: what the files on GPUSrv say against their pinned sha256.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Where each kind comes from, for the messages.
_WHERE = (
    "HailoRT {version} for {arch}: the libhailort .deb (Hailo Developer Zone "
    "'hailort_{version}_{arch}.deb', or the Raspberry Pi archive's 'hailort' package for "
    "arm64) and pyhailort's wheel 'hailort-{version}-cp311-cp311-linux_{machine}.whl', "
    "copied onto GPUSrv, each with its sha256 (sha256sum FILE)"
)
_MACHINE = {"arm64": "aarch64", "amd64": "x86_64"}
_KINDS = {"deb": ".deb", "wheel": ".whl"}


def _where(version: str, arch: str) -> str:
    return _WHERE.format(version=version or "<version>", arch=arch, machine=_MACHINE[arch])


def hailort_plan(version: str, sources: Any, archs: list[str]) -> dict[str, list[Any]]:
    """{"files": [{arch, kind, path, sha256}], "problems": [message]} for these archs."""
    problems: list[str] = []
    files: list[dict[str, str]] = []
    version = str(version or "")
    if not version:
        if sources:
            problems.append(
                "sidecar_image_hailort_sources is set but sidecar_image_hailort_version is "
                "empty: set the version the files are (e.g. 4.23.0), or empty the sources"
            )
        return {"files": files, "problems": problems}
    if not _VERSION.match(version):
        problems.append(
            f"sidecar_image_hailort_version '{version}' is not MAJOR.MINOR.REVISION (e.g. "
            "4.23.0): the Pis' hailo_pci driver must match it exactly"
        )
    if not isinstance(sources, Mapping):
        sources = {}
    for arch in archs:
        entry = sources.get(arch)
        if not isinstance(entry, Mapping) or not all(k in entry for k in _KINDS):
            problems.append(
                f"sidecar_image_hailort_version is {version} but sidecar_image_hailort_sources."
                f"{arch} does not name both files (deb and wheel, each {{path, sha256}}): give "
                f"{_where(version, arch)}"
            )
            continue
        for kind, suffix in _KINDS.items():
            item = entry[kind] if isinstance(entry[kind], Mapping) else {}
            path, sha = str(item.get("path", "")), str(item.get("sha256", "")).lower()
            name = f"sidecar_image_hailort_sources.{arch}.{kind}"
            if not path.startswith("/") or not path.endswith(suffix):
                problems.append(
                    f"{name}.path '{path}' must be an absolute path to a {suffix} file on GPUSrv"
                )
            elif kind == "wheel" and not posixpath.basename(path).startswith(f"hailort-{version}-"):
                problems.append(
                    f"{name}.path '{path}' is not pyhailort {version}: its file name must start "
                    f"with hailort-{version}- (the wheel's own name and version)"
                )
            if not _SHA256.match(sha):
                problems.append(
                    f"{name}.sha256 must be the file's sha256 (64 hex digits), got '{sha}'"
                )
            files.append({"arch": arch, "kind": kind, "path": path, "sha256": sha})
    return {"files": files, "problems": problems}


def hailort_file_problems(results: list[Mapping[str, Any]]) -> list[str]:
    """Messages for the files a stat loop (checksum_algorithm sha256) found missing or
    different from their pin; ``results`` are that loop's results (item = a plan file)."""
    problems: list[str] = []
    for result in results:
        item, stat = result["item"], result.get("stat", {})
        what = f"{item['path']} ({item['arch']} {item['kind']})"
        if not stat.get("exists") or not stat.get("isreg"):
            problems.append(f"{what} is not a file on GPUSrv")
        elif stat.get("checksum") != item["sha256"]:
            problems.append(
                f"{what} has sha256 {stat.get('checksum')}, "
                f"pinned {item['sha256']}: not the file that was pinned"
            )
    return problems


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "sidecar_image_hailort_plan": hailort_plan,
            "sidecar_image_hailort_file_problems": hailort_file_problems,
        }
