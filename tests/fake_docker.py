"""A strict fake of the Docker Engine API (engine 26.1.5, API 1.45) on a Unix socket.

For fast tests of code that talks to dockerd with http.client over AF_UNIX. Status codes
and messages follow moby v26.1.5 (api/server, daemon, distribution). What the fake does
not model answers 501 "fake docker: ... not modelled" rather than guessing; unknown
endpoints answer 404 "page not found" like the engine. Every request lands in `calls`.
"""

from __future__ import annotations

import base64
import copy
import datetime
import fnmatch
import hashlib
import http.server
import json
import os
import re
import secrets
import shutil
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

VERSION, API_VERSION = "26.1.5", "1.45"
ZERO_TIME = "0001-01-01T00:00:00Z"
JSON = "application/json"
CONFIG_FIELDS = re.compile(  # container.Config's; the request's other keys are ignored
    "Hostname|Domainname|User|ExposedPorts|Tty|OpenStdin|Env|Cmd|Healthcheck|Image|Volumes|"
    "WorkingDir|Entrypoint|Labels|StopSignal|StopTimeout|Shell|AttachStdout|AttachStderr"
)
# The engine's wording, filled in with str.format.
MESSAGES = {
    "no_image": "No such image: {}",
    "no_container": "No such container: {}",
    "no_network": "network {} not found",
    "bad_name": "Invalid container name ({}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
    "name_taken": 'Conflict. The container name "{}" is already in use by container "{}". You '
    "have to remove (or rename) that container to be able to reuse that name.",
    "rm_running": 'cannot remove container "{}": container is {}: stop the container before '
    "removing or force remove",
    "not_running": "cannot kill container: {}: container {} is not running",
    "platform": "image with reference {} was found but does not match the specified platform: "
    "wanted {}, actual: {}",
    "host_platform": "The requested image's platform ({}) does not match the detected host "
    "platform ({}) and no specific platform was requested",
    "alias": "invalid config for network {}: invalid endpoint settings:\nnetwork-scoped alias is "
    "supported only for containers in user defined networks",
    "policy": "invalid restart policy: unknown policy '{}'; use one of 'no', 'always', "
    "'on-failure', or 'unless-stopped'",
    "port_taken": "driver failed programming external connectivity on endpoint {} ({}): Bind for "
    "{}:{} failed: port is already allocated",
    "no_device": 'error gathering device information while adding custom device "{}": no such '
    "file or directory",
    "refused": 'Get "https://{}/v2/": dial tcp 127.0.0.1:{}: connect: connection refused',
    "no_creds": '{} "https://{}/v2/{}/manifests/{}": no basic auth credentials',
    "no_manifest": "manifest for {} not found: manifest unknown: manifest unknown",
    "no_match": "no matching manifest for {} in the manifest list entries",
    "ref_in_use": 'conflict: unable to remove repository reference "{}" (must force) - '
    "container {} is using its referenced image {}",
    "delete_conflict": "conflict: unable to delete {} ({}) - {}",
    "too_old": "client version {} is too old. Minimum supported API version is 1.24, please "
    "upgrade your client to a newer version",
    "too_new": "client version {} is too new. Maximum supported API version is 1.45",
}
_DOMAIN = r"[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}"
_REST = re.compile(rf"(?P<path>{_PATH}(?:/{_PATH})*)(?::(?P<tag>{_TAG}))?(?:@(?P<dgst>{_DIGEST}))?")
_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # two characters at least, as in the engine


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def fail(status: int, key: str, *args: object) -> ApiError:
    return ApiError(status, MESSAGES[key].format(*args))


def unsupported(what: str) -> ApiError:
    return ApiError(501, f"fake docker: {what} is not modelled")


class Ref(NamedTuple):
    """A normalized image reference; `name` is the familiar form ("alpine", "reg:5000/x")."""

    name: str
    tag: str | None
    digest: str | None
    domain: str
    path: str

    @property
    def key(self) -> str:
        """How the reference store keys it: the digest wins, no tag means latest."""
        return (
            f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag or 'latest'}"
        )

    @property
    def shown(self) -> str:  # reference.FamiliarString(reference.TagNameOnly(ref))
        tag = f":{self.tag or 'latest'}" if self.tag or not self.digest else ""
        return self.name + tag + (f"@{self.digest}" if self.digest else "")


def parse_named(s: str) -> Ref:
    """reference.ParseNormalizedNamed, with its error wording."""
    if re.fullmatch(r"[a-f0-9]{64}", s):
        raise ApiError(
            400, f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    first, slash, rest = s.partition("/")
    if not slash or (
        not set(".:") & set(first) and first != "localhost" and first == first.lower()
    ):
        first, rest = "docker.io", s
    domain = "docker.io" if first == "index.docker.io" else first
    rest = f"library/{rest}" if domain == "docker.io" and "/" not in rest else rest
    if (remote := rest.split(":", 1)[0]) != remote.lower():
        raise ApiError(
            400, f"invalid reference format: repository name ({remote}) must be lowercase"
        )
    m = _REST.fullmatch(rest)
    if not m or not re.fullmatch(_DOMAIN, domain):
        raise ApiError(400, "invalid reference format")
    name = m["path"] if domain == "docker.io" else f"{domain}/{m['path']}"
    if domain == "docker.io" and m["path"].count("/") == 1:
        name = name.removeprefix("library/")
    return Ref(name, m["tag"], m["dgst"], domain, m["path"])


def repo_of(ref: str) -> str:
    name = ref.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name


def parse_platform(value: str) -> str:
    os_name, _, arch = value.lower().partition("/")
    arch = arch.split("/")[0]
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)
    if os_name != "linux" or arch not in ("amd64", "arm64", "arm"):
        raise ApiError(
            400, f'"{value}": unknown operating system or architecture: invalid argument'
        )
    return f"linux/{arch}"


def flag(query: dict[str, str], key: str) -> bool:
    return query.get(key, "").strip().lower() not in ("", "0", "no", "false", "none")


def parse_time(stamp: str) -> datetime.datetime:
    main, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.datetime.fromisoformat(f"{main}.{fraction[:6]:0<6}+00:00")


def human_since(stamp: str) -> str:
    """go-units HumanDuration of the time since an RFC 3339 stamp."""
    secs = int((datetime.datetime.now(datetime.UTC) - parse_time(stamp)).total_seconds())
    if secs < 60:
        return "Less than a second" if secs < 1 else "1 second" if secs == 1 else f"{secs} seconds"
    if secs < 3600:
        return "About a minute" if secs < 120 else f"{secs // 60} minutes"
    hours = round(secs / 3600)
    return (
        "About an hour" if hours == 1 else f"{hours} hours" if hours < 48 else f"{hours // 24} days"
    )


class Request(NamedTuple):
    method: str
    params: dict[str, str]
    query: dict[str, str]
    headers: Message
    body: bytes

    def json(self) -> Any:
        """httputils.ReadJSON: a body must come with a JSON Content-Type."""
        ctype = self.headers.get("Content-Type", "")
        if not self.body:
            return None
        if ctype.split(";")[0].strip() != JSON:
            raise ApiError(400, f"unsupported Content-Type header ({ctype}): must be '{JSON}'")
        try:
            value = json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, f"invalid JSON: {exc}") from None
        if value is not None and not isinstance(value, dict):  # every body here is a Go struct
            kind = {list: "array", str: "string", bool: "bool"}.get(type(value), "number")
            raise ApiError(400, f"invalid JSON: json: cannot unmarshal {kind} into Go value")
        return value


Reply = tuple[int, Any, str]  # status, body (JSON-able, bytes or None), content type


class FakeDocker:
    """The engine's state is public, for tests to inspect and to inject faults into."""

    def __init__(self, socket_path: str | os.PathLike[str], root_dir: str | None = None) -> None:
        self.socket_path, self.root_dir, self._own_root = str(socket_path), root_dir, not root_dir
        self.arch = "amd64"  # the engine's; images default to arm64, the Pis'
        self.images: dict[str, dict[str, Any]] = {}
        self.registry: dict[str, dict[str, Any]] = {}
        self.registry_up = True
        self.registry_auth: dict[str, str] | None = None
        self.containers: dict[str, dict[str, Any]] = {}
        self.networks: dict[str, dict[str, Any]] = {}
        self.fail_next: dict[str, Any] = {}
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.RLock()
        self._last_ns = 0
        self._server: _Server | None = None
        for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            self._add_network(name, driver)

    def start(self) -> FakeDocker:
        self.root_dir = self.root_dir or tempfile.mkdtemp(prefix="fake-docker-root-")
        self._server = _Server(self.socket_path, _Handler)
        self._server.fake = self
        threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        Path(self.socket_path).unlink(missing_ok=True)
        if self._own_root and self.root_dir:
            shutil.rmtree(self.root_dir, ignore_errors=True)

    # ------------------------------------------------------------------ test hooks
    def add_image(
        self, repo: str, digest: str | None = None, tags: tuple[str, ...] = (), arch: str = "arm64"
    ) -> str:
        """A local image as if pulled: by digest (no tags), or by tag (the tags and a digest)."""
        with self._lock:
            name, digest = parse_named(repo).name, digest or f"sha256:{secrets.token_hex(32)}"
            image = self._new_image(digest, arch, None)
            for ref in [f"{name}@{digest}", *(f"{name}:{tag}" for tag in tags)]:
                self._add_ref(image, ref)
            return str(image["Id"])

    def publish(
        self, repo: str, tags: tuple[str, ...] = (), arch: str | list[str] = "arm64"
    ) -> str:
        """Put an image in `registry` (a manifest list if `arch` is a list); returns its digest."""
        digest = f"sha256:{secrets.token_hex(32)}"
        with self._lock:
            self.registry[f"{parse_named(repo).name}@{digest}"] = {"arch": arch, "tags": list(tags)}
        return digest

    def add_log(self, name: str, line: str, stream: str = "stdout") -> None:
        with self._lock:
            self._container(name)["_logs"].append((stream, line.rstrip("\n") + "\n"))

    def set_health(self, name: str, status: str, output: str = "") -> None:
        with self._lock:
            c = self._container(name)
            health = c["State"].get("Health")
            if health is None or not c["State"]["Running"]:
                raise ValueError(f"{name} has no running healthcheck")
            health["Status"] = status
            if status != "starting":
                code, now = int(status != "healthy"), self._now()
                entry = {"Start": now, "End": now, "ExitCode": code, "Output": output}
                health["Log"] = [*health["Log"], entry][-5:]  # the engine keeps five
                health["FailingStreak"] = (health["FailingStreak"] + 1) * code

    def restart(self, name: str) -> None:
        """The container crashed and its restart policy started it again."""
        with self._lock:
            c = self._container(name)
            c["RestartCount"] += 1
            self._halt(c, c["State"]["ExitCode"])
            self._run(c)

    def exit(self, name: str, code: int = 1, restarting: bool = False) -> None:
        """The container's process exited (with `restarting`: and awaits its restart)."""
        with self._lock:
            c = self._container(name)
            self._halt(c, code)
            if restarting:  # the engine counts a restarting container as running
                c["State"].update(Status="restarting", Running=True, Restarting=True)

    # ------------------------------------------------------------------ dispatch
    def handle(self, method: str, raw_path: str, headers: Message, body: bytes) -> Reply:
        url = urlsplit(raw_path)
        path, version = unquote(url.path), API_VERSION
        if m := re.fullmatch(r"/v([0-9.]+)(/.*)", path):
            version, path = m[1], m[2]
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        with self._lock:
            self.calls.append((method, path, query))
            if (found := route(method, path)) is None:
                return 404, {"message": "page not found"}, JSON
            try:
                given = tuple(int(p) for p in version.split(".") if p)
                if not (1, 24) <= given <= (1, 45):
                    raise fail(400, "too_old" if given < (1, 24) else "too_new", version)
                return found[0](self, Request(method, found[1], query, headers, body))
            except ApiError as exc:
                return exc.status, None if exc.status == 304 else {"message": exc.message}, JSON
            except Exception as exc:  # a bug in the fake, or a request it cannot digest
                return 500, {"message": f"fake docker failed: {exc!r}"}, JSON

    def _ping(self, req: Request) -> Reply:
        return 200, b"" if req.method == "HEAD" else b"OK", "text/plain; charset=utf-8"

    def _version(self, req: Request) -> Reply:
        info = {"Version": VERSION, "ApiVersion": API_VERSION, "MinAPIVersion": "1.24"}
        return 200, info | {"Os": "linux", "Arch": self.arch, "GoVersion": "go1.21.13"}, JSON

    def _info(self, req: Request) -> Reply:
        running = sum(c["State"]["Running"] for c in self.containers.values())
        counts = {"Containers": len(self.containers), "ContainersRunning": running}
        counts |= {"ContainersStopped": len(self.containers) - running, "Images": len(self.images)}
        arch = {"amd64": "x86_64", "arm64": "aarch64"}[self.arch]
        info = {"DockerRootDir": self.root_dir, "Architecture": arch, "ServerVersion": VERSION}
        return 200, counts | info | {"Driver": "overlay2", "OSType": "linux"}, JSON

    # ------------------------------------------------------------------ images
    def _new_image(self, digest: str, arch: str, config: dict[str, Any] | None) -> dict[str, Any]:
        image_id = "sha256:" + hashlib.sha256(f"{digest}|{arch}".encode()).hexdigest()
        path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        config = copy.deepcopy(config or {"Env": [path], "Cmd": ["/bin/sh"]})
        image: dict[str, Any] = {"Id": image_id, "RepoTags": [], "RepoDigests": []}
        image["Created"] = self._now()
        image |= {"Architecture": arch, "Os": "linux", "Config": config}
        return self.images.setdefault(image_id, image)

    def _refs(self, image: dict[str, Any]) -> list[str]:
        return [*image["RepoTags"], *image["RepoDigests"]]

    def _owner(self, key: str) -> dict[str, Any] | None:
        return next((i for i in self.images.values() if key in self._refs(i)), None)

    def _add_ref(self, image: dict[str, Any], key: str) -> None:
        field = "RepoDigests" if "@" in key else "RepoTags"
        if (owner := self._owner(key)) is not None:
            owner[field].remove(key)  # AddTag(force=True): a tag moves to the new image
        image[field].append(key)

    def _find_image(self, ref_or_id: str, platform: str | None = None) -> dict[str, Any]:
        """ImageService.GetImage: an ID, a reference, or a unique ID prefix."""
        if re.fullmatch(r"(?:sha256:)?[a-f0-9]{64}", ref_or_id):
            shown = ref_or_id if ref_or_id.startswith("sha256:") else f"sha256:{ref_or_id}"
            found = self.images.get(shown)
        else:
            ref, hexpart = parse_named(ref_or_id), ref_or_id.removeprefix("sha256:")
            found, shown = self._owner(ref.key), ref.shown
            if found is None and re.fullmatch(r"[a-f0-9]+", hexpart):
                hits = [i for k, i in self.images.items() if k[7:].startswith(hexpart)]
                found = hits[0] if len(hits) == 1 else None
        if found is None:
            raise fail(404, "no_image", shown)
        if platform and platform != (actual := f"linux/{found['Architecture']}"):
            raise fail(404, "platform", ref_or_id, platform, actual)
        return found

    def _image_inspect(self, req: Request) -> Reply:
        return 200, self._find_image(req.params["name"]), JSON

    def _pull(self, req: Request) -> Reply:
        q = req.query
        if not q.get("fromImage"):
            raise unsupported("importing an image")
        ref, tag = parse_named(q["fromImage"].removesuffix(":")), q.get("tag", "")
        if re.fullmatch(_DIGEST, tag):
            ref = ref._replace(tag=None, digest=tag)
        elif tag:
            if not re.fullmatch(_TAG, tag):
                raise ApiError(400, "invalid tag format")
            ref = ref._replace(tag=tag)
        if not ref.tag and not ref.digest:
            raise unsupported("pulling every tag of a repository")
        platform = parse_platform(q["platform"]) if q.get("platform") else None
        host = "registry-1.docker.io" if ref.domain == "docker.io" else ref.domain
        if not self.registry_up:
            raise fail(500, "refused", host, host.rpartition(":")[2] if ":" in host else "443")
        auth = decode_auth(req.headers.get("X-Registry-Auth", ""))
        given = {k: auth.get(k) for k in ("username", "password")}
        if self.registry_auth and not any(given.values()):
            verb = "Get" if ref.digest else "Head"
            raise fail(500, "no_creds", verb, host, ref.path, ref.digest or ref.tag)
        if self.registry_auth and given != self.registry_auth:
            raise ApiError(500, "unauthorized: authentication required")
        for key, entry in self.registry.items():
            published = parse_named(key)
            if (
                published.name == ref.name
                and published.digest
                and (published.digest == ref.digest or ref.tag in entry.get("tags", ()))
            ):
                digest = published.digest
                break
        else:
            raise fail(404, "no_manifest", ref.shown)
        # From here on the engine has written to the stream: errors arrive in it, with 200.
        full = f"{ref.domain}/{ref.path}" + (f"@{ref.digest}" if ref.digest else f":{ref.tag}")
        out: list[dict[str, Any]] = [{"status": f"Pulling from {ref.name}", "id": ref.tag or full}]
        arches = entry["arch"] if isinstance(entry["arch"], list) else [entry["arch"]]
        wanted = platform or f"linux/{self.arch}"
        if wanted[6:] not in arches and isinstance(entry["arch"], list):
            return stream(out, MESSAGES["no_match"].format(wanted))
        arch = wanted[6:] if wanted[6:] in arches else arches[0]
        image_id = "sha256:" + hashlib.sha256(f"{digest}|{arch}".encode()).hexdigest()
        have = image_id in self.images
        for layer in (image_id[7:19], image_id[19:31]):
            steps = ["Already exists"] if have else ["Pulling fs layer", "Pull complete"]
            out += [{"status": step, "progressDetail": {}, "id": layer} for step in steps]
        if "pull" in self.fail_next:
            return stream(out, self.fail_next.pop("pull"))
        out.append({"status": f"Digest: {digest}"})
        owner = self._owner(ref.key)
        if ref.digest and owner is not None and owner["Id"] != image_id:
            return stream(out, f"cannot overwrite digest {digest}")
        image = self._new_image(digest, arch, entry.get("config"))
        if self._owner(f"{ref.name}@{digest}") is None:  # a tag pull never moves a digest
            image["RepoDigests"].append(f"{ref.name}@{digest}")
        if not ref.digest:
            self._add_ref(image, ref.key)
        news = "Image is up to date" if owner is image else "Downloaded newer image"
        out.append({"status": f"Status: {news} for {ref.shown}"})
        if platform and platform != f"linux/{arch}":  # a single-arch image: only a warning
            warning = MESSAGES["platform"].format(full, platform, f"linux/{arch}")
            out.append({"status": f"WARNING: {warning}"})
        return stream(out)

    def _image_tag(self, req: Request) -> Reply:
        repo, tag = req.query.get("repo", ""), req.query.get("tag", "")
        if not repo:
            return 200, None, JSON  # the handler returns InvalidParameter(nil), which is nil
        ref = parse_named(repo)
        if ref.digest or (tag and not re.fullmatch(_TAG, tag)):
            raise ApiError(
                400, "cannot import digest reference" if ref.digest else "invalid tag format"
            )
        try:
            image = self._find_image(req.params["name"])
        except ApiError as exc:
            raise ApiError(404, exc.message) from None
        self._add_ref(image, f"{ref.name}:{tag or ref.tag or 'latest'}")
        return 201, None, JSON

    def _image_delete(self, req: Request) -> Reply:
        """ImageService.ImageDelete, less parent images."""
        name, force = req.params["name"], flag(req.query, "force")
        if not name.strip():
            raise ApiError(400, "image name cannot be blank")
        image = self._find_image(name)
        image_id, refs, records = image["Id"], self._refs(image), []
        users = [c for c in self.containers.values() if c["Image"] == image_id]
        if not image_id[7:].startswith(name.removeprefix("sha256:")):  # a reference, not an ID
            if not force and single_reference(refs) and users:
                raise fail(409, "ref_in_use", name, users[0]["Id"][:12], image_id[7:19])
            key = parse_named(name).key
            untag = [key]  # and the digests of its repository, if that was its last tag
            if "@" not in key and all(
                repo_of(r) != repo_of(key) for r in image["RepoTags"] if r != key
            ):
                untag += [r for r in image["RepoDigests"] if repo_of(r) == repo_of(key)]
            for ref in untag:
                image["RepoDigests" if "@" in ref else "RepoTags"].remove(ref)
                records.append({"Untagged": ref})
            if self._refs(image) or self._delete_conflict(image_id, force):
                return 200, records, JSON  # in use: the engine leaves it dangling, silently
        elif single_reference(refs):
            if conflict := self._delete_conflict(image_id, force, active_refs=False):
                raise ApiError(409, conflict)
            records += [{"Untagged": r} for r in refs]
            image["RepoTags"], image["RepoDigests"] = [], []
        if conflict := self._delete_conflict(image_id, force):
            raise ApiError(409, conflict)
        records += [{"Untagged": r} for r in self._refs(image)] + [{"Deleted": image_id}]
        del self.images[image_id]
        return 200, records, JSON

    def _delete_conflict(self, image_id: str, force: bool, active_refs: bool = True) -> str | None:
        """checkImageDeleteConflict: running containers always, the rest unless forced."""
        users = [c for c in self.containers.values() if c["Image"] == image_id]
        running = [c for c in users if c["State"]["Running"]]
        if running:
            why = f"image is being used by running container {running[0]['Id'][:12]}"
        elif not force and active_refs and self._refs(self.images[image_id]):
            why = "image is referenced in multiple repositories"
        elif not force and users:
            why = f"image is being used by stopped container {users[0]['Id'][:12]}"
        else:
            return None
        how = "cannot be forced" if running else "must be forced"
        return MESSAGES["delete_conflict"].format(image_id[7:19], how, why)

    # ------------------------------------------------------------------ containers
    def _container(self, ref: str) -> dict[str, Any]:
        """Daemon.GetContainer: full ID, exact name, or unique ID prefix."""
        named = [c for c in self.containers.values() if c["Name"] == "/" + ref.removeprefix("/")]
        hits = [c for i, c in self.containers.items() if ref and i.startswith(ref)]
        hits = [self.containers[ref]] if ref in self.containers else named or hits
        if len(hits) > 1:
            raise ApiError(400, f"multiple IDs found with provided prefix: {ref}")
        if not hits:
            raise fail(404, "no_container", ref)
        return hits[0]

    def _image_list(self, req: Request) -> Reply:
        """GET /images/json: the `reference` filter as the engine matches it (path.Match of
        the pattern against each tag's familiar name, or its name:tag)."""
        try:
            filters = json.loads(req.query.get("filters") or "{}")
        except ValueError:
            raise ApiError(400, "invalid filter") from None
        for key in set(filters) - {"reference"}:
            raise unsupported(f"the {key!r} images filter")
        patterns = list(filters.get("reference") or [])
        out = []
        for image in self.images.values():
            tags = image["RepoTags"]
            if patterns and not any(
                fnmatch.fnmatchcase(t.rpartition(":")[0], p) or fnmatch.fnmatchcase(t, p)
                for t in tags
                for p in patterns
            ):
                continue
            out.append(
                {
                    "Id": image["Id"],
                    "RepoTags": tags,
                    "RepoDigests": image["RepoDigests"],
                    "Created": int(parse_time(image["Created"]).timestamp()),
                    "Labels": (image.get("Config") or {}).get("Labels") or {},
                }
            )
        return 200, out, JSON

    def _container_list(self, req: Request) -> Reply:
        try:
            filters = json.loads(req.query.get("filters") or "{}")
            filters = {k: list(v) for k, v in filters.items()}  # also the legacy {"v": true}
        except (ValueError, AttributeError, TypeError):
            raise ApiError(400, "invalid filter") from None
        others = "ancestor before exited isolation status health since volume network is-task"
        for key in set(filters) - {"label", "name", "id"}:
            if key in f"{others} publish expose".split():
                raise unsupported(f"the {key!r} filter")
            raise ApiError(400, f"invalid filter '{key}'")
        out = []
        for c in sorted(self.containers.values(), key=lambda c: c["Created"], reverse=True):
            st, labels = c["State"], c["Config"]["Labels"]
            label_filters = [f.partition("=") for f in filters.get("label", [])]
            if not (
                (flag(req.query, "all") or st["Running"])
                and matches(filters.get("name"), c["Name"], c["Name"][1:])
                and matches(filters.get("id"), c["Id"])
                and all(k in labels and (not eq or labels[k] == v) for k, eq, v in label_filters)
            ):
                continue
            summary = {"Id": c["Id"], "Names": [c["Name"]], "Image": c["Config"]["Image"]}
            summary |= {"ImageID": c["Image"], "Command": " ".join([c["Path"], *c["Args"]])}
            summary |= {"Created": int(parse_time(c["Created"]).timestamp()), "Labels": labels}
            out.append(summary | {"State": st["Status"], "Status": status_line(st)})
        return 200, out, JSON

    def _container_create(self, req: Request) -> Reply:
        body = req.json() or {}
        config = {k: copy.deepcopy(v) for k, v in body.items() if CONFIG_FIELDS.fullmatch(k)}
        if not config:
            raise ApiError(400, "config cannot be empty in order to create a container")
        host = copy.deepcopy(body.get("HostConfig") or {})
        endpoints = copy.deepcopy((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
        if host.get("NetworkMode") in (None, "", "default"):
            host["NetworkMode"] = "bridge"
            if "default" in endpoints:
                endpoints["bridge"] = endpoints.pop("default")
        policy = {"Name": "no", "MaximumRetryCount": 0} | (host.get("RestartPolicy") or {})
        host["RestartPolicy"] = policy | {"Name": policy["Name"] or "no"}
        # verifyContainerSettings refuses these before anything is looked up.
        for field, value in (config.get("Healthcheck") or {}).items():  # nanoseconds, not seconds
            if field in ("Interval", "Timeout", "StartPeriod", "StartInterval") and 0 < value < 1e6:
                raise ApiError(400, f"{field} in Healthcheck cannot be less than 1ms")
        if host["RestartPolicy"]["Name"] not in ("no", "always", "unless-stopped", "on-failure"):
            raise fail(400, "policy", host["RestartPolicy"]["Name"])
        platform = parse_platform(req.query["platform"]) if req.query.get("platform") else None
        image = self._find_image(config["Image"], platform) if config.get("Image") else None
        warnings = []
        if image and not platform and image["Architecture"] != self.arch:
            actual, engine = f"linux/{image['Architecture']}", f"linux/{self.arch}"
            warnings.append(MESSAGES["host_platform"].format(actual, engine))
        # An unknown network passes here ("might not exist when the container is created");
        # starting the container fails on it.
        for net, endpoint in endpoints.items():
            if (endpoint or {}).get("Aliases") and net in ("bridge", "host", "none"):
                raise fail(400, "alias", net)
        merge_image_config(config, image["Config"] if image else {})
        command = (config["Entrypoint"] or []) + (config["Cmd"] or [])
        if not command:
            raise ApiError(400, "no command specified")
        cid = secrets.token_hex(32)
        name = req.query.get("name") or f"fake_{cid[:8]}"
        if not _NAME.fullmatch(name):
            raise fail(400, "bad_name", name)
        name = "/" + name.removeprefix("/")
        if taken := [c for c in self.containers.values() if c["Name"] == name]:
            raise fail(409, "name_taken", name, taken[0]["Id"])
        if "create" in self.fail_next:
            raise ApiError(*self.fail_next.pop("create"))
        mode = host["NetworkMode"]
        networks = endpoints or ({} if mode.startswith("container:") else {mode: {}})
        endpoint = {"Aliases": None, "NetworkID": "", "EndpointID": "", "IPAddress": ""}
        state: dict[str, Any] = dict.fromkeys(("Running", "Paused", "Restarting", "Dead"), False)
        state |= {"Status": "created", "Pid": 0, "ExitCode": 0, "Error": ""}
        state |= {"OOMKilled": False, "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME}
        c: dict[str, Any] = {"Id": cid, "Name": name, "Created": self._now(), "Path": command[0]}
        c |= {"Args": command[1:], "State": state, "RestartCount": 0}
        c["Image"] = image["Id"] if image else ""
        c |= {"Config": {"Hostname": cid[:12], "Tty": False} | config, "HostConfig": host}
        c |= {"NetworkingConfig": {"EndpointsConfig": endpoints}, "Platform": "linux", "_logs": []}
        c["NetworkSettings"] = {"Networks": {n: endpoint | (e or {}) for n, e in networks.items()}}
        self.containers[cid] = c
        return 201, {"Id": cid, "Warnings": warnings}, JSON

    def _container_inspect(self, req: Request) -> Reply:
        c = self._container(req.params["name"])
        return 200, {k: v for k, v in c.items() if k not in ("_logs", "NetworkingConfig")}, JSON

    def _container_action(self, req: Request) -> Reply:
        action, name = req.params["action"], req.params["name"]
        if action == "rename":
            return self._rename(name, req.query.get("name", ""))
        c = self._container(name)
        running = c["State"]["Running"]
        if action == "start" and running:
            raise ApiError(304, "container is already running")
        if action == "stop" and not running:
            raise ApiError(304, "container is already stopped")
        if action == "kill" and not running:
            raise fail(409, "not_running", name, c["Id"])
        if action == "start":
            self._start(c)
        elif action == "restart":
            if running:
                self._halt(c, 0)
            try:
                self._start(c)
            except ApiError as exc:
                raise ApiError(500, f"Cannot restart container {name}: {exc.message}") from None
        elif action == "stop":
            self._halt(c, 0)
        elif (req.query.get("signal") or "KILL").upper().removeprefix("SIG") in ("KILL", "9"):
            self._halt(c, 137)
        # Any other signal only reaches the process: a test makes it exit() if it should.
        return 204, None, JSON

    def _rename(self, old: str, new: str) -> Reply:
        if not old or not new:
            raise ApiError(400, "Neither old nor new names may be empty")
        c, prefix = self._container(old), "Error when allocating new name: "
        if c["Name"] == "/" + new.removeprefix("/"):
            raise ApiError(400, "Renaming a container with the same name as its current name")
        if not _NAME.fullmatch(new):
            raise ApiError(400, prefix + MESSAGES["bad_name"].format(new))
        new = "/" + new.removeprefix("/")
        if taken := [o for o in self.containers.values() if o["Name"] == new]:
            raise ApiError(409, prefix + MESSAGES["name_taken"].format(new, taken[0]["Id"]))
        c["Name"] = new
        return 204, None, JSON

    def _container_delete(self, req: Request) -> Reply:
        c = self._container(req.params["name"])
        if c["State"]["Running"] and not flag(req.query, "force"):
            raise fail(409, "rm_running", c["Name"], c["State"]["Status"])
        del self.containers[c["Id"]]
        return 204, None, JSON

    def _logs(self, req: Request) -> Reply:
        c = self._container(req.params["name"])
        show = {s for s in ("stdout", "stderr") if flag(req.query, s)}
        if not show:
            raise ApiError(400, "You must choose at least one stream")
        if flag(req.query, "follow") and c["State"]["Running"]:
            raise unsupported("following the logs of a running container")
        if c["Config"]["Tty"]:
            raise unsupported("the raw log stream of a container with a TTY")
        lines, tail = c["_logs"], req.query.get("tail", "all")
        if tail.isdigit():
            lines = lines[-int(tail) :] if int(tail) else []
        out = b""
        for name, text in lines:  # the tail counts both streams; the filter comes after
            if name in show:
                data = text.encode()
                out += bytes([1 if name == "stdout" else 2, 0, 0, 0]) + len(data).to_bytes(4, "big")
                out += data
        return 200, out, "application/vnd.docker.multiplexed-stream"

    def _start(self, c: dict[str, Any]) -> None:
        """containerStart's checks in its order: networks, ports (connecting), devices (spec)."""
        try:
            if "start" in self.fail_next:
                raise ApiError(*self.fail_next.pop("start"))
            for net in c["NetworkSettings"]["Networks"]:
                if self._find_network(net) is None:
                    raise fail(404, "no_network", net)
            for other in self.containers.values():
                if other is not c and other["State"]["Running"] and bindings(c) & bindings(other):
                    ip, port, _ = min(bindings(c) & bindings(other))
                    endpoint = secrets.token_hex(32)
                    raise fail(500, "port_taken", c["Name"][1:], endpoint, ip, port)
            for device in c["HostConfig"].get("Devices") or []:
                if not os.path.exists(device.get("PathOnHost", "")):
                    raise fail(500, "no_device", device.get("PathOnHost", ""))
        except ApiError as exc:  # a failed start leaves its mark on the state
            c["State"].update(Error=exc.message, ExitCode=c["State"]["ExitCode"] or 128)
            raise
        c["RestartCount"] = 0  # a start through the API resets the restart manager
        self._run(c)

    def _run(self, c: dict[str, Any]) -> None:
        st = c["State"]
        st.update(Status="running", Running=True, Restarting=False, Pid=4242, ExitCode=0, Error="")
        st["StartedAt"] = self._now()
        if ((c["Config"].get("Healthcheck") or {}).get("Test") or ["NONE"])[0] != "NONE":
            log = (st.get("Health") or {}).get("Log", [])
            st["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": log}
        for net, endpoint in c["NetworkSettings"]["Networks"].items():
            network_id = (self._find_network(net) or {}).get("Id", "")
            endpoint.update(NetworkID=network_id, EndpointID=secrets.token_hex(32))

    def _halt(self, c: dict[str, Any], code: int) -> None:
        c["State"].update(Status="exited", Running=False, Restarting=False, Pid=0, ExitCode=code)
        c["State"]["FinishedAt"] = self._now()
        for endpoint in c["NetworkSettings"]["Networks"].values():
            endpoint["EndpointID"] = ""

    # ------------------------------------------------------------------ networks
    def _add_network(self, name: str, driver: str, **extra: Any) -> dict[str, Any]:
        network: dict[str, Any] = {"Name": name, "Id": secrets.token_hex(32)}
        network["Created"] = self._now()
        network |= {"Scope": "local", "Driver": driver, "Internal": False, "Labels": {}}
        self.networks[name] = network | extra
        return self.networks[name]

    def _find_network(self, term: str) -> dict[str, Any] | None:
        """Daemon.FindNetwork: full ID or name, then a unique ID prefix."""
        exact = [n for n in self.networks.values() if term in (n["Id"], n["Name"])]
        hits = exact or [n for n in self.networks.values() if n["Id"].startswith(term)]
        return hits[0] if len(hits) == 1 else None

    def _network_inspect(self, req: Request) -> Reply:
        if (network := self._find_network(req.params["name"])) is None:
            raise fail(404, "no_network", req.params["name"])
        return 200, network, JSON

    def _network_create(self, req: Request) -> Reply:
        body = req.json() or {}
        name = body.get("Name") or ""
        if name in ("bridge", "host", "none"):
            raise ApiError(403, f"operation is not permitted on predefined {name} network ")
        if not name:
            raise ApiError(400, "invalid name: ")
        if name in self.networks:
            raise ApiError(409, f"network with name {name} already exists")
        extra = {k: body[k] for k in ("Internal", "Labels", "Options") if k in body}
        network = self._add_network(name, body.get("Driver") or "bridge", **extra)
        return 201, {"Id": network["Id"], "Warning": ""}, JSON

    def _now(self) -> str:
        """RFC 3339 with nanoseconds as Go prints it; never the same twice."""
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        secs, nanos = divmod(self._last_ns, 10**9)
        fraction = f".{nanos:09d}".rstrip("0").rstrip(".")
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + fraction + "Z"


def decode_auth(header: str) -> dict[str, Any]:
    """X-Registry-Auth (base64url JSON); the engine ignores a malformed one on pull."""
    try:
        auth = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except ValueError:
        return {}
    return auth if isinstance(auth, dict) else {}


def stream(messages: list[dict[str, Any]], error: str | None = None) -> Reply:
    """A JSON progress stream as the engine writes it; an error ends it, still with 200."""
    if error is not None:
        messages = [*messages, {"errorDetail": {"message": error}, "error": error}]
    return 200, b"".join(json.dumps(m).encode() + b"\r\n" for m in messages), JSON


def matches(patterns: list[str] | None, *values: str) -> bool:
    """filters.Args.Match: no filter, an exact value, or a regular expression found in one."""
    if not patterns:
        return True
    return any(v in patterns or any(re.search(p, v) for p in patterns) for v in values)


def single_reference(refs: list[str]) -> bool:
    """isSingleReference: at most one tag, and every reference in that tag's repository."""
    tags = [r for r in refs if "@" not in r]
    if len(refs) <= 1 or len(tags) > 1:
        return len(refs) == 1
    canonical = {repo_of(r) for r in refs if "@" in r}
    return len(canonical) == 1 and repo_of(tags[0] if tags else refs[0]) in canonical


def bindings(c: dict[str, Any]) -> set[tuple[str, str, str]]:
    """The host ports a running container holds: (HostIp, HostPort, protocol)."""
    if c["HostConfig"]["NetworkMode"] == "host" or c["State"]["Restarting"]:
        return set()
    ports = c["HostConfig"].get("PortBindings") or {}
    return {
        (b.get("HostIp") or "0.0.0.0", b["HostPort"], port.partition("/")[2] or "tcp")
        for port, binds in ports.items()
        for b in binds or []
        if b.get("HostPort")
    }


def status_line(st: dict[str, Any]) -> str:
    """State.String(): the Status column of docker ps."""
    if st["Restarting"]:
        return f"Restarting ({st['ExitCode']}) {human_since(st['FinishedAt'])} ago"
    if st["Running"]:
        health = (st.get("Health") or {}).get("Status")
        shown = "health: starting" if health == "starting" else health
        return f"Up {human_since(st['StartedAt'])}" + (f" ({shown})" if health else "")
    if st["StartedAt"] == ZERO_TIME:
        return "Created"
    return f"Exited ({st['ExitCode']}) {human_since(st['FinishedAt'])} ago"


def merge_image_config(user: dict[str, Any], image: dict[str, Any]) -> None:
    """daemon.merge: the image's config fills in what the request left out."""
    for field in ("User", "WorkingDir"):
        user[field] = user.get(field) or image.get(field) or ""
    keys = {e.split("=", 1)[0] for e in user.get("Env") or []}
    inherited = [e for e in image.get("Env") or [] if e.split("=", 1)[0] not in keys]
    user["Env"] = (user.get("Env") or []) + inherited
    user["Labels"] = (image.get("Labels") or {}) | (user.get("Labels") or {})
    ports = (image.get("ExposedPorts") or {}) | (user.get("ExposedPorts") or {})
    user["ExposedPorts"] = ports or None
    for field in ("Cmd", "Entrypoint"):  # a strslice: a string is a one-element list
        user[field] = [user[field]] if isinstance(user.get(field), str) else user.get(field)
    if not user["Entrypoint"]:
        user["Cmd"] = user["Cmd"] or image.get("Cmd")
        if user["Entrypoint"] is None:
            user["Entrypoint"] = image.get("Entrypoint")
    if image.get("Healthcheck"):
        mine = {k: v for k, v in (user.get("Healthcheck") or {}).items() if v}
        user["Healthcheck"] = image["Healthcheck"] | mine


Handler = Callable[[FakeDocker, Request], Reply]
NAME, ACTION = "(?P<name>.*)", "(?P<action>start|stop|restart|kill|rename)"
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/_ping", FakeDocker._ping),
    ("HEAD", "/_ping", FakeDocker._ping),
    ("GET", "/version", FakeDocker._version),
    ("GET", "/info", FakeDocker._info),
    ("POST", "/images/create", FakeDocker._pull),
    ("GET", "/images/json", FakeDocker._image_list),
    ("GET", f"/images/{NAME}/json", FakeDocker._image_inspect),
    ("POST", f"/images/{NAME}/tag", FakeDocker._image_tag),
    ("DELETE", f"/images/{NAME}", FakeDocker._image_delete),
    ("GET", "/containers/json", FakeDocker._container_list),
    ("POST", "/containers/create", FakeDocker._container_create),
    ("GET", f"/containers/{NAME}/json", FakeDocker._container_inspect),
    ("GET", f"/containers/{NAME}/logs", FakeDocker._logs),
    ("POST", f"/containers/{NAME}/{ACTION}", FakeDocker._container_action),
    ("DELETE", f"/containers/{NAME}", FakeDocker._container_delete),
    ("POST", "/networks/create", FakeDocker._network_create),
    ("GET", "/networks/(?P<name>.+)", FakeDocker._network_inspect),
]


def route(method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
    for verb, pattern, handler in ROUTES:
        if verb == method and (m := re.fullmatch(pattern, path)):
            return handler, m.groupdict()
    return None


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    fake: FakeDocker


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the default wants a client address, which an AF_UNIX peer does not have

    def handle_one_request(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline or not self.parse_request():
            self.close_connection = True
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, payload, ctype = self.server.fake.handle(
            self.command, self.path, self.headers, body
        )
        if not isinstance(payload, bytes):
            payload = b"" if payload is None else json.dumps(payload).encode() + b"\n"
        self.send_response(status)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Server", f"Docker/{VERSION} (linux)")
        self.send_header("Content-Type", ctype)
        if status not in (204, 304):  # these have no body, so no length either
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(payload)
        self.wfile.flush()
