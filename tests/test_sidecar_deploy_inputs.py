"""roles/sidecar_deploy/tasks/inputs.yml on the controller: which image of release.json
the deploy runs. By default the record's `deploy` entry (the image the build says the Pis
run: roles/sidecar_image, sidecar_image_deploy_model); sidecar_deploy_image_name picks
another image of the record; sidecar_deploy_image names one outright.

The role's tasks run for real (ansible-playbook, local connection) on a stand-in compile
output and release record in tmp_path."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible_local import ANSIBLE_PLAYBOOK, REPO, ansible_env

PLAYBOOK = """---
- name: Read the deploy's inputs
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Inputs
      ansible.builtin.include_role:
        name: sidecar_deploy
        tasks_from: inputs
    - name: Report what was read
      ansible.builtin.copy:
        content: >-
          {{ {'target': _sidecar_deploy_target, 'manifest': _sidecar_deploy_manifest} | to_json }}
        dest: "{{ out }}"
        mode: "0644"
"""


def image(name: str, digit: str) -> dict[str, Any]:
    repo, digest = f"reg:5000/hailo-pipeline/{name}", "sha256:" + digit * 64
    return {"image": repo, "tag": "0.1.0", "digest": digest, "reference": f"{repo}@{digest}"}


RELEASE = {
    "schema": 1,
    "deploy": {"name": "model-b", **image("model-b", "2")},
    "images": {
        "hailo-runtime": image("hailo-runtime", "0"),
        "tcn-encoder": image("tcn-encoder", "1"),
        "model-b": image("model-b", "2"),
    },
}


def run(
    tmp_path: Path, release: dict[str, Any], *, shared_dir: bool = False, **extra: str
) -> tuple[int, str, dict[str, Any]]:
    """The role's inputs on a stand-in compile output and ``release``: (rc, log, what was
    read: target and manifest). ``shared_dir``: the output's place given only as
    hailo_pipeline_artifacts_dir (the inventories' one setting), not the role's variables."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    data = b"stand-in model"
    (artifacts / "m-0.1.0.onnx").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    (artifacts / "hef_sha256sum.txt").write_text(f"{sha}  m-0.1.0.onnx\n")
    manifest = {"model": "m", "version": "0.1.0", "artifact": "m-0.1.0.onnx", "sha256": sha}
    (artifacts / "m-0.1.0.manifest.json").write_text(json.dumps(manifest))
    (artifacts / "release.json").write_text(json.dumps(release))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    out = tmp_path / "read.json"
    paths = (
        {"hailo_pipeline_artifacts_dir": str(artifacts)}
        if shared_dir
        else {
            "sidecar_deploy_artifacts_dir": str(artifacts),
            "sidecar_deploy_release_file": str(artifacts / "release.json"),
        }
    )
    variables = {
        "ansible_python_interpreter": sys.executable,
        **paths,
        "sidecar_deploy_model": "m",
        "sidecar_deploy_model_version": "0.1.0",
        "out": str(out),
        **extra,
    }
    env = ansible_env(tmp_path)
    proc = subprocess.run(
        [
            ANSIBLE_PLAYBOOK,
            "-i", "localhost,", "-c", "local",
            "-e", json.dumps(variables),
            str(tmp_path / "play.yml"),
        ],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    read = json.loads(out.read_text()) if out.is_file() else {"target": {}, "manifest": {}}
    return proc.returncode, proc.stdout + proc.stderr, read


def test_by_default_the_deploy_runs_the_records_deploy_entry(tmp_path: Path) -> None:
    rc, log, read = run(tmp_path, RELEASE)
    assert rc == 0, log[-3000:]
    assert read["target"]["image"] == RELEASE["deploy"]["reference"]
    assert read["target"]["tag"] == "0.1.0"


@pytest.mark.parametrize("name", ["tcn-encoder", "hailo-runtime"])
def test_sidecar_deploy_image_name_picks_an_image_of_the_record(tmp_path: Path, name: str) -> None:
    rc, log, read = run(tmp_path, RELEASE, sidecar_deploy_image_name=name)
    assert rc == 0, log[-3000:]
    assert read["target"]["image"] == RELEASE["images"][name]["reference"]


def test_an_image_the_record_does_not_have_is_refused_by_name(tmp_path: Path) -> None:
    rc, log, _ = run(tmp_path, RELEASE, sidecar_deploy_image_name="nope")
    assert rc != 0
    assert "no image 'nope'" in log, log[-3000:]


def test_a_record_without_a_deploy_entry_is_refused(tmp_path: Path) -> None:
    rc, log, _ = run(tmp_path, {k: v for k, v in RELEASE.items() if k != "deploy"})
    assert rc != 0
    assert "no `deploy` entry" in log, log[-3000:]


def test_an_explicit_image_reference_wins(tmp_path: Path) -> None:
    ref = "elsewhere:5000/x@sha256:" + "9" * 64
    rc, log, read = run(tmp_path, RELEASE, sidecar_deploy_image=ref)
    assert rc == 0, log[-3000:]
    assert read["target"]["image"] == ref


def test_the_shared_artifacts_dir_alone_moves_every_input(tmp_path: Path) -> None:
    """Only hailo_pipeline_artifacts_dir: manifest, checksums and release.json are read there."""
    rc, log, read = run(tmp_path, RELEASE, shared_dir=True)
    assert rc == 0, log[-3000:]
    assert read["target"]["image"] == RELEASE["deploy"]["reference"]
    assert read["manifest"]["artifact"] == "m-0.1.0.onnx"
    assert not (REPO / "artifacts" / "m-0.1.0.manifest.json").exists()
