"""The compose files brought up for real, and the consumer's view of a deployed Pi.

- sidecar/docker-compose.gpusrv.yaml (stub) on the GPUSrv stand-in: the smoke test the
  seed plan names (/healthz, /infer gives 64 + 12, /metrics).
- sidecar/docker-compose.pi.yaml on the canary's engine, INFER_MODE=onnx, serving the
  artifact the deploy placed (discovery in /opt/hailo-sidecar/models): ready, the
  manifest's sha256, its golden check passed.
- A client container on the deployed sidecar's network does what EdgeInfer does (POST
  http://hailo-inference:9000/infer with {"x": ...}, GET /healthz) with the golden
  windows, and gets the compiled model's outputs.
"""

from __future__ import annotations

import json
import shlex

import pytest
from fleet import (
    ARTIFACTS,
    CANARY,
    ENGINE_DOCKER,
    FIRST_VERSION,
    MODEL,
    MODELS,
    REGISTRY,
    REPO,
    engine,
    image,
    pi,
    record,
    registry_password,
)

MANIFEST = json.loads((ARTIFACTS / f"{MODEL}-{FIRST_VERSION}.manifest.json").read_text())
PORT = 9300  # beside the deployed sidecar's 9000
ENGINE_ENV = "DOCKER_HOST=unix:///run/docker-engine/docker.sock"


def put(host, path: str, text: str) -> None:
    host.check_output(f"printf %s {shlex.quote(text)} > {path}")


# Run on a host with python3 (stdlib): wait (up to 240 s) for /readyz to answer 200, then
# GET and POST against a base URL, JSON out. Polled here rather than `up --wait`: Docker's
# healthcheck (a Python start under QEMU, 3 s timeout in the Pi file) is a Pi's figure.
PROBE = r"""
import json, sys, time, urllib.error, urllib.request
base = sys.argv[1]
deadline = time.monotonic() + 240
while True:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=10) as r:
            break
    except (OSError, urllib.error.URLError):
        if time.monotonic() > deadline:
            raise
        time.sleep(2)
def call(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(base + path, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=60) as r:
        raw = r.read()
        return r.status, raw.decode()
x = [[0.01 * (i + c) for c in range(9)] for i in range(100)]
status, body = call("/infer", {"x": x})
infer = json.loads(body)
out = {"infer": [status, len(infer["latent"]), len(infer["motif_scores"])],
       "healthz": [call("/healthz")[0], json.loads(call("/healthz")[1])],
       "readyz": json.loads(call("/readyz")[1]),
       "metrics": "sidecar_ready 1.0" in call("/metrics")[1]}
print(json.dumps(out))
"""


def test_gpusrv_compose_profile_smoke(gpusrv):
    # The amd64 image by its own digest: pulling the manifest list's digest here would bind
    # it to the amd64 image, and a later pull of it for arm64 (test_4) fails on engine 26
    # with "cannot overwrite digest".
    runtime = image("hailo-runtime")
    ref = f"{runtime['image']}@{runtime['platform_digests']['linux/amd64']}"
    compose_file = (REPO / "sidecar/docker-compose.gpusrv.yaml").read_text()
    put(gpusrv, "/tmp/compose-gpusrv.yaml", compose_file)
    put(gpusrv, "/tmp/probe.py", PROBE)
    env = f"DOCKER_CONFIG=/tmp/compose-docker SIDECAR_IMAGE={ref} SIDECAR_PUBLISH=127.0.0.1:{PORT}"
    compose = f"{env} docker-compose -p smoke -f /tmp/compose-gpusrv.yaml"
    gpusrv.check_output(
        f"printf %s {shlex.quote(registry_password())} | "
        f"DOCKER_CONFIG=/tmp/compose-docker docker login -u pusher --password-stdin {REGISTRY}"
    )
    try:
        up = gpusrv.run(f"{compose} up -d")
        assert up.rc == 0, up.stdout + up.stderr
        out = json.loads(gpusrv.check_output(f"python3 /tmp/probe.py http://127.0.0.1:{PORT}"))
    finally:
        gpusrv.run(f"{compose} down -v")
        gpusrv.run("rm -rf /tmp/compose-docker /tmp/compose-gpusrv.yaml /tmp/probe.py")
    assert out["infer"] == [200, 64, 12]
    assert out["healthz"][0] == 200
    assert out["healthz"][1]["ok"] is True
    assert out["readyz"]["backend"] == "stub"
    assert out["metrics"] is True


def test_pi_compose_profile_serves_the_placed_artifact():
    eng, host = engine(CANARY), pi(CANARY)
    ref = record(CANARY)["current"]["image"]  # pulled by the deploy: no login needed
    put(eng, "/tmp/compose-pi.yaml", (REPO / "sidecar/docker-compose.pi.yaml").read_text())
    put(host, "/tmp/probe.py", PROBE)
    env = (
        f"{ENGINE_ENV} SIDECAR_IMAGE={ref} MODEL_VERSION={FIRST_VERSION} INFER_MODE=onnx "
        f"SIDECAR_PUBLISH=127.0.0.1:{PORT}"
    )
    compose = f"{env} docker-compose -p pi-profile -f /tmp/compose-pi.yaml"
    try:
        up = eng.run(f"{compose} up -d")
        assert up.rc == 0, up.stdout + up.stderr + eng.run(f"{compose} logs").stdout
        out = json.loads(host.check_output(f"python3 /tmp/probe.py http://127.0.0.1:{PORT}"))
    finally:
        eng.run(f"{compose} down -v")
        eng.run("rm -f /tmp/compose-pi.yaml")
        host.run("rm -f /tmp/probe.py")
    assert out["infer"] == [200, 64, 12]
    ready = out["readyz"]
    assert ready["backend"] == "onnx"
    assert ready["sha256"] == MANIFEST["sha256"]
    assert ready["golden"]["ok"] is True


# What EdgeInfer does, from a container on the sidecar's network, with the golden windows
# (the models folder mounted read-only to read them). Prints the worst error per output.
EDGEINFER = r"""
import json, sys, urllib.request
golden = json.load(open(sys.argv[1]))
def post(x):
    body = json.dumps({"x": x}).encode()
    req = urllib.request.Request("http://hailo-inference:9000/infer", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, json.loads(r.read())
worst = {"latent": 0.0, "motif_scores": 0.0}
for i, x in enumerate(golden["windows"]):
    status, body = post(x)
    assert status == 200, status
    assert len(body["latent"]) == 64 and len(body["motif_scores"]) == 12
    for name in worst:
        err = max(abs(a - b) for a, b in zip(body[name], golden["outputs"][name][i]))
        worst[name] = max(worst[name], err)
with urllib.request.urlopen("http://hailo-inference:9000/healthz", timeout=10) as h:
    health = [h.status, json.loads(h.read())]
print(json.dumps({"worst": worst, "healthz": health}))
"""


@pytest.mark.parametrize("name", [CANARY])
def test_edgeinfer_view_gets_the_golden_outputs(name):
    eng = engine(name)
    rec = record(name)["current"]
    golden = f"/models/{MODEL}-{FIRST_VERSION}/{rec['golden']}"
    out = json.loads(
        eng.check_output(
            f"{ENGINE_DOCKER} run --rm --network hailo --user 10001:10001 "
            f"-v {MODELS}:/models:ro {rec['image']} python3 -c {shlex.quote(EDGEINFER)} {golden}"
        )
    )
    assert out["healthz"][0] == 200
    assert out["healthz"][1]["ok"] is True
    assert out["healthz"][1]["model"] == MODEL
    # The same compiled model, the same numbers (onnxruntime on arm64, emulated).
    assert out["worst"]["latent"] <= 1e-5, out
    assert out["worst"]["motif_scores"] <= 1e-5, out
