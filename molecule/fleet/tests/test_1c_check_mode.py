"""`deploy.yml --check --diff` against the converged fleet: it reports changed=0, changes
nothing and takes no lease. (What --check reports for a new release, the diff of the link
and the container, is tested on the module against the fake engine:
tests/test_sidecar_deploy_modules.py; here it would cost a whole emulated rollout.)"""

from __future__ import annotations

import pytest
from fleet import PIS, lease, recap, run_playbook, snapshot


@pytest.fixture(scope="module")
def checked():
    before = {name: snapshot(name) for name in PIS}
    proc = run_playbook("deploy.yml", label="deploy-check-converged", args=("--check", "--diff"))
    return proc, before


def test_a_converged_fleet_checks_clean(checked):
    proc, _ = checked
    assert proc.returncode == 0, proc.stdout[-4000:]
    counts = recap(proc.stdout)
    assert all(counts[name]["changed"] == 0 for name in PIS), counts


@pytest.mark.parametrize("name", PIS)
def test_nothing_changed(checked, name):
    _, before = checked
    assert snapshot(name) == before[name]
    assert lease(name) is None
