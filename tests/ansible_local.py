"""Helpers for tests that load a role's plugin, or run Ansible on the controller alone
(no lab): the repo's ansible.cfg, colourless output, nothing written outside tmp_path."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The venv's own tools, whatever PATH says.
ANSIBLE = str(Path(sys.executable).with_name("ansible"))
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


def load_plugin(relative: str) -> ModuleType:
    """A filter plugin (or any standalone file) under the repo, imported by its path."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ansible_env(tmp_path: Path, roles_path: str | None = None, **extra: str) -> dict[str, str]:
    """The environment for ansible / ansible-playbook: the repo's config and roles (or
    ``roles_path``), the release report under ``tmp_path``, and ``extra``."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": roles_path or str(REPO / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "HAILO_REPORT_DIR": str(tmp_path / "reports"),
        **extra,
    }


def run_module(
    path: Path, args: dict[str, Any], check: bool = False, diff: bool = False
) -> dict[str, Any]:
    """Run a module file's main() with `args` as Ansible hands them over (argument spec,
    check mode, diff); its JSON result (failed results too)."""
    from ansible.module_utils import basic

    module = load_plugin(str(path.relative_to(REPO)))
    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": diff}}
    basic._ANSIBLE_ARGS = json.dumps(payload).encode()
    basic._ANSIBLE_PROFILE = "legacy"
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            module.main()
    except SystemExit:
        pass
    finally:
        basic._ANSIBLE_ARGS = None
    result: dict[str, Any] = json.loads(out.getvalue())
    return result
