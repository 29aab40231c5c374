"""The Docker Engine API on a Pi, over its Unix socket, stdlib only (a Pi has the engine,
not necessarily the docker CLI or the Python docker SDK): what the sidecar_deploy modules
read (containers, images, logs) and do (pull by digest, create, start, stop, rename,
remove, tag), and the container the role runs, described as the API's create payload.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import socket
import stat
import urllib.parse
from typing import Any

# Labels the role puts on its container: that it owns it, which release it runs, and a
# digest of everything it was created with (a different digest means "replace it").
MANAGED_LABEL = "org.hailo-pipeline.managed-by"
MANAGED_BY = "sidecar_deploy"
SPEC_LABEL = "org.hailo-pipeline.spec-sha256"
RELEASE_LABELS = {
    "model": "org.hailo-pipeline.release.model",
    "version": "org.hailo-pipeline.release.version",
    "sha256": "org.hailo-pipeline.release.artifact-sha256",
    "digest": "org.hailo-pipeline.release.digest",
}
# Local tags the role keeps on the images of the releases it may go back to, so that
# `docker image prune` keeps them and a rollback needs no registry.
LOCAL_REPO = "hailo-pipeline.local/sidecar-release"


class DockerError(Exception):
    """The engine refused a call: its status and message."""

    def __init__(self, what: str, status: int, message: str) -> None:
        answered = f"Docker answered {status}: " if status else ""
        super().__init__(f"{what}: {answered}{message}")
        self.status = status
        self.message = message


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def error_message(data: bytes) -> str:
    try:
        return str(json.loads(data).get("message", "")) or data.decode(errors="replace")
    except (ValueError, AttributeError):
        return data.decode(errors="replace").strip()


class DockerAPI:
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        conn = UnixHTTPConnection(self.path, timeout or self.timeout)
        try:
            send = {"Host": "docker", **(headers or {})}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                send["Content-Type"] = "application/json"
            conn.request(method, url, body=data, headers=send)
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

    def call(self, what: str, method: str, url: str, body: Any = None, ok=(200, 201, 204)) -> Any:
        """A call that must succeed: its JSON answer (or None), else DockerError."""
        status, data = self.request(method, url, body)
        if status not in ok:
            raise DockerError(what, status, error_message(data))
        try:
            return json.loads(data) if data else None
        except ValueError:
            return None

    # --- reads
    def container(self, name: str) -> dict[str, Any] | None:
        status, data = self.get_json(f"/containers/{quote(name)}/json")
        return data if status == 200 and isinstance(data, dict) else None

    def image(self, ref: str) -> dict[str, Any] | None:
        status, data = self.get_json(f"/images/{quote(ref)}/json")
        return data if status == 200 and isinstance(data, dict) else None

    def network_exists(self, name: str) -> bool:
        status, _ = self.request("GET", f"/networks/{quote(name)}")
        return status == 200

    def logs(self, name: str, lines: int) -> list[str]:
        status, data = self.request(
            "GET", f"/containers/{quote(name)}/logs?stdout=1&stderr=1&tail={int(lines)}"
        )
        if status != 200:
            return [f"(no logs: Docker answered {status})"]
        return demux_logs(data)[-lines:]

    # --- changes
    def pull(self, reference: str, platform: str, auth: dict[str, str] | None) -> None:
        """Pull <repo>@sha256:<digest>. The credentials go in this request's header only:
        nothing is written to the Pi (no `docker login`, no config.json)."""
        repo, digest = reference.split("@", 1)
        query = urllib.parse.urlencode({"fromImage": repo, "tag": digest, "platform": platform})
        headers = {}
        if auth:
            token = json.dumps({**auth, "serveraddress": repo.split("/", 1)[0]}).encode()
            headers["X-Registry-Auth"] = base64.urlsafe_b64encode(token).decode()
        status, data = self.request(
            "POST", f"/images/create?{query}", headers=headers, timeout=max(self.timeout, 1800)
        )
        if status != 200:
            raise DockerError(f"pull {reference}", status, error_message(data))
        # A pull that fails half way still answers 200: the error is in the stream.
        for line in data.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("error"):
                raise DockerError(f"pull {reference}", status, str(event["error"]))

    def tag(self, ref: str, repo: str, tag: str) -> None:
        query = urllib.parse.urlencode({"repo": repo, "tag": tag})
        self.call(f"tag {ref} as {repo}:{tag}", "POST", f"/images/{quote(ref)}/tag?{query}")

    def untag(self, ref: str) -> None:
        """Remove a tag (the image goes too when nothing else refers to it and no
        container uses it; a used image keeps existing)."""
        status, data = self.request("DELETE", f"/images/{quote(ref)}")
        if status not in (200, 404, 409):
            raise DockerError(f"untag {ref}", status, error_message(data))

    def local_tags(self) -> list[str]:
        """The role's local tags, repo:tag."""
        filters = json.dumps({"reference": [LOCAL_REPO]})
        status, data = self.get_json(f"/images/json?filters={quote(filters)}")
        if status != 200 or not isinstance(data, list):
            return []
        return sorted(t for image in data for t in image.get("RepoTags") or [])

    def remove(self, name: str) -> None:
        self.call(f"remove container {name}", "DELETE", f"/containers/{quote(name)}?force=1")

    def stop(self, name: str, seconds: int = 10) -> None:
        self.call(
            f"stop container {name}",
            "POST",
            f"/containers/{quote(name)}/stop?t={int(seconds)}",
            ok=(204, 304),
        )

    def start(self, name: str) -> None:
        self.call(
            f"start container {name}", "POST", f"/containers/{quote(name)}/start", ok=(204, 304)
        )

    def rename(self, name: str, new: str) -> None:
        self.call(
            f"rename container {name} to {new}",
            "POST",
            f"/containers/{quote(name)}/rename?name={quote(new)}",
        )

    def create(self, name: str, payload: dict[str, Any], platform: str) -> str:
        query = urllib.parse.urlencode({"name": name, "platform": platform})
        out = self.call(f"create container {name}", "POST", f"/containers/create?{query}", payload)
        return str(out["Id"])

    def create_network(self, name: str) -> None:
        self.call(
            f"create network {name}",
            "POST",
            "/networks/create",
            {"Name": name, "Driver": "bridge", "CheckDuplicate": True},
            ok=(201, 409),
        )


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


def owned(container: dict[str, Any] | None) -> bool:
    """Started by this role (its label, or the release labels of earlier versions)."""
    labels = ((container or {}).get("Config") or {}).get("Labels") or {}
    return labels.get(MANAGED_LABEL) == MANAGED_BY or RELEASE_LABELS["version"] in labels


def release_of(container: dict[str, Any] | None) -> dict[str, str] | None:
    """The release a container was started for, from its labels."""
    if not owned(container):
        return None
    labels = ((container or {}).get("Config") or {}).get("Labels") or {}
    return {key: labels.get(label, "") for key, label in RELEASE_LABELS.items()}


def summary(api: DockerAPI, name: str) -> dict[str, Any] | None:
    c = api.container(name)
    if c is None:
        return None
    state = c.get("State") or {}
    image_id = c.get("Image")
    image = api.image(image_id) if image_id else None
    return {
        "name": name,
        "status": state.get("Status"),
        "running": state.get("Running"),
        "restarting": state.get("Restarting"),
        "exit_code": state.get("ExitCode"),
        "restart_count": c.get("RestartCount", 0),
        "health": (state.get("Health") or {}).get("Status"),
        "image": (c.get("Config") or {}).get("Image"),
        "image_id": image_id,
        "repo_digests": (image or {}).get("RepoDigests") or [],
        "started_at": state.get("StartedAt"),
        "labels": (c.get("Config") or {}).get("Labels") or {},
        "owned": owned(c),
        "release": release_of(c),
        "spec_sha256": ((c.get("Config") or {}).get("Labels") or {}).get(SPEC_LABEL),
    }


# --------------------------------------------------------------------------- the spec
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def size_bytes(value: str | int) -> int:
    """'1g' / '512m' / '64MiB' / 1073741824 -> bytes (binary units, as Docker's CLI)."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r} (e.g. 512m, 1g)")
    factor = 1024 ** " kmgt".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * factor)


def duration_ns(value: str | int | float) -> int:
    """'10s' / '1m30s' / '500ms' / 10 (seconds) -> nanoseconds."""
    if isinstance(value, (int, float)):
        return int(value * 1e9)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {value!r} (e.g. 10s, 2m)")
    scale = {"ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}
    return int(sum(float(n) * scale[u] for n, u in parts))


def container_payload(
    spec: dict[str, Any], release: dict[str, Any], env: dict[str, str]
) -> dict[str, Any]:
    """The create payload of the sidecar's container for `release` (the role's settings in
    `spec`, see library/hailo_sidecar.py), labelled with its release and its own digest."""
    port = f"{spec['port']}/tcp"
    network = spec.get("network") or ""
    devices = []
    for entry in spec.get("devices", []):
        host, _, rest = entry.partition(":")
        inside, _, perms = rest.partition(":")
        devices.append(
            {
                "PathOnHost": host,
                "PathInContainer": inside or host,
                "CgroupPermissions": perms or "rwm",
            }
        )
    health = spec["healthcheck"]
    payload: dict[str, Any] = {
        "Image": release["image"],
        "User": spec["user"],
        "Env": [f"{k}={v}" for k, v in sorted(env.items())],
        "Labels": {
            MANAGED_LABEL: MANAGED_BY,
            **{label: str(release[key]) for key, label in RELEASE_LABELS.items()},
        },
        "ExposedPorts": {port: {}},
        "Healthcheck": {
            "Test": list(health["test"]),
            "Interval": duration_ns(health["interval"]),
            "Timeout": duration_ns(health["timeout"]),
            "StartPeriod": duration_ns(health["start_period"]),
            # Engine 25+ (API 1.44): checks this often until the first healthy one, so the
            # gate sees "healthy" soon after the start; older engines ignore it.
            "StartInterval": duration_ns(health["start_interval"]),
            "Retries": int(health["retries"]),
        },
        "HostConfig": {
            "RestartPolicy": {"Name": spec["restart_policy"]},
            "ReadonlyRootfs": True,
            "Tmpfs": {"/tmp": f"rw,noexec,nosuid,size={spec['tmpfs_size']}"},
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "Devices": devices,
            "Mounts": [
                {
                    "Type": "bind",
                    "Source": m["source"],
                    "Target": m["target"],
                    "ReadOnly": bool(m.get("read_only", False)),
                }
                for m in spec["mounts"]
            ],
            "PortBindings": {
                port: [{"HostIp": spec["bind_address"], "HostPort": str(spec["port"])}]
            },
            "NetworkMode": network or "bridge",
            "Memory": size_bytes(spec["memory"]),
            "NanoCpus": int(float(spec["cpus"]) * 1e9),
            "LogConfig": {
                "Type": "json-file",
                "Config": {
                    "max-size": str(spec["log_max_size"]),
                    "max-file": str(spec["log_max_file"]),
                },
            },
        },
    }
    if network:
        payload["NetworkingConfig"] = {"EndpointsConfig": {network: {"Aliases": [spec["name"]]}}}
    digest = hashlib.sha256(
        json.dumps({"payload": payload, "platform": spec["platform"]}, sort_keys=True).encode()
    ).hexdigest()
    payload["Labels"][SPEC_LABEL] = digest
    return payload


# --------------------------------------------------------------------------- replacing
def previous_name(name: str) -> str:
    """Where the container of the committed release waits, stopped, until the new one is
    committed (or comes back when it is not)."""
    return f"{name}.previous"


def same_release(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    keys = ("digest", "model", "version", "sha256")
    return bool(a) and bool(b) and all(str(a.get(k, "")) == str(b.get(k, "")) for k in keys)


def check_devices(spec: dict[str, Any]) -> str | None:
    """Checked again just before a container is created: a device can go between the
    preflight and here (a driver unloaded, a board reset)."""
    for entry in spec.get("devices", []):
        path = entry.split(":", 1)[0]
        try:
            if not stat.S_ISCHR(os.stat(path).st_mode):
                return f"{path} is not a character device"
        except OSError as exc:
            return f"{path} is missing ({exc.strerror})"
    return None


def cannot_run(api: DockerAPI, spec: dict[str, Any], release: dict[str, Any]) -> str | None:
    """Why a container for `release` cannot be created now (checked before anything
    switches, and again just before the container is replaced)."""
    if api.image(release["image"]) is None:
        return (
            f"image {release['image']} is not on this host (not pulled, or removed): "
            "nothing was changed"
        )
    problem = check_devices(spec)
    return f"{problem}: nothing was changed" if problem else None


def replace(
    api: DockerAPI,
    spec: dict[str, Any],
    release: dict[str, Any],
    env: dict[str, str],
    committed: dict[str, Any] | None,
    check: bool = False,
) -> dict[str, Any]:
    """Make the role's container run `release`. The container that ran the committed
    release is kept, stopped, as <name>.previous until the commit; if the new one does
    not start, the old one is started again and the error says both what failed and
    whether the old one came back. {"changed", "replaced", "reason" on failure}."""
    name = spec["name"]
    payload = container_payload(spec, release, env)
    now = api.container(name)
    if now is not None and not owned(now):
        return {
            "ok": False,
            "changed": False,
            "reason": f"a container named {name} exists that this role did not start (no "
            f"{MANAGED_LABEL} label): remove it, or set sidecar_deploy_container_name",
        }
    state = (now or {}).get("State") or {}
    labels = ((now or {}).get("Config") or {}).get("Labels") or {}
    if (
        now is not None
        and labels.get(SPEC_LABEL) == payload["Labels"][SPEC_LABEL]
        and state.get("Running")
    ):
        return {"ok": True, "changed": False}
    if check:
        return {"ok": True, "changed": True}
    problem = cannot_run(api, spec, release)
    if problem:
        return {"ok": False, "changed": False, "reason": problem}
    network = spec.get("network") or ""
    if network and not api.network_exists(network):
        api.create_network(network)

    prev = previous_name(name)
    waiting = api.container(prev)
    if waiting is not None and not owned(waiting):
        return {
            "ok": False,
            "changed": False,
            "reason": f"a container named {prev} exists that this role did not start",
        }
    # Which container to keep for a restore: the one that runs the committed release.
    keep_now = now is not None and (same_release(release_of(now), committed) or waiting is None)
    if now is not None:
        api.stop(name)
        if keep_now:
            if waiting is not None:
                api.remove(prev)
            api.rename(name, prev)
        else:
            api.remove(name)  # an uncommitted release from an interrupted run
    try:
        api.create(name, payload, spec["platform"])
        api.start(name)
    except DockerError as exc:
        if api.container(name) is not None:
            api.remove(name)
        back = restore_previous(api, name)
        return {
            "ok": False,
            "changed": True,
            "reason": f"{exc}; {back}",
            "restored": back.startswith("the previous container runs again"),
        }
    return {"ok": True, "changed": True, "replaced": now is not None}


def restore_previous(api: DockerAPI, name: str) -> str:
    """Put <name>.previous back as <name> and start it; what happened, in words."""
    prev = previous_name(name)
    if api.container(prev) is None:
        return f"there is no previous container ({prev}) to go back to"
    try:
        if api.container(name) is not None:
            api.remove(name)
        api.rename(prev, name)
        api.start(name)
    except DockerError as exc:
        return f"the previous container did not come back: {exc}"
    return "the previous container runs again"


def drop_previous(api: DockerAPI, name: str) -> bool:
    """After a commit: the waiting container of the release before is not needed."""
    prev = previous_name(name)
    c = api.container(prev)
    if c is None or not owned(c):
        return False
    api.remove(prev)
    return True


def local_tag(release: dict[str, Any]) -> str:
    return f"{LOCAL_REPO}:{release['digest'].replace(':', '-')}"


def keep_images(api: DockerAPI, releases: list[dict[str, Any]], check: bool = False) -> bool:
    """Tag the images of `releases` under the role's local repository and untag the
    role's tags of any other release. True if anything changed."""
    wanted = {local_tag(r): r["image"] for r in releases if r and r.get("digest")}
    have = set(api.local_tags())
    changed = False
    for tag, ref in sorted(wanted.items()):
        if tag not in have and api.image(ref) is not None:
            changed = True
            if not check:
                repo, _, name = tag.rpartition(":")
                api.tag(ref, repo, name)
    for tag in sorted(have - set(wanted)):
        changed = True
        if not check:
            api.untag(tag)
    return changed
