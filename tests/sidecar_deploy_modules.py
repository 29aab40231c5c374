"""The sidecar_deploy role's modules (roles/sidecar_deploy/library) and their shared code
(module_utils) on this machine: module_utils loaded under ansible.module_utils.<name>, as
Ansible's module packaging makes them importable on a Pi, and run_module(), which runs a
module's main() with arguments the way Ansible hands them over (argument spec, check
mode, diff) and returns its JSON result."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import ansible_local

ROLE = Path(__file__).resolve().parents[1] / "roles" / "sidecar_deploy"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# In dependency order: host imports docker, gate imports docker.
docker = _load(
    "ansible.module_utils.hailo_sidecar_docker", ROLE / "module_utils/hailo_sidecar_docker.py"
)
host = _load("ansible.module_utils.hailo_sidecar_host", ROLE / "module_utils/hailo_sidecar_host.py")
gate = _load("ansible.module_utils.hailo_sidecar_gate", ROLE / "module_utils/hailo_sidecar_gate.py")
hailo = _load(
    "ansible.module_utils.hailo_sidecar_hailo", ROLE / "module_utils/hailo_sidecar_hailo.py"
)
filters = _load("hailo_sidecar_filters", ROLE / "filter_plugins/hailo_sidecar.py")


REPO = "reg:5000/hailo-runtime"


def release(version: str, data: bytes, digest: str = "sha256:" + "a" * 64) -> dict[str, Any]:
    """A release of `data` as the role describes it (tasks/inputs.yml)."""
    return {
        "image": f"{REPO}@{digest}",
        "digest": digest,
        "tag": version,
        "model": "tcn_encoder",
        "version": version,
        "artifact": f"tcn_encoder-{version}.onnx",
        "manifest": f"tcn_encoder-{version}.manifest.json",
        "sha256": hashlib.sha256(data).hexdigest(),
        "golden": "",
        "golden_sha256": "",
        "infer_mode": "onnx",
    }


def stage(root: Path, rel: dict[str, Any], data: bytes) -> str:
    """What the role's copy task leaves: <root>/models/.staging-<name>/{artifact,manifest};
    its name."""
    name = f".staging-{rel['model']}-{rel['version']}"
    staging = root / "models" / name
    staging.mkdir(parents=True)
    (staging / rel["artifact"]).write_bytes(data)
    manifest = {k: rel[k] for k in ("model", "version", "artifact", "sha256")}
    (staging / rel["manifest"]).write_text(json.dumps(manifest))
    return name


def run_module(
    name: str, args: dict[str, Any], check: bool = False, diff: bool = False
) -> dict[str, Any]:
    """Run library/<name>.py's main() with `args`; its result (failed results too)."""
    return ansible_local.run_module(ROLE / "library" / f"{name}.py", args, check, diff)
