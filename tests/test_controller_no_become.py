"""Tasks delegated to the controller (delegate_to: localhost) never run sudo there.

The production inventory sets ansible_become: true for every host (group_vars/all.yml).
A delegated task takes its connection variables from the host it is delegated to, and the
implicit localhost gets group_vars/all too; a variable beats the task's `become: false`
keyword. So two things keep the controller out of sudo, and both are checked here:
- each inventory gives localhost ansible_become: false (host_vars/localhost.yml), for the
  variable;
- each delegated task (or an enclosing block or play) sets `become: false`, for a
  `become: true` keyword on a play or `--become` on the command line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from labtools import REPO

CONTROLLER = {"localhost", "127.0.0.1", "::1"}
TASK_LISTS = ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always")
INVENTORIES = sorted(p for p in (REPO / "inventories").iterdir() if p.is_dir())


def task_files() -> list[Path]:
    files = [*REPO.glob("roles/*/tasks/**/*.yml"), *REPO.glob("roles/*/handlers/**/*.yml")]
    return sorted({*files, *REPO.glob("playbooks/*.yml")})


def is_false(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() in {"false", "no"})


def walk(items: Any, delegate: Any, become: Any, where: str) -> Iterator[tuple[str, Any, Any]]:
    """(name, delegate_to, become) of every task, with what it inherits from blocks/plays."""
    for item in items or []:
        if not isinstance(item, dict):
            continue
        name = f"{where}: {item.get('name', '(unnamed)')}"
        item_delegate = item.get("delegate_to", delegate)
        if "local_action" in item:
            item_delegate = "localhost"
        item_become = item.get("become", become)
        nested = [key for key in TASK_LISTS if key in item]
        if nested:
            for key in nested:
                yield from walk(item[key], item_delegate, item_become, name)
        if not nested or "delegate_to" in item:
            yield name, item_delegate, item_become


def delegated_tasks() -> list[tuple[str, Any]]:
    out = []
    for path in task_files():
        data = yaml.safe_load(path.read_text()) or []
        where = str(path.relative_to(REPO))
        for name, delegate, become in walk(data, None, None, where):
            if str(delegate).strip() in CONTROLLER:
                out.append((name, become))
    return out


def test_there_are_tasks_delegated_to_the_controller() -> None:
    # The walk finds them (a broken walk would pass the next test vacuously).
    assert len(delegated_tasks()) >= 10


def test_every_task_delegated_to_the_controller_sets_become_false() -> None:
    missing = [name for name, become in delegated_tasks() if not is_false(become)]
    assert not missing, "delegate_to: localhost without become: false:\n" + "\n".join(missing)


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.name)
def test_localhost_does_not_become_in_any_inventory(inventory: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "LAB_CACHE": str(tmp_path),
    }
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible")),
            "-i", str(inventory), "localhost",
            "-m", "ansible.builtin.debug",
            "-a", "msg={{ ansible_become | default(false) | bool | string }}",
        ],
        capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads(run.stdout[run.stdout.index("{") :])["plays"][0]["tasks"][0]
    assert result["hosts"]["localhost"]["msg"] == "False", result["hosts"]["localhost"]


PLAYBOOK = """---
- name: On a production host, become as its inventory says
  hosts: pi-canary-01.example.org
  gather_facts: false
  tasks:
    - name: On the host itself (become)
      ansible.builtin.command: id -u
      changed_when: false
      register: on_host
      ignore_errors: true
    - name: On the controller, no keyword
      ansible.builtin.command: id -u
      changed_when: false
      delegate_to: localhost
    - name: On the controller, become false
      ansible.builtin.command: id -u
      changed_when: false
      delegate_to: localhost
      become: false
    - name: The host's task did try to become
      ansible.builtin.assert:
        that: on_host is failed and 'nonexistent-become' in on_host.msg
"""


def test_with_the_production_inventory_a_delegated_task_runs_without_sudo(
    tmp_path: Path,
) -> None:
    """The production inventory, its hosts reached with the local connection, and a
    become program that does not exist: a task on the host tries it and fails; a task
    delegated to the controller must not use it."""
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventories" / "production", inventory)
    with (inventory / "group_vars" / "all.yml").open("a") as f:
        f.write("ansible_become_exe: /nonexistent-become\nansible_become_user: nobody\n")
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    extra = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i", str(inventory), "-e", json.dumps(extra), str(tmp_path / "play.yml"),
        ],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
