"""roles/sidecar_deploy/module_utils/hailo_sidecar_hailo.py: what a Hailo host needs before a
hailo release may switch, against a fake sysfs, firmware directory, device node and a fake
`hailortcli` (nothing here has a Hailo-8: see the module's docstring for the sources)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sidecar_deploy_modules import hailo

IDENTIFY = """Executing on device: 0000:01:00.0
Identifying board
Control Protocol Version: 2
Firmware Version: 4.23.0 (release,app,extended context switch buffer)
Logger Version: 0
Board Name: Hailo-8
Device Architecture: {arch}
"""


class Host:
    """A Pi's Hailo side under tmp_path: driver version, firmware, /dev/hailo0, hailortcli."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = {
            "driver_version": str(root / "sys/module/hailo_pci/version"),
            "firmware": str(root / "lib/firmware/hailo/hailo8_fw.bin"),
            "hailortcli": str(root / "bin/hailortcli"),
        }
        self.device = root / "dev/hailo0"
        self.driver("4.23.0")
        Path(self.paths["firmware"]).parent.mkdir(parents=True)
        Path(self.paths["firmware"]).write_bytes(b"fw")
        self.device.parent.mkdir(parents=True)
        self.device.write_text("")
        self.device.chmod(0o666)
        self.cli("HAILO8")

    def driver(self, version: str | None) -> None:
        path = Path(self.paths["driver_version"])
        path.parent.mkdir(parents=True, exist_ok=True)
        if version is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(version + "\n")

    def cli(self, arch: str, rc: int = 0) -> None:
        path = Path(self.paths["hailortcli"])
        path.parent.mkdir(parents=True, exist_ok=True)
        out = IDENTIFY.format(arch=arch) if rc == 0 else ""
        err = (
            ""
            if rc == 0
            else "[HailoRT] [error] Driver version mismatch, status HAILO_INVALID_DRIVER_VERSION"
        )
        path.write_text(f"#!/bin/sh\nprintf '%s' '{out}'\nprintf '%s\\n' '{err}' >&2\nexit {rc}\n")
        path.chmod(0o755)

    def check(
        self, hw_arch: str = "hailo8", label: str | None = "4.23.0"
    ) -> tuple[list[str], list[str]]:
        labels = {} if label is None else {hailo.HAILORT_LABEL: label}
        return hailo.problems(
            {"hw_arch": hw_arch},
            labels,
            [f"{self.device}:/dev/hailo0:rwm"],
            10001,
            10001,
            self.paths,
        )


@pytest.fixture
def pi(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_a_matching_host_passes(pi: Host) -> None:
    assert pi.check() == ([], [])


def test_a_driver_that_does_not_match_the_images_hailort_is_refused(pi: Host) -> None:
    pi.driver("4.20.0")
    found, _ = pi.check()
    assert len(found) == 1
    assert "driver is 4.20.0 and the image's HailoRT is 4.23.0" in found[0]
    assert "status 76" in found[0]
    assert "Install driver 4.23.0" in found[0]


@pytest.mark.parametrize(
    ("setup", "expect"),
    [
        (lambda h: h.driver(None), "the hailo_pci driver is not loaded"),
        (lambda h: os.unlink(h.paths["firmware"]), "hailo8_fw.bin is missing"),
        (lambda h: h.device.chmod(0o660), "cannot open it. Install the driver's udev rule"),
        (
            lambda h: h.cli("HAILO8L"),
            "the device is a Hailo-8L and the HEF was compiled for hailo8",
        ),
    ],
)
def test_each_missing_piece_is_named_with_its_fix(pi: Host, setup: Any, expect: str) -> None:
    setup(pi)
    found, _ = pi.check()
    assert len(found) == 1, found
    assert expect in found[0]


def test_an_image_without_hailort_is_refused(pi: Host) -> None:
    found, _ = pi.check(label=None)
    assert found == [
        f"the image has no HailoRT version label ({hailo.HAILORT_LABEL}): it was built without "
        "HailoRT and cannot run the hailo backend (build it with "
        "sidecar_image_hailort_version: roles/sidecar_image)"
    ]


def test_a_device_of_the_sidecars_group_is_enough(pi: Host) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to chown the fake device")
    os.chown(pi.device, 0, 10001)
    pi.device.chmod(0o660)
    assert pi.check()[0] == []
    assert stat.S_IMODE(pi.device.stat().st_mode) == 0o660


def test_what_cannot_be_checked_is_a_note(pi: Host) -> None:
    pi.cli("HAILO8", rc=76)
    found, notes = pi.check()
    assert found == []
    assert "fw-control identify exited 76" in notes[0]
    assert "HAILO_INVALID_DRIVER_VERSION" in notes[0]
    os.unlink(pi.paths["hailortcli"])
    assert "did not run" in pi.check()[1][0]
    pi.cli("HAILO8")
    assert pi.check(hw_arch="hailo8l") == (
        [],
        ["a hailo8l HEF on a Hailo-8: it runs, slower than a hailo8 HEF would"],
    )


@pytest.mark.parametrize(
    ("text", "expect"),
    [("4.23.0", (4, 23, 0)), ("4.20.0-1\n", (4, 20, 0)), ("", None), ("four", None)],
)
def test_versions_compare_as_major_minor_revision(text: str, expect: Any) -> None:
    assert hailo.triplet(text) == expect
