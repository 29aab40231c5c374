"""roles/sidecar_deploy's Pi-side files on this machine (module_utils/hailo_sidecar_host.py
and the gate's helpers): placing a release (sha256 checked before anything switches), the
atomic `current` link, pruning, the release record (install -> commit, sticky rollback),
the rollback's choice, the deploy lease and what the preflight finds amiss. The modules
with a fake Docker engine: test_sidecar_deploy_modules.py."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sidecar_deploy_modules import docker, gate, host, release, stage


def install(
    root: Path, rel: dict[str, Any], staging: str, protect: tuple[str, ...] = (), keep: int = 3
) -> dict[str, Any]:
    """What the install step does with the files: place, switch, prune."""
    models = str(root / "models")
    out = (
        host.place(models, staging, rel, set(protect))
        if staging
        else {"ok": True, "changed": False}
    )
    if not out["ok"]:
        return out
    link = host.switch(models, rel)
    if not link["ok"]:
        return link
    host.prune(models, keep, {*protect, host.release_name(rel)})
    return {**out, "changed": out["changed"] or link["changed"]}


def test_install_places_verifies_and_switches(tmp_path: Path) -> None:
    data = b"model bytes"
    rel = release("0.1.0", data)
    out = install(tmp_path, rel, stage(tmp_path, rel, data))
    assert out["ok"], out
    assert out["changed"]
    models = tmp_path / "models"
    assert os.readlink(models / "current") == "tcn_encoder-0.1.0"
    assert (models / "tcn_encoder-0.1.0" / rel["artifact"]).read_bytes() == data
    assert sorted(p.name for p in models.iterdir()) == ["current", "tcn_encoder-0.1.0"]
    # Again, the release in place: nothing changes.
    again = install(tmp_path, rel, "")
    assert again["ok"]
    assert not again["changed"]


def test_corrupt_artifact_is_refused_before_any_switch(tmp_path: Path) -> None:
    good = release("0.1.0", b"good")
    install(tmp_path, good, stage(tmp_path, good, b"good"))
    bad = release("0.2.0", b"what the compiler wrote")
    name = stage(tmp_path, bad, b"what arrived on the Pi")
    out = install(tmp_path, bad, name)
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
    out = host.place(str(tmp_path / "models"), name, rel, set())
    assert not out["ok"]
    assert "version='9.9.9'" in out["reason"]


def test_switch_to_a_missing_release_fails_and_keeps_current(tmp_path: Path) -> None:
    good = release("0.1.0", b"good")
    install(tmp_path, good, stage(tmp_path, good, b"good"))
    out = host.switch(str(tmp_path / "models"), release("0.0.9", b"gone"))
    assert not out["ok"]
    assert os.readlink(tmp_path / "models" / "current") == "tcn_encoder-0.1.0"


def test_prune_keeps_protected_and_newest(tmp_path: Path) -> None:
    for i, version in enumerate(["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0"]):
        data = version.encode()
        rel = release(version, data)
        out = install(tmp_path, rel, stage(tmp_path, rel, data), ("tcn_encoder-0.1.0",), keep=2)
        assert out["ok"], out
        os.utime(tmp_path / "models" / f"tcn_encoder-{version}", (1000 + i, 1000 + i))
    left = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert left == ["current", "tcn_encoder-0.1.0", "tcn_encoder-0.4.0", "tcn_encoder-0.5.0"]


def test_record_is_written_only_when_it_changes(tmp_path: Path) -> None:
    rec = {**host.empty_record(), "current": release("0.1.0", b"x")}
    path = str(tmp_path / "facts.d/hailo_sidecar.fact")
    assert host.write_record(path, rec)
    assert host.read_record(path)[0] == host.normalize(rec)
    mtime = Path(path).stat().st_mtime_ns
    assert not host.write_record(path, rec)
    assert Path(path).stat().st_mtime_ns == mtime


def test_gate_helpers() -> None:
    assert gate.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert gate.percentile([float(i) for i in range(1, 101)], 95) == 95.0
    assert gate.finite_list([0.5] * 12, 12, 0.0, 1.0) == ""
    assert "expected 12" in gate.finite_list([0.5] * 11, 12)
    assert "not a finite number" in gate.finite_list([0.5, float("nan")], 2)
    assert "outside" in gate.finite_list([1.5], 1, 0.0, 1.0)
    window = gate.window()
    assert len(window) == 100
    assert all(len(row) == 9 for row in window)
    framed = b"\x01\0\0\0\0\0\0\x06hello\n\x02\0\0\0\0\0\0\x04err\n"
    assert docker.demux_logs(framed) == ["hello", "err"]


def test_gate_without_docker_says_why(tmp_path: Path) -> None:
    out = gate.gate(
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
        out = gate.golden_check(server.port, str(path))
    assert out["ok"] is True, out
    assert out["windows"] == 2
    assert out["outputs"]["latent"]["max_abs_error"] == pytest.approx(0.0, abs=1e-9)
    assert out["outputs"]["latent"]["min_cosine_similarity"] == pytest.approx(1.0)
    assert out["outputs"]["motif_scores"]["tolerance_max_abs_error"] == 0.05


def test_golden_gate_fails_on_right_shapes_and_wrong_numbers(tmp_path: Path) -> None:
    """Every answer is well-shaped, finite and in range: only the numbers are off."""
    path = golden_file(tmp_path / "m.golden.json")
    with FakeSidecar(lambda w: model(w, scale=1.2)) as server:
        out = gate.golden_check(server.port, str(path))
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
    with wrong, pytest.raises(gate.GateError, match="golden window 0: /infer motif_scores has 11"):
        gate.golden_check(wrong.port, str(path))


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
    out = install(tmp_path, rel, name)
    assert out["ok"] is False
    assert "sha256 mismatch for" in out["reason"]
    assert "golden.json" in out["reason"]
    assert not (tmp_path / "models" / "current").exists()


def test_the_release_in_use_gets_new_golden_vectors_for_the_same_artifact(tmp_path: Path) -> None:
    """A release deployed before golden vectors existed (or by an older compiler), the same
    artifact bytes: its manifest and golden file are refreshed in place, not refused."""
    data = b"the same artifact"
    old = release("0.1.0", data)
    install(tmp_path, old, stage(tmp_path, old, data))
    new = release("0.1.0", data)
    name = stage_with_golden(tmp_path, new, data, b'{"schema": 1}')
    out = install(tmp_path, new, name, ("tcn_encoder-0.1.0",))
    assert out["ok"], out
    assert out["changed"]
    release_dir = tmp_path / "models" / "tcn_encoder-0.1.0"
    assert (release_dir / new["golden"]).read_bytes() == b'{"schema": 1}'
    assert (
        json.loads((release_dir / new["manifest"]).read_text())["golden"]["file"] == new["golden"]
    )
    assert host.check_release_dir(str(release_dir), new) is None
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "current",
        "tcn_encoder-0.1.0",
    ]


def test_a_different_artifact_for_the_release_in_use_is_refused(tmp_path: Path) -> None:
    old = release("0.1.0", b"first build")
    install(tmp_path, old, stage(tmp_path, old, b"first build"))
    new = release("0.1.0", b"another build, same version")
    name = stage_with_golden(tmp_path, new, b"another build, same version", b"{}")
    out = install(tmp_path, new, name, ("tcn_encoder-0.1.0",))
    assert not out["ok"]
    assert "a new artifact needs a new version" in out["reason"]
    release_dir = tmp_path / "models" / "tcn_encoder-0.1.0"
    assert (release_dir / old["artifact"]).read_bytes() == b"first build"


# --------------------------------------------------------------------------- the record
STAMP = {"deployed_at": "2026-11-28T10:00:00Z", "deployed_by": "ops", "run_id": "run1"}
V1, V2 = release("0.1.0", b"one"), release("0.2.0", b"two", digest="sha256:" + "b" * 64)


def test_commit_makes_the_release_current_and_keeps_what_ran_before() -> None:
    rec = host.commit(host.empty_record(), V1, "deploy", STAMP)
    rec = host.commit({**rec, "pending": {**V2, "since": "t"}}, V2, "deploy", STAMP)
    assert host.identity(rec["current"]) == host.identity(V2)
    assert host.identity(rec["previous"]) == host.identity(V1)
    assert rec["pending"] is None
    assert [r["version"] for r in rec["history"]] == ["0.2.0", "0.1.0"]


def test_committing_the_same_release_again_changes_nothing(tmp_path: Path) -> None:
    """Idempotence: a rerun's commit (another run id, another time) writes nothing."""
    path = str(tmp_path / "r.fact")
    host.write_record(path, host.commit(host.empty_record(), V1, "deploy", STAMP))
    later = {**STAMP, "deployed_at": "2026-11-29T00:00:00Z", "run_id": "run2"}
    record, _ = host.read_record(path)
    assert not host.write_record(path, host.commit(record, V1, "deploy", later))


def test_environment_values_never_reach_the_record() -> None:
    rec = host.commit(host.empty_record(), {**V1, "env": {"TOKEN": "s3cret"}}, "deploy", STAMP)
    assert "s3cret" not in json.dumps(rec)
    assert rec["current"]["env_keys"] == ["TOKEN"]


def test_a_rolled_back_release_is_refused_until_deployed_on_purpose() -> None:
    rec = host.commit(host.empty_record(), V1, "deploy", STAMP)
    rec = host.commit(rec, V2, "deploy", STAMP)
    rec = host.commit(rec, V1, "rollback", STAMP)
    assert host.identity(rec["rolled_back_from"]) == host.identity(V2)
    why = host.refusal(rec, V2)
    assert why is not None
    assert "was rolled back from on this host" in why
    assert "sidecar_deploy_allow_rolled_back" in why
    assert host.refusal(rec, V1) is None
    # Deployed again on purpose: no longer refused.
    assert host.refusal(host.commit(rec, V2, "deploy", STAMP), V2) is None


def test_a_schema_1_record_is_read_and_its_rollback_sticks() -> None:
    """The record playbooks wrote before install -> commit (current, previous,
    rolled_back_from with env values): read as schema 2, env values dropped."""
    old = {
        "schema": 1,
        "current": {**V1, "env": {"A": "secret"}, "deployed_at": "t", "deployed_by": "x"},
        "previous": {**V2, "env": {}},
        "rolled_back_from": {**V2, "env": {}},
    }
    rec = host.normalize(old)
    assert rec["schema"] == 2
    assert "secret" not in json.dumps(rec)
    assert host.refusal(rec, V2) is not None


# --------------------------------------------------------------------------- rollback choice
def two_releases(shared_digest: bool = False) -> dict[str, Any]:
    v2 = {**V2, "digest": V1["digest"], "image": V1["image"]} if shared_digest else V2
    return host.commit(host.commit(host.empty_record(), V1, "deploy", STAMP), v2, "deploy", STAMP)


def test_rollback_goes_to_the_previous_release_then_stays() -> None:
    rec = two_releases()
    choice = host.rollback_target(rec, "", [])
    assert choice["target"]["version"] == "0.1.0"
    rec = host.commit(rec, choice["target"], "rollback", STAMP)
    again = host.rollback_target(rec, "", [])
    assert again["target"]["version"] == "0.1.0"
    assert again["already"] is True


def test_rollback_after_an_interrupted_deploy_puts_the_committed_release_back() -> None:
    rec = two_releases()
    choice = host.rollback_target({**rec, "pending": V1}, "", ["the record has a pending"])
    assert choice["target"]["version"] == "0.2.0"
    assert "interrupted" in choice["note"]


def test_rollback_to_the_current_release_is_refused() -> None:
    """Two versions of one image share the digest: the digest names the current release
    too, so it is refused; the version chooses."""
    rec = two_releases(shared_digest=True)
    refused = host.rollback_target(rec, "0.2.0", [])
    assert "names the current release" in refused["error"]
    assert "0.1.0" in refused["error"]  # the candidates are listed
    assert host.rollback_target(rec, V1["digest"], [])["target"]["version"] == "0.1.0"
    assert host.rollback_target(rec, "0.1.0", [])["target"]["version"] == "0.1.0"


def test_an_ambiguous_or_unknown_selector_is_refused_with_the_candidates() -> None:
    rec = two_releases()
    v3 = {**release("0.3.0", b"three"), "digest": V1["digest"], "image": V1["image"]}
    rec = host.commit(rec, v3, "deploy", STAMP)  # history: 0.3.0 (digest a), 0.2.0, 0.1.0 (a)
    assert "names 1 releases" not in str(host.rollback_target(rec, V1["digest"], []))
    rec = host.commit(rec, release("0.4.0", b"four", "sha256:" + "c" * 64), "deploy", STAMP)
    ambiguous = host.rollback_target(rec, V1["digest"], [])
    assert "names 2 releases" in ambiguous["error"]
    unknown = host.rollback_target(rec, "9.9.9", [])
    assert "names no release" in unknown["error"]
    other_image = host.rollback_target(rec, "sha256:" + "d" * 64, [])
    assert other_image["target"]["version"] == "0.4.0"
    assert other_image["target"]["image"].endswith("@sha256:" + "d" * 64)


# --------------------------------------------------------------------------- the lease
def test_a_second_run_is_refused_while_the_first_holds_the_lease(tmp_path: Path) -> None:
    root = str(tmp_path)
    first = host.lease(root, "run-a", "alice@ctl", 600, take=True, now=1000.0)
    assert first["ok"]
    second = host.lease(root, "run-b", "bob@ctl", 600, take=True, now=1010.0)
    assert not second["ok"]
    assert second["reason"].startswith("locked by alice@ctl (run run-a")
    # A mutating step of the second run is refused too; the first run's extends it.
    assert not host.lease(root, "run-b", "bob@ctl", 600, take=False, now=1020.0)["ok"]
    assert host.lease(root, "run-a", "alice@ctl", 600, take=False, now=1500.0)["ok"]
    assert not host.unlease(root, "run-b")
    assert host.unlease(root, "run-a")
    assert host.lease(root, "run-b", "bob@ctl", 600, take=True, now=1600.0)["ok"]


def test_extending_the_lease_keeps_the_controller_pid(tmp_path: Path) -> None:
    """Every change extends the lease; the pid a later run checks must survive that."""
    root = str(tmp_path)
    host.lease(root, "run-a", "ops@ctl", 600, take=True, now=1000.0, pid=4242)
    host.lease(root, "run-a", "ops@ctl", 600, take=False, now=1100.0)
    assert host.read_lease(root)["pid"] == 4242


def test_an_expired_lease_is_taken_over(tmp_path: Path) -> None:
    root = str(tmp_path)
    host.lease(root, "run-a", "alice@ctl", 60, take=True, now=1000.0)
    taken = host.lease(root, "run-b", "bob@ctl", 60, take=True, now=1100.0)
    assert taken["ok"]
    assert taken["taken_over"]["run_id"] == "run-a"
    assert not host.lease(root, "run-a", "alice@ctl", 60, take=False, now=1101.0)["ok"]


def test_two_runs_taking_the_lease_at_once_one_wins(tmp_path: Path) -> None:
    import threading

    results: list[bool] = []
    start = threading.Barrier(8)

    def take(i: int) -> None:
        start.wait()
        results.append(host.lease(str(tmp_path), f"run-{i}", "x", 600, take=True)["ok"])

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


# --------------------------------------------------------------------------- drift
def running(rel: dict[str, Any], up: bool = True) -> dict[str, Any]:
    return {
        "release": {k: rel[k] for k in ("model", "version", "sha256", "digest")},
        "running": up,
        "status": "running" if up else "exited",
    }


def test_what_runs_is_compared_with_the_record() -> None:
    rec = two_releases()
    assert host.drift(rec, running(V2), "tcn_encoder-0.2.0") == []
    interrupted = {**rec, "pending": {**V1, "since": "t", "run_id": "r9"}}
    found = host.drift(interrupted, running(V1), "tcn_encoder-0.1.0")
    assert any("pending since t (run r9)" in f for f in found)
    assert any("the container runs tcn_encoder 0.1.0" in f for f in found)
    assert any("the current link names tcn_encoder-0.1.0" in f for f in found)
    assert host.drift(rec, None, "tcn_encoder-0.2.0") == [
        f"no sidecar container runs; the record's release is {host.describe(V2)}"
    ]
    assert "exited" in host.drift(rec, running(V2, up=False), "tcn_encoder-0.2.0")[0]
