"""Every Molecule scenario runs the check step (the converge with --check, every run with
--diff) right after its converge and before idempotence: .config/molecule/config.yml
sets the sequence for all, and no scenario may drop it by setting its own."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((REPO / ".config" / "molecule" / "config.yml").read_text())
SCENARIOS = sorted(p.parent.name for p in REPO.glob("molecule/*/molecule.yml"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_check_follows_the_converge(scenario: str) -> None:
    own = yaml.safe_load((REPO / "molecule" / scenario / "molecule.yml").read_text())
    sequence = (own.get("scenario") or {}).get("test_sequence") or BASE["scenario"]["test_sequence"]
    at = sequence.index("converge")
    assert sequence[at : at + 3] == ["converge", "check", "idempotence"], sequence


def test_every_run_shows_its_diff() -> None:
    assert BASE["ansible"]["env"]["ANSIBLE_DIFF_ALWAYS"] == "True"
