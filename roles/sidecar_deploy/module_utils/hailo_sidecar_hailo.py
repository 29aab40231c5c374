"""What a Pi needs before a release with the `hailo` backend may switch, stdlib only.

Facts from HailoRT's own sources (hailo-ai/hailort and hailo-ai/hailort-drivers, 4.23):
- libhailort opens the device only when the hailo_pci driver's major.minor.revision equals
  its own (HailoRTDriver's validate_driver_version; otherwise HAILO_INVALID_DRIVER_VERSION,
  status 76). The driver declares MODULE_VERSION, so the loaded module's version is in
  /sys/module/hailo_pci/version ("4.23.0"; `modinfo` reads the .ko on disk, which differs
  from the loaded one until a reload).
- The driver loads /lib/firmware/hailo/hailo8_fw.bin (mandatory) for Hailo-8 and Hailo-8L
  alike (one PCI id, 1e60:2864; no separate 8L firmware).
- /dev/hailoN is created root-owned; the driver's udev rule (51-hailo-udev.rules,
  SUBSYSTEM=="hailo_chardev", MODE="0666") is what lets a non-root container user open it.
- `hailortcli fw-control identify` prints "Device Architecture: HAILO8" or "HAILO8L"; a
  HEF compiled for hailo8 does not configure on a Hailo-8L (HEF not compatible), one
  compiled for hailo8l runs on a Hailo-8 (slower).
The image says which HailoRT it carries in a label (roles/sidecar_image).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from typing import Any

HAILORT_LABEL = "org.hailo-pipeline.hailort.version"
DRIVER_VERSION = "/sys/module/hailo_pci/version"
FIRMWARE = "/lib/firmware/hailo/hailo8_fw.bin"
_TRIPLET = re.compile(r"^\s*(\d+)\.(\d+)\.(\d+)")


def triplet(text: str | None) -> tuple[int, int, int] | None:
    """ "4.23.0" (or "4.23.0-1") -> (4, 23, 0): what HailoRT compares."""
    m = _TRIPLET.match(text or "")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def device_arch(hailortcli: str) -> tuple[str | None, str]:
    """The device's architecture from `hailortcli fw-control identify` ("hailo8" or
    "hailo8l"), or None and why it is not known."""
    try:
        proc = subprocess.run(
            [hailortcli, "fw-control", "identify"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{hailortcli} fw-control identify did not run ({exc})"
    m = re.search(r"^Device Architecture:\s*(\S+)", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or not m:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        return None, f"{hailortcli} fw-control identify exited {proc.returncode}: {last[0]}"
    return m.group(1).lower(), ""


def problems(
    release: dict[str, Any],
    image_labels: dict[str, str],
    devices: list[str],
    uid: int,
    gid: int,
    paths: dict[str, str],
) -> tuple[list[str], list[str]]:
    """Why `release` (backend hailo) cannot run on this host ([] when it can), and what
    could not be checked before the switch."""
    found, notes = [], []
    try:
        with open(paths["driver_version"], encoding="ascii") as fh:
            driver_text = fh.read().strip()
    except OSError:
        driver_text = ""
    driver = triplet(driver_text)
    image_text = image_labels.get(HAILORT_LABEL, "")
    image = triplet(image_text)
    if driver is None:
        found.append(
            f"the hailo_pci driver is not loaded ({paths['driver_version']} is "
            f"{'missing' if not driver_text else repr(driver_text)}): install the HailoRT PCIe "
            f"driver {image_text or ''} (Raspberry Pi OS: apt install hailo-dkms) and "
            "modprobe hailo_pci"
        )
    if image is None:
        found.append(
            f"the image has no HailoRT version label ({HAILORT_LABEL}): it was built without "
            "HailoRT and cannot run the hailo backend (build it with "
            "sidecar_image_hailort_version: roles/sidecar_image)"
        )
    if driver is not None and image is not None and driver != image:
        found.append(
            f"the host's hailo_pci driver is {driver_text} and the image's HailoRT is "
            f"{image_text}: HailoRT opens the device only when major.minor.revision match "
            "(HAILO_INVALID_DRIVER_VERSION, status 76). Install driver "
            f"{'.'.join(map(str, image))} on the host (and its firmware), or deploy an image "
            f"built with HailoRT {'.'.join(map(str, driver))}"
        )
    if not os.path.isfile(paths["firmware"]):
        found.append(
            f"{paths['firmware']} is missing: the driver cannot boot the Hailo-8/8L without "
            "it (Raspberry Pi OS: apt install hailofw, the same version as the driver)"
        )
    for entry in devices:
        path = entry.split(":", 1)[0]
        try:
            st = os.stat(path)
        except OSError:
            continue  # the device check of the preflight and the install says so
        mode = stat.S_IMODE(st.st_mode)
        if not (
            mode & 0o006 == 0o006
            or (st.st_uid == uid and mode & 0o600 == 0o600)
            or (st.st_gid == gid and mode & 0o060 == 0o060)
        ):
            found.append(
                f"{path} is mode {mode:04o} owner {st.st_uid}:{st.st_gid}: the sidecar's user "
                f"{uid}:{gid} cannot open it. Install the driver's udev rule "
                '(/etc/udev/rules.d/51-hailo-udev.rules: SUBSYSTEM=="hailo_chardev", MODE="0666") '
                "and udevadm trigger, or reload the driver"
            )
    hef_arch = release.get("hw_arch") or ""
    arch, why = device_arch(paths["hailortcli"]) if hef_arch else (None, "")
    if arch == "hailo8l" and hef_arch == "hailo8":
        found.append(
            "the device is a Hailo-8L and the HEF was compiled for hailo8: it does not "
            "configure there (HEF not compatible). Compile with hw_arch: hailo8l"
        )
    elif arch == "hailo8" and hef_arch == "hailo8l":
        notes.append("a hailo8l HEF on a Hailo-8: it runs, slower than a hailo8 HEF would")
    elif hef_arch and arch is None:
        # The sidecar's own start-up (configuring the HEF) and the gate still catch it.
        notes.append(f"the device's architecture was not checked before the switch: {why}")
    return found, notes
