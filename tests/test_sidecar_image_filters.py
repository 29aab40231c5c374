"""roles/sidecar_image/filter_plugins/sidecar_image.py: HailoRT's inputs to the image build,
the model images' descriptions and the build plan with its keys."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible_local import load_plugin

REPO = Path(__file__).resolve().parents[1]
filters = load_plugin("roles/sidecar_image/filter_plugins/sidecar_image.py")

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


# --- the build plan and its keys

# How the Jinja this plan replaced (roles/sidecar_image/tasks/inputs.yml before issue 17)
# made digests and keys, verbatim: images built before carry keys made so, and must not
# be rebuilt. Rendered with Ansible's own Templar.
OLD_DIGEST = r"{{ files | zip(contents) | map('join', '\n') | join('\n') | hash('sha256') }}"
OLD_RUNTIME_KEY = (
    "{{ (_args | to_json ~ _image.digest ~ _sidecar_image_wheel_key ~ item"
    " ~ _sidecar_image_base_id[item] ~ _hailort_sha256s)"
    " | hash('sha256') | truncate(24, true, '', 0) }}"
)
OLD_MODEL_KEY = (
    "{{ (_args | to_json ~ item.0.digest ~ item.1 ~ _runtime.key)"
    " | hash('sha256') | truncate(24, true, '', 0) }}"
)


def render(template: str, **variables: object) -> object:
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(template))


ARCHS = ["arm64", "amd64"]
BASE_REFS = {a: f"reg.lab:5000/hailo-lab/runtime-base:{a}" for a in ARCHS}
BASE_IDS = {"arm64": "sha256:" + "1" * 64, "amd64": "sha256:" + "2" * 64}
HAILORT_FILES = [
    {"arch": "arm64", "kind": "deb", "path": "/srv/a.deb", "sha256": "ab" * 32},
    {"arch": "arm64", "kind": "wheel", "path": "/srv/a.whl", "sha256": "cd" * 32},
    {"arch": "amd64", "kind": "deb", "path": "/srv/b.deb", "sha256": "ef" * 32},
    {"arch": "amd64", "kind": "wheel", "path": "/srv/b.whl", "sha256": "01" * 32},
]
SOURCE = "https://github.com/example/hailo-pipeline é"  # non-ASCII: to_json escapes it
RUNTIME = {
    "name": "hailo-runtime",
    "kind": "runtime",
    "repo": "reg.lab:5000/hailo-pipeline/hailo-runtime",
    "version": "0.1.0",
    "tags": ["0.1.0", "abc1234", "latest"],
    "context": "/var/lib/sidecar-image/context/sidecar",
    "digest": "9" * 64,
}
MODEL_FILES = ["Dockerfile", "README.md", "conf/b.txt"]
MODEL_CONTENTS = ["FROM x\nENV MODEL_NAME=m \\\n    MODEL_VERSION=0.2.0-rc.1\n", "# m\n", "café"]


def model() -> dict[str, object]:
    return filters.model_image(
        "tcn-encoder",
        MODEL_FILES,
        MODEL_CONTENTS,
        MODEL_CONTENTS[0],
        "reg.lab:5000/hailo-pipeline",
        "/var/lib/sidecar-image/context",
        ["abc1234"],
    )


def plan(hailort_version: str = "4.23.0", files: list | None = None) -> list[dict]:
    return filters.build_plan(
        [RUNTIME, model()],
        ARCHS,
        BASE_REFS,
        BASE_IDS,
        "0123456789abcdef",
        "abc1234",
        SOURCE,
        hailort_version,
        HAILORT_FILES if files is None else files,
    )


def test_a_model_image_is_described_from_its_dockerfile_and_files() -> None:
    assert model() == {
        "name": "tcn-encoder",
        "kind": "model",
        "repo": "reg.lab:5000/hailo-pipeline/tcn-encoder",
        "version": "0.2.0-rc.1",
        "tags": ["0.2.0-rc.1", "abc1234"],
        "context": "/var/lib/sidecar-image/context/models/tcn-encoder",
        "paths": [f"models/tcn-encoder/{f}" for f in MODEL_FILES],
        "digest": render(OLD_DIGEST, files=MODEL_FILES, contents=MODEL_CONTENTS),
    }


def test_the_digest_joins_with_a_backslash_n_as_the_old_jinja_did() -> None:
    assert filters.files_digest(["a"], ["x"]) == hashlib.sha256(b"a\\nx").hexdigest()
    assert filters.files_digest([], []) == render(OLD_DIGEST, files=[], contents=[])
    with pytest.raises(ValueError, match="2 paths but 1 contents"):
        filters.files_digest(["a", "b"], ["x"])


def test_model_version_is_read_from_env_lines() -> None:
    assert filters.model_version("ENV MODEL_VERSION=1.2.3") == "1.2.3"
    assert filters.model_version("FROM x\n  MODEL_VERSION=1.0.0 \\") == "1.0.0"
    assert filters.model_version("# MODEL_VERSION=1.0.0\nARG MODEL_VERSION") == ""
    assert filters.model_version("") == ""
    with pytest.raises(ValueError, match="models/m/Dockerfile sets no MODEL_VERSION"):
        filters.model_image("m", [], [], "FROM x", "p", "c", [])


def test_runtimes_come_first_then_each_model_from_its_platforms_runtime() -> None:
    builds = plan()
    assert [(b["image"], b["arch"]) for b in builds] == [
        ("hailo-runtime", "arm64"),
        ("hailo-runtime", "amd64"),
        ("tcn-encoder", "arm64"),
        ("tcn-encoder", "amd64"),
    ]
    runtime, _, tcn, _ = builds
    assert runtime == {
        "image": "hailo-runtime",
        "kind": "runtime",
        "arch": "arm64",
        "platform": "linux/arm64",
        "ref": "reg.lab:5000/hailo-pipeline/hailo-runtime:0.1.0-arm64",
        "context": RUNTIME["context"],
        "args": {
            "BASE_IMAGE": BASE_REFS["arm64"],
            "VERSION": "0.1.0",
            "REVISION": "abc1234",
            "SOURCE": SOURCE,
            "HAILORT_VERSION": "4.23.0",
        },
        "key": runtime["key"],
    }
    assert tcn["ref"] == "reg.lab:5000/hailo-pipeline/tcn-encoder:0.2.0-rc.1-arm64"
    assert tcn["args"] == {"RUNTIME_IMAGE": runtime["ref"], "REVISION": "abc1234", "SOURCE": SOURCE}


@pytest.mark.parametrize("hailort_version", ["4.23.0", ""])
def test_keys_are_byte_identical_to_the_old_jinjas(hailort_version: str) -> None:
    """Images already built carry these keys in their label: a different key rebuilds."""
    files = HAILORT_FILES if hailort_version else []
    builds = plan(hailort_version, files)
    image = model()
    for build in builds:
        arch = build["arch"]
        if build["kind"] == "runtime":
            expected = render(
                OLD_RUNTIME_KEY,
                _args=build["args"],
                _image=RUNTIME,
                _sidecar_image_wheel_key="0123456789abcdef",
                item=arch,
                _sidecar_image_base_id=BASE_IDS,
                _hailort_sha256s=",".join(f["sha256"] for f in files if f["arch"] == arch),
            )
        else:
            runtime = next(b for b in builds if b["kind"] == "runtime" and b["arch"] == arch)
            expected = render(
                OLD_MODEL_KEY, _args=build["args"], item=[image, arch], _runtime=runtime
            )
        assert len(build["key"]) == 24
        assert build["key"] == expected, build["ref"]
    assert len({b["key"] for b in builds}) == len(builds)


def test_a_platform_without_a_base_image_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no base image .* for amd64"):
        filters.build_plan([RUNTIME], ARCHS, BASE_REFS, {"arm64": "x"}, "k", "r", "s", "", [])
    with pytest.raises(ValueError, match="expected one runtime image, got 0"):
        filters.build_plan([model()], ARCHS, BASE_REFS, BASE_IDS, "k", "r", "s", "", [])
