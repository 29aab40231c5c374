"""`deploy.yml --check --diff` against the converged fleet: it reports changed=0 and changes
nothing; with a new release it reports on every eligible Pi what would switch (the
current link, what the container would run) and still changes nothing, takes no lease."""

from __future__ import annotations

import pytest
from fleet import ELIGIBLE, MODEL, NODEV, PIS, lease, make_release, recap, run_playbook, snapshot


@pytest.fixture(scope="module")
def checked():
    before = {name: snapshot(name) for name in PIS}
    converged = run_playbook(
        "deploy.yml", label="deploy-check-converged", args=("--check", "--diff")
    )
    new = run_playbook(
        "deploy.yml",
        {
            "sidecar_deploy_artifacts_dir": str(make_release("0.9.0")),
            "sidecar_deploy_model_version": "0.9.0",
            "sidecar_deploy_image_name": "hailo-runtime",
        },
        label="deploy-check-new-release",
        args=("--check", "--diff"),
    )
    return converged, new, before


def test_a_converged_fleet_checks_clean(checked):
    converged, _, _ = checked
    assert converged.returncode == 0, converged.stdout[-4000:]
    counts = recap(converged.stdout)
    assert all(counts[name]["changed"] == 0 for name in PIS), counts


def test_a_new_release_is_reported_not_made(checked):
    _, new, _ = checked
    assert new.returncode == 0, new.stdout[-4000:]
    counts = recap(new.stdout)
    assert all(counts[name]["changed"] > 0 for name in ELIGIBLE), counts
    assert counts[NODEV]["changed"] == 0
    assert new.stdout.count(f"+container runs: {MODEL} 0.9.0") == len(ELIGIBLE)
    assert new.stdout.count(f"+current link: {MODEL}-0.9.0") == len(ELIGIBLE)


@pytest.mark.parametrize("name", PIS)
def test_nothing_changed(checked, name):
    *_, before = checked
    assert snapshot(name) == before[name]
    assert lease(name) is None
