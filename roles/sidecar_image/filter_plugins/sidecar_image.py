"""Decisions of the sidecar_image role, as filters (tests/test_sidecar_image_filters.py).

hailort_plan: which of the site's HailoRT files each platform's runtime build takes, or
what is wrong with sidecar_image_hailort_version / sidecar_image_hailort_sources.
hailort_file_problems: what the files on GPUSrv say against their pinned sha256.
files_digest: sha256 over files' names and contents (read on the controller by lookups).
model_version / model_image: a model image's MODEL_VERSION and its description.
build_plan: the builds per image and platform, each with its build arguments and key.
revision / source_url: the revision label and tag, and the source URL (tasks/identity.yml).
local_bases / base_ids: each platform's base image identity, part of its build's key.
registry_manifests / stale_tags: what `docker buildx imagetools inspect` says the
registry holds, and which tags do not yet name the manifest list (tasks/publish_image.yml).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Where each kind comes from, for the messages.
_WHERE = (
    "HailoRT {version} for {arch}: the libhailort .deb (Hailo Developer Zone "
    "'hailort_{version}_{arch}.deb', or the Raspberry Pi archive's 'hailort' package for "
    "arm64) and pyhailort's wheel 'hailort-{version}-cp311-cp311-linux_{machine}.whl', "
    "copied onto GPUSrv, each with its sha256 (sha256sum FILE)"
)
_MACHINE = {"arm64": "aarch64", "amd64": "x86_64"}
_KINDS = {"deb": ".deb", "wheel": ".whl"}
# The model version a model image's Dockerfile sets (ENV MODEL_VERSION=... or a
# continuation line of an ENV).
_MODEL_VERSION = re.compile(r"(?m)^\s*(?:ENV\s+)?MODEL_VERSION=(\S+)")
_SEPARATOR = "\\n"
# Length of a build's key (hex digits of its sha256), in the images' label.
_KEY_LENGTH = 24
# The source URL when none is set and the checkout has no remote "origin".
DEFAULT_SOURCE = "https://github.com/hailo-pipeline/hailo-pipeline"
# Credentials in an http(s) remote URL (https://user:token@host/...).
_URL_CREDENTIALS = re.compile(r"^(https?://)[^@/]*@")
# Manifest lists (Docker) and image indexes (OCI): what every tag must name.
LIST_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
# How `docker buildx imagetools inspect` (containerd's resolver) ends its error for a
# reference the registry does not have: "ERROR: <ref>: not found".
_NOT_FOUND = re.compile(r"(?m): not found\s*$")


def _where(version: str, arch: str) -> str:
    return _WHERE.format(version=version or "<version>", arch=arch, machine=_MACHINE[arch])


def hailort_plan(version: str, sources: Any, archs: list[str]) -> dict[str, list[Any]]:
    """{"files": [{arch, kind, path, sha256}], "problems": [message]} for these archs."""
    problems: list[str] = []
    files: list[dict[str, str]] = []
    version = str(version or "")
    if not version:
        if sources:
            problems.append(
                "sidecar_image_hailort_sources is set but sidecar_image_hailort_version is "
                "empty: set the version the files are (e.g. 4.23.0), or empty the sources"
            )
        return {"files": files, "problems": problems}
    if not _VERSION.match(version):
        problems.append(
            f"sidecar_image_hailort_version '{version}' is not MAJOR.MINOR.REVISION (e.g. "
            "4.23.0): the Pis' hailo_pci driver must match it exactly"
        )
    if not isinstance(sources, Mapping):
        sources = {}
    for arch in archs:
        entry = sources.get(arch)
        if not isinstance(entry, Mapping) or not all(k in entry for k in _KINDS):
            problems.append(
                f"sidecar_image_hailort_version is {version} but sidecar_image_hailort_sources."
                f"{arch} does not name both files (deb and wheel, each {{path, sha256}}): give "
                f"{_where(version, arch)}"
            )
            continue
        for kind, suffix in _KINDS.items():
            item = entry[kind] if isinstance(entry[kind], Mapping) else {}
            path, sha = str(item.get("path", "")), str(item.get("sha256", "")).lower()
            name = f"sidecar_image_hailort_sources.{arch}.{kind}"
            if not path.startswith("/") or not path.endswith(suffix):
                problems.append(
                    f"{name}.path '{path}' must be an absolute path to a {suffix} file on GPUSrv"
                )
            elif kind == "wheel" and not posixpath.basename(path).startswith(f"hailort-{version}-"):
                problems.append(
                    f"{name}.path '{path}' is not pyhailort {version}: its file name must start "
                    f"with hailort-{version}- (the wheel's own name and version)"
                )
            if not _SHA256.match(sha):
                problems.append(
                    f"{name}.sha256 must be the file's sha256 (64 hex digits), got '{sha}'"
                )
            files.append({"arch": arch, "kind": kind, "path": path, "sha256": sha})
    return {"files": files, "problems": problems}


def hailort_file_problems(results: list[Mapping[str, Any]]) -> list[str]:
    """Messages for the files a stat loop (checksum_algorithm sha256) found missing or
    different from their pin; ``results`` are that loop's results (item = a plan file)."""
    problems: list[str] = []
    for result in results:
        item, stat = result["item"], result.get("stat", {})
        what = f"{item['path']} ({item['arch']} {item['kind']})"
        if not stat.get("exists") or not stat.get("isreg"):
            problems.append(f"{what} is not a file on GPUSrv")
        elif stat.get("checksum") != item["sha256"]:
            problems.append(
                f"{what} has sha256 {stat.get('checksum')}, "
                f"pinned {item['sha256']}: not the file that was pinned"
            )
    return problems


def files_digest(paths: list[str], contents: list[str]) -> str:
    """sha256 (hex) over each file's path and content, all joined by a backslash and an
    "n" (two characters, not a newline: what the Jinja this replaced, `map('join', '\\n')`
    in a folded YAML scalar, joined with; the images already built carry keys made so)."""
    if len(paths) != len(contents):
        raise ValueError(f"files_digest: {len(paths)} paths but {len(contents)} contents")
    parts = (f"{path}{_SEPARATOR}{content}" for path, content in zip(paths, contents, strict=True))
    return hashlib.sha256(_SEPARATOR.join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def model_version(dockerfile: str) -> str:
    """The MODEL_VERSION a model image's Dockerfile sets; "" when it sets none."""
    match = _MODEL_VERSION.search(str(dockerfile or ""))
    return match.group(1) if match else ""


def model_image(
    name: str,
    files: list[str],
    contents: list[str],
    dockerfile: str,
    prefix: str,
    context_dir: str,
    revision_tags: list[str],
) -> dict[str, Any]:
    """A model image (models/<name>/): its repository, version and tags, its build context
    on GPUSrv, its files (relative to the context's parent) and their digest. ``files``
    are relative to models/<name>/ and ``contents`` theirs, in the same order."""
    version = model_version(dockerfile)
    if not version:
        raise ValueError(
            f"models/{name}/Dockerfile sets no MODEL_VERSION (ENV MODEL_VERSION=<semver>)"
        )
    return {
        "name": name,
        "kind": "model",
        "repo": f"{prefix}/{name}",
        "version": version,
        "tags": [version, *revision_tags],
        "context": f"{context_dir}/models/{name}",
        "paths": [f"models/{name}/{path}" for path in files],
        "digest": files_digest(files, contents),
    }


def _key(args: Mapping[str, Any], *parts: Any) -> str:
    """A build's key: sha256 over its arguments and what else went into it. The arguments
    are serialised as Ansible's to_json does (json.dumps' defaults: insertion order, ", "
    and ": ", ASCII), which is what the keys of images already built were made from."""
    text = json.dumps(args) + "".join(str(part) for part in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:_KEY_LENGTH]


def _build(image: Mapping[str, Any], arch: str, args: dict[str, Any], key: str) -> dict[str, Any]:
    # The local tag <repo>:<version>-<arch> is also pushed: the manifest lists point at it.
    return {
        "image": image["name"],
        "kind": image["kind"],
        "arch": arch,
        "platform": f"linux/{arch}",
        "ref": f"{image['repo']}:{image['version']}-{arch}",
        "context": image["context"],
        "args": args,
        "key": key,
    }


def build_plan(
    images: list[Mapping[str, Any]],
    archs: list[str],
    base_refs: Mapping[str, str],
    base_ids: Mapping[str, str],
    wheel_key: str,
    revision: str,
    source: str,
    hailort_version: str,
    hailort_files: list[Mapping[str, str]],
) -> list[dict[str, Any]]:
    """The builds: the runtime image per arch, then each model image per arch FROM that
    arch's runtime (pinned to its version). A runtime's key covers its build arguments,
    its files' digest, the wheelhouse, the arch, the base image's identity and HailoRT's
    files; a model's, its arguments, its files, the arch and its runtime's key."""
    runtimes = [image for image in images if image["kind"] == "runtime"]
    if len(runtimes) != 1:
        raise ValueError(f"build_plan: expected one runtime image, got {len(runtimes)}")
    runtime = runtimes[0]
    missing = [arch for arch in archs if arch not in base_refs or arch not in base_ids]
    if missing:
        raise ValueError(f"build_plan: no base image (ref and identity) for {', '.join(missing)}")
    builds: list[dict[str, Any]] = []
    for arch in archs:
        args = {
            "BASE_IMAGE": base_refs[arch],
            "VERSION": runtime["version"],
            "REVISION": revision,
            "SOURCE": source,
            "HAILORT_VERSION": hailort_version,
        }
        hailort = ",".join(f["sha256"] for f in hailort_files if f["arch"] == arch)
        key = _key(args, runtime["digest"], wheel_key, arch, base_ids[arch], hailort)
        builds.append(_build(runtime, arch, args, key))
    by_arch = {build["arch"]: build for build in builds}
    for image in images:
        if image["kind"] != "model":
            continue
        for arch in archs:
            base = by_arch[arch]
            args = {"RUNTIME_IMAGE": base["ref"], "REVISION": revision, "SOURCE": source}
            builds.append(_build(image, arch, args, _key(args, image["digest"], arch, base["key"])))
    return builds


def revision(sha: str, dirty: bool) -> str:
    """The revision label and tag: the commit's short sha (7), with "-dirty" when the
    images' sources have uncommitted changes; "unknown" without a commit (no git, not a
    checkout, or no commit touching the sources)."""
    sha = str(sha or "").strip()
    if not sha:
        return "unknown"
    return sha[:7] + ("-dirty" if dirty else "")


def source_url(configured: str, remote: str) -> str:
    """org.opencontainers.image.source: the configured URL, else the checkout's remote
    (``remote``: "" when it has none) without credentials, else this project's URL."""
    if configured:
        return str(configured)
    remote = str(remote or "").strip()
    return _URL_CREDENTIALS.sub(r"\1", remote) if remote else DEFAULT_SOURCE


def local_bases(images: list[Mapping[str, Any]] | None) -> dict[str, dict[str, str]]:
    """{tag: {"id", "arch"}} of the images docker_image_info found (``images``)."""
    found: dict[str, dict[str, str]] = {}
    for image in images or []:
        for tag in image.get("RepoTags") or []:
            found[tag] = {"id": image["Id"], "arch": image.get("Architecture", "")}
    return found


def _remote_platform_digests(result: Mapping[str, Any], arch: str) -> list[str]:
    """The linux/<arch> manifest digests in a `docker manifest inspect --verbose` result
    (one entry for an image, a list for a manifest list)."""
    if result.get("rc", 1) != 0:
        return []
    entries = json.loads(result["stdout"])
    if not isinstance(entries, list):
        entries = [entries]
    digests = []
    for entry in entries:
        descriptor = entry.get("Descriptor", {})
        platform = descriptor.get("platform")
        if platform and platform.get("architecture") == arch and platform.get("os") == "linux":
            digests.append(descriptor["digest"])
    return digests


def base_ids(
    archs: list[str],
    refs: Mapping[str, str],
    local: Mapping[str, Mapping[str, str]],
    remote_results: list[Mapping[str, Any]],
) -> dict[str, str]:
    """Each platform's base image identity, part of its build's key: the engine's image
    ID when the engine has ``refs[arch]`` for that arch, else the registry's digest of the
    linux/<arch> manifest (``remote_results``: the `docker manifest inspect --verbose`
    loop over the archs). A platform with neither is left out (preflight refuses it)."""
    ids: dict[str, str] = {}
    for arch in archs:
        found = local.get(refs[arch], {})
        if found.get("arch", "") == arch:
            ids[arch] = found["id"]
            continue
        result = next((r for r in remote_results if r.get("item") == arch), {})
        digests = _remote_platform_digests(result, arch)
        if digests:
            ids[arch] = digests[0]
    return ids


def registry_manifests(results: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the registry holds for each reference, from a loop of `docker buildx
    imagetools inspect --format '{{json .Manifest}}'` results: per result (in order)
    {"state": "present" | "missing" | "error", "digest", "media_type", "manifests" (the
    digests a manifest list names), "message"}. A skipped result (--check) is an error."""
    found: list[dict[str, Any]] = []
    for result in results:
        entry: dict[str, Any] = {
            "state": "error",
            "digest": "",
            "media_type": "",
            "manifests": [],
            "message": "",
        }
        stderr = str(result.get("stderr", "")).strip()
        if result.get("rc") == 0:
            manifest = json.loads(result["stdout"])
            entry.update(
                state="present",
                digest=manifest["digest"],
                media_type=manifest.get("mediaType", ""),
                manifests=[m["digest"] for m in manifest.get("manifests") or []],
            )
        elif "rc" in result and _NOT_FOUND.search(stderr):
            entry["state"] = "missing"
        else:
            lines = (stderr or str(result.get("msg", "no answer"))).splitlines()
            entry["message"] = lines[0] if lines else ""
        found.append(entry)
    return found


def stale_tags(tags: list[str], states: list[Mapping[str, Any]], wanted: list[str]) -> list[str]:
    """The tags (``states``: registry_manifests of each, in order) that do not name a
    manifest list of exactly the ``wanted`` platform digests: those to point at it."""
    if len(tags) != len(states):
        raise ValueError(f"stale_tags: {len(tags)} tags but {len(states)} answers")
    return [
        tag
        for tag, state in zip(tags, states, strict=True)
        if state["state"] != "present"
        or state["media_type"] not in LIST_TYPES
        or sorted(state["manifests"]) != sorted(wanted)
    ]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "sidecar_image_hailort_plan": hailort_plan,
            "sidecar_image_hailort_file_problems": hailort_file_problems,
            "sidecar_image_files_digest": files_digest,
            "sidecar_image_model_version": model_version,
            "sidecar_image_model_image": model_image,
            "sidecar_image_build_plan": build_plan,
            "sidecar_image_revision": revision,
            "sidecar_image_source": source_url,
            "sidecar_image_local_bases": local_bases,
            "sidecar_image_base_ids": base_ids,
            "sidecar_image_registry_manifests": registry_manifests,
            "sidecar_image_stale_tags": stale_tags,
        }
