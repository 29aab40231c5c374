"""playbooks/rollback.yml: every eligible Pi goes back to the previous release in its
record (0.1.0 from the tcn-encoder image), health-gated; the record then has 0.1.0 as
current and 0.2.0 as previous and rolled_back_from. A second run changes nothing.

With the registry stopped and `docker image prune` run on every Pi first: the images of
the current and previous release carry the role's local tags, so the prune keeps them and
the rollback needs no registry."""

from __future__ import annotations

import pytest
from fleet import (
    ELIGIBLE,
    ENGINE_DOCKER,
    FIRST_VERSION,
    MODEL,
    NODEV,
    contract_ok,
    current_link,
    engine,
    gpusrv_host,
    image,
    recap,
    record,
    run_playbook,
    running,
    served,
    snapshot,
    task_results,
)

ROLLED_BACK_FROM = "0.2.0"


@pytest.fixture(scope="module")
def rollback():
    before = snapshot(NODEV)
    registry = gpusrv_host()
    registry.check_output("systemctl stop docker-registry")
    try:
        pruned = {
            name: engine(name).check_output(f"{ENGINE_DOCKER} image prune -f") for name in ELIGIBLE
        }
        first = run_playbook("rollback.yml", label="rollback")
        again = run_playbook("rollback.yml", label="rollback-again")
    finally:
        registry.check_output("systemctl start docker-registry")
    return first, again, before, pruned


def test_rollback_succeeds_without_the_registry(rollback):
    first, *_ = rollback
    assert first.returncode == 0, first.stdout[-4000:]
    # The pull task ran on no host (every image was there, kept by its local tag).
    pulls = task_results(first.stdout, "sidecar_deploy : Pull the image by digest")
    assert set(pulls) == set(ELIGIBLE), pulls
    assert set(pulls.values()) == {"skipping"}, pulls


@pytest.mark.parametrize("name", ELIGIBLE)
def test_every_host_serves_the_previous_release(rollback, name):
    rec = record(name)
    assert rec["current"]["version"] == FIRST_VERSION
    assert rec["current"]["digest"] == image("tcn-encoder")["digest"]
    assert rec["previous"]["version"] == ROLLED_BACK_FROM
    assert rec["rolled_back_from"]["version"] == ROLLED_BACK_FROM
    assert current_link(name) == f"{MODEL}-{FIRST_VERSION}"
    assert contract_ok(served(name))
    run = running(name)
    assert run["version"] == run["env_version"] == FIRST_VERSION
    assert rec["current"]["digest"] in run["image_digests"]


def test_second_rollback_changes_nothing(rollback):
    _, again, *_ = rollback
    assert again.returncode == 0, again.stdout[-4000:]
    counts = recap(again.stdout)
    assert all(c["changed"] == 0 for c in counts.values()), counts


def test_host_without_device_untouched(rollback):
    _, _, before, _ = rollback
    assert snapshot(NODEV) == before
