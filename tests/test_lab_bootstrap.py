"""lab/bootstrap.sh stops on a bad setup with a message that says what to do.

Each case runs the real script in a throwaway Debian 12 container that lacks
what the case is about; nothing on the lab host is touched.
"""

from __future__ import annotations

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
