"""After test_9's rollback: a deploy of the release the Pis were rolled back from (0.2.0)
is refused on the canary before anything changes (the rollback sticks), and a deploy that
skips the canary (`--limit pi_fleet`) is refused before any fleet host changes."""

from __future__ import annotations

import pytest
from fleet import CANARY, ELIGIBLE, NODEV, make_release, recap, run_playbook, snapshot


def deploy(version: str, label: str, args: tuple[str, ...] = ()):
    """deploy.yml of `version` (the runtime image, the converge's artifact)."""
    extra = {
        "sidecar_deploy_artifacts_dir": str(make_release(version)),
        "sidecar_deploy_model_version": version,
        "sidecar_deploy_image_name": "hailo-runtime",
    }
    return run_playbook("deploy.yml", extra, label=label, args=args)


@pytest.fixture(scope="module")
def refused():
    before = {name: snapshot(name) for name in [*ELIGIBLE, NODEV]}
    sticky = deploy("0.2.0", "deploy-rolled-back-release")
    bypass = deploy("0.8.0", "deploy-fleet-without-canary", ("--limit", "pi_fleet"))
    return sticky, bypass, before


def test_the_rolled_back_release_is_refused(refused):
    sticky, _, _ = refused
    assert sticky.returncode != 0
    assert "was rolled back from on this host" in sticky.stdout, sticky.stdout[-3000:]
    assert "sidecar_deploy_allow_rolled_back" in sticky.stdout
    assert recap(sticky.stdout)[CANARY] == {
        **recap(sticky.stdout)[CANARY],
        "changed": 0,
        "failed": 1,
    }
    assert "PLAY [Deploy to the fleet" not in sticky.stdout


def test_the_fleet_is_not_deployed_without_a_gated_canary(refused):
    _, bypass, _ = refused
    assert bypass.returncode != 0
    assert "The fleet is not deployed: 0 host(s) of the canary group 'pi_canary'" in bypass.stdout
    counts = recap(bypass.stdout)
    assert CANARY not in counts
    # The first fleet batch fails at the check; the run stops there (max_fail_percentage).
    assert all(c["changed"] == 0 for c in counts.values()), counts


@pytest.mark.parametrize("name", [*ELIGIBLE, NODEV])
def test_no_host_changed(refused, name):
    *_, before = refused
    assert snapshot(name) == before[name]
