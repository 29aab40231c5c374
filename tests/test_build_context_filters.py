"""roles/build_context/filter_plugins/build_context.py: the pip download command lines of
the wheelhouse (the ones hef_compile and sidecar_image ran before they shared the role)
and the check of the role's relative paths."""

from __future__ import annotations

import pytest
from ansible_local import load_plugin

filters = load_plugin("roles/build_context/filter_plugins/build_context.py")
pip_downloads = filters.pip_downloads

# The tags the roles pass (hef_compile's vars, sidecar_image's _sidecar_image_wheel_tags).
X86 = [f"manylinux{glibc}_x86_64" for glibc in ("2014", "_2_17", "_2_27", "_2_28")]
ARM = [f"manylinux{glibc}_aarch64" for glibc in ("2014", "_2_17", "_2_27", "_2_28")]
HEAD = [
    "python3", "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
    "--only-binary=:all:",
]  # fmt: skip


def test_hef_compile_one_platform_set_without_hashes() -> None:
    """What hef_compile ran (-r as --requirement=, the same to pip)."""
    ctx = "/var/lib/hef-compile/compiler"
    argvs = pip_downloads(
        [X86], "3.11", ["requirements.txt", "build-requirements.txt"], ctx, "/wh", False
    )
    assert argvs == [
        [
            *HEAD, "--implementation", "cp", "--python-version", "3.11",
            *(f"--platform={tag}" for tag in X86),
            f"--requirement={ctx}/requirements.txt", f"--requirement={ctx}/build-requirements.txt",
            "--dest", "/wh",
        ]
    ]  # fmt: skip


def test_sidecar_image_one_run_per_platform_set_with_hashes() -> None:
    """What sidecar_image ran, per arch in sorted order (amd64, arm64)."""
    ctx = "/var/lib/sidecar-image/context"
    reqs = ["sidecar/requirements-image.txt", "sidecar/build-requirements-image.txt"]
    argvs = pip_downloads([X86, ARM], "3.11", reqs, ctx, "/wh", True)
    assert len(argvs) == 2
    for argv, tags in zip(argvs, [X86, ARM], strict=True):
        assert argv == [
            *HEAD, "--require-hashes", "--implementation", "cp", "--python-version", "3.11",
            *(f"--platform={tag}" for tag in tags),
            f"--requirement={ctx}/sidecar/requirements-image.txt",
            f"--requirement={ctx}/sidecar/build-requirements-image.txt",
            "--dest", "/wh",
        ]  # fmt: skip


def test_hashes_are_required_unless_told_otherwise() -> None:
    (argv,) = pip_downloads([["any"]], "3.12", ["r.txt"], "/c", "/wh")
    assert "--require-hashes" in argv
    assert argv[argv.index("--python-version") + 1] == "3.12"


@pytest.mark.parametrize(
    ("platform_sets", "python_version", "requirements", "words"),
    [
        ([], "3.11", ["r.txt"], "platform_sets is empty"),
        ([[]], "3.11", ["r.txt"], "each platform set"),
        (X86, "3.11", ["r.txt"], "each platform set"),  # a flat list: one tag per "set"
        ("manylinux2014_x86_64", "3.11", ["r.txt"], "platform_sets must be a list"),
        ([X86], "3", ["r.txt"], "python_version"),
        ([X86], "cp311", ["r.txt"], "python_version"),
        ([X86], "3.11", [], "requirements"),
        ([X86], "3.11", "r.txt", "requirements"),
        ([X86], "3.11", ["/etc/r.txt"], "inside the context"),
        ([X86], "3.11", ["../r.txt"], "inside the context"),
    ],
)
def test_what_cannot_be_a_download_is_refused(
    platform_sets: object, python_version: str, requirements: object, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        pip_downloads(platform_sets, python_version, requirements, "/c", "/wh")


def test_outside_paths() -> None:
    inside = ["Dockerfile", "src/a.py", "models/m/Dockerfile", "sidecar/wheels", "a..b", ".x"]
    assert filters.outside_paths(inside) == []
    outside = ["/etc/passwd", "../x", "a/../../b", "a/..", ""]
    assert filters.outside_paths(inside + outside) == outside
    assert filters.outside_paths(None) == []
