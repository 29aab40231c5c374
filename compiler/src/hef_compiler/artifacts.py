"""Artifacts in the output directory: manifest, checksum file, atomic publishing and the
up-to-date check.

Layout of an output directory (bind-mounted into the container, e.g. /artifacts):

    <model>-<version>.onnx | .hef        the artifact
    <model>-<version>.manifest.json      what it is and how it was made (the sidecar reads it)
    hef_sha256sum.txt                    `sha256sum -c` format, one line per artifact
    .hef-compile.lock                    serialises concurrent runs on the directory

A compile stages everything in a hidden directory inside the output directory (same
filesystem, so renames are atomic even on a bind mount), then renames each file into
place: artifact, manifest, checksum file last. If any rename fails the files already
replaced are put back from hard-link backups, so a failed compile leaves the previous
artifacts byte-identical.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hef_compiler import NAME, __version__, progress
from hef_compiler.config import ModelConfig
from hef_compiler.errors import CompileError

CHECKSUM_FILE = "hef_sha256sum.txt"
LOCK_FILE = ".hef-compile.lock"
STAGING_PREFIX = ".hef-compile-staging-"
MANIFEST_SCHEMA = 1
ARTIFACT_SUFFIXES = (".onnx", ".hef")
_CHECKSUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def compiler_info(backend: str) -> dict[str, str]:
    return {"name": NAME, "version": __version__, "backend": backend}


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_manifest(
    cfg: ModelConfig,
    *,
    target: str,
    artifact_name: str,
    artifact_sha256: str,
    source_onnx_sha256: str,
    backend: str,
    parity: Mapping[str, Any],
    golden: Mapping[str, Any],
    optimization: Mapping[str, Any] | None = None,
    hef_streams: Mapping[str, Any] | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """The manifest, in exactly the shape (and key order) the sidecar reads.

    ``hef_streams`` (hailo8 only; the key is left out otherwise): the HEF's vstreams
    as HailoRT reads them, each matched to the contract. The sidecar ignores keys it
    does not read."""
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "model": cfg.model,
        "version": cfg.version,
        "target": target,
        "hw_arch": cfg.hw_arch_for(target),
        "artifact": artifact_name,
        "sha256": artifact_sha256,
        "inputs": {name: list(shape) for name, shape in cfg.inputs.items()},
        "outputs": {name: list(shape) for name, shape in cfg.outputs.items()},
        "source_onnx_sha256": source_onnx_sha256,
        "config_sha256": cfg.sha256,
        "compiler": compiler_info(backend),
        "optimization": dict(optimization) if optimization is not None else None,
    }
    if hef_streams is not None:
        manifest["hef_streams"] = dict(hef_streams)
    manifest.update(
        parity=dict(parity),
        golden=dict(golden),
        created_at=created_at or utc_now(),
    )
    return manifest


def read_checksums(path: Path) -> dict[str, str]:
    """``{file name: sha256}`` from a `sha256sum` file; unparsable lines are dropped."""
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        m = _CHECKSUM_LINE.match(line)
        if m is None:
            progress.say(f"warning: {path}:{number}: not a sha256sum line, dropped: {line!r}")
            continue
        out[m.group(2)] = m.group(1)
    return out


def render_checksums(entries: Mapping[str, str]) -> str:
    """Text mode `sha256sum` lines ("<hex>  <name>"), sorted by name."""
    return "".join(f"{entries[name]}  {name}\n" for name in sorted(entries))


def updated_checksums(output_dir: Path, ours: Mapping[str, str]) -> dict[str, str]:
    """The checksum file's entries with ours set; lines for files no longer present dropped."""
    entries = read_checksums(output_dir / CHECKSUM_FILE)
    for name in list(entries):
        if name not in ours and not (output_dir / name).is_file():
            progress.say(f"warning: {CHECKSUM_FILE}: dropping the line for missing file {name}")
            del entries[name]
    entries.update(ours)
    return entries


@contextlib.contextmanager
def locked(output_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the output directory; clear stale staging dirs."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for stale in output_dir.glob(f"{STAGING_PREFIX}*"):
                shutil.rmtree(stale, ignore_errors=True)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def staging(output_dir: Path) -> Iterator[Path]:
    """A scratch directory inside ``output_dir``, removed whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=output_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def publish(output_dir: Path, staged: list[Path], backup_dir: Path) -> None:
    """Rename ``staged`` files into ``output_dir`` in order; all or nothing."""
    for path in staged:
        _fsync(path)
    backup_dir.mkdir(exist_ok=True)
    done: list[tuple[Path, Path | None]] = []
    try:
        for path in staged:
            dest = output_dir / path.name
            backup: Path | None = None
            if dest.exists():
                backup = backup_dir / path.name
                os.link(dest, backup)
            os.replace(path, dest)
            done.append((dest, backup))
    except OSError as exc:
        for dest, backup in reversed(done):
            if backup is not None:
                os.replace(backup, dest)
            else:
                dest.unlink(missing_ok=True)
        raise CompileError(
            f"could not move the new artifacts into {output_dir} ({exc}); "
            "the previous files were restored"
        ) from exc
    _fsync(output_dir)


@dataclass
class Freshness:
    """Whether an output directory already holds what a compile would produce."""

    up_to_date: bool
    reasons: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None


def freshness(
    cfg: ModelConfig,
    output_dir: Path,
    *,
    target: str,
    source_onnx_sha256: str | None,
    backend: str | None,
) -> Freshness:
    """Compare inputs (ONNX sha, config sha, target, compiler name/version and, when
    known, backend) with the manifest, and check the artifact against its sha256 and
    the checksum file. ``backend=None`` means "could not tell" and is not compared."""
    manifest_path = output_dir / cfg.manifest_name
    if not manifest_path.is_file():
        return Freshness(False, [f"no manifest at {manifest_path}"])
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        return Freshness(False, [f"manifest {manifest_path} is unreadable: {exc}"])
    if not isinstance(manifest, dict):
        return Freshness(False, [f"manifest {manifest_path} is not a JSON object"])
    reasons: list[str] = []
    expected: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "target": target,
        "hw_arch": cfg.hw_arch_for(target),
        "artifact": cfg.artifact_name(target),
        "source_onnx_sha256": source_onnx_sha256,
        "config_sha256": cfg.sha256,
    }
    for key, want in expected.items():
        if manifest.get(key) != want:
            reasons.append(f"{key} differs (manifest {manifest.get(key)!r}, now {want!r})")
    compiler = manifest.get("compiler") if isinstance(manifest.get("compiler"), dict) else {}
    assert isinstance(compiler, dict)
    for key, want in (("name", NAME), ("version", __version__), ("backend", backend)):
        if want is not None and compiler.get(key) != want:
            reasons.append(f"compiler.{key} differs (manifest {compiler.get(key)!r}, now {want!r})")
    artifact = output_dir / cfg.artifact_name(target)
    if not artifact.is_file():
        reasons.append(f"artifact {artifact} is missing")
    else:
        actual = sha256_file(artifact)
        if actual != manifest.get("sha256"):
            reasons.append(f"artifact sha256 {actual} does not match the manifest")
        listed = read_checksums(output_dir / CHECKSUM_FILE).get(artifact.name)
        if listed != actual:
            reasons.append(f"{CHECKSUM_FILE} does not list {artifact.name} with its sha256")
    reasons += _golden_reasons(cfg, output_dir, manifest)
    return Freshness(not reasons, reasons, manifest)


def _golden_reasons(cfg: ModelConfig, output_dir: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Why the golden file does not belong to this manifest (empty when it does)."""
    entry = manifest.get("golden")
    if not isinstance(entry, dict) or entry.get("file") != cfg.golden_name:
        return [f"the manifest names no golden vectors ({cfg.golden_name})"]
    if entry.get("windows") != cfg.golden.windows:
        return [
            f"golden windows differ (manifest {entry.get('windows')!r}, now {cfg.golden.windows})"
        ]
    path = output_dir / cfg.golden_name
    if not path.is_file():
        return [f"golden vectors {path} are missing"]
    actual = sha256_file(path)
    if actual != entry.get("sha256"):
        return [f"golden vectors sha256 {actual} does not match the manifest"]
    if read_checksums(output_dir / CHECKSUM_FILE).get(path.name) != actual:
        return [f"{CHECKSUM_FILE} does not list {path.name} with its sha256"]
    return []
