"""A release that passes its gate and crashes seconds later (the model image plus
fleet.CRASH_AFTER_GATE: it exits 3 s after the gate's last /infer, and Docker's restart
policy starts it again, so Docker alone would call it running). The canary's bake sees the
restart and rolls it back; the fleet is never touched. While that run holds the canary's
deploy lease, a second run against the same hosts is refused with "locked by" and changes
nothing (two operators, or a CI job and an operator, at once)."""

from __future__ import annotations

import json
import time

import pytest
from fleet import (
    ARTIFACTS,
    CANARY,
    CRASH_AFTER_GATE,
    FLEET,
    MODEL,
    NODEV,
    contract_ok,
    current_link,
    fault_image,
    finish,
    lease,
    make_release,
    recap,
    record,
    run_playbook,
    running,
    served,
    snapshot,
    start_playbook,
    wait_for,
)

VERSION = "0.6.0"
PREVIOUS = "0.2.0"
# The gate's /infer windows (tasks/release.yml, lab settings): the contract call, the
# golden windows, 3 warm-up calls and sidecar_deploy_gate_probes (20) probes.
GOLDEN_WINDOWS = json.loads(next(ARTIFACTS.glob(f"{MODEL}-*.golden.json")).read_text())["windows"]
GATE_CALLS = 1 + len(GOLDEN_WINDOWS) + 3 + 20


@pytest.fixture(scope="module")
def crash_after_gate():
    before = {name: snapshot(name) for name in [CANARY, *FLEET, NODEV]}
    extra = {
        "sidecar_deploy_artifacts_dir": str(make_release(VERSION)),
        "sidecar_deploy_model_version": VERSION,
        "sidecar_deploy_image": fault_image(
            "crash-after-gate", CRASH_AFTER_GATE.format(calls=GATE_CALLS)
        ),
        "sidecar_deploy_gate_timeout": 180,
    }
    start = time.monotonic()
    first = start_playbook("deploy.yml", extra)
    held = wait_for("the first run's lease on the canary", lambda: lease(CANARY), timeout=900)
    second = run_playbook("deploy.yml", extra, label="deploy-while-locked")
    held_after = lease(CANARY)
    proc = finish(first, "deploy-crash-after-gate", start)
    return proc, second, held, held_after, before


def test_a_second_run_is_refused_while_the_first_holds_the_lease(crash_after_gate):
    _, second, held, held_after, _ = crash_after_gate
    assert second.returncode != 0
    assert "locked by" in second.stdout, second.stdout[-3000:]
    assert held["run_id"] in second.stdout
    assert recap(second.stdout)[CANARY]["changed"] == 0
    assert "PLAY [Deploy to the fleet" not in second.stdout
    # The refused run did not take or drop the first run's lease.
    assert held_after is not None
    assert held_after["run_id"] == held["run_id"]


def test_the_bake_catches_the_crash_and_rolls_back(crash_after_gate):
    proc, *_ = crash_after_gate
    assert proc.returncode != 0
    assert recap(proc.stdout)[CANARY]["failed"] == 1
    assert "PLAY [Deploy to the fleet" not in proc.stdout
    out = proc.stdout
    assert "the bake of" in out, out[-4000:]
    assert "restarted during the bake" in out
    assert "Rolled back:" in out
    assert f"{MODEL} {PREVIOUS}" in out


def test_canary_serves_the_previous_release_and_its_lease_is_gone(crash_after_gate):
    *_, before = crash_after_gate
    assert record(CANARY) == before[CANARY]["record"]
    assert current_link(CANARY) == f"{MODEL}-{PREVIOUS}"
    assert contract_ok(served(CANARY))
    run = running(CANARY)
    assert run["health"] == "healthy"
    assert run["version"] == PREVIOUS
    assert lease(CANARY) is None


@pytest.mark.parametrize("name", [*FLEET, NODEV])
def test_fleet_untouched(crash_after_gate, name):
    *_, before = crash_after_gate
    assert snapshot(name) == before[name]
