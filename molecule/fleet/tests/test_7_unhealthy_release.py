"""A release whose container never becomes healthy (here: the second release's image with
a model version 0.3.0 and NUM_MOTIFS=0, which the sidecar refuses at start-up, so it
crash-loops). The canary switches, fails its gate, puts 0.2.0 back, confirms it healthy
and fails; the run stops before the fleet, which is never touched."""

from __future__ import annotations

import pytest
from fleet import (
    CANARY,
    FLEET,
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

VERSION = "0.3.0"
PREVIOUS = "0.2.0"


@pytest.fixture(scope="module")
def unhealthy_release():
    before = {name: snapshot(name) for name in [CANARY, *FLEET, NODEV]}
    out = make_release(VERSION)
    proc = run_playbook(
        "deploy.yml",
        {
            "sidecar_deploy_artifacts_dir": str(out),
            "sidecar_deploy_model_version": VERSION,
            "sidecar_deploy_image_name": "hailo-runtime",
            "sidecar_deploy_env": {"NUM_MOTIFS": "0"},
            "sidecar_deploy_gate_timeout": 120,
        },
        label="deploy-unhealthy-release",
    )
    return proc, before


def test_run_fails_on_the_canary(unhealthy_release):
    proc, _ = unhealthy_release
    assert proc.returncode != 0
    counts = recap(proc.stdout)
    assert counts[CANARY]["failed"] == 1, counts
    # The fleet play never ran: its hosts are not in the recap, or did nothing.
    assert "PLAY [Deploy to the fleet" not in proc.stdout


def test_failure_says_why_and_shows_the_logs(unhealthy_release):
    proc, _ = unhealthy_release
    out = proc.stdout
    assert "not running" in out or "restarted" in out or "unhealthy" in out, out[-4000:]
    assert "Rolled back:" in out
    assert f"{MODEL} {PREVIOUS}" in out
    assert "Last container log lines of the failed release" in out
    assert "NUM_MOTIFS" in out  # the sidecar's own start-up error


def test_canary_serves_the_previous_release(unhealthy_release):
    _, before = unhealthy_release
    assert record(CANARY) == before[CANARY]["record"]
    assert current_link(CANARY) == f"{MODEL}-{PREVIOUS}"
    assert contract_ok(served(CANARY))
    run = running(CANARY)
    assert run["health"] == "healthy"
    assert run["version"] == run["env_version"] == PREVIOUS
    assert run["env"]["NUM_MOTIFS"] == "12"
    assert image("hailo-runtime")["digest"] in run["image_digests"]


@pytest.mark.parametrize("name", [*FLEET, NODEV])
def test_fleet_untouched(unhealthy_release, name):
    _, before = unhealthy_release
    assert snapshot(name) == before[name]
    assert f"{MODEL}-{VERSION}" not in models_listing(name)
