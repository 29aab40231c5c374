"""Helpers for the fleet scenario's tests: the lab's hosts, playbook runs, what a Pi serves.

The tests run in file order (test_0_... to test_9_...): first what the converge left (the
report, the deploy, the compile, the images), then the fault cases, each starting from
the state the one before left, as an operator would see it. Releases after the first are
made from the converge's compile output without compiling again (see make_release).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import testinfra
import yaml

REPO = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
ARTIFACTS = EPHEMERAL / "artifacts"
# The inventory directory: Molecule's hosts plus the links to inventories/local/group_vars.
INVENTORY = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
TIMINGS = EPHEMERAL / "timings.json"

GPUSRV = "mol-fleet-gpusrv"
REGISTRY = f"{GPUSRV}:5000"
# Where the lab keeps the registry's password (inventories/local/group_vars/all.yml).
LAB_SECRETS = Path(os.environ.get("LAB_CACHE") or "/var/cache/hailo-pipeline") / "secrets"
CANARY = "mol-fleet-canary"
FLEET = ["mol-fleet-pi-1", "mol-fleet-pi-2"]
ELIGIBLE = [CANARY, *FLEET]
NODEV = "mol-fleet-nodev"
PIS = [*ELIGIBLE, NODEV]

CONFIG = yaml.safe_load((REPO / "hailo_models" / "tcn_encoder.yaml").read_text())
MODEL, FIRST_VERSION = CONFIG["model"], CONFIG["version"]
MODELS = "/opt/hailo-sidecar/models"
RECORD = "/etc/ansible/facts.d/hailo_sidecar.fact"
CONTAINER = "hailo-inference"
ENGINE_DOCKER = "docker --host unix:///run/docker-engine/docker.sock"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def release_json() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ARTIFACTS / "release.json").read_text())
    return data


def image(name: str) -> dict[str, Any]:
    entry: dict[str, Any] = release_json()["images"][name]
    return entry


def registry_password() -> str:
    return (LAB_SECRETS / "registry-pusher.password").read_text().strip()


def gpusrv_host() -> Any:
    return testinfra.get_host(f"docker://{GPUSRV}")


def pi(name: str) -> Any:
    return testinfra.get_host(f"docker://{name}")


def engine(name: str) -> Any:
    return testinfra.get_host(f"docker://{name}-engine")


def make_release(version: str, corrupt: bool = False) -> Path:
    """A compile output for `version`: the converge's compiled model under a new version.

    The manifest and the golden vectors are the compiler's, with model version and file
    names changed (the artifact's bytes, so its sha256, stay). corrupt=True flips bytes
    in the copied artifact but keeps the manifest and hef_sha256sum.txt as they were: a
    copy damaged after the compile.
    """
    first = json.loads((ARTIFACTS / f"{MODEL}-{FIRST_VERSION}.manifest.json").read_text())
    out = EPHEMERAL / f"release-{version}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    artifact = f"{MODEL}-{version}.onnx"
    data = bytearray((ARTIFACTS / first["artifact"]).read_bytes())
    if corrupt:
        data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)
    (out / artifact).write_bytes(bytes(data))
    golden = json.loads((ARTIFACTS / first["golden"]["file"]).read_text())
    golden_name = f"{MODEL}-{version}.golden.json"
    (out / golden_name).write_text(json.dumps({**golden, "version": version, "artifact": artifact}))
    golden_entry = {**first["golden"], "file": golden_name, "sha256": sha256(out / golden_name)}
    manifest = {**first, "version": version, "artifact": artifact, "golden": golden_entry}
    (out / f"{MODEL}-{version}.manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "hef_sha256sum.txt").write_text(
        f"{first['sha256']}  {artifact}\n{golden_entry['sha256']}  {golden_name}\n"
    )
    return out


# Put into an image's site-packages (a module and a .pth line that imports it; Debian's
# own sitecustomize would shadow one of ours): /infer (HTTP) hands the backend the window
# with ax and ay swapped, as an image with other preprocessing would. The backend itself,
# and so the sidecar's own golden check at start-up, is untouched: only the gate's golden
# windows through /infer can see it. Patched when the sidecar imports its contract module,
# so that the healthcheck's short-lived interpreter does not pay for the import.
WRONG_PREPROCESSING = """
import importlib.machinery, sys

class _SwapAxAy:
    def find_spec(self, name, path, target=None):
        if name != "hailo_sidecar.contract":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            parse = module.parse_infer_body
            module.parse_infer_body = lambda body: parse(body)[..., [1, 0, 2, 3, 4, 5, 6, 7, 8]]

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _SwapAxAy())
"""


def wrong_numbers_image() -> str:
    """The deployed model image plus WRONG_PREPROCESSING, pushed; its digest reference.

    Healthy, well-shaped, finite and in range: only its numbers through /infer are wrong.
    """
    host = gpusrv_host()
    base = image("tcn-encoder")
    ref = f"{base['image']}:wrong-numbers"
    site = "/opt/hailo-sidecar/lib/python3.11/site-packages/"
    dockerfile = f"FROM {base['reference']}\nCOPY wrong_preprocessing.py wrong.pth {site}\n"
    client = "docker --config /tmp/fault-docker"
    files = {
        "Dockerfile": dockerfile,
        "wrong_preprocessing.py": WRONG_PREPROCESSING,
        "wrong.pth": "import wrong_preprocessing\n",
    }
    try:
        host.check_output(
            f"printf %s {shlex.quote(registry_password())} | "
            f"{client} login -u pusher --password-stdin {REGISTRY}"
        )
        host.check_output("rm -rf /tmp/fault-image && mkdir /tmp/fault-image")
        for name, text in files.items():
            host.check_output(f"printf %s {shlex.quote(text)} > /tmp/fault-image/{name}")
        host.check_output(f"{client} pull --platform linux/arm64 {base['reference']}")
        host.check_output(f"{client} build --platform linux/arm64 -t {ref} /tmp/fault-image")
        host.check_output(f"{client} push {ref}")
        digests = json.loads(
            host.check_output(f"{client} image inspect --format '{{{{json .RepoDigests}}}}' {ref}")
        )
    finally:
        host.run("rm -rf /tmp/fault-docker /tmp/fault-image")
    return next(d for d in digests if d.startswith(base["image"] + "@"))


def run_playbook(
    playbook: str,
    extra: dict[str, Any] | None = None,
    label: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook with the converge's settings (where the artifacts are), timed."""
    base = {
        "sidecar_deploy_artifacts_dir": str(ARTIFACTS),
        "sidecar_deploy_release_file": str(ARTIFACTS / "release.json"),
        "sidecar_deploy_model_config": str(REPO / "hailo_models" / "tcn_encoder.yaml"),
    }
    start = time.monotonic()
    proc = subprocess.run(
        [
            "ansible-playbook",
            "--inventory",
            INVENTORY,
            "--extra-vars",
            json.dumps({**base, **(extra or {})}),
            str(REPO / "playbooks" / playbook),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            **(env or {}),
        },
        timeout=1800,
        check=False,
    )
    seconds = round(time.monotonic() - start, 1)
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    timings[label or playbook] = {"seconds": seconds, "rc": proc.returncode}
    TIMINGS.write_text(json.dumps(timings, indent=2) + "\n")
    (EPHEMERAL / f"run-{label or playbook}.log").write_text(proc.stdout + proc.stderr)
    print(f"{label or playbook}: {seconds} s, rc {proc.returncode}")
    return proc


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host (colour codes, if any, removed)."""
    out: dict[str, dict[str, int]] = {}
    text = re.sub(r"\x1b\[[0-9;]*m", "", stdout.split("PLAY RECAP", 1)[-1])
    for line in text.splitlines():
        name, sep, rest = line.partition(" : ")
        counts = re.findall(r"(\w+)=(\d+)", rest)
        if sep and counts:
            out[name.strip()] = {k: int(v) for k, v in counts}
    return out


def record(name: str) -> dict[str, Any] | None:
    host = pi(name)
    f = host.file(RECORD)
    if not f.exists:
        return None
    data: dict[str, Any] = json.loads(f.content_string)
    return data


def inspect(name: str) -> dict[str, Any] | None:
    result = engine(name).run(f"{ENGINE_DOCKER} inspect {CONTAINER}")
    if result.rc != 0:
        return None
    data: dict[str, Any] = json.loads(result.stdout)[0]
    return data


def repo_digests(name: str, image_id: str) -> list[str]:
    out = engine(name).check_output(
        f"{ENGINE_DOCKER} image inspect --format '{{{{json .RepoDigests}}}}' {image_id}"
    )
    digests: list[str] = json.loads(out)
    return digests


def models_listing(name: str) -> list[str]:
    result = pi(name).run(f"ls -A {MODELS}")
    return sorted(result.stdout.split()) if result.rc == 0 else []


def current_link(name: str) -> str | None:
    result = pi(name).run(f"readlink {MODELS}/current")
    return result.stdout.strip() if result.rc == 0 else None


# Run on the Pi (python3, stdlib): one contract call, as the consumer makes it.
SMOKE = r"""
import json, math, urllib.request
x = [[math.sin(0.01 * (i + 1) * (c + 1)) for c in range(9)] for i in range(100)]
req = urllib.request.Request("http://127.0.0.1:9000/infer", data=json.dumps({"x": x}).encode(),
                             headers={"Content-Type": "application/json"})
r = urllib.request.urlopen(req, timeout=30)
body = json.loads(r.read())
h = urllib.request.urlopen("http://127.0.0.1:9000/healthz", timeout=10)
ready = urllib.request.urlopen("http://127.0.0.1:9000/readyz", timeout=10)
print(json.dumps({"status": r.status, "body": body, "backend": r.headers.get("x-backend"),
                  "healthz": [h.status, json.loads(h.read())], "readyz": json.loads(ready.read())}))
"""


def served(name: str) -> dict[str, Any]:
    out = pi(name).check_output(f"python3 -c {shlex.quote(SMOKE)}")
    data: dict[str, Any] = json.loads(out)
    return data


def contract_ok(out: dict[str, Any], num_motifs: int = 12) -> bool:
    body = out["body"]
    values = [*body["latent"], *body["motif_scores"]]
    return (
        out["status"] == 200
        and len(body["latent"]) == 64
        and len(body["motif_scores"]) == num_motifs
        and all(isinstance(v, float) and math.isfinite(v) for v in values)
        and all(0.0 <= v <= 1.0 for v in body["motif_scores"])
        and out["healthz"][0] == 200
        and out["healthz"][1]["ok"] is True
    )


def running(name: str) -> dict[str, Any]:
    """The release the container runs: its labels and environment, and its image's digests.

    What the role started it for is read from the container; what it loaded, from /readyz
    (served()).
    """
    c = inspect(name)
    assert c is not None, f"no {CONTAINER} container on {name}"
    labels = c["Config"]["Labels"]
    env = dict(e.split("=", 1) for e in c["Config"]["Env"])
    return {
        "version": labels["org.hailo-pipeline.release.version"],
        "sha256": labels["org.hailo-pipeline.release.artifact-sha256"],
        "digest": labels["org.hailo-pipeline.release.digest"],
        "env_version": env["MODEL_VERSION"],
        "image_digests": [d.split("@")[1] for d in repo_digests(name, c["Image"])],
        "health": c["State"]["Health"]["Status"],
        "env": env,
    }


def snapshot(name: str) -> dict[str, Any]:
    """What a fault case must leave alone on a host."""
    c = inspect(name)
    return {
        "record": record(name),
        "container": None
        if c is None
        else {"id": c["Id"], "started": c["State"]["StartedAt"], "image": c["Image"]},
        "models": models_listing(name),
        "current": current_link(name),
    }
