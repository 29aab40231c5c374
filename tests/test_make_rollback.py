"""`make rollback ROLLBACK_TO=...` hands the value to Ansible verbatim: no shell, no make.

The Makefile puts `$(VENV)/bin` first on PATH; the tests point VENV at a throwaway
directory holding a fake ansible-playbook (which records its arguments and the
environment variable the playbook reads) and an up-to-date `.installed` stamp, so
nothing real is installed or run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from labtools import REPO

ENV_VAR = "HAILO_ROLLBACK_TO"

FAKE_PLAYBOOK = """#!{python}
import json, os, sys
with open({out!r}, "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": os.environ.get({var!r})}}, f)
"""


def make_rollback(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run `make rollback <args>` with the fake ansible-playbook; what it received."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    out = tmp_path / "received.json"
    fake = venv / "bin" / "ansible-playbook"
    fake.write_text(FAKE_PLAYBOOK.format(python=sys.executable, out=str(out), var=ENV_VAR))
    fake.chmod(0o755)
    # Newer than pyproject.toml and the other inputs: `venv` has nothing to do.
    (venv / ".installed").touch()
    # The Makefile prepends $(CURDIR)/$(VENV)/bin to PATH: VENV must be relative.
    rel = os.path.relpath(venv, REPO.resolve())
    run = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), f"VENV={rel}", "rollback", *args],
        capture_output=True, text=True, check=False, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr == "", run.stderr
    received: dict = json.loads(out.read_text())
    return received


def nasty_values(canary: Path) -> list[str]:
    return [
        f"x; touch {canary}",
        f"$(touch {canary})",
        f"`touch {canary}`",
        f"$(shell touch {canary})",  # a make function, if make expanded the value
        f"x && touch {canary} #",
        f"x' ; touch {canary}; '",
        f'x" ; touch {canary}; "',
        "sha256:abc def  two spaces",
        "it's",
        'say "hi"',
        "$HOME",
        "${HOME}",
        "$$HOME",
        "back\\slash",
        "{{ 7 * 7 }}",
        "# not a comment",
    ]


@pytest.mark.parametrize("index", range(len(nasty_values(Path("x")))))
def test_value_arrives_verbatim_and_runs_nothing(tmp_path: Path, index: int) -> None:
    canary = tmp_path / "pwned"
    value = nasty_values(canary)[index]
    received = make_rollback(tmp_path, f"ROLLBACK_TO={value}")
    assert not canary.exists(), f"ROLLBACK_TO={value!r} ran a command"
    assert received["env"] == value
    # Not on the command line at all: the playbook reads the environment.
    assert received["argv"] == ["playbooks/rollback.yml"]


def test_value_from_the_environment_arrives_verbatim(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    value = f"$(touch {canary}); touch {canary}"
    received = make_rollback(tmp_path, env={"ROLLBACK_TO": value})
    assert not canary.exists()
    assert received["env"] == value


def test_without_rollback_to_the_variable_is_empty(tmp_path: Path) -> None:
    # A stray HAILO_ROLLBACK_TO in the caller's environment does not pick a release.
    received = make_rollback(tmp_path, env={ENV_VAR: "sha256:stray"})
    assert received == {"argv": ["playbooks/rollback.yml"], "env": ""}


def rollback_play_vars() -> dict:
    plays = yaml.safe_load((REPO / "playbooks" / "rollback.yml").read_text())
    (play,) = [p for p in plays if "sidecar_deploy" in json.dumps(p.get("tasks", []))]
    assert "vars" in play, "the rollback play sets no vars"
    return dict(play["vars"])


def rollback_value(tmp_path: Path, env_value: str | None, *extra: str) -> str:
    """sidecar_deploy_rollback_to as a one-task play with the rollback play's vars sees it."""
    out = tmp_path / "value.json"
    play = [
        {
            "name": "Rollback vars",
            "hosts": "localhost",
            "gather_facts": False,
            "vars": rollback_play_vars(),
            "tasks": [
                {
                    "name": "Write the value",
                    "ansible.builtin.copy": {
                        "content": "{{ sidecar_deploy_rollback_to | to_json }}",
                        "dest": str(out),
                        "mode": "0600",
                    },
                }
            ],
        }
    ]
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(play))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        # This Python (with Ansible's module dependencies), not whatever python3 is on PATH.
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    }
    env.pop(ENV_VAR, None)
    if env_value is not None:
        env[ENV_VAR] = env_value
    playbook = Path(sys.executable).parent / "ansible-playbook"
    run = subprocess.run(
        [str(playbook) if playbook.exists() else "ansible-playbook",
         "-i", "localhost,", "-c", "local", *extra, str(tmp_path / "vars.yml")],
        capture_output=True, text=True, env=env, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    value: str = json.loads(out.read_text())
    return value


def test_rollback_play_reads_the_environment(tmp_path: Path) -> None:
    value = "sha256:abc; $(touch x) `y` 'q' \"d\" {{ 7 * 7 }} {% raw %}"
    assert rollback_value(tmp_path, value) == value


def test_rollback_play_default_is_empty(tmp_path: Path) -> None:
    assert rollback_value(tmp_path, None) == ""


def test_extra_vars_still_win(tmp_path: Path) -> None:
    assert rollback_value(tmp_path, "from-env", "-e", "sidecar_deploy_rollback_to=0.1.0") == "0.1.0"
