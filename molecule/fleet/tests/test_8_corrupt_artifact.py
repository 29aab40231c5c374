"""A corrupt artifact: the bytes differ from the sha256 its manifest and hef_sha256sum.txt
give (a copy damaged after the compile). The canary hashes what it received, refuses it
before any switch and fails; nothing changes on any host, no staging copy is left."""

from __future__ import annotations

import pytest
from fleet import (
    CANARY,
    FLEET,
    MODEL,
    MODELS,
    NODEV,
    make_release,
    pi,
    recap,
    run_playbook,
    snapshot,
)

VERSION = "0.4.0"


@pytest.fixture(scope="module")
def corrupt_release():
    before = {name: snapshot(name) for name in [CANARY, *FLEET, NODEV]}
    out = make_release(VERSION, corrupt=True)
    proc = run_playbook(
        "deploy.yml",
        {
            "sidecar_deploy_artifacts_dir": str(out),
            "sidecar_deploy_model_version": VERSION,
            "sidecar_deploy_image_name": "hailo-runtime",
        },
        label="deploy-corrupt-artifact",
    )
    return proc, before


def test_refused_before_any_switch(corrupt_release):
    proc, _ = corrupt_release
    assert proc.returncode != 0
    assert recap(proc.stdout)[CANARY]["failed"] == 1
    out = proc.stdout
    assert "refused before any switch: sha256 mismatch" in out, out[-4000:]
    assert "sha256 mismatch" in out
    assert "Nothing was switched" in out
    assert "PLAY [Deploy to the fleet" not in out


@pytest.mark.parametrize("name", [CANARY, *FLEET, NODEV])
def test_nothing_changed(corrupt_release, name):
    _, before = corrupt_release
    assert snapshot(name) == before[name]
    assert f"{MODEL}-{VERSION}" not in snapshot(name)["models"]


def test_no_staging_copy_left_on_the_canary(corrupt_release):
    assert not [p for p in pi(CANARY).file(MODELS).listdir() if p.startswith(".")]
