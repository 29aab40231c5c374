"""roles/sidecar_image/filter_plugins/sidecar_image.py: HailoRT's inputs to the image build."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "sidecar_image_filters", REPO / "roles/sidecar_image/filter_plugins/sidecar_image.py"
)
assert _spec
assert _spec.loader
filters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(filters)

SHA = "ab" * 32
ARM64 = {
    "deb": {"path": "/srv/hailort/hailort_4.23.0_arm64.deb", "sha256": SHA},
    "wheel": {"path": "/srv/hailort/hailort-4.23.0-cp311-cp311-linux_aarch64.whl", "sha256": SHA},
}


def test_no_hailort_is_no_files_and_no_problem() -> None:
    assert filters.hailort_plan("", {}, ["arm64"]) == {"files": [], "problems": []}


def test_each_arch_takes_its_deb_and_wheel() -> None:
    plan = filters.hailort_plan("4.23.0", {"arm64": ARM64}, ["arm64"])
    assert plan["problems"] == []
    assert [(f["arch"], f["kind"], f["path"]) for f in plan["files"]] == [
        ("arm64", "deb", ARM64["deb"]["path"]),
        ("arm64", "wheel", ARM64["wheel"]["path"]),
    ]


def test_the_production_inventory_stops_and_says_what_to_provide() -> None:
    """inventories/production builds with HailoRT; without the files it stops here."""
    gpusrv = yaml.safe_load((REPO / "inventories/production/group_vars/gpusrv.yml").read_text())
    version = gpusrv["sidecar_image_hailort_version"]
    assert version == "4.23.0"
    plan = filters.hailort_plan(version, gpusrv.get("sidecar_image_hailort_sources", {}), ["arm64"])
    (problem,) = plan["problems"]
    assert "sidecar_image_hailort_sources.arm64 does not name both files" in problem
    assert "hailort-4.23.0-cp311-cp311-linux_aarch64.whl" in problem
    assert "sha256" in problem


def test_every_platform_needs_its_files() -> None:
    plan = filters.hailort_plan("4.23.0", {"arm64": ARM64}, ["arm64", "amd64"])
    (problem,) = plan["problems"]
    assert "sidecar_image_hailort_sources.amd64" in problem
    assert "linux_x86_64.whl" in problem


def test_bad_settings_are_each_named() -> None:
    bad = {
        "deb": {"path": "hailort.deb", "sha256": SHA},
        "wheel": {"path": "/srv/hailort-4.22.0-cp311-cp311-linux_aarch64.whl", "sha256": "x"},
    }
    problems = filters.hailort_plan("4.23", {"arm64": bad}, ["arm64"])["problems"]
    assert len(problems) == 4
    assert "'4.23' is not MAJOR.MINOR.REVISION" in problems[0]
    assert "must be an absolute path to a .deb file" in problems[1]
    assert "is not pyhailort 4.23" in problems[2]
    assert "64 hex digits" in problems[3]
    assert filters.hailort_plan("", {"arm64": ARM64}, ["arm64"])["problems"]


def test_files_on_gpusrv_must_be_there_with_their_pinned_sha256() -> None:
    plan = filters.hailort_plan("4.23.0", {"arm64": ARM64}, ["arm64"])
    deb, wheel = plan["files"]
    results = [
        {"item": deb, "stat": {"exists": False}},
        {"item": wheel, "stat": {"exists": True, "isreg": True, "checksum": "cd" * 32}},
    ]
    missing, different = filters.hailort_file_problems(results)
    assert missing.startswith(f"{deb['path']} (arm64 deb) is not a file on GPUSrv")
    assert f"has sha256 {'cd' * 32}, pinned {SHA}" in different
    ok = [{"item": deb, "stat": {"exists": True, "isreg": True, "checksum": SHA}}]
    assert filters.hailort_file_problems(ok) == []
