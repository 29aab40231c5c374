"""roles/sidecar_deploy/files/sidecar_host.py, the Pi side of the deploy, on this machine:
placing a release (sha256 checked before anything switches), the atomic `current` link,
pruning, the release record, and the gate's helpers. Docker and the sidecar are not
needed here; molecule/fleet runs the script on the simulated Pis."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "roles/sidecar_deploy/files/sidecar_host.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sidecar_host", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sh = load()


def release(version: str, data: bytes) -> dict[str, Any]:
    return {
        "model": "tcn_encoder",
        "version": version,
        "artifact": f"tcn_encoder-{version}.onnx",
        "manifest": f"tcn_encoder-{version}.manifest.json",
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def stage(root: Path, rel: dict[str, Any], data: bytes) -> str:
    """What the role's copy task leaves: <root>/models/.staging-<name>/{artifact,manifest}."""
    name = f".staging-{rel['model']}-{rel['version']}"
    staging = root / "models" / name
    staging.mkdir(parents=True)
    (staging / rel["artifact"]).write_bytes(data)
    manifest = {k: rel[k] for k in ("model", "version", "artifact", "sha256")}
    (staging / rel["manifest"]).write_text(json.dumps(manifest))
    return name


def params(root: Path, **extra: Any) -> dict[str, Any]:
    return {"root": str(root), "record_path": str(root / "facts.d/hailo_sidecar.fact"), **extra}


def test_install_places_verifies_and_switches(tmp_path: Path) -> None:
    data = b"model bytes"
    rel = release("0.1.0", data)
    out = sh.cmd_install(params(tmp_path, release=rel, staging=stage(tmp_path, rel, data)))
    assert out["ok"], out
    assert out["changed"]
    models = tmp_path / "models"
    assert os.readlink(models / "current") == "tcn_encoder-0.1.0"
    assert (models / "tcn_encoder-0.1.0" / rel["artifact"]).read_bytes() == data
    assert sorted(p.name for p in models.iterdir()) == ["current", "tcn_encoder-0.1.0"]
    # Again, the release in place: nothing changes.
    again = sh.cmd_install(params(tmp_path, release=rel, staging=""))
    assert again["ok"]
    assert not again["changed"]


def test_corrupt_artifact_is_refused_before_any_switch(tmp_path: Path) -> None:
    good = release("0.1.0", b"good")
    sh.cmd_install(params(tmp_path, release=good, staging=stage(tmp_path, good, b"good")))
    bad = release("0.2.0", b"what the compiler wrote")
    name = stage(tmp_path, bad, b"what arrived on the Pi")
    out = sh.cmd_install(params(tmp_path, release=bad, staging=name))
    assert not out["ok"]
    assert "refused before any switch" in out["reason"]
    assert "sha256 mismatch" in out["reason"]
    models = tmp_path / "models"
    assert os.readlink(models / "current") == "tcn_encoder-0.1.0"
    assert sorted(p.name for p in models.iterdir()) == ["current", "tcn_encoder-0.1.0"]


def test_manifest_for_another_version_is_refused(tmp_path: Path) -> None:
    rel = release("0.2.0", b"x")
    name = stage(tmp_path, rel, b"x")
    manifest = tmp_path / "models" / name / rel["manifest"]
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": "9.9.9"}))
    out = sh.cmd_place(params(tmp_path, release=rel, staging=name))
    assert not out["ok"]
    assert "version='9.9.9'" in out["reason"]


def test_switch_to_a_missing_release_fails_and_keeps_current(tmp_path: Path) -> None:
    good = release("0.1.0", b"good")
    sh.cmd_install(params(tmp_path, release=good, staging=stage(tmp_path, good, b"good")))
    out = sh.cmd_switch(params(tmp_path, release=release("0.0.9", b"gone")))
    assert not out["ok"]
    assert os.readlink(tmp_path / "models" / "current") == "tcn_encoder-0.1.0"


def test_prune_keeps_protected_and_newest(tmp_path: Path) -> None:
    for i, version in enumerate(["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0"]):
        data = version.encode()
        rel = release(version, data)
        out = sh.cmd_install(
            params(
                tmp_path,
                release=rel,
                staging=stage(tmp_path, rel, data),
                keep=2,
                protect=["tcn_encoder-0.1.0"],
            )
        )
        assert out["ok"], out
        os.utime(tmp_path / "models" / f"tcn_encoder-{version}", (1000 + i, 1000 + i))
    left = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert left == ["current", "tcn_encoder-0.1.0", "tcn_encoder-0.4.0", "tcn_encoder-0.5.0"]


def test_record_is_written_only_when_it_changes(tmp_path: Path) -> None:
    rec = {"schema": 1, "current": {"version": "0.1.0"}, "previous": None}
    assert sh.cmd_record(params(tmp_path, record=rec))["changed"]
    path = tmp_path / "facts.d/hailo_sidecar.fact"
    assert json.loads(path.read_text()) == rec
    mtime = path.stat().st_mtime_ns
    assert not sh.cmd_record(params(tmp_path, record=rec))["changed"]
    assert path.stat().st_mtime_ns == mtime


def test_gate_helpers() -> None:
    assert sh.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert sh.percentile([float(i) for i in range(1, 101)], 95) == 95.0
    assert sh.finite_list([0.5] * 12, 12, 0.0, 1.0) == ""
    assert "expected 12" in sh.finite_list([0.5] * 11, 12)
    assert "not a finite number" in sh.finite_list([0.5, float("nan")], 2)
    assert "outside" in sh.finite_list([1.5], 1, 0.0, 1.0)
    window = sh.window()
    assert len(window) == 100
    assert all(len(row) == 9 for row in window)
    framed = b"\x01\0\0\0\0\0\0\x06hello\n\x02\0\0\0\0\0\0\x04err\n"
    assert sh.demux_logs(framed) == ["hello", "err"]


def test_gate_without_docker_says_why(tmp_path: Path) -> None:
    out = sh.cmd_gate(
        {
            "docker_socket": str(tmp_path / "no-docker.sock"),
            "container": "hailo-inference",
            "port": 9,
            "timeout_s": 1,
            "probes": 1,
            "p95_budget_ms": 10,
            "expect": {},
        }
    )
    assert not out["ok"]
    assert out["reason"].startswith(("FileNotFoundError", "ConnectionRefusedError"))


@pytest.mark.parametrize("argv", [[], ["nope", "{}"], ["state", "not json"]])
def test_bad_invocation_exits_2(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
