"""After converge (playbooks/site.yml: provision, compile, build and push, deploy) and
Molecule's idempotence step (the same run again: changed=0 everywhere, the deploy too).

Every Pi with /dev/hailo0 serves the contract from the image digest in release.json and
the compiled artifact, in the hardened container, with a release record; the Pi without
/dev/hailo0 was skipped and left untouched.
"""

from __future__ import annotations

import json

import pytest
from fleet import (
    ARTIFACTS,
    ELIGIBLE,
    ENGINE_DOCKER,
    FIRST_VERSION,
    MODEL,
    MODELS,
    NODEV,
    RECORD,
    contract_ok,
    current_link,
    engine,
    image,
    inspect,
    pi,
    record,
    running,
    served,
)

MANIFEST = json.loads((ARTIFACTS / f"{MODEL}-{FIRST_VERSION}.manifest.json").read_text())


@pytest.mark.parametrize("name", ELIGIBLE)
def test_serves_the_contract_from_the_recorded_digest(name):
    rec = record(name)
    assert rec is not None, f"{name} has no release record"
    current = rec["current"]
    assert current["digest"] == image("tcn-encoder")["digest"]
    assert current["image"] == image("tcn-encoder")["reference"]
    assert current["sha256"] == MANIFEST["sha256"]
    assert current["version"] == FIRST_VERSION
    assert current["deployed_by"]
    assert current["deployed_at"].endswith("Z")
    assert rec["previous"] is None

    out = served(name)
    assert contract_ok(out), out
    # The lab's Pis run the compiled artifact (inventories/local/group_vars/pi.yml).
    assert out["backend"] == "onnx"
    assert out["body"]["sha256"] == MANIFEST["sha256"]
    ready = out["readyz"]
    assert (ready["sha256"], ready["version"]) == (MANIFEST["sha256"], FIRST_VERSION)
    # The sidecar checked itself against the compiler's golden vectors before it was ready.
    assert ready["golden"]["ok"] is True, ready
    assert ready["golden"]["windows"] == MANIFEST["golden"]["windows"]

    run = running(name)
    assert current["digest"] in run["image_digests"]
    assert (run["digest"], run["version"], run["env_version"], run["sha256"]) == (
        current["digest"],
        FIRST_VERSION,
        FIRST_VERSION,
        MANIFEST["sha256"],
    )


@pytest.mark.parametrize("name", ELIGIBLE)
def test_container_is_hardened(name):
    c = inspect(name)
    assert c is not None
    hc, cfg = c["HostConfig"], c["Config"]
    assert c["State"]["Health"]["Status"] == "healthy"
    assert cfg["User"] == "10001:10001"
    assert hc["ReadonlyRootfs"] is True
    assert hc["CapDrop"] == ["ALL"]
    assert not hc["CapAdd"]
    assert "no-new-privileges" in hc["SecurityOpt"]
    assert hc["Privileged"] is False
    assert [d["PathInContainer"] for d in hc["Devices"]] == ["/dev/hailo0"]
    assert "/tmp" in hc["Tmpfs"]
    mounts = {m["Destination"]: m for m in c["Mounts"]}
    assert mounts["/models"]["RW"] is False
    assert mounts["/models"]["Source"] == MODELS
    assert mounts["/run/hailo-sidecar"]["RW"] is True
    assert hc["RestartPolicy"]["Name"] == "unless-stopped"
    assert hc["Memory"] > 0
    assert hc["NanoCpus"] > 0
    assert hc["LogConfig"]["Type"] == "json-file"
    assert hc["LogConfig"]["Config"]["max-size"]
    assert hc["PortBindings"] == {"9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9000"}]}
    assert cfg["Healthcheck"]["Test"][0] == "CMD"
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["MODEL_NAME"] == MODEL
    assert env["MODEL_VERSION"] == FIRST_VERSION
    assert env["INFER_MODE"] == "onnx"
    assert env["SOCKET_PATH"] == "/run/hailo-sidecar/sidecar.sock"
    # The IPC socket is there, made by the sidecar's user.
    sock = pi(name).file("/run/hailo-sidecar/sidecar.sock")
    assert sock.is_socket
    assert sock.uid == 10001


@pytest.mark.parametrize("name", ELIGIBLE)
def test_artifact_is_placed_verified_and_current(name):
    host = pi(name)
    release = f"{MODEL}-{FIRST_VERSION}"
    assert current_link(name) == release
    artifact = host.file(f"{MODELS}/{release}/{MANIFEST['artifact']}")
    assert artifact.sha256sum == MANIFEST["sha256"]
    golden = host.file(f"{MODELS}/{release}/{MANIFEST['golden']['file']}")
    assert golden.sha256sum == MANIFEST["golden"]["sha256"]
    assert not [p for p in host.file(MODELS).listdir() if p.startswith(".")]
    assert host.file(RECORD).mode == 0o644


def test_host_without_device_was_skipped_and_untouched():
    host = pi(NODEV)
    assert not host.file("/dev/hailo0").exists
    assert record(NODEV) is None
    assert not host.file(MODELS).exists
    assert inspect(NODEV) is None
    # Nothing was pulled either.
    assert engine(NODEV).check_output(f"{ENGINE_DOCKER} images --quiet") == ""
