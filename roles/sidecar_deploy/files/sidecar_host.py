#!/usr/bin/env python3
"""The Pi side of the sidecar_deploy role: one process per step, stdlib only.

Every Ansible module run on a Pi starts a Python interpreter and imports Ansible's
module utilities (community.docker's also import requests); on an emulated Pi that is
3-12 s a call. So what only reads state or checks it runs here, in one call each,
and the role keeps modules for what has a module worth the cost (copy, pull,
docker_container). Docker is reached through its API on the Unix socket
(http.client over AF_UNIX): a Pi has the engine but need not have the docker CLI.

    sidecar_host.py COMMAND 'JSON PARAMETERS'

Commands (each prints one JSON object on stdout and exits 0; a refusal or a failed
check is reported in the JSON - "ok": false and "reason" - for the role to act on;
exit status 2 means the parameters themselves were wrong):

    state     preflight facts and current state: architecture, devices, Docker engine,
              free disk, registry CA, release record, release directories, the
              `current` link, image/network/container presence. Changes nothing.
    layout    create the models root, the socket directory (owned by the sidecar's
              user) and a tmpfiles.d entry that recreates the latter at boot.
    trust     write the registry CA to /etc/docker/certs.d/<registry>/ca.crt.
    prepare   layout, then trust when a CA is given.
    place     verify a staged artifact + manifest (sha256 on this host), then rename the
              staging directory to <models>/<model>-<version>; prune old releases.
    switch    point <models>/current at a release directory (verified again) atomically,
              or remove it.
    install   place (when a staging directory is given), then switch.
    gate      wait for the container to be healthy, /healthz, /readyz, the /infer
              contract (and a bad request gets a 4xx), the image digest, the golden
              windows through /infer against the compiled model's outputs (max abs
              error and cosine per output, within the golden file's tolerances), and
              a short latency probe against a p95 budget. On failure: the last log lines.
    diagnose  the container's state and last log lines.
    record    write the release record (an Ansible local fact) atomically if it differs.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import shutil
import socket
import stat
import sys
import time
import urllib.parse
from typing import Any

RELEASE_FILES = ("artifact", "manifest", "golden")
# Labels the role puts on the container (tasks/container.yml).
VERSION_LABEL = "org.hailo-pipeline.release.version"
SHA256_LABEL = "org.hailo-pipeline.release.artifact-sha256"


# --------------------------------------------------------------------------- helpers
class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the Docker API)."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class DockerAPI:
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def request(self, method: str, url: str, body: Any = None) -> tuple[int, bytes]:
        conn = UnixHTTPConnection(self.path, self.timeout)
        try:
            headers = {"Host": "docker"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def get_json(self, url: str) -> tuple[int, Any]:
        status, data = self.request("GET", url)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data.decode(errors="replace")

    def container(self, name: str) -> dict[str, Any] | None:
        status, data = self.get_json(f"/containers/{quote(name)}/json")
        return data if status == 200 else None

    def logs(self, name: str, lines: int) -> list[str]:
        status, data = self.request(
            "GET", f"/containers/{quote(name)}/logs?stdout=1&stderr=1&tail={int(lines)}"
        )
        if status != 200:
            return [f"(no logs: Docker answered {status})"]
        return demux_logs(data)[-lines:]


def quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def demux_logs(data: bytes) -> list[str]:
    """Docker's log stream of a container without a TTY: 8-byte frame headers."""
    out = bytearray()
    i = 0
    framed = len(data) >= 8 and data[0] in (0, 1, 2) and data[1:4] == b"\0\0\0"
    if not framed:
        out = bytearray(data)
    while framed and i + 8 <= len(data):
        size = int.from_bytes(data[i + 4 : i + 8], "big")
        out += data[i + 8 : i + 8 + size]
        i += 8 + size
    return [line for line in out.decode(errors="replace").splitlines() if line.strip()]


def sha256_file(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def free_mb(path: str) -> tuple[str, int]:
    """Free space (MiB) on the filesystem holding `path` or its nearest existing parent."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    st = os.statvfs(probe)
    return probe, st.f_bavail * st.f_frsize // (1024 * 1024)


def models_dir(p: dict[str, Any]) -> str:
    return os.path.join(p["root"], "models")


def release_name(release: dict[str, Any]) -> str:
    return f"{release['model']}-{release['version']}"


def check_release_dir(path: str, release: dict[str, Any]) -> str | None:
    """None if `path` holds the release's artifact and manifest with the right sha256."""
    artifact = os.path.join(path, release["artifact"])
    manifest = os.path.join(path, release["manifest"])
    try:
        with open(manifest, "rb") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return f"manifest {manifest} is missing"
    except (OSError, ValueError) as exc:
        return f"manifest {manifest} cannot be read as JSON: {exc}"
    if not isinstance(data, dict):
        return f"manifest {manifest} is not a JSON object"
    for key in ("model", "version", "artifact"):
        if data.get(key) != release[key]:
            return f"manifest {manifest} says {key}={data.get(key)!r}, expected {release[key]!r}"
    if str(data.get("sha256", "")).lower() != release["sha256"]:
        return (
            f"manifest {manifest} says sha256 {data.get('sha256')!r}, "
            f"the controller verified {release['sha256']}"
        )
    try:
        actual = sha256_file(artifact)
    except FileNotFoundError:
        return f"artifact {artifact} is missing"
    except OSError as exc:
        return f"artifact {artifact} cannot be read: {exc.strerror}"
    if actual != release["sha256"]:
        return (
            f"sha256 mismatch for {artifact} on this host: the manifest says "
            f"{release['sha256']}, the file is {actual}"
        )
    if release.get("golden"):
        golden = os.path.join(path, release["golden"])
        entry = data.get("golden") if isinstance(data.get("golden"), dict) else {}
        if (
            entry.get("file") != release["golden"]
            or entry.get("sha256") != release["golden_sha256"]
        ):
            return (
                f"manifest {manifest} names golden vectors {entry!r}, expected {release['golden']}"
            )
        try:
            actual = sha256_file(golden)
        except OSError as exc:
            return f"golden vectors {golden} cannot be read: {exc.strerror}"
        if actual != release["golden_sha256"]:
            return (
                f"sha256 mismatch for {golden} on this host: the manifest says "
                f"{release['golden_sha256']}, the file is {actual}"
            )
    return None


def read_record(path: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"release record {path} cannot be read as JSON: {exc}"
    if not isinstance(data, dict):
        return None, f"release record {path} is not a JSON object"
    return data, None


def write_atomic(path: str, content: bytes, mode: int) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    fsync_dir(directory)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_target(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


# --------------------------------------------------------------------------- state
def cmd_state(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": True, "arch": os.uname().machine}
    out["devices"] = {}
    for dev in p.get("devices", []):
        try:
            mode = os.stat(dev).st_mode
            out["devices"][dev] = {"exists": True, "char": stat.S_ISCHR(mode)}
        except OSError:
            out["devices"][dev] = {"exists": False, "char": False}

    api = DockerAPI(p["docker_socket"])
    docker: dict[str, Any] = {"ok": False, "socket": p["docker_socket"]}
    out["docker"] = docker
    try:
        status, version = api.get_json("/version")
        if status != 200:
            raise OSError(f"GET /version answered {status}")
        docker.update(ok=True, version=version.get("Version"), api=version.get("ApiVersion"))
        docker["arch"] = version.get("Arch")
        _, info = api.get_json("/info")
        docker["root_dir"] = info.get("DockerRootDir") if isinstance(info, dict) else None
    except OSError as exc:
        docker["error"] = f"{type(exc).__name__}: {exc}"

    models = models_dir(p)
    path, free = free_mb(models)
    out["disk"] = {"models": {"path": path, "free_mb": free}}
    root_dir = docker.get("root_dir")
    if root_dir and os.path.isdir(root_dir):
        path, free = free_mb(root_dir)
        out["disk"]["docker"] = {"path": path, "free_mb": free}
    else:
        out["disk"]["docker"] = {
            "path": root_dir,
            "free_mb": None,
            "note": f"Docker's data root {root_dir!r} is not visible on this host",
        }

    registry = p.get("registry") or ""
    if registry:
        ca = f"/etc/docker/certs.d/{registry}/ca.crt"
        try:
            with open(ca, "rb") as fh:
                pem = fh.read()
            out["registry_ca"] = {
                "path": ca,
                "exists": True,
                "sha256": hashlib.sha256(pem.strip()).hexdigest(),
            }
        except OSError:
            out["registry_ca"] = {"path": ca, "exists": False, "sha256": None}

    record, error = read_record(p["record_path"])
    out["record"], out["record_error"] = record, error

    run_dir = p["run_dir"]
    try:
        st = os.stat(run_dir)
        run_ok = (st.st_uid, st.st_gid) == (p["uid"], p["gid"]) and stat.S_ISDIR(st.st_mode)
    except OSError:
        run_ok = False
    out["layout_ok"] = run_ok and os.path.isdir(models) and os.path.isfile(p["tmpfiles_path"])

    # Releases asked about (the one to deploy, rollback targets): present and intact?
    out["releases"] = {}
    for release in p.get("releases", []):
        name = release_name(release)
        directory = os.path.join(models, name)
        if os.path.isdir(directory):
            problem = check_release_dir(directory, release)
            out["releases"][name] = {"present": True, "intact": problem is None, "problem": problem}
        else:
            out["releases"][name] = {"present": False, "intact": False, "problem": None}
    out["current_link"] = link_target(os.path.join(models, "current"))

    out["image_present"] = None
    out["network_exists"] = None
    out["container"] = None
    if docker["ok"]:
        if p.get("image"):
            status, _ = api.request("GET", f"/images/{quote(p['image'])}/json")
            out["image_present"] = status == 200
        if p.get("network"):
            status, _ = api.request("GET", f"/networks/{quote(p['network'])}")
            out["network_exists"] = status == 200
        out["container"] = container_summary(api, p["container"])
    return out


def container_summary(api: DockerAPI, name: str) -> dict[str, Any] | None:
    c = api.container(name)
    if c is None:
        return None
    state = c.get("State") or {}
    image_id = c.get("Image")
    digests: list[str] = []
    if image_id:
        status, image = api.get_json(f"/images/{quote(image_id)}/json")
        if status == 200 and isinstance(image, dict):
            digests = image.get("RepoDigests") or []
    return {
        "name": name,
        "status": state.get("Status"),
        "running": state.get("Running"),
        "restarting": state.get("Restarting"),
        "exit_code": state.get("ExitCode"),
        "restart_count": c.get("RestartCount", 0),
        "health": (state.get("Health") or {}).get("Status"),
        "image": c.get("Config", {}).get("Image"),
        "image_id": image_id,
        "repo_digests": digests,
        "started_at": state.get("StartedAt"),
        "labels": c.get("Config", {}).get("Labels") or {},
    }


# --------------------------------------------------------------------------- layout
def cmd_layout(p: dict[str, Any]) -> dict[str, Any]:
    changed = False
    models = models_dir(p)
    for directory in (p["root"], models):
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o755, exist_ok=True)
            changed = True
    run_dir = p["run_dir"]
    if not os.path.isdir(run_dir):
        os.makedirs(run_dir, mode=0o770, exist_ok=True)
        changed = True
    st = os.stat(run_dir)
    if (st.st_uid, st.st_gid) != (p["uid"], p["gid"]):
        os.chown(run_dir, p["uid"], p["gid"])
        changed = True
    if stat.S_IMODE(st.st_mode) != 0o770:
        os.chmod(run_dir, 0o770)
        changed = True
    # /run is a tmpfs on a Pi: have systemd-tmpfiles make the directory at every boot,
    # before Docker restarts the container (restart policy) with it bind-mounted.
    entry = f"d {run_dir} 0770 {p['uid']} {p['gid']} -\n".encode()
    path = p["tmpfiles_path"]
    try:
        with open(path, "rb") as fh:
            same = fh.read() == entry
    except OSError:
        same = False
    if not same:
        write_atomic(path, entry, 0o644)
        changed = True
    return {"ok": True, "changed": changed}


def cmd_prepare(p: dict[str, Any]) -> dict[str, Any]:
    """layout, then trust when a CA is given: one call on the host."""
    out = cmd_layout(p)
    if p.get("ca_pem"):
        out["changed"] = cmd_trust(p)["changed"] or out["changed"]
    return out


def cmd_trust(p: dict[str, Any]) -> dict[str, Any]:
    path = f"/etc/docker/certs.d/{p['registry']}/ca.crt"
    pem = p["ca_pem"].strip().encode() + b"\n"
    try:
        with open(path, "rb") as fh:
            if fh.read().strip() == pem.strip():
                return {"ok": True, "changed": False, "path": path}
    except OSError:
        pass
    write_atomic(path, pem, 0o644)
    return {"ok": True, "changed": True, "path": path}


# --------------------------------------------------------------------------- place
def cmd_place(p: dict[str, Any]) -> dict[str, Any]:
    """Staging dir (copied by Ansible) -> verified -> <models>/<model>-<version>."""
    release = p["release"]
    name = release_name(release)
    models = models_dir(p)
    staging = os.path.join(models, p["staging"])
    final = os.path.join(models, name)
    protect = set(p.get("protect", []))
    if os.path.dirname(staging) != models or not p["staging"].startswith(".staging-"):
        return {"ok": False, "changed": False, "reason": f"bad staging path {staging}"}
    problem = check_release_dir(staging, release)
    expected = {release[key] for key in RELEASE_FILES if release.get(key)}
    extra = sorted(set(os.listdir(staging)) - expected)
    if problem is None and extra:
        problem = f"staging directory {staging} holds unexpected files: {', '.join(extra)}"
    if problem is not None:
        shutil.rmtree(staging, ignore_errors=True)
        return {
            "ok": False,
            "changed": True,
            "reason": f"refused before any switch: {problem}; staging {staging} removed, "
            "nothing else was touched",
        }
    for fname in os.listdir(staging):
        fd = os.open(os.path.join(staging, fname), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.chmod(staging, 0o755)
    replaced = False
    if os.path.lexists(final):
        if check_release_dir(final, release) is None:
            shutil.rmtree(staging)
            return {"ok": True, "changed": False, "release_dir": final, "pruned": []}
        if name in protect:
            if not same_artifact(final, release):
                shutil.rmtree(staging)
                return {
                    "ok": False,
                    "changed": True,
                    "reason": f"{final} already holds a different artifact for {name} and is in "
                    "use (current or previous release); a new artifact needs a new version",
                }
            # The same artifact bytes, new metadata (a manifest and golden vectors from a
            # newer compiler): refreshed file by file, each rename atomic, the manifest last,
            # so the release directory in use is never missing.
            refresh_release_dir(staging, final, release)
            return {"ok": True, "changed": True, "release_dir": final, "refreshed": True}
        trash = os.path.join(models, f".trash-{name}-{os.getpid()}")
        os.rename(final, trash)
        shutil.rmtree(trash)
        replaced = True
    os.rename(staging, final)
    fsync_dir(models)
    pruned = prune(models, int(p.get("keep", 3)), protect | {name})
    return {
        "ok": True,
        "changed": True,
        "release_dir": final,
        "replaced": replaced,
        "pruned": pruned,
    }


def same_artifact(directory: str, release: dict[str, Any]) -> bool:
    try:
        return sha256_file(os.path.join(directory, release["artifact"])) == release["sha256"]
    except OSError:
        return False


def refresh_release_dir(staging: str, final: str, release: dict[str, Any]) -> None:
    names = [release[key] for key in RELEASE_FILES if release.get(key)]
    for fname in sorted(names, key=lambda n: n == release["manifest"]):
        os.replace(os.path.join(staging, fname), os.path.join(final, fname))
    fsync_dir(final)
    shutil.rmtree(staging)


def prune(models: str, keep: int, protect: set[str]) -> list[str]:
    """Remove the oldest release directories beyond `keep` (never a protected one)."""
    entries = []
    for entry in os.scandir(models):
        if entry.name.startswith((".staging-", ".trash-")) and entry.is_dir(follow_symlinks=False):
            # Left by an interrupted run (this run's staging was renamed already).
            shutil.rmtree(entry.path, ignore_errors=True)
            continue
        if entry.name.startswith(".") or entry.name == "current":
            continue
        if entry.is_dir(follow_symlinks=False):
            entries.append((entry.stat().st_mtime, entry.name))
    entries.sort(reverse=True)
    removed = []
    kept = 0
    for _, name in entries:
        if name in protect or kept < keep:
            kept += 1
            continue
        shutil.rmtree(os.path.join(models, name))
        removed.append(name)
    return removed


# --------------------------------------------------------------------------- switch
def cmd_switch(p: dict[str, Any]) -> dict[str, Any]:
    models = models_dir(p)
    link = os.path.join(models, "current")
    before = link_target(link)
    release = p.get("release")
    if release is None:
        if before is None:
            return {"ok": True, "changed": False, "current": None, "before": None}
        os.unlink(link)
        fsync_dir(models)
        return {"ok": True, "changed": True, "current": None, "before": before}
    name = release_name(release)
    problem = check_release_dir(os.path.join(models, name), release)
    if problem is not None:
        return {"ok": False, "changed": False, "reason": problem, "before": before}
    if before == name:
        return {"ok": True, "changed": False, "current": name, "before": before}
    tmp = os.path.join(models, f".current.{os.getpid()}.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    # Relative, so that it also resolves inside the container (models mounted at /models).
    os.symlink(name, tmp)
    os.replace(tmp, link)
    fsync_dir(models)
    return {"ok": True, "changed": True, "current": name, "before": before}


def cmd_install(p: dict[str, Any]) -> dict[str, Any]:
    """place (when a staging directory is given), then switch: one call on the host."""
    out: dict[str, Any] = {"ok": True, "changed": False, "pruned": []}
    if p.get("staging"):
        out = cmd_place(p)
        if not out["ok"]:
            return out
    switched = cmd_switch(p)
    switched["changed"] = switched.get("changed", False) or out["changed"]
    switched["pruned"] = out.get("pruned", [])
    return switched


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


def cmd_gate(p: dict[str, Any]) -> dict[str, Any]:
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

        summary = container_summary(api, name) or {}
        digest = expect["digest"]
        if not any(d.split("@", 1)[-1] == digest for d in summary.get("repo_digests", [])):
            raise GateError(
                f"container {name} runs image {summary.get('image_id')} "
                f"(digests {summary.get('repo_digests')}), not {digest}"
            )
        out["checks"].append("image digest")

        # The release the role started it for (labels), whatever the backend reports.
        labels = summary.get("labels", {})
        for key, label in (("version", VERSION_LABEL), ("sha256", SHA256_LABEL)):
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


def cmd_diagnose(p: dict[str, Any]) -> dict[str, Any]:
    api = DockerAPI(p["docker_socket"])
    try:
        summary = container_summary(api, p["container"])
        logs = api.logs(p["container"], int(p.get("log_lines", 30))) if summary else []
    except OSError as exc:
        return {"ok": False, "reason": f"Docker API: {exc}", "container": None, "logs": []}
    return {"ok": True, "container": summary, "logs": logs}


# --------------------------------------------------------------------------- record
def cmd_record(p: dict[str, Any]) -> dict[str, Any]:
    path = p["record_path"]
    current, _ = read_record(path)
    if current == p["record"]:
        return {"ok": True, "changed": False}
    content = json.dumps(p["record"], indent=2, sort_keys=True).encode() + b"\n"
    write_atomic(path, content, 0o644)
    return {"ok": True, "changed": True}


COMMANDS = {
    "state": cmd_state,
    "layout": cmd_layout,
    "trust": cmd_trust,
    "prepare": cmd_prepare,
    "install": cmd_install,
    "place": cmd_place,
    "switch": cmd_switch,
    "gate": cmd_gate,
    "diagnose": cmd_diagnose,
    "record": cmd_record,
}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in COMMANDS:
        print(f"usage: {argv[0]} {{{','.join(COMMANDS)}}} 'JSON'", file=sys.stderr)
        return 2
    try:
        params = json.loads(argv[2])
    except ValueError as exc:
        print(f"parameters are not JSON: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(COMMANDS[argv[1]](params), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
