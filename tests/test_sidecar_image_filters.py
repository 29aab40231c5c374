"""roles/sidecar_image/filter_plugins/sidecar_image.py: HailoRT's inputs to the image build,
the model images' descriptions and the build plan with its keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import filter_loader
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


# --- the revision, the source URL and the base images' identity (tasks/identity.yml)

# The Jinja these filters replaced (roles/sidecar_image/tasks/preflight.yml before issue
# 17, 3), verbatim: the revision and source go into the images' labels and build keys.
OLD_REVISION = (
    "{{ 'unknown' if _sidecar_image_git_commit.rc != 0"
    " or not _sidecar_image_git_commit.stdout | trim"
    " else (_sidecar_image_git_commit.stdout | trim)[:7]"
    " ~ ('-dirty' if _sidecar_image_git_source_status.stdout_lines | length > 0 else '') }}"
)
OLD_GIT_SHA = (
    "{{ _sidecar_image_git_commit.stdout | trim if _sidecar_image_git_commit.rc == 0 else '' }}"
)
OLD_SOURCE = (
    "{{ sidecar_image_source_url"
    " or (_sidecar_image_git_remote.stdout | trim | regex_replace('^(https?://)[^@/]*@', '\\1')"
    " if _sidecar_image_git_remote.rc == 0 and _sidecar_image_git_remote.stdout | trim | length > 0"
    " else 'https://github.com/hailo-pipeline/hailo-pipeline') }}"
)
# The new tasks (tasks/identity.yml), as they call the filters.
NEW_GIT_SHA = (
    "{{ _sidecar_image_git_commit.stdout | default('') | trim"
    " if _sidecar_image_git_commit.rc | default(1) == 0 else '' }}"
)
NEW_REVISION = (
    "{{ _git_sha | sidecar_image_revision("
    "_sidecar_image_git_source_status.stdout_lines | default([]) | length > 0) }}"
)
NEW_SOURCE = (
    "{{ sidecar_image_source_url | sidecar_image_source(_sidecar_image_git_remote.stdout"
    " | default('') if _sidecar_image_git_remote.rc | default(1) == 0 else '') }}"
)
SHA40 = "0f59269c4e" + "a" * 30


def render_with_filters(template: str, **variables: object) -> object:
    """render(), with the role's filters found as a play finds them (its filter_plugins)."""
    filter_loader.add_directory(str(REPO / "roles/sidecar_image/filter_plugins"))
    return render(template, **variables)


@pytest.mark.parametrize(
    ("rc", "stdout", "changes"),
    [
        (0, SHA40 + "\n", []),
        (0, SHA40, [" M sidecar/Dockerfile"]),
        (0, "", []),  # no commit touches the sources
        (0, "  \n", ["?? models/x/new"]),
        (128, "", []),  # not a checkout
        (128, "fatal: not a git repository", [" M a"]),
    ],
)
def test_revision_and_git_sha_are_the_old_jinjas(rc: int, stdout: str, changes: list) -> None:
    commit = {"rc": rc, "stdout": stdout}
    status = {"rc": 0, "stdout_lines": changes}
    old = {"_sidecar_image_git_commit": commit, "_sidecar_image_git_source_status": status}
    sha = render(OLD_GIT_SHA, **old)
    assert render(NEW_GIT_SHA, **old) == sha
    assert filters.revision(sha, len(changes) > 0) == render(OLD_REVISION, **old)


def test_revision_is_short_sha_dirty_or_unknown() -> None:
    assert filters.revision(SHA40, False) == "0f59269"
    assert filters.revision(SHA40, True) == "0f59269-dirty"
    assert filters.revision("", True) == "unknown"
    assert filters.revision(None, False) == "unknown"


@pytest.mark.parametrize(
    ("configured", "rc", "remote"),
    [
        ("", 0, "https://ci-bot:ghp_secret@github.com/org/hailo-pipeline.git\n"),
        ("", 0, "http://user@git.lab/x.git"),
        ("", 0, "https://github.com/org/a@b.git"),  # an @ after the host's / is no login
        ("", 0, "git@github.com:org/hailo-pipeline.git"),
        ("", 0, "  "),
        ("", 2, "error: No such remote 'origin'"),
        ("https://example.com/src", 0, "https://u:p@github.com/o/r"),
    ],
)
def test_source_url_is_the_old_jinjas(configured: str, rc: int, remote: str) -> None:
    variables = {
        "sidecar_image_source_url": configured,
        "_sidecar_image_git_remote": {"rc": rc, "stdout": remote},
    }
    expected = render(OLD_SOURCE, **variables)
    assert render_with_filters(NEW_SOURCE, **variables) == expected
    assert "secret" not in expected


def test_source_url_strips_credentials_and_falls_back() -> None:
    assert (
        filters.source_url("", "https://bot:tok@github.com/o/r.git") == "https://github.com/o/r.git"
    )
    assert filters.source_url("", "") == filters.DEFAULT_SOURCE
    assert filters.source_url("https://x/y", "https://a@b/c") == "https://x/y"


def test_the_new_revision_task_renders_as_the_filter_says() -> None:
    variables = {
        "_git_sha": SHA40,
        "_sidecar_image_git_source_status": {"rc": 0, "stdout_lines": [" M sidecar/README.md"]},
    }
    assert render_with_filters(NEW_REVISION, **variables) == "0f59269-dirty"


# The base images' identity (tasks/identity.yml before issue 17, 3), verbatim.
OLD_LOCAL_BASES = "{{ _found | combine({item.1: {'id': item.0.Id, 'arch': item.0.Architecture}}) }}"
OLD_BASE_ID = (
    "{{ _sidecar_image_base_id"
    " | combine({item: _sidecar_image_local.id} if _sidecar_image_local.arch | default('') == item"
    " else ({item: _sidecar_image_remote_digests[0]}"
    " if _sidecar_image_remote_digests | length > 0 else {})) }}"
)
# The task's vars (templates of their own, rendered lazily as Ansible does).
OLD_BASE_VARS = {
    "_sidecar_image_local": (
        "{{ _sidecar_image_local_bases[_sidecar_image_base_refs[item]] | default({}) }}"
    ),
    "_sidecar_image_remote": (
        "{{ _sidecar_image_base_remote.results | selectattr('item', '==', item)"
        " | first | default({}) }}"
    ),
    "_sidecar_image_remote_entries": (
        "{{ [_sidecar_image_remote.stdout | from_json] | flatten"
        " if _sidecar_image_remote.rc | default(1) == 0 else [] }}"
    ),
    "_sidecar_image_remote_digests": (
        "{{ _sidecar_image_remote_entries | selectattr('Descriptor.platform', 'defined')"
        " | selectattr('Descriptor.platform.architecture', '==', item)"
        " | selectattr('Descriptor.platform.os', '==', 'linux')"
        " | map(attribute='Descriptor.digest') | list }}"
    ),
}
LOCAL_IMAGES = [
    {
        "Id": "sha256:" + "a" * 64,
        "Architecture": "arm64",
        "RepoTags": ["hailo-lab/runtime-base:arm64", "other:tag"],
    },
    # Tagged for amd64 but built for arm64: not the amd64 base.
    {"Id": "sha256:" + "b" * 64, "Architecture": "arm64", "RepoTags": ["python:3.11-slim"]},
]


def _inspect(arch: str, digest: str, os: str = "linux") -> dict:
    return {
        "Ref": "x",
        "Descriptor": {"digest": digest, "platform": {"architecture": arch, "os": os}},
    }


@pytest.mark.parametrize(
    ("refs", "remote"),
    [
        ({"arm64": "hailo-lab/runtime-base:arm64", "amd64": "python:3.11-slim"}, "list"),
        ({"arm64": "hailo-lab/runtime-base:arm64", "amd64": "python:3.11-slim"}, "one"),
        ({"arm64": "hailo-lab/runtime-base:arm64", "amd64": "python:3.11-slim"}, "failed"),
        ({"arm64": "python:3.11-slim", "amd64": "python:3.11-slim"}, "list"),
    ],
)
def test_base_ids_are_the_old_jinjas(refs: dict, remote: str) -> None:
    digests = {"arm64": "sha256:" + "c" * 64, "amd64": "sha256:" + "d" * 64}
    if remote == "list":
        answer = [
            _inspect("amd64", digests["amd64"], "windows"),
            _inspect("arm64", digests["arm64"]),
            _inspect("amd64", digests["amd64"]),
        ]
    elif remote == "one":
        answer = _inspect("amd64", digests["amd64"])
    results = []
    local = filters.local_bases(LOCAL_IMAGES)
    for arch in ARCHS:
        if local.get(refs[arch], {}).get("arch") == arch:
            results.append({"item": arch, "skipped": True})
        elif remote == "failed":
            results.append({"item": arch, "rc": 1, "stdout": "", "stderr": "no such manifest"})
        else:
            results.append({"item": arch, "rc": 0, "stdout": json.dumps(answer)})

    old_local: dict = {}
    for image in LOCAL_IMAGES:
        for tag in image["RepoTags"]:
            old_local = render(OLD_LOCAL_BASES, _found=old_local, item=[image, tag])
    assert local == old_local
    old_ids: dict = {}
    for arch in ARCHS:
        old_ids = render(
            OLD_BASE_ID,
            **{name: trust_as_template(value) for name, value in OLD_BASE_VARS.items()},
            item=arch,
            _sidecar_image_base_id=old_ids,
            _sidecar_image_local_bases=old_local,
            _sidecar_image_base_refs=refs,
            _sidecar_image_base_remote={"results": results},
        )
    assert filters.base_ids(ARCHS, refs, local, results) == old_ids


def test_base_ids_take_the_engines_image_of_the_right_arch_else_the_registrys() -> None:
    refs = {"arm64": "hailo-lab/runtime-base:arm64", "amd64": "python:3.11-slim"}
    local = filters.local_bases(LOCAL_IMAGES)
    remote = [{"item": "amd64", "rc": 0, "stdout": json.dumps(_inspect("amd64", "sha256:d"))}]
    assert filters.base_ids(ARCHS, refs, local, remote) == {
        "arm64": "sha256:" + "a" * 64,
        "amd64": "sha256:d",
    }
    assert filters.base_ids(ARCHS, refs, local, []) == {"arm64": "sha256:" + "a" * 64}
    assert filters.local_bases(None) == {}


# --- what the registry says (tasks/publish_image.yml: docker buildx imagetools inspect)

LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ARM, AMD = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def _answer(descriptor: dict) -> dict:
    return {"rc": 0, "stdout": json.dumps(descriptor, indent=2), "stderr": ""}


def _list(*digests: str, media_type: str = LIST) -> dict:
    return _answer(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "digest": "sha256:" + "f" * 64,
            "size": 700,
            "manifests": [{"mediaType": "m", "digest": d, "size": 1} for d in digests],
        }
    )


def test_registry_answers_are_present_missing_or_errors() -> None:
    image = _answer(
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": ARM}
    )
    missing = {"rc": 1, "stdout": "", "stderr": "ERROR: reg:5000/ns/x:0.1.0-arm64: not found"}
    tls = {
        "rc": 1,
        "stdout": "",
        "stderr": 'ERROR: failed to do request: Head "https://reg:5000/v2/": tls: failed to '
        "verify certificate: x509: certificate signed by unknown authority\nmore",
    }
    denied = {
        "rc": 1,
        "stderr": "ERROR: pull access denied, repository does not exist or may require "
        "authorization: authorization failed: no basic auth credentials",
    }
    skipped = {"skipped": True, "item": "x"}
    states = filters.registry_manifests([image, _list(ARM, AMD), missing, tls, denied, skipped])
    assert [s["state"] for s in states] == [
        "present",
        "present",
        "missing",
        "error",
        "error",
        "error",
    ]
    assert states[0]["digest"] == ARM
    assert states[0]["manifests"] == []
    assert states[1]["manifests"] == [ARM, AMD]
    assert states[1]["media_type"] == LIST
    assert states[3]["message"].endswith("certificate signed by unknown authority")
    assert states[4]["message"].startswith("ERROR: pull access denied")
    assert states[2]["digest"] == ""


def test_a_tag_is_stale_unless_it_names_a_list_of_exactly_these_digests() -> None:
    tags = ["0.1.0", "abc1234", "latest", "old", "image", "oci", "gone"]
    states = filters.registry_manifests(
        [
            _list(ARM, AMD),
            _list(AMD, ARM),  # order does not matter
            _list(ARM),  # one platform short
            _list(ARM, "sha256:" + "3" * 64),
            _answer(
                {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": ARM}
            ),
            _list(ARM, AMD, media_type="application/vnd.oci.image.index.v1+json"),
            {"rc": 1, "stderr": "ERROR: r: not found"},
        ]
    )
    assert filters.stale_tags(tags, states, [ARM, AMD]) == ["latest", "old", "image", "gone"]
    # Under --check a platform not pushed yet has no digest: every tag is stale.
    assert filters.stale_tags(tags[:2], states[:2], [ARM, ""]) == tags[:2]
    with pytest.raises(ValueError, match="2 tags but 1 answers"):
        filters.stale_tags(tags[:2], states[:1], [ARM])
