"""Every role documents itself the same way: its README's title is "Role `<name>`", and
each variable in its defaults/main.yml is in its README and in meta/argument_specs.yml
(the main entry point), as the house style (geerlingguy, dev-sec) has it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())


@pytest.mark.parametrize("role", ROLES)
def test_readme_title(role: str) -> None:
    first = (REPO / "roles" / role / "README.md").read_text().splitlines()[0]
    assert first == f"# Role `{role}`"


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_documented(role: str) -> None:
    base = REPO / "roles" / role
    defaults_file = base / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
    specs = yaml.safe_load((base / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    specified = set(specs["main"].get("options", {}))
    readme = (base / "README.md").read_text()
    for name in defaults or {}:
        assert name in specified, f"{role}: {name} is not in meta/argument_specs.yml"
        assert re.search(rf"\b{name}\b", readme), f"{role}: {name} is not in README.md"
