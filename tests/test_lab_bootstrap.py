"""lab/bootstrap.sh stops on a bad setup with a message that says what to do.

Each case runs the real script in a throwaway Debian 12 container that lacks
what the case is about; nothing on the lab host is touched.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from labtools import REPO, docker

IMAGE = "hailo-lab/runtime-base:amd64"


def run_bootstrap(*run_args: str) -> tuple[int, str]:
    result = docker(
        "run", "--rm", *run_args, "-v", f"{REPO / 'lab'}:/lab:ro", "-e", "LAB_LOG_DIR=/tmp",
        IMAGE, "bash", "/lab/bootstrap.sh",
        check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def test_refuses_without_root() -> None:
    rc, out = run_bootstrap("--user", "65534:65534")
    assert rc == 1
    assert "this needs root" in out
    assert "sudo make lab" in out


def test_says_when_binfmt_misc_cannot_be_mounted() -> None:
    # A default container may not mount anything.
    rc, out = run_bootstrap("--network", "none")
    assert rc == 1
    assert "cannot mount binfmt_misc" in out
    assert "modprobe binfmt_misc" in out


def test_says_when_the_debian_archive_is_unreachable() -> None:
    # May mount binfmt_misc (so that check passes) but has no network for apt.
    rc, out = run_bootstrap(
        "--network", "none", "--cap-add", "SYS_ADMIN", "--security-opt", "apparmor=unconfined"
    )
    assert rc == 1, out
    assert "cannot reach the Debian archive" in out
    assert "LAB_DEBIAN_MIRROR" in out


def check_emulator(tmp_path: Path, version: str, flags: str = "POF") -> tuple[int, str]:
    """bootstrap.sh's check of the registered arm64 emulator, on a fake binfmt entry whose
    interpreter reports `version` (nothing on this host's binfmt_misc is touched)."""
    fake = tmp_path / "qemu-aarch64-static"
    fake.write_text(f"#!/bin/sh\necho 'qemu-aarch64 version {version} (Debian 1:{version})'\n")
    fake.chmod(0o755)
    entry = tmp_path / "qemu-aarch64"
    entry.write_text(f"enabled\ninterpreter {fake}\nflags: {flags}\noffset 0\n")
    script = (
        f"source {REPO / 'lab/bootstrap.sh'}; LAB_LOG_DIR={tmp_path}; "
        f"check_registered_emulator {entry}"
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    return result.returncode, result.stdout + result.stderr


def test_an_emulator_older_than_qemu_10_is_refused_with_what_to_do(tmp_path: Path) -> None:
    rc, out = check_emulator(tmp_path, "7.2.0")
    assert rc == 1
    assert "is QEMU 7.2.0; the lab needs >= 10" in out
    assert "crashes onnxruntime" in out
    assert "bookworm-backports" in out


def test_qemu_10_with_the_f_flag_passes(tmp_path: Path) -> None:
    rc, out = check_emulator(tmp_path, "10.0.2")
    assert rc == 0, out
    assert "qemu-aarch64 10.0.2" in out


def test_an_emulator_without_the_f_flag_is_refused(tmp_path: Path) -> None:
    rc, out = check_emulator(tmp_path, "10.0.2", flags="PO")
    assert rc == 1
    assert "lacks the F flag" in out
