"""roles/sidecar_deploy/filter_plugins/hailo_sidecar.py: the fleet's canary check and the
outcome of a restore."""

from __future__ import annotations

import os

import pytest
from ansible.errors import AnsibleFilterError
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


# release.json as roles/sidecar_image/tasks/record.yml writes it (schema 1), trimmed.
def image(name: str, digest: str) -> dict[str, str]:
    repo = f"reg:5000/hailo-pipeline/{name}"
    return {"image": repo, "tag": "0.1.0", "digest": digest, "reference": f"{repo}@{digest}"}


RUNTIME = image("hailo-runtime", "sha256:" + "1" * 64)
MODEL = image("tcn-encoder", "sha256:" + "2" * 64)
OTHER = image("other-model", "sha256:" + "3" * 64)
RELEASE_DOC = {
    "schema": 1,
    "deploy": {"name": "other-model", **OTHER, "platforms": ["linux/arm64"]},
    "images": {"hailo-runtime": RUNTIME, "tcn-encoder": MODEL, "other-model": OTHER},
}


def test_the_deploy_runs_the_image_the_build_names_for_the_pis() -> None:
    # Not the first model, nor "tcn-encoder": the record's `deploy` entry.
    assert filters.release_image(RELEASE_DOC)["reference"] == OTHER["reference"]
    assert filters.release_image(RELEASE_DOC, "")["reference"] == OTHER["reference"]
    assert filters.release_image(RELEASE_DOC, None)["tag"] == "0.1.0"


def test_an_explicit_image_name_picks_that_image_of_the_record() -> None:
    assert filters.release_image(RELEASE_DOC, "hailo-runtime") == RUNTIME
    assert filters.release_image(RELEASE_DOC, "tcn-encoder") == MODEL


def test_a_missing_entry_says_what_the_record_has() -> None:
    has = r"hailo-runtime, other-model, tcn-encoder"
    with pytest.raises(AnsibleFilterError, match=rf"no image 'nope'.*{has}"):
        filters.release_image(RELEASE_DOC, "nope")
    no_deploy = {k: v for k, v in RELEASE_DOC.items() if k != "deploy"}
    with pytest.raises(AnsibleFilterError, match=r"no `deploy` entry.*sidecar_deploy_image_name"):
        filters.release_image(no_deploy)
    with pytest.raises(AnsibleFilterError, match=r"no `deploy` entry"):
        filters.release_image({**RELEASE_DOC, "deploy": "tcn-encoder"})
    with pytest.raises(AnsibleFilterError, match=r"not a release record"):
        filters.release_image(["not", "a", "mapping"])
    with pytest.raises(AnsibleFilterError, match=r"no image 'tcn-encoder'"):
        filters.release_image({"deploy": OTHER}, "tcn-encoder")


GATE = {
    "gate": {
        "ok": True,
        "elapsed_s": 8.5,
        "latency_ms": {"p50": 56.2, "p95": 62.4, "max": 70.1, "n": 20},
        "golden": {"latent": {"max_abs_error": 0.0, "min_cosine": 1.0}},
        "bake": {"seconds": 10},
    }
}


def test_the_report_takes_the_gate_figures() -> None:
    assert filters.gate_stats(GATE) == {
        "p50_ms": 56.2,
        "p95_ms": 62.4,
        "max_ms": 70.1,
        "probes": 20,
        "seconds": 8.5,
        "golden": {"latent": {"max_abs_error": 0.0, "min_cosine": 1.0}},
        "bake_s": 10,
    }
    no_bake = {"gate": {k: v for k, v in GATE["gate"].items() if k not in ("bake", "golden")}}
    assert filters.gate_stats(no_bake)["bake_s"] == 0
    assert filters.gate_stats(no_bake)["golden"] is None
    # Skipped (--check on a switch, a host only gated elsewhere) or never run: no figures.
    assert filters.gate_stats({"skipped": True}) == {}
    assert filters.gate_stats(None) == {}


TARGET = {"model": "tcn_encoder", "version": "0.2.0"}


@pytest.mark.parametrize(
    ("plan", "switched", "drift", "mode", "result", "reason"),
    [
        ({"already": True, "note": "already rolled back to x"}, False, [], "rollback",
         "unchanged", "already rolled back to x"),
        ({}, False, [], "deploy", "deployed", "already on tcn_encoder 0.2.0"),
        ({}, True, [], "deploy", "deployed", "now on tcn_encoder 0.2.0"),
        ({}, False, ["container stopped"], "deploy", "deployed", "now on tcn_encoder 0.2.0"),
        ({}, True, [], "rollback", "rolled_back", "rolled back to tcn_encoder 0.2.0"),
    ],
)  # fmt: skip
def test_what_the_report_says_of_a_host(plan, switched, drift, mode, result, reason) -> None:
    found = "after an interrupted deploy: " if drift else ""
    out = filters.deploy_outcome(plan, {"switched": switched}, drift, mode, TARGET, found)
    assert out == {"result": result, "reason": found + reason}


def test_what_failed_and_whether_the_switch_had_begun() -> None:
    gate_failed = {"msg": "gate: /readyz 503", "gate": {"logs": ["boom", "again"]}}
    out = filters.failure(gate_failed, "Gate ...", {"switched": True}, [])
    assert out == {
        "failure": "gate: /readyz 503",
        "switched": True,
        "logs": "Last container log lines of the failed release:\n  boom\n  again",
    }
    # A task that failed without a message, before the install step ran: nothing switched.
    out = filters.failure({}, "Pull the image by digest", None, [])
    assert out == {"failure": "task Pull the image by digest failed", "switched": False, "logs": ""}
    # A host found switched by an interrupted run counts as switched.
    assert filters.failure({"msg": "x"}, "t", {}, ["pending entry"])["switched"] is True


def test_the_report_of_a_restore_names_what_runs() -> None:
    current = {"model": "m", "version": "0.1.0", "image": "r", "digest": "sha256:1", "sha256": "f"}
    gate = {"gate": {"ok": True, "latency_ms": {"p50": 5.0, "p95": 9.0}}}
    back = filters.restore_outcome({}, gate, current)
    assert (back["image"], back["artifact_sha256"]) == ("sha256:1", "f")
    assert back["gate"] == {"p50_ms": 5.0, "p95_ms": 9.0}
    broken = filters.restore_outcome({"broken": True}, {}, current)
    assert (broken["image"], broken["artifact_sha256"], broken["gate"]) == (None, None, {})
