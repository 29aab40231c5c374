"""Check mode (--check --diff) against the converged fleet, and the stage playbooks alone.

Molecule's check step runs the converge (playbooks/site.yml) with --check right after the
converge (.config/molecule/config.yml: every run shows its --diff), and its idempotence
run comes after it: had --check changed anything the converge manages, that run would
have changed it back and failed. Here: the check run's own report (changed=0 in every
stage), nothing on the Pis touched or leased by it, then a drifted file on GPUSrv that
`site.yml --check --diff` must report (and leave drifted), put back by
playbooks/provision_gpusrv.yml run alone, and playbooks/build_image.yml run alone (each
playbook's header shows it as a lab command) changing nothing and reporting the image the
Pis run. What --check reports for
a new release (the diff of the link and the container) is tested on the deploy module
against the fake engine (tests/test_sidecar_deploy_modules.py).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fleet import (
    ARTIFACTS,
    ELIGIBLE,
    EPHEMERAL,
    GPUSRV,
    PIS,
    REGISTRY,
    REPORTS,
    STAGES,
    gpusrv_host,
    inspect,
    lease,
    recap,
    record,
    report,
    run_playbook,
)

# A file the provision stage writes on GPUSrv and no handler follows (Docker reads
# certs.d at each connection): drifting it costs no restart.
DRIFTED = f"/etc/docker/certs.d/{REGISTRY}/ca.crt"


@pytest.fixture(scope="module")
def checked() -> dict[str, Any]:
    runs = [report(d) for d in REPORTS]
    modes = [r["run"].get("check_mode") for r in runs]
    # converge, Molecule's check step, idempotence: in that order.
    assert modes[:3] == [False, True, False], [r["run"]["started"] for r in runs]
    return runs[1]


def _started(check: dict[str, Any]) -> datetime:
    return datetime.strptime(check["run"]["started"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def _outcomes(report: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {
        h["host"]: (h["result"], h.get("reason"), h.get("image_digest")) for h in report["hosts"]
    }


def test_the_check_step_reports_no_change(checked):
    assert checked["run"]["outcome"] == "succeeded"
    assert [s["name"] for s in checked["stages"]] == STAGES
    assert [s["changed"] for s in checked["stages"]] == [0] * len(STAGES), checked["stages"]
    # Each Pi as the idempotence run found it ("already on" the release), gated too.
    idempotence = report(REPORTS[2])
    assert _outcomes(checked) == _outcomes(idempotence)
    assert all("already on" in _outcomes(checked)[name][1] for name in ELIGIBLE)


@pytest.mark.parametrize("name", ELIGIBLE)
def test_the_check_step_touched_no_pi(checked, name):
    """The container was started, and the release committed, before the check run."""
    state = inspect(name)["State"]
    started = datetime.fromisoformat(state["StartedAt"][:19]).replace(tzinfo=UTC)
    assert started < _started(checked), state
    assert datetime.fromisoformat(record(name)["current"]["deployed_at"][:19]).replace(
        tzinfo=UTC
    ) < _started(checked)


@pytest.mark.parametrize("name", PIS)
def test_no_lease_left(name):
    assert lease(name) is None


@pytest.fixture(scope="module")
def drifted():
    """GPUSrv with one drifted file, site.yml --check --diff against it, then
    provision_gpusrv.yml alone; the file is put back whatever happens."""
    host = gpusrv_host()
    good = host.file(DRIFTED).content_string
    host.run("echo '# drifted by hand' >> %s", DRIFTED)
    drifted_text = host.file(DRIFTED).content_string
    try:
        env = {"HAILO_REPORT_DIR": str(EPHEMERAL / "reports-tests")}
        check = run_playbook(
            "site.yml",
            label="site-check-drifted",
            env=env,
            args=("--check", "--diff", "--tags", "provision"),
        )
        after_check = host.file(DRIFTED).content_string
        provision = run_playbook("provision_gpusrv.yml", label="provision-alone")
        yield check, drifted_text, after_check, provision, good
    finally:
        if host.file(DRIFTED).content_string != good:
            encoded = base64.b64encode(good.encode()).decode()
            host.run("echo %s | base64 -d > %s", encoded, DRIFTED)


def test_check_reports_the_drifted_file(drifted):
    check, drifted_text, after_check, _, _ = drifted
    assert check.returncode == 0, check.stdout[-4000:]
    assert recap(check.stdout)[GPUSRV]["changed"] >= 1
    # The diff names the file and shows the line that goes.
    assert DRIFTED in check.stdout
    assert "-# drifted by hand" in check.stdout
    # --check left it drifted.
    assert after_check == drifted_text


def test_provision_alone_puts_it_back(drifted):
    _, _, _, provision, good = drifted
    assert provision.returncode == 0, provision.stdout[-4000:]
    assert recap(provision.stdout)[GPUSRV]["changed"] >= 1
    assert gpusrv_host().file(DRIFTED).content_string == good


def test_build_image_alone_changes_nothing(drifted, tmp_path):
    """After the converge, the images are built and pushed: a run alone changes nothing,
    leaves the release record as it is and hands the report the deployable image."""
    release_file = ARTIFACTS / "release.json"
    before = release_file.read_text()
    reports = tmp_path / "reports"
    proc = run_playbook(
        "build_image.yml",
        label="build-image-alone",
        env={"HAILO_REPORT_PLAYBOOKS": "build_image.yml", "HAILO_REPORT_DIR": str(reports)},
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert recap(proc.stdout)[GPUSRV]["changed"] == 0, proc.stdout[-4000:]
    assert release_file.read_text() == before
    deploy = json.loads(before)["deploy"]
    (run,) = reports.glob("*/report.json")
    assert json.loads(run.read_text())["image"] == {
        "image": deploy["image"],
        "tag": deploy["tag"],
        "digest": deploy["digest"],
        "platforms": deploy["platforms"],
    }
