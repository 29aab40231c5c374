"""The deploy gate, run on the Pi: the container healthy, /readyz, /healthz, the /infer
contract (and a bad request gets a 4xx), the image digest and release labels, the golden
windows through /infer against the compiled model's outputs (max abs error and cosine per
output, within the golden file's tolerances), and a short latency probe against a p95
budget. The bake then watches the container for a while and gates it again: a restart or
a new start time in between fails it. Stdlib only.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import time
from typing import Any

from ansible.module_utils.hailo_sidecar_docker import RELEASE_LABELS, DockerAPI, summary


# --------------------------------------------------------------------------- gate
def window(seed: int = 7) -> list[list[float]]:
    """A deterministic, plausible IMU window (100 x 9)."""
    return [
        [round(math.sin(0.05 * (i + 1) * (c + 1) + seed) * (1 + c % 3), 6) for c in range(9)]
        for i in range(100)
    ]


def http_call(
    port: int, method: str, path: str, body: Any = None, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
        headers = {"Content-Type": "application/json"} if body is not None else {}
        start = time.perf_counter()
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        elapsed = (time.perf_counter() - start) * 1000.0
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload, elapsed
    finally:
        conn.close()


def finite_list(values: Any, length: int, lo: float | None = None, hi: float | None = None) -> str:
    if not isinstance(values, list):
        return f"is {type(values).__name__}, not a list"
    if len(values) != length:
        return f"has {len(values)} values, expected {length}"
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"[{i}] is {v!r}, not a finite number"
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return f"[{i}] is {v!r}, outside [{lo}, {hi}]"
    return ""


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity; two zero vectors agree (1.0), one zero vector does not (0.0)."""
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)


def golden_check(port: int, path: str) -> dict[str, Any]:
    """Send every golden window through /infer; per output the largest absolute error and
    the smallest cosine against the compiled model's outputs, with the worst window."""
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    figures: dict[str, dict[str, Any]] = {}
    for name, tol in doc["tolerances"].items():
        figures[name] = {
            "max_abs_error": 0.0,
            "min_cosine_similarity": 1.0,
            **{f"tolerance_{k}": float(v) for k, v in tol.items()},
        }
    for index, window in enumerate(doc["windows"]):
        status, _, body, _ = http_call(port, "POST", "/infer", {"x": window})
        if status != 200:
            raise GateError(f"golden window {index}: /infer answered {status}: {body[:200]!r}")
        result = json.loads(body)
        for name, fig in figures.items():
            got, want = result.get(name), doc["outputs"][name][index]
            problem = finite_list(got, len(want))
            if problem:
                raise GateError(f"golden window {index}: /infer {name} {problem}")
            err = max(abs(g - w) for g, w in zip(got, want, strict=True))
            cos = cosine(got, want)
            if err > fig["max_abs_error"]:
                fig["max_abs_error"], fig["worst_abs_window"] = err, index
            if cos < fig["min_cosine_similarity"]:
                fig["min_cosine_similarity"], fig["worst_cosine_window"] = cos, index
    problems = []
    for name, fig in figures.items():
        err, cos = fig["max_abs_error"], fig["min_cosine_similarity"]
        if not err <= fig["tolerance_max_abs_error"]:
            where = fig.get("worst_abs_window")
            problems.append(f"{name} max abs error {err:.6g} > {fig['tolerance_max_abs_error']}")
            problems[-1] += f" (window {where})"
        if not cos >= fig["tolerance_min_cosine_similarity"]:
            where = fig.get("worst_cosine_window")
            problems.append(f"{name} cosine {cos:.6f} < {fig['tolerance_min_cosine_similarity']}")
            problems[-1] += f" (window {where})"
        fig["max_abs_error"], fig["min_cosine_similarity"] = round(err, 6), round(cos, 6)
    out = {"windows": len(doc["windows"]), "outputs": figures, "ok": not problems}
    if problems:
        out["reason"] = (
            f"the golden check failed: /infer does not compute what the compiler's "
            f"{os.path.basename(path)} says ({'; '.join(problems)})"
        )
    return out


class GateError(Exception):
    pass


def wait_healthy(api: DockerAPI, name: str, deadline: float, out: dict[str, Any]) -> None:
    start = time.monotonic()
    baseline: int | None = None
    while True:
        c = api.container(name)
        if c is None:
            raise GateError(f"container {name} does not exist")
        state = c.get("State") or {}
        restarts = int(c.get("RestartCount") or 0)
        baseline = restarts if baseline is None else baseline
        health = (state.get("Health") or {}).get("Status")
        out["container_state"] = {
            "status": state.get("Status"),
            "health": health,
            "restart_count": restarts,
            "exit_code": state.get("ExitCode"),
        }
        if state.get("Restarting") or state.get("Status") in ("exited", "dead"):
            raise GateError(
                f"container {name} is not running (status {state.get('Status')}, "
                f"exit code {state.get('ExitCode')}, restarted {restarts} times): "
                "the server does not start"
            )
        if restarts > baseline:
            raise GateError(
                f"container {name} restarted during the gate ({baseline} -> {restarts} "
                "restarts): the server crashes"
            )
        if health == "unhealthy":
            last = (state.get("Health") or {}).get("Log") or [{}]
            raise GateError(
                f"container {name} is unhealthy (last check: "
                f"{str(last[-1].get('Output', '')).strip()[:300]!r})"
            )
        if health in ("healthy", None) and state.get("Running"):
            out["healthy_after_s"] = round(time.monotonic() - start, 1)
            out["healthcheck"] = health is not None
            return
        if time.monotonic() > deadline:
            raise GateError(
                f"container {name} did not become healthy within the gate timeout "
                f"(health {health!r})"
            )
        time.sleep(1.0)


def gate(p: dict[str, Any]) -> dict[str, Any]:
    """The gate; p: docker_socket, container, port, timeout_s, probes, warmup, p95_budget_ms,
    expect {digest, num_motifs, infer_mode, model, version, sha256}, golden, log_lines."""
    out: dict[str, Any] = {"ok": False, "reason": None, "checks": []}
    api = DockerAPI(p["docker_socket"])
    name = p["container"]
    port = int(p["port"])
    expect = p["expect"]
    started = time.monotonic()
    deadline = started + float(p["timeout_s"])
    try:
        wait_healthy(api, name, deadline, out)
        out["checks"].append("healthy")

        running = summary(api, name) or {}
        out["container"] = {k: running.get(k) for k in ("restart_count", "started_at", "image_id")}
        digest = expect["digest"]
        if not any(d.split("@", 1)[-1] == digest for d in running.get("repo_digests", [])):
            raise GateError(
                f"container {name} runs image {running.get('image_id')} "
                f"(digests {running.get('repo_digests')}), not {digest}"
            )
        out["checks"].append("image digest")

        # The release the role started it for (labels), whatever the backend reports.
        labels = running.get("labels", {})
        for key in ("version", "sha256"):
            label = RELEASE_LABELS[key]
            if key in expect and labels.get(label) != expect[key]:
                raise GateError(
                    f"container {name} was started for {label}={labels.get(label)!r}, "
                    f"expected {expect[key]!r}"
                )
        out["checks"].append("release labels")

        # Readiness can trail the healthcheck by a moment when the image has none.
        while True:
            try:
                status, _, body, _ = http_call(port, "GET", "/readyz")
            except OSError as exc:
                status, body = 0, str(exc).encode()
            if status == 200:
                break
            if time.monotonic() > deadline:
                raise GateError(f"/readyz answered {status}: {body[:300]!r}")
            time.sleep(1.0)
        out["checks"].append("readyz")

        status, _, body, _ = http_call(port, "GET", "/healthz")
        health = json.loads(body) if status == 200 else None
        if (
            not isinstance(health, dict)
            or health.get("ok") is not True
            or not isinstance(health.get("model"), str)
        ):
            raise GateError(f"/healthz answered {status}: {body[:300]!r}")
        out["healthz"] = health
        out["checks"].append("healthz")

        status, headers, body, _ = http_call(port, "POST", "/infer", {"x": window()})
        if status != 200:
            raise GateError(f"/infer answered {status}: {body[:300]!r}")
        result = json.loads(body)
        for key, length, lo, hi in (
            ("latent", 64, None, None),
            ("motif_scores", int(expect["num_motifs"]), 0.0, 1.0),
        ):
            problem = finite_list(result.get(key), length, lo, hi)
            if problem:
                raise GateError(f"/infer {key} {problem}")
        served = {k: result.get(k) for k in ("model", "version", "sha256")}
        served["backend"] = headers.get("x-backend")
        out["served"] = served
        if served["backend"] != expect["infer_mode"]:
            raise GateError(
                f"/infer ran backend {served['backend']!r}, expected {expect['infer_mode']!r}"
            )
        if expect["infer_mode"] != "stub":
            for key, want in (
                ("model", expect["model"]),
                ("version", expect["version"]),
                ("sha256", expect["sha256"]),
            ):
                if served[key] != want:
                    raise GateError(f"/infer serves {key} {served[key]!r}, expected {want!r}")
        out["checks"].append("infer contract")

        status, _, body, _ = http_call(port, "POST", "/infer", {"x": window()[:99]})
        if not 400 <= status < 500:
            raise GateError(f"a 99-row window got {status}, expected a 4xx: {body[:200]!r}")
        out["checks"].append("bad input 4xx")

        if p.get("golden"):
            out["golden"] = golden_check(port, p["golden"])
            if not out["golden"]["ok"]:
                raise GateError(out["golden"]["reason"])
            out["checks"].append("golden")

        payload = json.dumps({"x": window(11)}).encode()
        for _ in range(int(p.get("warmup", 3))):
            http_call(port, "POST", "/infer", payload)
        times = []
        for _ in range(int(p["probes"])):
            status, _, body, ms = http_call(port, "POST", "/infer", payload)
            if status != 200:
                raise GateError(f"/infer answered {status} during the latency probe")
            times.append(ms)
        times.sort()
        out["latency_ms"] = {
            "n": len(times),
            "p50": round(percentile(times, 50), 2),
            "p95": round(percentile(times, 95), 2),
            "max": round(times[-1], 2),
            "budget_p95": float(p["p95_budget_ms"]),
        }
        if out["latency_ms"]["p95"] > float(p["p95_budget_ms"]):
            raise GateError(
                f"/infer p95 {out['latency_ms']['p95']} ms is over the budget of "
                f"{p['p95_budget_ms']} ms"
            )
        out["checks"].append("latency")
        out["ok"] = True
    except GateError as exc:
        out["reason"] = str(exc)
    except (OSError, ValueError, KeyError) as exc:
        out["reason"] = f"{type(exc).__name__}: {exc}"
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    if not out["ok"]:
        try:
            out["logs"] = api.logs(name, int(p.get("log_lines", 30)))
        except OSError as exc:
            out["logs"] = [f"(no logs: {exc})"]
    return out


def bake(p: dict[str, Any]) -> dict[str, Any]:
    """The gate, then `bake_s` seconds of watching (a restart, an exit or unhealthy fails
    at once), then the gate again with the container's RestartCount and StartedAt
    unchanged: a release that crashes a while after its gate does not go further."""
    first = gate(p)
    seconds = float(p.get("bake_s") or 0)
    if not first["ok"] or seconds <= 0:
        return first
    api = DockerAPI(p["docker_socket"])
    name = p["container"]
    before = first["container"]
    out = {**first, "bake": {"seconds": seconds, "restart_count": before["restart_count"]}}
    end = time.monotonic() + seconds
    problem = None
    while problem is None:
        now = summary(api, name)
        if now is None:
            problem = f"container {name} is gone"
        elif (now["restart_count"], now["started_at"]) != (
            before["restart_count"],
            before["started_at"],
        ):
            problem = (
                f"container {name} restarted during the bake "
                f"(restarts {before['restart_count']} -> "
                f"{now['restart_count']}, started {before['started_at']} -> {now['started_at']})"
            )
        elif not now["running"] or now["health"] == "unhealthy":
            problem = (
                f"container {name} is {now['status']} (health {now['health']}) during the bake"
            )
        elif time.monotonic() >= end:
            break
        else:
            time.sleep(min(2.0, max(0.0, end - time.monotonic())))
    if problem is None:
        second = gate(p)
        after = second.get("container") or {}
        if not second["ok"]:
            problem = f"the gate after the bake failed: {second['reason']}"
            out["logs"] = second.get("logs", [])
        elif (after.get("restart_count"), after.get("started_at")) != (
            before["restart_count"],
            before["started_at"],
        ):
            problem = f"container {name} restarted during the bake (seen by the second gate)"
        else:
            out["latency_ms"] = second["latency_ms"]
    if problem is not None:
        out.update(ok=False, reason=f"the bake of {seconds:g} s failed: {problem}")
        if "logs" not in out or not out["logs"]:
            out["logs"] = api.logs(name, int(p.get("log_lines", 30)))
    return out


def diagnose(p: dict[str, Any]) -> dict[str, Any]:
    api = DockerAPI(p["docker_socket"])
    try:
        running = summary(api, p["container"])
        logs = api.logs(p["container"], int(p.get("log_lines", 30))) if running else []
    except OSError as exc:
        return {"ok": False, "reason": f"Docker API: {exc}", "container": None, "logs": []}
    return {"ok": True, "container": running, "logs": logs}
