"""Model discovery: find the configured model's manifest in the mounted models folder.

The compiler and the Pi deploy role leave one directory per model release:

    MODELS_DIR/                              (/models, mounted read-only)
      tcn_encoder-0.1.0/
        tcn_encoder-0.1.0.onnx | .hef        the artifact
        tcn_encoder-0.1.0.manifest.json      its manifest (manifest.py)
      tcn_encoder-0.2.0/ ...
      current -> tcn_encoder-0.2.0           release pointers (symlinks): not counted twice
      previous -> tcn_encoder-0.1.0

`discover` reads every `MODELS_DIR/*/*.manifest.json` (one level deep; anything else is
ignored), counts each manifest file once (by its real path, so `current`/`previous`
add nothing), and picks the one whose `model` is MODEL_NAME and, if set, whose
`version` is MODEL_VERSION. It never guesses: no match, several versions without
MODEL_VERSION, or a match whose target does not fit INFER_MODE are errors that say
what was found. The caller then checks the shapes and the sha256 (service.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .manifest import TARGETS, Manifest, ManifestError, load_manifest

PATTERN: Final = "*/*.manifest.json"


class DiscoveryError(ManifestError):
    """No usable manifest for the configured model, or more than one."""


@dataclass(frozen=True)
class Found:
    manifests: list[Manifest]
    broken: list[str]  # manifests that could not be read, with the reason

    def describe(self, models_dir: Path) -> str:
        parts = [_label(m, models_dir) for m in self.manifests]
        parts += [f"unreadable: {reason}" for reason in self.broken]
        return "; ".join(parts) if parts else f"no manifests ({PATTERN})"


def _label(m: Manifest, models_dir: Path) -> str:
    try:
        where = m.path.relative_to(models_dir)
    except ValueError:
        where = m.path
    return f"{m.model} {m.version} (target {m.target}, {where})"


def scan(models_dir: Path) -> Found:
    """Every manifest one level below `models_dir`, each file once, in a stable order."""
    if not models_dir.is_dir():
        what = "does not exist" if not models_dir.exists() else "is not a directory"
        raise DiscoveryError(
            f"MODELS_DIR={str(models_dir)!r} {what}: mount the models folder there "
            "(read-only), or set MODEL_MANIFEST to a manifest file"
        )
    seen: dict[str, Path] = {}
    # Real directories first, so a manifest reached both directly and through a
    # `current` symlink is reported under its release directory.
    for path in sorted(models_dir.glob(PATTERN), key=lambda p: (p.parent.is_symlink(), p)):
        if not path.is_file():
            continue
        real = os.path.realpath(path)
        seen.setdefault(real, path)
    manifests: list[Manifest] = []
    broken: list[str] = []
    for path in seen.values():
        try:
            manifests.append(load_manifest(path))
        except ManifestError as exc:
            broken.append(str(exc))
    return Found(manifests, broken)


def discover(
    models_dir: Path, model_name: str, model_version: str | None, infer_mode: str
) -> Manifest:
    """The one manifest for MODEL_NAME (and MODEL_VERSION) that fits INFER_MODE, or an error."""
    found = scan(models_dir)
    wanted = f"MODEL_NAME={model_name!r}" + (
        f" MODEL_VERSION={model_version!r}" if model_version is not None else ""
    )
    matches = [
        m
        for m in found.manifests
        if m.model == model_name and (model_version is None or m.version == model_version)
    ]
    if not matches:
        raise DiscoveryError(
            f"no manifest for {wanted} in MODELS_DIR={str(models_dir)!r}; "
            f"found: {found.describe(models_dir)}"
        )
    if len(matches) > 1 and model_version is None:
        listed = "; ".join(_label(m, models_dir) for m in matches)
        raise DiscoveryError(
            f"several manifests for {wanted} in MODELS_DIR={str(models_dir)!r}: {listed}; "
            "set MODEL_VERSION to pick one"
        )
    target = TARGETS[infer_mode]
    fitting = [m for m in matches if m.target == target]
    if not fitting:
        listed = "; ".join(_label(m, models_dir) for m in matches)
        raise DiscoveryError(
            f"INFER_MODE={infer_mode} needs a manifest with target {target!r} "
            f"({'.onnx' if target == 'cpu' else '.hef'}), but {wanted} in "
            f"MODELS_DIR={str(models_dir)!r} has only: {listed}"
        )
    if len(fitting) > 1:
        listed = "; ".join(_label(m, models_dir) for m in fitting)
        raise DiscoveryError(
            f"several manifests for {wanted} with target {target!r} in "
            f"MODELS_DIR={str(models_dir)!r}: {listed}; remove the duplicates"
        )
    return fitting[0]
