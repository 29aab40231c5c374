"""A second release through playbooks/deploy.yml: another image (the runtime image from
the same build, by its own digest) and a new model version (0.2.0). Canary first, then
the fleet in steps; every eligible Pi records it as current and the first release as
previous, and the Pi without /dev/hailo0 is skipped again."""

from __future__ import annotations

import pytest
from fleet import (
    ELIGIBLE,
    FIRST_VERSION,
    MODEL,
    NODEV,
    contract_ok,
    current_link,
    image,
    make_release,
    models_listing,
    recap,
    record,
    run_playbook,
    running,
    served,
    snapshot,
)

VERSION = "0.2.0"


@pytest.fixture(scope="module")
def second_release():
    before = snapshot(NODEV)
    out = make_release(VERSION)
    proc = run_playbook(
        "deploy.yml",
        {
            "sidecar_deploy_artifacts_dir": str(out),
            "sidecar_deploy_model_version": VERSION,
            "sidecar_deploy_image_name": "hailo-runtime",
        },
        label="deploy-second-release",
    )
    return proc, before


def test_deploy_succeeds(second_release):
    proc, _ = second_release
    assert proc.returncode == 0, proc.stdout[-4000:]
    counts = recap(proc.stdout)
    assert all(counts[name]["changed"] > 0 for name in ELIGIBLE), counts


def test_canary_went_first(second_release):
    proc, _ = second_release
    plays = proc.stdout.split("PLAY [")
    canary_play = next(p for p in plays if p.startswith("Deploy to the canary"))
    assert "mol-fleet-canary" in canary_play
    assert not any(name in canary_play for name in ("mol-fleet-pi-1", "mol-fleet-pi-2"))


@pytest.mark.parametrize("name", ELIGIBLE)
def test_record_has_current_and_previous(second_release, name):
    rec = record(name)
    assert rec["current"]["version"] == VERSION
    assert rec["current"]["digest"] == image("hailo-runtime")["digest"]
    assert rec["previous"]["version"] == FIRST_VERSION
    assert rec["previous"]["digest"] == image("tcn-encoder")["digest"]
    assert rec["rolled_back_from"] is None
    assert current_link(name) == f"{MODEL}-{VERSION}"
    # The previous release's files are kept for a rollback.
    assert {f"{MODEL}-{FIRST_VERSION}", f"{MODEL}-{VERSION}"} <= set(models_listing(name))


@pytest.mark.parametrize("name", ELIGIBLE)
def test_serves_the_second_release(second_release, name):
    assert contract_ok(served(name))
    run = running(name)
    assert run["version"] == run["env_version"] == VERSION
    assert image("hailo-runtime")["digest"] in run["image_digests"]


def test_host_without_device_skipped_again(second_release):
    proc, before = second_release
    assert f"SKIPPED {NODEV}: /dev/hailo0 is missing" in proc.stdout
    assert snapshot(NODEV) == before
