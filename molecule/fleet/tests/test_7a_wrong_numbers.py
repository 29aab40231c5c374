"""A release that is healthy and well-shaped but computes the wrong numbers: the model
image with other preprocessing on /infer (ax and ay swapped, fleet.WRONG_PREPROCESSING),
with a correct compiled artifact 0.5.0. The sidecar gets ready (its own golden check runs
the backend directly), Docker calls it healthy, every answer has the right shapes and
ranges; only the gate's golden windows through /infer show it. The canary refuses it and
rolls back, the report says by how much, and the fleet is never touched."""

from __future__ import annotations

import json

import pytest
from fleet import (
    CANARY,
    EPHEMERAL,
    FLEET,
    MODEL,
    NODEV,
    WRONG_PREPROCESSING,
    contract_ok,
    current_link,
    fault_image,
    make_release,
    recap,
    record,
    run_playbook,
    running,
    served,
    snapshot,
)

VERSION = "0.5.0"  # not 0.4.0: test_8 makes that one corrupt
PREVIOUS = "0.2.0"


@pytest.fixture(scope="module")
def wrong_release():
    before = {name: snapshot(name) for name in [CANARY, *FLEET, NODEV]}
    reports = EPHEMERAL / "reports-wrong-numbers"
    proc = run_playbook(
        "deploy.yml",
        {
            "sidecar_deploy_artifacts_dir": str(make_release(VERSION)),
            "sidecar_deploy_model_version": VERSION,
            "sidecar_deploy_image": fault_image("wrong-numbers", WRONG_PREPROCESSING),
            "sidecar_deploy_gate_timeout": 180,
        },
        label="deploy-wrong-numbers",
        env={"HAILO_REPORT_PLAYBOOKS": "deploy.yml", "HAILO_REPORT_DIR": str(reports)},
    )
    report = json.loads(next(reports.glob("*/report.json")).read_text())
    return proc, before, report


def test_canary_gate_refuses_the_numbers(wrong_release):
    proc, _, _ = wrong_release
    assert proc.returncode != 0
    assert recap(proc.stdout)[CANARY]["failed"] == 1
    assert "PLAY [Deploy to the fleet" not in proc.stdout
    out = proc.stdout
    assert "the golden check failed: /infer does not compute what the compiler's" in out
    assert f"{MODEL}-{VERSION}.golden.json" in out
    assert "latent max abs error" in out
    assert "Rolled back:" in out


def test_report_names_the_numeric_error(wrong_release):
    _, _, report = wrong_release
    canary = next(h for h in report["hosts"] if h["host"] == CANARY)
    assert canary["result"] == "rolled_back"
    assert "golden check failed" in canary["reason"]
    assert "max abs error" in canary["reason"]
    assert f"back on {PREVIOUS}" in canary["reason"]


def test_canary_serves_the_previous_release_with_the_right_numbers(wrong_release):
    _, before, _ = wrong_release
    assert record(CANARY) == before[CANARY]["record"]
    assert current_link(CANARY) == f"{MODEL}-{PREVIOUS}"
    out = served(CANARY)
    assert contract_ok(out)
    assert out["readyz"]["golden"]["ok"] is True
    assert out["readyz"]["version"] == PREVIOUS
    run = running(CANARY)
    assert run["health"] == "healthy"
    assert run["version"] == PREVIOUS


@pytest.mark.parametrize("name", [*FLEET, NODEV])
def test_fleet_untouched(wrong_release, name):
    _, before, _ = wrong_release
    assert snapshot(name) == before[name]
