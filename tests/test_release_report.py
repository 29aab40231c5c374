"""The release report: rendering, and the callback collecting a real ansible-playbook run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

from labtools import REPO

spec = importlib.util.spec_from_file_location(
    "release_report", REPO / "callback_plugins" / "release_report.py"
)
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)

SAMPLE = {
    "schema": 1,
    "run": {
        "playbook": "site.yml",
        "outcome": "succeeded",
        "started": "2026-11-23 10:00:00",
        "seconds": 754.2,
        "user": "ci",
        "controller": "lab",
        "inventory": "inventories/local",
    },
    "stages": [
        {"name": "provision", "seconds": 95.0, "changed": 1, "failed": 0},
        {"name": "deploy", "seconds": 410.4, "changed": 3, "failed": 0},
    ],
    "compile": {
        "model": "tcn_encoder",
        "version": "0.1.0",
        "target": "cpu",
        "sha256": "ab" * 32,
        "parity": {
            "max_abs_error": {"latent": 0.0966, "motif_scores": 0.0223},
            "cosine_similarity": {"latent": 0.999527, "motif_scores": 0.999884},
        },
    },
    "image": {
        "image": "lab-gpusrv:5000/tcn-encoder",
        "tag": "0.1.0",
        "digest": "sha256:" + "cd" * 32,
        "platforms": ["linux/arm64"],
    },
    "hosts": [
        {
            "host": "pi-1",
            "result": "deployed",
            "reason": None,
            "image_digest": "sha256:" + "cd" * 32,
            "artifact_sha256": "ab" * 32,
            "gate": {"p50_ms": 40.5, "p95_ms": 61.0},
        },
        {"host": "pi-2", "result": "skipped", "reason": "no /dev/hailo0"},
    ],
    "latency_budget_ms": 500,
    "latency_note": "Lab figures are under arm64 emulation: not performance results.",
}


def test_write_report_makes_every_file(tmp_path: Path) -> None:
    out = report.write_report(SAMPLE, tmp_path / "r")
    assert json.loads((out / "report.json").read_text()) == SAMPLE
    md = (out / "report.md").read_text()
    assert "| pi-1 | deployed |" in md
    assert "| pi-2 | skipped | no /dev/hailo0 |" in md
    assert "| latent | 0.0966 | 0.999527 |" in md
    assert "| deploy | 6 min 50 s | 3 | 0 |" in md
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page  # self-contained
    assert '<td class="skipped">skipped</td>' in page
    assert "<script" not in page


def test_no_plot_without_gate_figures(tmp_path: Path) -> None:
    data = {**SAMPLE, "hosts": [SAMPLE["hosts"][1]]}
    out = report.write_report(data, tmp_path / "r")
    assert not (out / "latency.png").exists()
    assert "latency.png" not in (out / "report.md").read_text()


PLAYBOOK = """
- name: Build
  hosts: localhost
  gather_facts: false
  tags: [compile]
  tasks:
    - name: Record the compile
      ansible.builtin.set_stats:
        data:
          hailo_compile: {model: m, version: 1.2.3, target: cpu, sha256: abc}
- name: Deploy
  hosts: pis
  gather_facts: false
  tags: [deploy]
  tasks:
    - name: Record the outcome
      ansible.builtin.set_stats:
        per_host: true
        data:
          hailo_deploy:
            result: "{{ 'deployed' if inventory_hostname == 'pi-a' else 'skipped' }}"
            reason: "{{ None if inventory_hostname == 'pi-a' else 'no /dev/hailo0' }}"
            image: sha256:feed
            gate: {p50_ms: 1.5, p95_ms: 2.5}
"""


def _run_site(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    (tmp_path / "hosts.ini").write_text(
        "[pis]\npi-a ansible_connection=local\npi-b ansible_connection=local\n"
    )
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "HAILO_REPORT_DIR": str(tmp_path / "reports"),
        "ANSIBLE_NOCOLOR": "1",
    }
    run = subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "hosts.ini"), str(tmp_path / "site.yml"), *args],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    (directory,) = (tmp_path / "reports").iterdir()
    return run, directory


def test_callback_writes_report_for_site_yml(tmp_path: Path) -> None:
    run, directory = _run_site(tmp_path)
    data = json.loads((directory / "report.json").read_text())
    assert data["run"]["check_mode"] is False
    assert [s["name"] for s in data["stages"]] == ["compile", "deploy"]
    assert data["compile"]["version"] == "1.2.3"
    assert {h["host"]: h["result"] for h in data["hosts"]} == {
        "pi-a": "deployed",
        "pi-b": "skipped",
    }
    assert data["run"]["outcome"] == "succeeded"
    # The summary table is the run's last lines.
    tail = run.stdout.strip().splitlines()[-8:]
    assert any(line.startswith("pi-b") and "skipped" in line for line in tail)
    assert tail[-1].startswith("Report: ")


def test_a_check_run_says_so(tmp_path: Path) -> None:
    """A `--check` run's report is a dry run's: the data and both pages say so."""
    _, directory = _run_site(tmp_path, "--check")
    assert json.loads((directory / "report.json").read_text())["run"]["check_mode"] is True
    assert "dry run (--check): nothing was changed" in (directory / "report.md").read_text()
    assert "dry run (--check): nothing was changed" in (directory / "report.html").read_text()


def test_other_playbooks_write_no_report(tmp_path: Path) -> None:
    (tmp_path / "compile.yml").write_text(PLAYBOOK)
    (tmp_path / "hosts.ini").write_text("[pis]\npi-a ansible_connection=local\n")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "HAILO_REPORT_DIR": str(tmp_path / "reports"),
    }
    subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "hosts.ini"), str(tmp_path / "compile.yml")],
        capture_output=True,
        env=env,
        check=True,
    )
    assert not (tmp_path / "reports").exists()
