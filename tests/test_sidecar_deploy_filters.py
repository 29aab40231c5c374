"""roles/sidecar_deploy/filter_plugins/hailo_sidecar.py: the fleet's canary check and the
outcome of a restore."""

from __future__ import annotations

import os

from sidecar_deploy_modules import filters

RELEASE = {"digest": "sha256:" + "a" * 64, "model": "m", "version": "0.2.0", "sha256": "f" * 64}


def test_only_canaries_gated_for_this_release_in_this_run_count() -> None:
    hostvars = {
        "canary-1": {"_sidecar_deploy_gated": {**RELEASE, "image": "x"}},
        "canary-2": {"_sidecar_deploy_gated": {**RELEASE, "version": "0.1.0"}},
        "canary-3": {},  # skipped (no device), or not in this run (--limit pi_fleet)
    }
    hosts = ["canary-1", "canary-2", "canary-3", "not-in-inventory"]
    assert filters.gated(hosts, hostvars, RELEASE) == ["canary-1"]
    assert filters.gated([], hostvars, RELEASE) == []


def test_a_restore_is_rolled_back_only_when_the_committed_release_passed_its_gate() -> None:
    current = {"model": "m", "version": "0.1.0", "image": "r@sha256:1"}
    ok_gate = {"gate": {"ok": True}}
    outcome = filters.restore_outcome
    assert outcome({}, ok_gate, current)["result"] == "rolled_back"
    assert outcome({}, {}, None)["result"] == "failed"
    broken = outcome(
        {"broken": True, "msg": "the restore failed: port is already allocated"}, {}, current
    )
    assert broken["result"] == "broken"
    assert "port is already allocated" in broken["summary"]
    gate_failed = outcome({}, {"gate": {"ok": False, "reason": "unhealthy"}}, current)
    assert gate_failed["result"] == "broken"
    assert "did not pass its gate: unhealthy" in gate_failed["summary"]


def test_only_a_dead_run_of_this_controller_loses_its_lease() -> None:
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs
    holder = {"owner": "ops@ctl", "pid": gone.pid, "run_id": "r1"}
    assert filters.dead_run(holder, "ops@ctl") == "r1"
    assert filters.dead_run({**holder, "pid": os.getpid()}, "ops@ctl") == ""  # alive
    assert filters.dead_run(holder, "ops@other-controller") == ""  # cannot tell
    assert filters.dead_run({**holder, "pid": 0}, "ops@ctl") == ""
    assert filters.dead_run(None, "ops@ctl") == ""


def test_the_controller_pid_is_this_process_outside_a_worker() -> None:
    assert filters.controller_pid() == os.getpid()
