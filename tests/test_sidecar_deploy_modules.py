"""roles/sidecar_deploy's modules (library/hailo_sidecar.py, hailo_sidecar_info.py) run as
Ansible runs them, against a fake Docker engine (fake_docker.py) and a Pi's files in
tmp_path: install -> commit with a pending entry, an interrupted deploy found and undone,
the lease, a failed container replacement, a foreign container, a device gone, a
rollback with the registry down, a restore that cannot work (broken), check mode and
diff, and secrets kept out of the record and the module's logged arguments. The fleet
scenario runs the same on the lab's simulated Pis."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import sidecar_deploy_modules as modules
from fake_docker import FakeDocker
from sidecar_deploy_modules import docker, hailo, host, run_module, stage

NAME = "hailo-inference"


class Pi:
    """One simulated Pi: its files under tmp_path and a fake engine."""

    def __init__(self, tmp_path: Path, engine: FakeDocker) -> None:
        self.root = tmp_path / "opt"
        self.record = tmp_path / "facts.d" / "hailo_sidecar.fact"
        self.engine = engine
        self.device = tmp_path / "hailo0"
        self.device.write_text("")  # the fake engine checks the path exists at start
        self.run_id = "run-1"

    def common(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "docker_socket": self.engine.socket_path,
            "container": NAME,
            "record_path": str(self.record),
        }

    def spec(self, devices: list[str] | None = None) -> dict[str, Any]:
        return {
            "name": NAME,
            "platform": "linux/arm64",
            "user": "10001:10001",
            "restart_policy": "unless-stopped",
            "tmpfs_size": "64m",
            # The module checks for a character device: /dev/null stands in (as on the lab).
            "devices": devices if devices is not None else ["/dev/null:/dev/hailo0:rwm"],
            "mounts": [
                {"source": str(self.root / "models"), "target": "/models", "read_only": True}
            ],
            "bind_address": "127.0.0.1",
            "port": 9000,
            "network": "hailo",
            "memory": "1g",
            "cpus": 2.0,
            "log_max_size": "10m",
            "log_max_file": "3",
            "container_models": "/models",
            "healthcheck": {
                "test": ["CMD", "true"],
                "interval": "10s",
                "timeout": "5s",
                "start_period": "120s",
                "start_interval": "2s",
                "retries": 3,
            },
            "env": {"NUM_MOTIFS": "12", "PORT": "9000"},
        }

    def change(self, step: str, **args: Any) -> dict[str, Any]:
        base = {
            **self.common(),
            "step": step,
            "run_id": self.run_id,
            "owner": "ops@ctl",
            "spec": self.spec(),
            "stamp": {
                "deployed_at": "2026-11-28T10:00:00Z",
                "deployed_by": "ops",
                "run_id": self.run_id,
            },
            "run_dir": str(self.root / "run"),
            "uid": os.getuid(),
            "gid": os.getgid(),
            "tmpfiles_path": str(self.root / "tmpfiles.conf"),
            "devices": ["/dev/null"],
        }
        check = args.pop("_check", False)
        return run_module("hailo_sidecar", {**base, **args}, check=check, diff=True)

    def stage(self, rel: dict[str, Any], data: bytes) -> str:
        return stage(self.root, rel, data)

    def deploy(
        self, rel: dict[str, Any], data: bytes, commit: bool = True, **extra: Any
    ) -> dict[str, Any]:
        """prepare, pull, install (and commit), as tasks/release.yml runs them."""
        prep = self.change("prepare", target=rel, **extra)
        assert prep["lease"]["ok"], prep
        assert not self.change("pull", release=rel).get("failed")
        staging = (
            self.stage(rel, data)
            if not (self.root / "models" / host.release_name(rel)).exists()
            else ""
        )
        out = self.change("install", release=rel, staging=staging, **extra)
        if commit and not out.get("failed"):
            assert not self.change("commit", release=rel).get("failed")
        return out

    def record_now(self) -> dict[str, Any]:
        return json.loads(self.record.read_text())

    def running(self) -> dict[str, Any] | None:
        c = next((c for c in self.engine.containers.values() if c["Name"] == "/" + NAME), None)
        return None if c is None else {**docker.release_of(c), "running": c["State"]["Running"]}


def release(engine: FakeDocker, version: str, data: bytes) -> dict[str, Any]:
    """A release whose image is in the fake engine's registry."""
    return modules.release(version, data, engine.publish(modules.REPO))


@pytest.fixture
def pi(tmp_path: Path, fake_docker: FakeDocker) -> Pi:
    return Pi(tmp_path, fake_docker)


def test_install_records_pending_and_the_commit_makes_it_current(pi: Pi) -> None:
    v1 = release(pi.engine, "0.1.0", b"one")
    out = pi.deploy(v1, b"one", commit=False)
    assert out["changed"], out
    assert out["switched"]
    rec = pi.record_now()
    assert rec["current"] is None
    assert rec["pending"]["version"] == "0.1.0"
    assert rec["pending"]["run_id"] == "run-1"
    assert pi.running()["version"] == "0.1.0"
    assert os.readlink(pi.root / "models" / "current") == "tcn_encoder-0.1.0"
    # Checked every 2 s while starting (the gate waits for "healthy"), then every 10 s.
    (created,) = [c for c in pi.engine.containers.values() if c["Name"] == "/" + NAME]
    health = created["Config"]["Healthcheck"]
    assert (health["StartInterval"], health["Interval"]) == (2_000_000_000, 10_000_000_000)
    done = pi.change("commit", release=v1)
    assert done["changed"]
    assert done["unlocked"] is True
    rec = pi.record_now()
    assert rec["pending"] is None
    assert rec["current"]["version"] == "0.1.0"
    # Again, nothing to do: install unchanged, commit unchanged.
    pi.change("prepare", target=v1)
    assert not pi.change("install", release=v1)["changed"]
    assert not pi.change("commit", release=v1)["changed"]


def test_an_interrupted_deploy_is_found_and_undone(pi: Pi) -> None:
    """The controller died between switch and commit: the next run finds it (record vs.
    container, link and pending entry) and a restore puts the committed release back."""
    v1, v2 = release(pi.engine, "0.1.0", b"one"), release(pi.engine, "0.2.0", b"two")
    pi.deploy(v1, b"one")
    pi.run_id = "run-2"
    pi.deploy(v2, b"two", commit=False)  # ... and the run dies here, its lease left behind
    pi.run_id = "run-3"
    refused = pi.change("prepare", target=v2)
    assert not refused["lease"]["ok"]
    assert "locked by ops@ctl (run run-2" in refused["lease"]["reason"]
    (pi.root / "deploy.lease").unlink()  # the operator removes the dead run's lease
    prep = pi.change("prepare", mode="rollback")
    found = prep["state"]["drift"]
    assert any("pending since" in f for f in found), found
    assert any("the container runs tcn_encoder 0.2.0" in f for f in found), found
    assert prep["plan"]["target"]["version"] == "0.1.0"
    restored = pi.change("restore")
    assert not restored.get("failed"), restored
    assert pi.running() == {**pi.running(), "version": "0.1.0", "running": True}
    assert pi.record_now()["pending"] is None
    assert os.readlink(pi.root / "models" / "current") == "tcn_encoder-0.1.0"
    assert pi.change("prepare", mode="rollback")["state"]["drift"] == []


def test_a_change_without_the_lease_is_refused(pi: Pi) -> None:
    v1 = release(pi.engine, "0.1.0", b"one")
    pi.change("prepare", target=v1)
    pi.run_id = "run-other"
    out = pi.change("install", release=v1)
    assert out["failed"]
    assert "does not hold the deploy lease" in out["msg"] or "locked by" in out["msg"]
    assert pi.running() is None


def test_a_container_that_does_not_start_brings_the_old_one_back(pi: Pi) -> None:
    v1, v2 = release(pi.engine, "0.1.0", b"one"), release(pi.engine, "0.2.0", b"two")
    pi.deploy(v1, b"one")
    pi.engine.fail_next["start"] = (
        500,
        "driver failed programming external connectivity on endpoint hailo-inference: "
        "Bind for 127.0.0.1:9000 failed: port is already allocated",
    )
    pi.run_id = "run-2"
    out = pi.deploy(v2, b"two", commit=False)
    assert out["failed"]
    assert "port is already allocated" in out["msg"]
    assert "the previous container runs again" in out["msg"]
    assert out["switched"] is True  # the rescue restores the link and the record
    assert pi.running() == {**pi.running(), "version": "0.1.0", "running": True}
    assert pi.change("restore").get("failed") is not True
    assert pi.record_now()["current"]["version"] == "0.1.0"


def test_a_container_this_role_did_not_start_is_left_alone(pi: Pi) -> None:
    image = pi.engine.add_image("docker.io/library/nginx", tags=("latest",), arch="amd64")
    assert image
    from sidecar_deploy_modules import docker as d

    api = d.DockerAPI(pi.engine.socket_path)
    api.create(NAME, {"Image": "nginx:latest", "Cmd": ["nginx"]}, "linux/amd64")
    v1 = release(pi.engine, "0.1.0", b"one")
    out = pi.deploy(v1, b"one", commit=False)
    assert out["failed"]
    assert "that this role did not start" in out["msg"]
    assert out["switched"] is False
    assert api.container(NAME)["Config"]["Image"] == "nginx:latest"


def test_a_device_gone_after_the_preflight_stops_before_any_change(pi: Pi, tmp_path: Path) -> None:
    v1 = release(pi.engine, "0.1.0", b"one")
    pi.change("prepare", target=v1)
    pi.change("pull", release=v1)
    gone = str(tmp_path / "gone")
    out = pi.change(
        "install",
        release=v1,
        staging=pi.stage(v1, b"one"),
        spec=pi.spec([f"{gone}:/dev/hailo0:rwm"]),
    )
    assert out["failed"]
    assert f"{gone} is missing" in out["msg"]
    assert out["switched"] is False
    assert pi.running() is None


def test_rollback_needs_no_registry(pi: Pi) -> None:
    """The images of the current and previous release keep local tags: `docker image
    prune` keeps them (they are not dangling) and the rollback pulls nothing."""
    v1, v2 = release(pi.engine, "0.1.0", b"one"), release(pi.engine, "0.2.0", b"two")
    pi.deploy(v1, b"one")
    pi.deploy(v2, b"two")
    tags = {t for image in pi.engine.images.values() for t in image["RepoTags"]}
    assert docker.local_tag(v1) in tags
    assert docker.local_tag(v2) in tags
    pi.engine.registry_up = False
    prep = pi.change("prepare", mode="rollback")
    assert prep["plan"]["target"]["version"] == "0.1.0"
    assert prep["plan"]["image_present"] is True
    target = prep["plan"]["target"]
    assert not pi.change("install", release=target, mode="rollback").get("failed")
    assert not pi.change("commit", release=target, mode="rollback").get("failed")
    assert pi.running()["version"] == "0.1.0"
    assert not [c for c in pi.engine.calls if c[1] == "/images/create"][
        2:
    ]  # only the two deploys pulled


def test_a_restore_that_cannot_work_is_broken(pi: Pi) -> None:
    v1, v2 = release(pi.engine, "0.1.0", b"one"), release(pi.engine, "0.2.0", b"two")
    pi.deploy(v1, b"one")
    pi.deploy(v2, b"two", commit=False)
    # The waiting container and v1's image are gone (removed by hand).
    api = docker.DockerAPI(pi.engine.socket_path)
    api.remove(docker.previous_name(NAME))
    for image_id in [
        i for i, img in pi.engine.images.items() if v1["digest"] in str(img["RepoDigests"])
    ]:
        del pi.engine.images[image_id]
    out = pi.change("restore")
    assert out["failed"]
    assert out["broken"] is True
    assert "the restore failed" in out["msg"]
    assert "not on this host" in out["msg"]


def test_check_mode_reports_the_switch_and_changes_nothing(pi: Pi) -> None:
    v1, v2 = release(pi.engine, "0.1.0", b"one"), release(pi.engine, "0.2.0", b"two")
    pi.deploy(v1, b"one")
    before = (pi.record_now(), json.dumps(pi.engine.containers, sort_keys=True, default=str))
    prep = pi.change("prepare", target=v2, _check=True)
    assert prep["lease"] is None  # no lease taken in check mode
    pi.stage(v2, b"two")  # what the copy would have left
    out = pi.change("install", release=v2, staging=".staging-tcn_encoder-0.2.0", _check=True)
    assert out["changed"], out
    assert "container runs: tcn_encoder 0.2.0" in out["diff"]["after"]
    assert "container runs: tcn_encoder 0.1.0" in out["diff"]["before"]
    assert (
        pi.record_now(),
        json.dumps(pi.engine.containers, sort_keys=True, default=str),
    ) == before
    assert not (pi.root / "deploy.lease").exists()


def test_secrets_stay_out_of_the_record_and_the_logged_arguments(pi: Pi) -> None:
    pi.engine.registry_auth = {"username": "puller", "password": "pull-secret"}
    v1 = release(pi.engine, "0.1.0", b"one")
    pi.change("prepare", target=v1)
    pulled = pi.change(
        "pull", release=v1, registry_username="puller", registry_password="pull-secret"
    )
    assert pulled["changed"], pulled
    assert "pull-secret" not in json.dumps(pulled)
    out = pi.change("install", release=v1, staging=pi.stage(v1, b"one"), env={"API_TOKEN": "t0ken"})
    assert "t0ken" not in json.dumps(out)
    pi.change("commit", release=v1, env_keys=["API_TOKEN"])
    assert "t0ken" not in pi.record.read_text()
    assert pi.record_now()["current"]["env_keys"] == ["API_TOKEN"]


def test_a_rolled_back_release_is_refused_and_the_current_one_is_not_a_rollback_target(
    pi: Pi,
) -> None:
    v1, v2 = release(pi.engine, "0.1.0", b"one"), release(pi.engine, "0.2.0", b"two")
    pi.deploy(v1, b"one")
    pi.deploy(v2, b"two")
    prep = pi.change("prepare", mode="rollback")
    target = prep["plan"]["target"]
    pi.change("install", release=target, mode="rollback")
    pi.change("commit", release=target, mode="rollback")
    sticky = pi.change("prepare", target=v2)
    assert "was rolled back from on this host" in sticky["plan"]["error"]
    assert sticky["lease"] is None
    assert "error" not in pi.change("prepare", target=v2, allow_rolled_back=True)["plan"]
    pi.change("unlock")
    current = pi.change("prepare", mode="rollback", rollback_to="0.1.0")
    assert "names the current release" in current["plan"]["error"]


def test_the_lease_of_a_dead_run_is_taken_over_when_named(pi: Pi) -> None:
    v1 = release(pi.engine, "0.1.0", b"one")
    pi.change("prepare", target=v1)
    pi.run_id = "run-2"
    assert not pi.change("prepare", target=v1)["lease"]["ok"]
    assert not pi.change("prepare", target=v1, break_lease="some-other-run")["lease"]["ok"]
    taken = pi.change("prepare", target=v1, break_lease="run-1")["lease"]
    assert taken["ok"]
    assert taken["taken_over"]["run_id"] == "run-1"


class Sidecar:
    """A loopback stand-in for the sidecar's HTTP API (the gate's view of it): /readyz,
    /healthz and the /infer contract for `rel`, a 4xx for a window of the wrong shape."""

    def __init__(self, rel: dict[str, Any]) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Backend", rel["infer_mode"])
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self.reply(200, {"ok": True, "model": rel["model"]})

            def do_POST(self) -> None:
                x = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["x"]
                if len(x) != 100:
                    self.reply(422, {"error": "x must have 100 rows"})
                    return
                served = {k: rel[k] for k in ("model", "version", "sha256")}
                self.reply(200, {"latent": [0.1] * 64, "motif_scores": [0.5] * 12, **served})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def gate_args(pi: Pi, rel: dict[str, Any], port: int, bake_s: float) -> dict[str, Any]:
    expect = {k: rel[k] for k in ("digest", "infer_mode", "model", "version", "sha256")}
    return {
        **pi.common(),
        "port": port,
        "gather": "gate",
        "gate": {
            "timeout_s": 5,
            "probes": 3,
            "warmup": 1,
            "p95_budget_ms": 5000,
            "bake_s": bake_s,
            "golden": "",
            "expect": {**expect, "num_motifs": 12},
        },
    }


@pytest.mark.parametrize("crash", [False, True])
def test_the_bake_fails_a_release_that_restarts_after_its_gate(pi: Pi, crash: bool) -> None:
    """Docker never acts on a crash it restarts (unless-stopped): only the bake, which
    watches RestartCount and StartedAt after the gate, sees it."""
    import threading

    v1 = release(pi.engine, "0.1.0", b"one")
    pi.deploy(v1, b"one", commit=False)
    pi.engine.set_health(NAME, "healthy")
    sidecar = Sidecar(v1)
    if crash:
        threading.Timer(1.0, pi.engine.restart, (NAME,)).start()
    try:
        out = run_module("hailo_sidecar_info", gate_args(pi, v1, sidecar.port, bake_s=3))
    finally:
        sidecar.close()
    if crash:
        assert out["failed"]
        assert out["msg"].startswith("the bake of 3 s failed: container hailo-inference restarted")
        assert out["gate"]["checks"][-1] == "latency"  # the gate itself had passed
    else:
        assert not out.get("failed"), out
        assert out["gate"]["bake"]["seconds"] == 3
        assert out["gate"]["latency_ms"]["n"] == 3


def test_a_hailo_release_whose_hailort_does_not_match_the_driver_is_refused_before_the_switch(
    pi: Pi, tmp_path: Path
) -> None:
    """The image says it carries HailoRT 4.23.0 (its label); the host's driver is 4.20.0:
    HailoRT would refuse the device in the container (status 76), so nothing switches."""
    v1 = release(pi.engine, "0.1.0", b"one")
    pi.deploy(v1, b"one")
    hef = {**release(pi.engine, "0.2.0", b"two"), "infer_mode": "hailo", "hw_arch": "hailo8"}
    pi.engine.registry[hef["image"]]["config"] = {
        "Cmd": ["/opt/hailo-sidecar/bin/python3"],
        "Labels": {hailo.HAILORT_LABEL: "4.23.0"},
    }
    sysfs = tmp_path / "hailo_pci.version"
    sysfs.write_text("4.20.0\n")
    firmware = tmp_path / "hailo8_fw.bin"
    firmware.write_bytes(b"fw")
    paths = {"driver_version": str(sysfs), "firmware": str(firmware), "hailortcli": "/nonexistent"}
    pi.run_id = "run-2"
    pi.change("prepare", target=hef)
    pi.change("pull", release=hef)
    record = pi.record_now()
    out = pi.change("install", release=hef, staging=pi.stage(hef, b"two"), hailo_paths=paths)
    assert out["failed"]
    assert out["switched"] is False
    assert out["msg"].startswith("refused before any switch: the host's hailo_pci driver is 4.20.0")
    assert pi.record_now() == record
    assert pi.running()["version"] == "0.1.0"
    sysfs.write_text("4.23.0\n")
    ok = pi.change("install", release=hef, hailo_paths=paths)
    assert not ok.get("failed"), ok
    assert "not checked before the switch" in ok["hailo_notes"][0]


def test_a_short_environment_value_masks_nothing_the_role_reads_back(pi: Pi) -> None:
    """Ansible masks a no_log value wherever it appears in a module's result: with
    sidecar_deploy_env {"NUM_MOTIFS": "0"} given to prepare, "tcn_encoder-0.1.0.onnx" came
    back as "tcn_encoder-********.1.********.onnx" (seen in the fleet scenario). The role
    gives the values only to install and restore, whose results it reads only as booleans."""
    v1 = release(pi.engine, "0.1.0", b"one")
    prep = pi.change("prepare", target=v1)
    assert prep["plan"]["target"]["artifact"] == "tcn_encoder-0.1.0.onnx"
    pi.change("pull", release=v1)
    out = pi.change("install", release=v1, staging=pi.stage(v1, b"one"), env={"NUM_MOTIFS": "0"})
    assert out["switched"] is True
    pi.change("commit", release=v1, env_keys=["NUM_MOTIFS"])
    assert pi.record_now()["current"]["artifact"] == "tcn_encoder-0.1.0.onnx"
    assert pi.record_now()["current"]["env_keys"] == ["NUM_MOTIFS"]
    masked = pi.change("prepare", target=v1, env={"NUM_MOTIFS": "0"})
    assert masked["plan"]["target"]["artifact"] != "tcn_encoder-0.1.0.onnx"  # why prepare gets none
