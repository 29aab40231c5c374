"""The release report of the converge (playbooks/site.yml), checked against the hosts.

Runs first (file order), while the hosts are as the converge, Molecule's check step and
its idempotence run left them: each Pi's release record and running container must be
what the report says, and the idempotence run's report must show no changes in any
stage. (The check step's report: test_1c_check_mode.py.)
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fleet import (
    ARTIFACTS,
    CANARY,
    ELIGIBLE,
    FIRST_VERSION,
    MODEL,
    NODEV,
    PIS,
    REPORTS,
    STAGES,
    image,
    inspect,
    record,
    repo_digests,
    report,
)

MANIFEST = json.loads((ARTIFACTS / f"{MODEL}-{FIRST_VERSION}.manifest.json").read_text())


def _hosts(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["host"]: h for h in data["hosts"]}


# The reports of real runs, in order (a --check run's report says check_mode).
RUNS = [d for d in REPORTS if not report(d)["run"].get("check_mode")]


@pytest.fixture(scope="module")
def converge() -> dict[str, Any]:
    assert len(RUNS) >= 2, f"expected reports of converge and idempotence, got {REPORTS}"
    return report(RUNS[0])


def test_run_and_stages(converge):
    assert converge["run"]["outcome"] == "succeeded"
    assert [s["name"] for s in converge["stages"]] == STAGES
    assert all(s["seconds"] > 0 and s["failed"] == 0 for s in converge["stages"])
    # The first run changed something in every stage.
    assert all(s["changed"] > 0 for s in converge["stages"]), converge["stages"]


def test_compile_and_image(converge):
    compiled = converge["compile"]
    assert compiled["sha256"] == MANIFEST["sha256"]
    assert compiled["version"] == FIRST_VERSION
    assert compiled["parity"], "no parity figures in the report"
    assert compiled["golden"]["file"] == MANIFEST["golden"]["file"]
    assert compiled["golden"]["sha256"] == MANIFEST["golden"]["sha256"]
    assert converge["image"]["digest"] == image("tcn-encoder")["digest"]
    assert "linux/arm64" in converge["image"]["platforms"]


def test_only_the_pis_are_listed(converge):
    assert sorted(_hosts(converge)) == sorted(PIS)


@pytest.mark.parametrize("name", ELIGIBLE)
def test_deployed_hosts_match_their_state(converge, name):
    entry = _hosts(converge)[name]
    rec = record(name)
    assert rec is not None
    assert entry["result"] == "deployed", entry
    assert entry["image_digest"] == rec["current"]["digest"]
    assert entry["artifact_sha256"] == rec["current"]["sha256"]
    container = inspect(name)
    assert container is not None
    running = [d.split("@")[1] for d in repo_digests(name, container["Image"])]
    assert entry["image_digest"] in running
    gate = entry["gate"]
    assert 0 < gate["p50_ms"] <= gate["p95_ms"] <= converge["latency_budget_ms"], gate
    # The golden check on this Pi, through /infer: the compiled model's numbers.
    golden = gate["golden"]
    assert golden["ok"] is True
    assert golden["windows"] == MANIFEST["golden"]["windows"]
    for name, fig in golden["outputs"].items():
        assert fig["max_abs_error"] <= fig["tolerance_max_abs_error"], (name, fig)
        assert fig["min_cosine_similarity"] >= fig["tolerance_min_cosine_similarity"], (name, fig)


def test_host_without_device_is_reported_skipped(converge):
    entry = _hosts(converge)[NODEV]
    assert entry["result"] == "skipped"
    assert "/dev/hailo0" in entry["reason"]
    assert record(NODEV) is None
    assert inspect(NODEV) is None


def test_second_run_changed_nothing():
    again = report(RUNS[1])
    assert again["run"]["outcome"] == "succeeded"
    assert [s["name"] for s in again["stages"]] == STAGES
    assert [s["changed"] for s in again["stages"]] == [0] * len(STAGES), again["stages"]
    assert _hosts(again)[CANARY]["image_digest"] == record(CANARY)["current"]["digest"]


def test_rendered_report_shows_the_tables(converge):
    directory = RUNS[0]
    html = (directory / "report.html").read_text()
    markdown = (directory / "report.md").read_text()
    # Self-contained: the plot is inlined, nothing is fetched from elsewhere.
    assert "src='data:image/png;base64," in html
    assert not re.search(r"(src|href)=[\"']https?://", html)
    assert (directory / "latency.png").read_bytes().startswith(b"\x89PNG")
    for name in PIS:
        assert name in html
        assert name in markdown
    for stage in STAGES:
        assert f"<td>{stage}</td>" in html
    assert image("tcn-encoder")["digest"][:19] in markdown
    assert "golden check (max abs error / min cosine)" in markdown
    assert f"Golden vectors {MANIFEST['golden']['file']}" in markdown
