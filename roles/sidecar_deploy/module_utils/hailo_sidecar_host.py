"""The Pi's files for sidecar_deploy, stdlib only: release directories (placed and
verified by sha256, pruned), the atomic `current` link, the release record (an Ansible
local fact, written atomically), the per-host deploy lease, the host layout and the
registry CA, and the preflight's view of the host, with what runs compared against
what the record says.

The release record (schema 2):
    current   the committed release (what passed its gate), with when and by whom
    previous  the release committed before it
    pending   a release between its switch and its commit (gone after commit or restore);
              a record with one names a deploy that was interrupted
    history   committed releases, newest first (rollback candidates)
    rolled_back  releases rolled back from: later deploys refuse them unless told
    rolled_back_from  the last one of those (as schema 1 had it)
Environment values are never recorded, only their names.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import time
from typing import Any

from ansible.module_utils.hailo_sidecar_docker import DockerAPI, summary

RELEASE_FILES = ("artifact", "manifest", "golden")
# What names a release (its record entry without when and who).
RELEASE_KEYS = (
    "image",
    "digest",
    "tag",
    "model",
    "version",
    "artifact",
    "manifest",
    "sha256",
    "golden",
    "golden_sha256",
    "infer_mode",
    "hw_arch",
    "env_keys",
)
HISTORY = 10
LEASE_FILE = "deploy.lease"

# Module options every call of the role's modules takes, and those the state read takes.
COMMON_OPTIONS: dict[str, dict[str, Any]] = {
    "root": {"type": "path", "required": True},
    "docker_socket": {"type": "path", "default": "/var/run/docker.sock"},
    "container": {"type": "str", "required": True},
    "record_path": {"type": "path", "required": True},
    "port": {"type": "int", "default": 9000},
    "log_lines": {"type": "int", "default": 30},
}
STATE_OPTIONS: dict[str, dict[str, Any]] = {
    "run_dir": {"type": "path"},
    "uid": {"type": "int"},
    "gid": {"type": "int"},
    "tmpfiles_path": {"type": "path"},
    "devices": {"type": "list", "elements": "str", "default": []},
    "registry": {"type": "str", "default": ""},
    "image": {"type": "str", "default": ""},
    "network": {"type": "str", "default": ""},
    "releases": {"type": "list", "elements": "dict", "default": []},
}


# --------------------------------------------------------------------------- files
def sha256_file(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def free_mb(path: str) -> tuple[str, int]:
    """Free space (MiB) on the filesystem holding `path` or its nearest existing parent."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    st = os.statvfs(probe)
    return probe, st.f_bavail * st.f_frsize // (1024 * 1024)


def link_target(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


# --------------------------------------------------------------------------- releases
def release_name(release: dict[str, Any]) -> str:
    return f"{release['model']}-{release['version']}"


def release_key(release: dict[str, Any] | None) -> dict[str, Any] | None:
    """The keys that say what runs; env values become their names."""
    if not release:
        return None
    out = {k: release[k] for k in RELEASE_KEYS if k in release}
    if "env" in release and "env_keys" not in release:
        out["env_keys"] = sorted(release.get("env") or {})
    return out


def identity(release: dict[str, Any] | None) -> tuple[str, ...] | None:
    """Image digest, model, version and artifact: the same release, whatever else."""
    if not release:
        return None
    return tuple(str(release.get(k, "")) for k in ("digest", "model", "version", "sha256"))


def describe(release: dict[str, Any] | None) -> str:
    if not release:
        return "no release"
    image = release.get("image") or release.get("digest")
    return f"{release.get('model')} {release.get('version')} ({image})"


def check_release_dir(path: str, release: dict[str, Any]) -> str | None:
    """None if `path` holds the release's artifact, manifest (and golden vectors) with the
    right sha256; else what is wrong."""
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


def same_artifact(directory: str, release: dict[str, Any]) -> bool:
    try:
        return sha256_file(os.path.join(directory, release["artifact"])) == release["sha256"]
    except OSError:
        return False


def place(
    models: str, staging_name: str, release: dict[str, Any], protect: set[str]
) -> dict[str, Any]:
    """Staging dir (copied by Ansible) -> verified -> <models>/<model>-<version>."""
    name = release_name(release)
    staging = os.path.join(models, staging_name)
    final = os.path.join(models, name)
    if os.path.dirname(staging) != models or not staging_name.startswith(".staging-"):
        return {"ok": False, "changed": False, "reason": f"bad staging path {staging}"}
    problem = check_release_dir(staging, release)
    expected = {release[key] for key in RELEASE_FILES if release.get(key)}
    extra = sorted(set(os.listdir(staging)) - expected) if os.path.isdir(staging) else []
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
    fsync_dir(staging)  # its entries are durable before the rename makes it a release
    if os.path.lexists(final):
        if check_release_dir(final, release) is None:
            shutil.rmtree(staging)
            return {"ok": True, "changed": False}
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
            for fname in sorted(expected, key=lambda n: n == release["manifest"]):
                os.replace(os.path.join(staging, fname), os.path.join(final, fname))
            fsync_dir(final)
            shutil.rmtree(staging)
            return {"ok": True, "changed": True, "refreshed": True}
        trash = os.path.join(models, f".trash-{name}-{os.getpid()}")
        os.rename(final, trash)
        shutil.rmtree(trash)
    os.rename(staging, final)
    fsync_dir(models)
    return {"ok": True, "changed": True}


def prune(models: str, keep: int, protect: set[str]) -> list[str]:
    """Remove the oldest release directories beyond `keep` (never a protected one), and
    what interrupted runs left (staging and trash directories)."""
    entries = []
    for entry in os.scandir(models):
        if entry.name.startswith((".staging-", ".trash-")) and entry.is_dir(follow_symlinks=False):
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


def switch(models: str, release: dict[str, Any] | None, check: bool = False) -> dict[str, Any]:
    """Point <models>/current at the release directory (verified again), atomically."""
    link = os.path.join(models, "current")
    before = link_target(link)
    if release is None:
        if before is not None and not check:
            os.unlink(link)
            fsync_dir(models)
        return {"ok": True, "changed": before is not None, "before": before, "current": None}
    name = release_name(release)
    problem = check_release_dir(os.path.join(models, name), release)
    if problem is not None:
        return {"ok": False, "changed": False, "reason": problem, "before": before}
    if before == name or check:
        return {"ok": True, "changed": before != name, "before": before, "current": name}
    tmp = os.path.join(models, f".current.{os.getpid()}.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    # Relative, so that it also resolves inside the container (models mounted at /models).
    os.symlink(name, tmp)
    os.replace(tmp, link)
    fsync_dir(models)
    return {"ok": True, "changed": True, "before": before, "current": name}


# --------------------------------------------------------------------------- record
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
    return normalize(data), None


def _entry(release: dict[str, Any] | None) -> dict[str, Any] | None:
    """A record entry: the release key plus when/who/run, without env values."""
    if not release:
        return None
    out = dict(release_key(release) or {})
    for key in ("deployed_at", "deployed_by", "run_id", "since", "mode", "at", "by"):
        if key in release:
            out[key] = release[key]
    return out


def normalize(data: dict[str, Any]) -> dict[str, Any]:
    """Any record (schema 1 had current, previous, rolled_back_from) as schema 2."""
    current, previous = _entry(data.get("current")), _entry(data.get("previous"))
    history = [_entry(r) for r in data.get("history") or [current, previous] if r]
    rolled_back = [_entry(r) for r in data.get("rolled_back") or [] if r]
    last = _entry(data.get("rolled_back_from"))
    if last and "rolled_back" not in data:  # schema 1 knew only the last one
        rolled_back.append(last)
    return {
        "schema": 2,
        "current": current,
        "previous": previous,
        "pending": _entry(data.get("pending")),
        "history": history[:HISTORY],
        "rolled_back": rolled_back,
        "rolled_back_from": last,
    }


def empty_record() -> dict[str, Any]:
    return normalize({})


def write_record(path: str, record: dict[str, Any], check: bool = False) -> bool:
    """Write the record atomically if it differs; True if it did (or would)."""
    current, _ = read_record(path)
    new = normalize(record)
    if current == new:
        return False
    if not check:
        content = json.dumps(new, indent=2, sort_keys=True).encode() + b"\n"
        write_atomic(path, content, 0o644)
    return True


def commit(
    record: dict[str, Any], release: dict[str, Any], mode: str, stamp: dict[str, str]
) -> dict[str, Any]:
    """The record once `release` passed its gate: it becomes current; what was current
    becomes previous (unless it is the same release); a rollback refuses what it left."""
    rec = normalize(record)
    before = rec["current"]
    entry = {**(release_key(release) or {}), **stamp}
    rec["pending"] = None
    if identity(before) == identity(entry):
        # The same release: when, by whom and which run committed it stay as they were.
        rec["current"] = {**before, **(release_key(release) or {})}
        return normalize(rec)
    rec["current"], rec["previous"] = entry, before
    rec["history"] = [entry] + [r for r in rec["history"] if identity(r) != identity(entry)]
    if mode == "rollback" and before:
        rec["rolled_back_from"] = _entry(before)
        if identity(before) not in {identity(r) for r in rec["rolled_back"]}:
            rec["rolled_back"].append(
                {**_entry(before), "at": stamp.get("deployed_at"), "by": stamp.get("deployed_by")}
            )
    # A release deployed on purpose (the operator's override) is no longer refused.
    rec["rolled_back"] = [r for r in rec["rolled_back"] if identity(r) != identity(entry)]
    if identity(rec["rolled_back_from"]) == identity(entry):
        rec["rolled_back_from"] = None
    return normalize(rec)


# --------------------------------------------------------------------------- lease
def _lease_path(root: str) -> str:
    return os.path.join(root, LEASE_FILE)


def read_lease(root: str) -> dict[str, Any] | None:
    try:
        with open(_lease_path(root), encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _locked(root: str):
    """An exclusive flock for the read-decide-write of the lease (two runs at once)."""
    os.makedirs(root, mode=0o755, exist_ok=True)
    fd = os.open(os.path.join(root, ".deploy.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def lease(
    root: str,
    run_id: str,
    owner: str,
    seconds: int,
    take: bool,
    now: float | None = None,
    pid: int = 0,
    take_over: str = "",
) -> dict[str, Any]:
    """Take (take=True) or check and extend the deploy lease of this host for `run_id`.
    Refused while another run holds an unexpired one: {"ok": False, "reason": "locked by ..."},
    unless it is `take_over` (a run the controller knows is dead: its ansible-playbook
    process on the same controller is gone).
    """
    now = time.time() if now is None else now
    fd = _locked(root)
    try:
        held = read_lease(root)
        mine = held and held.get("run_id") in (run_id, take_over or None)
        if held and not mine and float(held.get("expires", 0)) > now:
            return {
                "ok": False,
                "holder": held,
                "reason": (
                    f"locked by {held.get('owner')} (run {held.get('run_id')}, since "
                    f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(float(held['taken'])))}, "
                    f"expires in {int(float(held['expires']) - now)} s): another deploy or "
                    "rollback is working on this host. Wait for it, or, if that run is gone, "
                    "remove "
                    f"{_lease_path(root)}"
                ),
            }
        if not take and (not held or held.get("run_id") != run_id):
            return {
                "ok": False,
                "holder": held,
                "reason": f"this run ({run_id}) does not hold the deploy lease of this host",
            }
        same_run = bool(held) and held.get("run_id") == run_id
        taken = float(held["taken"]) if same_run else now
        # Extending keeps the controller's pid, by which a later run tells whether this
        # run is still alive.
        pid = pid or (int(held.get("pid") or 0) if same_run else 0)
        new = {
            "run_id": run_id,
            "owner": owner,
            "pid": pid,
            "taken": taken,
            "expires": now + seconds,
        }
        write_atomic(_lease_path(root), json.dumps(new).encode() + b"\n", 0o644)
        return {
            "ok": True,
            "holder": new,
            "taken_over": held if held and held.get("run_id") != run_id else None,
        }
    finally:
        os.close(fd)


def unlease(root: str, run_id: str) -> bool:
    """Release the lease if this run holds it; True if it did."""
    fd = _locked(root)
    try:
        held = read_lease(root)
        if not held or held.get("run_id") != run_id:
            return False
        os.unlink(_lease_path(root))
        fsync_dir(root)
        return True
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- layout
def layout(root: str, run_dir: str, uid: int, gid: int, tmpfiles_path: str, check: bool) -> bool:
    """The models root, the socket directory (owned by the sidecar's user) and a
    tmpfiles.d entry that recreates the latter at boot. True if anything changed."""
    changed = False
    for directory in (root, os.path.join(root, "models")):
        if not os.path.isdir(directory):
            changed = True
            if not check:
                os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        st = os.stat(run_dir)
        wrong = (st.st_uid, st.st_gid) != (uid, gid) or stat.S_IMODE(st.st_mode) != 0o770
    except FileNotFoundError:
        wrong = True
    if wrong:
        changed = True
        if not check:
            os.makedirs(run_dir, mode=0o770, exist_ok=True)
            os.chown(run_dir, uid, gid)
            os.chmod(run_dir, 0o770)
    # /run is a tmpfs on a Pi: have systemd-tmpfiles make the directory at every boot,
    # before Docker restarts the container (restart policy) with it bind-mounted.
    entry = f"d {run_dir} 0770 {uid} {gid} -\n".encode()
    if not _same_file(tmpfiles_path, entry):
        changed = True
        if not check:
            write_atomic(tmpfiles_path, entry, 0o644)
    return changed


def _same_file(path: str, content: bytes) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read().strip() == content.strip()
    except OSError:
        return False


def ca_path(registry: str) -> str:
    return f"/etc/docker/certs.d/{registry}/ca.crt"


def trust(registry: str, pem: str, check: bool) -> bool:
    """Write the registry CA where Docker reads it; True if it changed."""
    content = pem.strip().encode() + b"\n"
    path = ca_path(registry)
    if _same_file(path, content):
        return False
    if not check:
        write_atomic(path, content, 0o644)
    return True


# --------------------------------------------------------------------------- drift
def drift(
    record: dict[str, Any] | None, container: dict[str, Any] | None, link: str | None
) -> list[str]:
    """What differs between the committed record and what runs: an empty list when they
    agree. A host with findings counts as switched (an interrupted deploy)."""
    rec = normalize(record or {})
    current = rec["current"]
    found = []
    if rec["pending"]:
        p = rec["pending"]
        found.append(
            f"the record has {describe(p)} pending since {p.get('since')} (run {p.get('run_id')}): "
            "a deploy stopped between its switch and its commit"
        )
    if current:
        running = (container or {}).get("release")
        if container is None:
            found.append(f"no sidecar container runs; the record's release is {describe(current)}")
        elif running is None:
            found.append("the sidecar container was not started by this role")
        elif identity({**running, "image": ""}) != identity(current):
            found.append(
                f"the container runs {running.get('model')} {running.get('version')} "
                f"({running.get('digest')}); the record's release is {describe(current)}"
            )
        elif not container.get("running"):
            found.append(f"the container of {describe(current)} is {container.get('status')}")
        if link != release_name(current):
            found.append(
                f"the current link names {link}; the record's release is {release_name(current)}"
            )
    elif container and container.get("release"):
        found.append(
            f"a container of this role runs ({container['release'].get('version')}) "
            "but no release is recorded"
        )
    return found


# --------------------------------------------------------------------------- state
def state(p: dict[str, Any]) -> dict[str, Any]:
    """Everything the preflight and the deploy decide on, in one call."""
    out: dict[str, Any] = {"arch": os.uname().machine, "devices": {}}
    for dev in p["devices"]:
        try:
            out["devices"][dev] = {"exists": True, "char": stat.S_ISCHR(os.stat(dev).st_mode)}
        except OSError:
            out["devices"][dev] = {"exists": False, "char": False}

    api = DockerAPI(p["docker_socket"])
    docker: dict[str, Any] = {"ok": False, "socket": p["docker_socket"]}
    out["docker"] = docker
    try:
        status, version = api.get_json("/version")
        if status != 200 or not isinstance(version, dict):
            raise OSError(f"GET /version answered {status}")
        docker.update(ok=True, version=version.get("Version"), api=version.get("ApiVersion"))
        docker["arch"] = version.get("Arch")
        _, info = api.get_json("/info")
        docker["root_dir"] = info.get("DockerRootDir") if isinstance(info, dict) else None
    except OSError as exc:
        docker["error"] = f"{type(exc).__name__}: {exc}"

    models = os.path.join(p["root"], "models")
    path, free = free_mb(models)
    out["disk"] = {"models": {"path": path, "free_mb": free}}
    root_dir = docker.get("root_dir")
    if root_dir and os.path.isdir(root_dir):
        path, free = free_mb(root_dir)
        out["disk"]["docker"] = {"path": path, "free_mb": free}
    else:
        out["disk"]["docker"] = {"path": root_dir, "free_mb": None}

    if p["registry"]:
        ca = ca_path(p["registry"])
        try:
            with open(ca, "rb") as fh:
                digest = hashlib.sha256(fh.read().strip()).hexdigest()
            out["registry_ca"] = {"path": ca, "exists": True, "sha256": digest}
        except OSError:
            out["registry_ca"] = {"path": ca, "exists": False, "sha256": None}

    out["record"], out["record_error"] = read_record(p["record_path"])
    out["lease"] = read_lease(p["root"])
    if p.get("run_dir"):
        try:
            st = os.stat(p["run_dir"])
            run_ok = (st.st_uid, st.st_gid) == (p["uid"], p["gid"]) and stat.S_ISDIR(st.st_mode)
        except OSError:
            run_ok = False
        out["layout_ok"] = (
            run_ok and os.path.isdir(models) and os.path.isfile(p["tmpfiles_path"] or "")
        )

    # Releases asked about (the one to deploy, rollback targets): present and intact?
    out["releases"] = {}
    for release in p["releases"]:
        directory = os.path.join(models, release_name(release))
        if os.path.isdir(directory):
            problem = check_release_dir(directory, release)
            out["releases"][release_name(release)] = {
                "present": True,
                "intact": problem is None,
                "problem": problem,
            }
        else:
            out["releases"][release_name(release)] = {
                "present": False,
                "intact": False,
                "problem": None,
            }
    out["current_link"] = link_target(os.path.join(models, "current"))

    out["image_present"] = out["network_exists"] = out["container"] = None
    if docker["ok"]:
        if p["image"]:
            out["image_present"] = api.image(p["image"]) is not None
        if p["network"]:
            out["network_exists"] = api.network_exists(p["network"])
        out["container"] = summary(api, p["container"])
        out["drift"] = drift(out["record"], out["container"], out["current_link"])
    else:
        out["drift"] = []
    return out


# --------------------------------------------------------------------------- choices
def refusal(record: dict[str, Any] | None, target: dict[str, Any]) -> str | None:
    """Why a deploy of `target` is refused: it was rolled back from on this host."""
    for entry in normalize(record or {})["rolled_back"]:
        if identity(entry) == identity(target):
            return (
                f"{describe(target)} was rolled back from on this host"
                + (f" ({entry.get('at')}, by {entry.get('by')})" if entry.get("at") else "")
                + ": a deploy does not bring it back unless told. Deploy another release, or "
                "set sidecar_deploy_allow_rolled_back: true to deploy it again on purpose"
            )
    return None


def _matches(release: dict[str, Any], selector: str) -> bool:
    return selector in (
        release.get("digest"),
        release.get("image"),
        release.get("tag"),
        release.get("version"),
    )


def rollback_target(
    record: dict[str, Any] | None, selector: str, found: list[str]
) -> dict[str, Any]:
    """The release a rollback puts back: {"target", "note"} or {"error"}.

    No selector: after an interrupted deploy (found), the committed release; once rolled
    back (rolled_back_from is the previous release), the current one again (nothing to
    do); else the previous release. A selector (tag, digest, image reference or version)
    chooses among the non-current releases in the record's history; a sha256:<digest> of
    no recorded release runs that image with the current artifact. A selector that names
    the current release, or more than one release, is refused with the candidates.
    """
    rec = normalize(record or {})
    current, previous = rec["current"], rec["previous"]
    if not current:
        return {"error": "there is no release record: nothing was deployed here by this role"}
    selector = selector.strip()
    if not selector:
        if found:
            return {"target": current, "note": "undo the interrupted deploy: " + "; ".join(found)}
        if previous and identity(rec["rolled_back_from"]) == identity(previous):
            return {
                "target": current,
                "note": f"already rolled back from {describe(previous)}",
                "already": True,
            }
        if not previous:
            return {"error": "there is no previous release in the record: nothing to roll back to"}
        return {"target": previous, "note": f"back to {describe(previous)}"}
    seen: dict[tuple[str, ...] | None, dict[str, Any]] = {}
    for entry in [previous, *rec["history"]]:
        if entry and identity(entry) != identity(current):
            seen.setdefault(identity(entry), entry)
    candidates = list(seen.values())
    listing = (
        "; ".join(
            f"{c.get('version')} {c.get('tag') or ''} {c.get('digest')}".replace("  ", " ")
            for c in candidates
        )
        or "none"
    )
    matches = [c for c in candidates if _matches(c, selector)]
    if len(matches) == 1:
        return {"target": matches[0], "note": f"back to {describe(matches[0])}"}
    if len(matches) > 1:
        return {
            "error": f"sidecar_deploy_rollback_to={selector} names {len(matches)} releases; "
            f"give the version or the digest of one (candidates: {listing})"
        }
    if _matches(current, selector):
        return {
            "error": f"sidecar_deploy_rollback_to={selector} names the current release "
            f"{describe(current)}: a rollback goes to another one (candidates: {listing})"
        }
    if (
        selector.startswith("sha256:")
        and len(selector) == 71
        and all(ch in "0123456789abcdef" for ch in selector[7:])
    ):
        image = current["image"].split("@")[0] + "@" + selector
        return {
            "target": {**current, "image": image, "digest": selector, "tag": ""},
            "note": f"the current artifact with image {selector}",
        }
    return {
        "error": f"sidecar_deploy_rollback_to={selector} names no release in the record of "
        f"this host (current {describe(current)}; candidates: {listing})"
    }
