"""A deploy killed during the canary's gate (the controller dies: ansible-playbook and its
workers get SIGKILL, no rescue, no `always`): the canary is left serving 0.7.0 with the
record saying 0.1.0 is committed, 0.7.0 pending, and the dead run's lease. The re-run, on
the same controller, takes over the dead run's lease, finds the host switched (and says
so), gates and bakes what runs, commits it, and goes on to the fleet: every Pi ends on a
committed, healthy 0.7.0, and the report tells what was found."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from fleet import (
    CANARY,
    ELIGIBLE,
    EPHEMERAL,
    MODEL,
    contract_ok,
    current_link,
    finish,
    lease,
    make_release,
    record,
    run_playbook,
    running,
    served,
    start_playbook,
    task_results,
    wait_for,
)

VERSION = "0.7.0"
COMMITTED = "0.1.0"


@pytest.fixture(scope="module")
def interrupted():
    extra = {
        "sidecar_deploy_artifacts_dir": str(make_release(VERSION)),
        "sidecar_deploy_model_version": VERSION,
        "sidecar_deploy_image_name": "hailo-runtime",
    }
    start = time.monotonic()
    proc = start_playbook("deploy.yml", extra, new_session=True)
    wait_for(
        "the canary's pending entry", lambda: (record(CANARY) or {}).get("pending"), timeout=900
    )
    time.sleep(5)  # into the gate
    os.killpg(proc.pid, signal.SIGKILL)
    killed = finish(proc, "deploy-killed-in-the-gate", start)
    left = {"record": record(CANARY), "lease": lease(CANARY), "running": running(CANARY)}
    reports = EPHEMERAL / "reports-interrupted"
    again = run_playbook(
        "deploy.yml",
        extra,
        label="deploy-after-the-kill",
        env={"HAILO_REPORT_PLAYBOOKS": "deploy.yml", "HAILO_REPORT_DIR": str(reports)},
    )
    report = json.loads(next(reports.glob("*/report.json")).read_text())
    return killed, left, again, report


def test_the_kill_left_the_canary_switched_and_uncommitted(interrupted):
    killed, left, _, _ = interrupted
    assert killed.returncode == -signal.SIGKILL
    assert left["record"]["current"]["version"] == COMMITTED
    assert left["record"]["pending"]["version"] == VERSION
    assert left["running"]["version"] == VERSION
    assert left["lease"] is not None


def test_the_rerun_takes_over_the_dead_runs_lease_and_says_what_it_found(interrupted):
    _, left, again, report = interrupted
    assert again.returncode == 0, again.stdout[-4000:]
    takeover = task_results(again.stdout, "sidecar_deploy : Take over the lease of a run")
    assert takeover[CANARY] == "ok", takeover
    canary = next(h for h in report["hosts"] if h["host"] == CANARY)
    assert canary["result"] == "deployed"
    assert "found: the record has" in canary["reason"]
    assert f"pending since {left['record']['pending']['since']}" in canary["reason"]
    assert canary["reason"].endswith(f"now on {MODEL} {VERSION}")


@pytest.mark.parametrize("name", ELIGIBLE)
def test_every_pi_ends_committed_and_healthy(interrupted, name):
    rec = record(name)
    assert rec["current"]["version"] == VERSION
    assert rec["pending"] is None
    assert lease(name) is None
    assert current_link(name) == f"{MODEL}-{VERSION}"
    assert contract_ok(served(name))
    run = running(name)
    assert run["health"] == "healthy"
    assert run["version"] == VERSION
