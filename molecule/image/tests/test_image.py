"""What playbooks/build_image.yml left on the GPUSrv stand-in and in its registry.

The registry (on the same host) is asked over HTTPS with curl, trusting only its CA,
with the Accept headers a Docker client sends; the release record is the one converge
wrote on the controller (Molecule's ephemeral directory). The arm64 image runs under
QEMU emulation here: only that it runs is checked, never how fast.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

REGISTRY = "mol-image-gpusrv:5000"
NAMESPACE = "hailo-pipeline"
CA = "/etc/docker/registry/pki/ca.crt"
SECRETS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
REPO = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)
VERSION = "0.1.0"


def password(user: str) -> str:
    return (SECRETS / f"registry-{user}.password").read_text().strip()


@pytest.fixture(scope="module")
def release() -> dict:
    return json.loads((SECRETS / "release.json").read_text())


def curl(host, path: str, *args: str, user: str | None = "reader") -> tuple[int, dict, str]:
    """(status, headers, body) of GET https://REGISTRY<path>, trusting only the registry's CA."""
    auth = f"-u {shlex.quote(user + ':' + password(user))}" if user else ""
    extra = " ".join(shlex.quote(a) for a in args)
    out = host.check_output(
        f"curl -sS -D - -o /tmp/verify-body --cacert {CA} {auth} {extra} https://{REGISTRY}{path}"
        "; echo '----'; cat /tmp/verify-body"
    )
    head, _, body = out.partition("----\n")
    lines = [line.strip() for line in head.strip().splitlines() if line.strip()]
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def manifest(host, repo: str, ref: str) -> tuple[str, dict]:
    status, headers, body = curl(
        host, f"/v2/{NAMESPACE}/{repo}/manifests/{ref}", "-H", f"Accept: {ACCEPT}"
    )
    assert status == 200, body
    return headers["docker-content-digest"], json.loads(body)


def blob(host, repo: str, digest: str) -> dict:
    status, _, body = curl(host, f"/v2/{NAMESPACE}/{repo}/blobs/{digest}", "-L")
    assert status == 200
    return json.loads(body)


# --- the registry ---------------------------------------------------------------------


def test_registry_answers_over_tls_with_credentials(host):
    assert curl(host, "/v2/", user="pusher")[0] == 200
    assert curl(host, "/v2/", user="reader")[0] == 200


def test_registry_refuses_without_credentials(host):
    assert curl(host, "/v2/", user=None)[0] == 401
    status, _, _ = curl(host, f"/v2/{NAMESPACE}/hailo-runtime/tags/list", user=None)
    assert status == 401


def test_registry_refuses_without_its_ca(host):
    assert host.run(f"curl -sS -o /dev/null https://{REGISTRY}/v2/").rc == 60


# --- what was pushed ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "tags"),
    [
        ("hailo-runtime", {VERSION, f"{VERSION}-arm64", f"{VERSION}-amd64", "latest"}),
        ("tcn-encoder", {VERSION, f"{VERSION}-arm64", f"{VERSION}-amd64"}),
    ],
)
def test_tags(host, release, repo, tags):
    status, _, body = curl(host, f"/v2/{NAMESPACE}/{repo}/tags/list")
    assert status == 200
    # The git revision tag too; latest only on the runtime.
    assert set(json.loads(body)["tags"]) == tags | {release["revision"]}


@pytest.mark.parametrize("repo", ["hailo-runtime", "tcn-encoder"])
def test_manifest_list_has_arm64_and_matches_the_release_record(host, release, repo):
    record = release["images"][repo]
    assert record["image"] == f"{REGISTRY}/{NAMESPACE}/{repo}"
    assert record["reference"] == f"{record['image']}@{record['digest']}"
    for tag in record["tags"]:
        digest, index = manifest(host, repo, tag)
        assert index["mediaType"] in INDEX_TYPES
        assert digest == record["digest"], tag
    platforms = {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in index["manifests"]
    }
    assert "linux/arm64" in platforms
    assert platforms == record["platform_digests"]
    assert sorted(platforms) == sorted(record["platforms"])
    # The record's other fields.
    assert record["git_sha"] == release["git_sha"]
    assert len(record["git_sha"]) == 7
    assert record["built_at"].endswith("Z")


@pytest.mark.parametrize("repo", ["hailo-runtime", "tcn-encoder"])
def test_arm64_image_config(host, release, repo):
    record = release["images"][repo]
    _, image_manifest = manifest(host, repo, record["platform_digests"]["linux/arm64"])
    assert image_manifest["mediaType"] in MANIFEST_TYPES
    config = blob(host, repo, image_manifest["config"]["digest"])
    assert config["architecture"] == "arm64"
    assert config["os"] == "linux"
    assert config["config"]["User"] == "10001:10001"
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == record["version"]
    assert labels["org.opencontainers.image.revision"] == release["revision"]
    assert labels["org.opencontainers.image.source"]
    assert "9000/tcp" in config["config"]["ExposedPorts"]


def test_model_image_is_built_on_the_recorded_runtime(host, release):
    model = release["images"]["tcn-encoder"]
    runtime = release["images"]["hailo-runtime"]
    assert model["runtime"] == runtime["reference"]
    for platform, digest in model["platform_digests"].items():
        _, model_manifest = manifest(host, "tcn-encoder", digest)
        _, runtime_manifest = manifest(host, "hailo-runtime", runtime["platform_digests"][platform])
        runtime_layers = [layer["digest"] for layer in runtime_manifest["layers"]]
        model_layers = [layer["digest"] for layer in model_manifest["layers"]]
        assert model_layers[: len(runtime_layers)] == runtime_layers, platform


# --- pulling by digest, and what is in the image --------------------------------------


@pytest.fixture(scope="module")
def pulled(host, release):
    """Pull both platforms by digest as the read-only user, from the registry."""
    host.check_output(
        f"printf %s {shlex.quote(password('reader'))} | "
        f"docker --config /tmp/reader-docker login -u reader --password-stdin {REGISTRY}"
    )
    refs = {}
    try:
        for repo in ("hailo-runtime", "tcn-encoder"):
            record = release["images"][repo]
            for platform, digest in record["platform_digests"].items():
                ref = f"{record['image']}@{digest}"
                pull = host.run(
                    f"docker --config /tmp/reader-docker pull --platform {platform} {ref}"
                )
                assert pull.rc == 0, pull.stderr
                refs[(repo, platform)] = ref
            # By the manifest list's digest too: Docker picks the platform.
            reader = "docker --config /tmp/reader-docker"
            pull = host.run(f"{reader} pull --platform linux/arm64 {record['reference']}")
            assert pull.rc == 0, pull.stderr
            assert f"Digest: {record['digest']}" in pull.stdout
    finally:
        host.run("rm -rf /tmp/reader-docker")
    return refs


def test_pulled_arm64_runtime_runs_under_emulation(host, pulled):
    ref = pulled[("hailo-runtime", "linux/arm64")]
    out = host.check_output(
        f"docker run --rm --platform linux/arm64 --network none --user 10001 --read-only "
        f"--cap-drop ALL --security-opt no-new-privileges {ref} "
        "python3 -c 'import platform, hailo_sidecar as s; print(platform.machine(), s.__version__)'"
    )
    assert out.split() == ["aarch64", VERSION]


def test_pulled_amd64_model_image_serves_healthz_hardened(host, pulled):
    ref = pulled[("tcn-encoder", "linux/amd64")]
    name = "verify-sidecar"
    host.run(f"docker rm -f {name}")
    host.check_output(
        f"docker run -d --name {name} --network none --user 10001 --read-only --tmpfs /tmp "
        "--tmpfs /run/hailo-sidecar:uid=10001,gid=10001,mode=0770 --cap-drop ALL "
        f"--security-opt no-new-privileges --health-interval 1s -e INFER_MODE=stub {ref}"
    )
    try:
        status = ""
        for _ in range(60):
            status = host.check_output(f"docker inspect -f '{{{{.State.Health.Status}}}}' {name}")
            if status in ("healthy", "unhealthy"):
                break
            host.run("sleep 1")
        assert status == "healthy", host.run(f"docker logs {name}").stderr
        assert host.check_output(f"docker exec {name} id -u") == "10001"
    finally:
        host.run(f"docker rm -f {name}")


LAYER_SCAN = r"""
import json, re, sys, tarfile
forbidden = [
    re.compile(r"\.(onnx|hef|har)$", re.I),
    re.compile(r"\.lic$|licen[cs]e[^/]*\.(lic|key|dat)$", re.I),
    re.compile(r"(^|/)hailort|(^|/)hailo_platform|(^|/)libhailort", re.I),
    re.compile(r"(^|/)(id_rsa|id_ecdsa|id_ed25519)$|\.key$|\.p12$|\.pfx$", re.I),
    re.compile(r"(^|/)\.netrc$|(^|/)pip\.conf$|(^|/)\.pypirc$", re.I),
    re.compile(r"(^|/)\.docker/config\.json$|(^|/)containers/auth\.json$", re.I),
    re.compile(r"(^|/)wheels/"),
]
key = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
secret = sys.argv[2].encode()
bad, seen = [], 0
with tarfile.open(sys.argv[1]) as outer:
    layers = json.load(outer.extractfile("manifest.json"))[0]["Layers"]
    for path in layers:
        with tarfile.open(fileobj=outer.extractfile(path)) as layer:
            for entry in layer:
                seen += 1
                name = entry.name.removeprefix("./")
                if any(p.search(name) for p in forbidden):
                    bad.append(name)
                if entry.isfile() and entry.size < 2_000_000:
                    data = layer.extractfile(entry).read()
                    if key.search(data) or secret in data:
                        bad.append(name + " (key or registry password)")
print(json.dumps({"seen": seen, "bad": bad}))
"""


@pytest.mark.parametrize("repo", ["hailo-runtime", "tcn-encoder"])
def test_no_artifact_licence_key_or_credential_in_any_layer(host, pulled, repo):
    ref = pulled[(repo, "linux/arm64")]
    host.check_output(f"docker save -o /tmp/verify-image.tar {ref}")
    try:
        script = host.check_output("mktemp")
        host.check_output(f"printf %s {shlex.quote(LAYER_SCAN)} > {script}")
        result = json.loads(
            host.check_output(
                f"python3 {script} /tmp/verify-image.tar {shlex.quote(password('pusher'))}"
            )
        )
    finally:
        host.run("rm -f /tmp/verify-image.tar")
    assert result["seen"] > 1000
    assert result["bad"] == []


def test_registry_login_is_not_in_the_build_context(host):
    # The build context on GPUSrv holds the sources and wheels, never Docker's login.
    found = host.run(
        "grep -rl --exclude-dir=wheels -e auths -e "
        f"{shlex.quote(password('pusher'))} /var/lib/sidecar-image/context"
    )
    assert found.stdout.strip() == ""


def test_wheelhouse_is_keyed_and_complete(host):
    wheelhouses = host.check_output("ls -d /var/lib/sidecar-image/wheels/sidecar-*").split()
    assert len(wheelhouses) == 1
    assert host.file(f"{wheelhouses[0]}/.complete").exists
    wheels = host.check_output(f"ls {wheelhouses[0]}").split()
    assert any("aarch64" in w for w in wheels)
    assert any("x86_64" in w for w in wheels)
    assert not [w for w in wheels if w.lower().startswith("hailo")]
