"""The image's pins (compiler/requirements.txt, build-requirements.txt), the package's
dependencies and the repo's constraints.txt agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: {line!r} is not an exact pin"
        pins[_norm(name)] = version
    return pins


def test_image_pins_match_constraints() -> None:
    constraints = _pins(REPO / "constraints.txt")
    for file in ("requirements.txt", "build-requirements.txt"):
        for name, version in _pins(REPO / "compiler" / file).items():
            assert constraints.get(name) == version, f"{file}: {name}=={version} vs constraints.txt"


def test_package_dependencies_are_pinned_in_the_image_closure() -> None:
    project = tomllib.loads((REPO / "compiler" / "pyproject.toml").read_text())["project"]
    closure = _pins(REPO / "compiler" / "requirements.txt")
    for dep in project["dependencies"]:
        name, _, version = dep.partition("==")
        assert closure.get(_norm(name)) == version, dep


def test_constraints_stay_sorted_one_pin_per_line() -> None:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    assert all("==" in line for line in lines)
    assert len({_norm(line.split("==")[0]) for line in lines}) == len(lines)
