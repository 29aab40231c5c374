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
LEASE = "/opt/hailo-sidecar/deploy.lease"
CONTAINER = "hailo-inference"
ENGINE_DOCKER = "docker --host unix:///run/docker-engine/docker.sock"


# The release reports of the converge's runs (converge, Molecule's check, idempotence),
# in order: site.yml's stages, each run's report.json.
STAGES = ["provision", "compile", "image", "deploy"]
REPORTS = sorted(p for p in (EPHEMERAL / "reports").glob("*") if p.is_dir())


def report(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "report.json").read_text())
    return data


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


# Hooks put into an image's site-packages (a module and a .pth line that imports it; Debian's
# own sitecustomize would shadow one of ours). Each patches the sidecar's contract module
# when the sidecar imports it, so that the healthcheck's short-lived interpreter does not
# pay for the import, and leaves the backend itself untouched.
_HOOK = """
import importlib.machinery, os, sys, threading

class _Fault:
    def find_spec(self, name, path, target=None):
        if name != "hailo_sidecar.contract":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            module.parse_infer_body = patched(module.parse_infer_body)

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Fault())
"""
# /infer (HTTP) hands the backend the window with ax and ay swapped, as an image with other
# preprocessing would: the sidecar's own golden check at start-up (the backend directly)
# passes; only the gate's golden windows through /infer can see it.
WRONG_PREPROCESSING = """
def patched(parse):
    return lambda body: parse(body)[..., [1, 0, 2, 3, 4, 5, 6, 7, 8]]
"""
# The sidecar answers the gate, then exits 3 s after its CALLS-th /infer window (the gate's
# last request; Docker's restart policy starts it again): a release that crashes after its
# gate, which only the bake sees.
CRASH_AFTER_GATE = """
CALLS = {calls}

def patched(parse):
    seen = [0]

    def counted(body):
        out = parse(body)
        seen[0] += 1
        if seen[0] == CALLS:
            threading.Timer(3.0, os._exit, (3,)).start()
        return out

    return counted
"""


def fault_image(tag: str, hook: str) -> str:
    """The deployed model image plus `hook` (a `patched(parse_infer_body)`), pushed under
    `tag`; its digest reference."""
    host = gpusrv_host()
    base = image("tcn-encoder")
    ref = f"{base['image']}:{tag}"
    site = "/opt/hailo-sidecar/lib/python3.11/site-packages/"
    dockerfile = f"FROM {base['reference']}\nCOPY fault_hook.py fault.pth {site}\n"
    client = "docker --config /tmp/fault-docker"
    files = {
        "Dockerfile": dockerfile,
        "fault_hook.py": hook + _HOOK,
        "fault.pth": "import fault_hook\n",
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


def start_playbook(
    playbook: str,
    extra: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    new_session: bool = False,
) -> subprocess.Popen[str]:
    """ansible-playbook with the converge's setting (where the artifacts are: every role's
    path defaults follow it), started (new_session: in its own process group, for a test
    to kill it with its workers). A test's own sidecar_deploy_artifacts_dir (another
    compile output) leaves sidecar_deploy_release_file on the converge's release.json."""
    base = {"hailo_pipeline_artifacts_dir": str(ARTIFACTS)}
    return subprocess.Popen(
        [
            "ansible-playbook",
            "--inventory",
            INVENTORY,
            "--extra-vars",
            json.dumps({**base, **(extra or {})}),
            *args,
            str(REPO / "playbooks" / playbook),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=new_session,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            # Not Molecule's diff-always: a test that wants --diff says so. With it, a run
            # started here (start_playbook, stdout piped) can fill the pipe and block.
            "ANSIBLE_DIFF_ALWAYS": "False",
            **(env or {}),
        },
    )


def finish(
    proc: subprocess.Popen[str], label: str, start: float, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """Wait for a started playbook; its output and time kept under `label`."""
    stdout, stderr = proc.communicate(timeout=timeout)
    seconds = round(time.monotonic() - start, 1)
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    timings[label] = {"seconds": seconds, "rc": proc.returncode}
    TIMINGS.write_text(json.dumps(timings, indent=2) + "\n")
    (EPHEMERAL / f"run-{label}.log").write_text(stdout + stderr)
    print(f"{label}: {seconds} s, rc {proc.returncode}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_playbook(
    playbook: str,
    extra: dict[str, Any] | None = None,
    label: str | None = None,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook with the converge's settings, run to its end and timed."""
    start = time.monotonic()
    return finish(start_playbook(playbook, extra, env, args), label or playbook, start)


def wait_for(what: str, check: Any, timeout: float = 600, every: float = 1.0) -> Any:
    """Poll check() until it returns something true; that value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def lease(name: str) -> dict[str, Any] | None:
    """The deploy lease on a Pi (roles/sidecar_deploy: <root>/deploy.lease)."""
    f = pi(name).file(LEASE)
    return json.loads(f.content_string) if f.exists else None


def task_results(stdout: str, task: str) -> dict[str, str]:
    """host -> ok / changed / skipping / fatal / failed, for every run of the task whose
    name starts with `task` (the default callback's lines)."""
    out: dict[str, str] = {}
    for block in stdout.split(f"TASK [{task}")[1:]:
        for line in block.split("TASK [", 1)[0].splitlines()[1:]:
            m = re.match(r"^(ok|changed|skipping|fatal|failed): \[([^\]]+)\]", line)
            if m:
                out[m.group(2)] = m.group(1)
    return out


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
