"""playbooks/rollback.yml touches only the Pis: a rollback must work with the registry, or
its whole host, down (the fleet scenario stops the registry service for its rollback)."""

from __future__ import annotations

from pathlib import Path

import yaml

PLAYBOOK = Path(__file__).resolve().parents[1] / "playbooks" / "rollback.yml"


def test_rollback_has_no_play_on_the_registry_or_gpusrv() -> None:
    plays = yaml.safe_load(PLAYBOOK.read_text())
    hosts = [str(play["hosts"]) for play in plays]
    assert hosts == ["pi_canary:pi_fleet"], hosts
