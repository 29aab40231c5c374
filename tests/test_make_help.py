"""`make help` lists every user-facing target of the Makefile from its `## target: text`
comment, and a bare `make` prints that list (it no longer starts the lab as root).

The phony targets come from make's own database (`make -p`), so targets a rule makes
from a variable (`molecule-<scenario>`, one per scenario) are counted as well.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from labtools import REPO

DOC = re.compile(r"^## (\S+):", re.MULTILINE)


def make(*args: str) -> str:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def phony_targets() -> set[str]:
    """The expanded .PHONY list, from make's database; nothing is run (-q)."""
    database = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "-p", "-q", "-r", "-R", "help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    ).stdout
    lines = [line for line in database.splitlines() if line.startswith(".PHONY:")]
    assert len(lines) == 1, lines
    return set(lines[0].removeprefix(".PHONY:").split())


def documented() -> list[str]:
    """The names of the `## name: text` comments; `<x>` stands for any word."""
    return DOC.findall((REPO / "Makefile").read_text())


def covers(name: str, target: str) -> bool:
    pattern = re.escape(name).replace(re.escape("<scenario>"), r"[\w.-]+")
    return re.fullmatch(pattern, target) is not None


@pytest.fixture(scope="module")
def help_text() -> str:
    return make("-s", "help")


def test_help_lists_every_documented_target(help_text: str) -> None:
    listed = {line.split()[0] for line in help_text.splitlines() if line.strip()}
    names = documented()
    assert names, "no `## target: text` comments found in the Makefile"
    assert len(names) == len(set(names)), f"a target is documented twice: {names}"
    missing = [name for name in names if name not in listed]
    assert not missing, f"`make help` does not list {missing}:\n{help_text}"


def test_every_phony_target_is_documented() -> None:
    phony = phony_targets()
    names = documented()
    undocumented = sorted(t for t in phony if not any(covers(n, t) for n in names))
    assert not undocumented, f"phony targets without a `## target: text` comment: {undocumented}"
    stale = [n for n in names if not any(covers(n, t) for t in phony)]
    assert not stale, f"`## ...` comments for targets that are not .PHONY: {stale}"


def test_user_facing_targets_are_there() -> None:
    phony = phony_targets()
    scenarios = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))
    assert scenarios
    expected = {"help", "pipeline", "test", "lint", "pytest", "molecule", "lab", "lab-up"}
    expected |= {f"molecule-{s}" for s in scenarios}
    assert expected <= phony, expected - phony


def test_bare_make_prints_help(help_text: str) -> None:
    assert make("-s") == help_text


def test_help_names_the_scenarios(help_text: str) -> None:
    scenarios = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))
    line = next(line for line in help_text.splitlines() if "scenarios:" in line)
    assert sorted(line.split(":", 1)[1].split()) == scenarios
