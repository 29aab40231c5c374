"""playbooks/rollback.yml: every eligible Pi goes back to the previous release in its
record (0.1.0 from the tcn-encoder image), health-gated; the record then has 0.1.0 as
current and 0.2.0 as previous and rolled_back_from. A second run changes nothing."""

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
    recap,
    record,
    run_playbook,
    running,
    served,
    snapshot,
)

ROLLED_BACK_FROM = "0.2.0"


@pytest.fixture(scope="module")
def rollback():
    before = snapshot(NODEV)
    first = run_playbook("rollback.yml", label="rollback")
    again = run_playbook("rollback.yml", label="rollback-again")
    return first, again, before


def test_rollback_succeeds(rollback):
    first, _, _ = rollback
    assert first.returncode == 0, first.stdout[-4000:]


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
    _, again, _ = rollback
    assert again.returncode == 0, again.stdout[-4000:]
    counts = recap(again.stdout)
    assert all(c["changed"] == 0 for c in counts.values()), counts


def test_host_without_device_untouched(rollback):
    _, _, before = rollback
    assert snapshot(NODEV) == before
