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


# --------------------------------------------------------------------------- golden gate
def golden_file(path: Path) -> Path:
    """Two windows with known outputs (a stand-in compiled model: latent = row sums)."""
    windows = [[[0.01 * (i + c + w) for c in range(9)] for i in range(100)] for w in range(2)]
    doc = {
        "schema": 1,
        "windows": windows,
        "outputs": {
            "latent": [[sum(map(sum, win)) / (j + 1) for j in range(64)] for win in windows],
            "motif_scores": [[0.25 + 0.01 * j for j in range(12)] for _ in windows],
        },
        "tolerances": {
            "latent": {"max_abs_error": 0.15, "min_cosine_similarity": 0.995},
            "motif_scores": {"max_abs_error": 0.05, "min_cosine_similarity": 0.995},
        },
    }
    path.write_text(json.dumps(doc))
    return path


class FakeSidecar:
    """A loopback HTTP server answering /infer from a function of the window."""

    def __init__(self, answer: Any) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                data = json.dumps(answer(body["x"])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> FakeSidecar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def model(window: list[list[float]], scale: float = 1.0) -> dict[str, Any]:
    total = sum(map(sum, window)) * scale
    return {
        "latent": [total / (j + 1) for j in range(64)],
        "motif_scores": [0.25 + 0.01 * j for j in range(12)],
    }


def test_golden_gate_passes_when_the_numbers_match(tmp_path: Path) -> None:
    path = golden_file(tmp_path / "m.golden.json")
    with FakeSidecar(model) as server:
        out = sh.golden_check(server.port, str(path))
    assert out["ok"] is True, out
    assert out["windows"] == 2
    assert out["outputs"]["latent"]["max_abs_error"] == pytest.approx(0.0, abs=1e-9)
    assert out["outputs"]["latent"]["min_cosine_similarity"] == pytest.approx(1.0)
    assert out["outputs"]["motif_scores"]["tolerance_max_abs_error"] == 0.05


def test_golden_gate_fails_on_right_shapes_and_wrong_numbers(tmp_path: Path) -> None:
    """Every answer is well-shaped, finite and in range: only the numbers are off."""
    path = golden_file(tmp_path / "m.golden.json")
    with FakeSidecar(lambda w: model(w, scale=1.2)) as server:
        out = sh.golden_check(server.port, str(path))
    assert out["ok"] is False
    assert out["reason"].startswith(
        "the golden check failed: /infer does not compute what the compiler's m.golden.json says"
    )
    assert "latent max abs error" in out["reason"]
    assert "(window 1)" in out["reason"]
    assert "motif_scores" not in out["reason"]
    assert out["outputs"]["latent"]["max_abs_error"] > 0.15


def test_golden_gate_fails_on_an_answer_of_the_wrong_width(tmp_path: Path) -> None:
    path = golden_file(tmp_path / "m.golden.json")
    wrong = FakeSidecar(lambda w: {**model(w), "motif_scores": [0.5] * 11})
    with wrong, pytest.raises(sh.GateError, match="golden window 0: /infer motif_scores has 11"):
        sh.golden_check(wrong.port, str(path))


def stage_with_golden(root: Path, rel: dict[str, Any], data: bytes, golden: bytes) -> str:
    """stage(), plus golden vectors named in the manifest and the release (rel is updated)."""
    rel.update(
        golden=f"tcn_encoder-{rel['version']}.golden.json",
        golden_sha256=hashlib.sha256(golden).hexdigest(),
    )
    name = stage(root, rel, data)
    staging = root / "models" / name
    manifest = json.loads((staging / rel["manifest"]).read_text())
    manifest["golden"] = {"file": rel["golden"], "sha256": rel["golden_sha256"]}
    (staging / rel["manifest"]).write_text(json.dumps(manifest))
    (staging / rel["golden"]).write_bytes(golden)
    return name


def test_place_verifies_the_golden_vectors(tmp_path: Path) -> None:
    """The golden file travels with the artifact; a damaged copy is refused before a switch."""
    data = b"artifact bytes"
    rel = release("0.3.0", data)
    name = stage_with_golden(tmp_path, rel, data, b'{"schema": 1}')
    (tmp_path / "models" / name / rel["golden"]).write_bytes(b'{"schema": 1} ')
    out = sh.cmd_install(params(tmp_path, release=rel, staging=name))
    assert out["ok"] is False
    assert "sha256 mismatch for" in out["reason"]
    assert "golden.json" in out["reason"]
    assert not (tmp_path / "models" / "current").exists()


def test_the_release_in_use_gets_new_golden_vectors_for_the_same_artifact(tmp_path: Path) -> None:
    """A release deployed before golden vectors existed (or by an older compiler), the same
    artifact bytes: its manifest and golden file are refreshed in place, not refused."""
    data = b"the same artifact"
    old = release("0.1.0", data)
    sh.cmd_install(params(tmp_path, release=old, staging=stage(tmp_path, old, data)))
    new = release("0.1.0", data)
    name = stage_with_golden(tmp_path, new, data, b'{"schema": 1}')
    out = sh.cmd_install(params(tmp_path, release=new, staging=name, protect=["tcn_encoder-0.1.0"]))
    assert out["ok"], out
    assert out["changed"]
    release_dir = tmp_path / "models" / "tcn_encoder-0.1.0"
    assert (release_dir / new["golden"]).read_bytes() == b'{"schema": 1}'
    assert (
        json.loads((release_dir / new["manifest"]).read_text())["golden"]["file"] == new["golden"]
    )
    assert sh.check_release_dir(str(release_dir), new) is None
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "current",
        "tcn_encoder-0.1.0",
    ]


def test_a_different_artifact_for_the_release_in_use_is_refused(tmp_path: Path) -> None:
    old = release("0.1.0", b"first build")
    sh.cmd_install(params(tmp_path, release=old, staging=stage(tmp_path, old, b"first build")))
    new = release("0.1.0", b"another build, same version")
    name = stage_with_golden(tmp_path, new, b"another build, same version", b"{}")
    out = sh.cmd_install(params(tmp_path, release=new, staging=name, protect=["tcn_encoder-0.1.0"]))
    assert not out["ok"]
    assert "a new artifact needs a new version" in out["reason"]
    release_dir = tmp_path / "models" / "tcn_encoder-0.1.0"
    assert (release_dir / old["artifact"]).read_bytes() == b"first build"
