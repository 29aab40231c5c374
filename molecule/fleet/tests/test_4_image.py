"""What the converge's image stage (playbooks/build_image.yml: sidecar_image) left on the
GPUSrv stand-in and in its registry.

The registry (on the same host) is asked over HTTPS with curl, trusting only its CA,
with the Accept headers a Docker client sends; the release record is the one converge
wrote on the controller (Molecule's ephemeral directory). The arm64 image runs under
QEMU emulation here: only that it runs is checked, never how fast.
"""

from __future__ import annotations

import json
import shlex

import pytest
from fleet import REGISTRY, REPO, registry_password, release_json

NAMESPACE = "hailo-pipeline"
CA = "/etc/docker/registry/pki/ca.crt"
# Run on GPUSrv, where the images are (python3, standard library only).
LAYER_SCAN = REPO / "tests" / "image_layers.py"
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


@pytest.fixture(scope="module")
def release() -> dict:
    return release_json()


def curl(gpusrv, path: str, *args: str, login: bool = True) -> tuple[int, dict, str]:
    """(status, headers, body) of GET https://REGISTRY<path>, trusting only the registry's CA."""
    auth = f"-u {shlex.quote('pusher:' + registry_password())}" if login else ""
    extra = " ".join(shlex.quote(a) for a in args)
    out = gpusrv.check_output(
        f"curl -sS -D - -o /tmp/verify-body --cacert {CA} {auth} {extra} https://{REGISTRY}{path}"
        "; echo '----'; cat /tmp/verify-body"
    )
    head, _, body = out.partition("----\n")
    lines = [line.strip() for line in head.strip().splitlines() if line.strip()]
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def manifest(gpusrv, repo: str, ref: str) -> tuple[str, dict]:
    status, headers, body = curl(
        gpusrv, f"/v2/{NAMESPACE}/{repo}/manifests/{ref}", "-H", f"Accept: {ACCEPT}"
    )
    assert status == 200, body
    return headers["docker-content-digest"], json.loads(body)


def blob(gpusrv, repo: str, digest: str) -> dict:
    status, _, body = curl(gpusrv, f"/v2/{NAMESPACE}/{repo}/blobs/{digest}", "-L")
    assert status == 200
    return json.loads(body)


# --- the registry ---------------------------------------------------------------------


def test_registry_answers_over_tls_with_credentials(gpusrv):
    assert curl(gpusrv, "/v2/")[0] == 200


def test_registry_refuses_without_credentials(gpusrv):
    assert curl(gpusrv, "/v2/", login=False)[0] == 401
    status, _, _ = curl(gpusrv, f"/v2/{NAMESPACE}/hailo-runtime/tags/list", login=False)
    assert status == 401


def test_registry_refuses_without_its_ca(gpusrv):
    assert gpusrv.run(f"curl -sS -o /dev/null https://{REGISTRY}/v2/").rc == 60


# --- what was pushed ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "tags"),
    [
        ("hailo-runtime", {VERSION, f"{VERSION}-arm64", f"{VERSION}-amd64", "latest"}),
        ("tcn-encoder", {VERSION, f"{VERSION}-arm64", f"{VERSION}-amd64"}),
    ],
)
def test_tags(gpusrv, release, repo, tags):
    status, _, body = curl(gpusrv, f"/v2/{NAMESPACE}/{repo}/tags/list")
    assert status == 200
    # The git revision tag too; latest only on the runtime.
    assert set(json.loads(body)["tags"]) == tags | {release["revision"]}


@pytest.mark.parametrize("repo", ["hailo-runtime", "tcn-encoder"])
def test_manifest_list_has_arm64_and_matches_the_release_record(gpusrv, release, repo):
    record = release["images"][repo]
    assert record["image"] == f"{REGISTRY}/{NAMESPACE}/{repo}"
    assert record["reference"] == f"{record['image']}@{record['digest']}"
    for tag in record["tags"]:
        digest, index = manifest(gpusrv, repo, tag)
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
    assert record["role"] == ("runtime" if repo == "hailo-runtime" else "model")
    assert record["git_sha"] == release["git_sha"]
    assert len(record["git_sha"]) == 40
    assert release["revision"] == release["git_sha"][:7] or release["revision"].startswith(
        release["git_sha"][:7] + "-"
    )
    assert record["built_at"].endswith("Z")


def test_release_record_names_the_deployable_model_image(gpusrv, release):
    # The deploy pulls release["deploy"]["reference"]: the model image, not the runtime.
    deploy = release["deploy"]
    model = release["images"]["tcn-encoder"]
    assert deploy["name"] == "tcn-encoder"
    assert model["role"] == "model"
    for key in ("image", "tag", "digest", "reference", "platforms", "platform_digests"):
        assert deploy[key] == model[key], key
    assert deploy["reference"] == f"{deploy['image']}@{deploy['digest']}"
    assert "linux/arm64" in deploy["platforms"]
    # The registry serves exactly that digest under the tag the record names.
    digest, _ = manifest(gpusrv, "tcn-encoder", deploy["tag"])
    assert digest == deploy["digest"]
    assert release["built_at"] == max(i["built_at"] for i in release["images"].values())


@pytest.mark.parametrize("repo", ["hailo-runtime", "tcn-encoder"])
def test_arm64_image_config(gpusrv, release, repo):
    record = release["images"][repo]
    _, image_manifest = manifest(gpusrv, repo, record["platform_digests"]["linux/arm64"])
    assert image_manifest["mediaType"] in MANIFEST_TYPES
    config = blob(gpusrv, repo, image_manifest["config"]["digest"])
    assert config["architecture"] == "arm64"
    assert config["os"] == "linux"
    assert config["config"]["User"] == "10001:10001"
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == record["version"]
    assert labels["org.opencontainers.image.revision"] == release["revision"]
    assert labels["org.opencontainers.image.source"]
    assert "9000/tcp" in config["config"]["ExposedPorts"]


def test_model_image_is_built_on_the_recorded_runtime(gpusrv, release):
    model = release["images"]["tcn-encoder"]
    runtime = release["images"]["hailo-runtime"]
    assert model["runtime"] == runtime["reference"]
    for platform, digest in model["platform_digests"].items():
        _, model_manifest = manifest(gpusrv, "tcn-encoder", digest)
        _, runtime_manifest = manifest(
            gpusrv, "hailo-runtime", runtime["platform_digests"][platform]
        )
        runtime_layers = [layer["digest"] for layer in runtime_manifest["layers"]]
        model_layers = [layer["digest"] for layer in model_manifest["layers"]]
        assert model_layers[: len(runtime_layers)] == runtime_layers, platform


# --- pulling by digest, and what is in the image --------------------------------------


@pytest.fixture(scope="module")
def pulled(gpusrv, release):
    """Pull both platforms by digest from the registry, with a login of its own."""
    gpusrv.check_output(
        f"printf %s {shlex.quote(registry_password())} | "
        f"docker --config /tmp/verify-docker login -u pusher --password-stdin {REGISTRY}"
    )
    refs = {}
    try:
        for repo in ("hailo-runtime", "tcn-encoder"):
            record = release["images"][repo]
            for platform, digest in record["platform_digests"].items():
                ref = f"{record['image']}@{digest}"
                pull = gpusrv.run(
                    f"docker --config /tmp/verify-docker pull --platform {platform} {ref}"
                )
                assert pull.rc == 0, pull.stderr
                refs[(repo, platform)] = ref
            # By the manifest list's digest too: Docker picks the platform.
            client = "docker --config /tmp/verify-docker"
            pull = gpusrv.run(f"{client} pull --platform linux/arm64 {record['reference']}")
            assert pull.rc == 0, pull.stderr
            assert f"Digest: {record['digest']}" in pull.stdout
    finally:
        gpusrv.run("rm -rf /tmp/verify-docker")
    return refs


def test_pulled_arm64_runtime_runs_under_emulation(gpusrv, pulled):
    ref = pulled[("hailo-runtime", "linux/arm64")]
    out = gpusrv.check_output(
        f"docker run --rm --platform linux/arm64 --network none --user 10001 --read-only "
        f"--cap-drop ALL --security-opt no-new-privileges {ref} "
        "python3 -c 'import platform, hailo_sidecar as s; print(platform.machine(), s.__version__)'"
    )
    assert out.split() == ["aarch64", VERSION]


def test_pulled_amd64_model_image_serves_healthz_hardened(gpusrv, pulled):
    ref = pulled[("tcn-encoder", "linux/amd64")]
    name = "verify-sidecar"
    gpusrv.run(f"docker rm -f {name}")
    gpusrv.check_output(
        f"docker run -d --name {name} --network none --user 10001 --read-only --tmpfs /tmp "
        "--tmpfs /run/hailo-sidecar:uid=10001,gid=10001,mode=0770 --cap-drop ALL "
        f"--security-opt no-new-privileges --health-interval 1s -e INFER_MODE=stub {ref}"
    )
    try:
        status = ""
        for _ in range(60):
            status = gpusrv.check_output(f"docker inspect -f '{{{{.State.Health.Status}}}}' {name}")
            if status in ("healthy", "unhealthy"):
                break
            gpusrv.run("sleep 1")
        assert status == "healthy", gpusrv.run(f"docker logs {name}").stderr
        assert gpusrv.check_output(f"docker exec {name} id -u") == "10001"
    finally:
        gpusrv.run(f"docker rm -f {name}")


@pytest.mark.parametrize("repo", ["hailo-runtime", "tcn-encoder"])
def test_no_artifact_licence_key_or_credential_in_any_layer(gpusrv, pulled, repo):
    ref = pulled[(repo, "linux/arm64")]
    gpusrv.check_output(f"docker save -o /tmp/verify-image.tar {ref}")
    try:
        script = gpusrv.check_output("mktemp")
        gpusrv.check_output(f"printf %s {shlex.quote(LAYER_SCAN.read_text())} > {script}")
        result = json.loads(
            gpusrv.check_output(
                f"python3 -I {script} /tmp/verify-image.tar {shlex.quote(registry_password())}"
            )
        )
    finally:
        gpusrv.run("rm -f /tmp/verify-image.tar")
    assert result["paths"] > 1000
    assert result["offending"] == []


def test_registry_login_is_not_in_the_build_context(gpusrv):
    # The build context on GPUSrv holds the sources and wheels, never Docker's login.
    found = gpusrv.run(
        "grep -rl --exclude-dir=wheels -e auths -e "
        f"{shlex.quote(registry_password())} /var/lib/sidecar-image/context"
    )
    assert found.stdout.strip() == ""


def test_wheelhouse_is_keyed_and_complete(gpusrv):
    wheelhouses = gpusrv.check_output("ls -d /var/lib/sidecar-image/wheels/sidecar-*").split()
    assert len(wheelhouses) == 1
    assert gpusrv.file(f"{wheelhouses[0]}/.complete").exists
    wheels = gpusrv.check_output(f"ls {wheelhouses[0]}").split()
    assert any("aarch64" in w for w in wheels)
    assert any("x86_64" in w for w in wheels)
    assert not [w for w in wheels if w.lower().startswith("hailo")]
