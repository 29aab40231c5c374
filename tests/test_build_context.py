"""roles/build_context run for real (ansible-playbook, local connection, no become) on a
stand-in "build host" in tmp_path: a small source tree packed into a clean build context,
a wheelhouse made by an offline `pip download` (--no-index --find-links, through the
role's pip environment) of a tiny wheel written here, hard-linked into the context.

Checked: the context's files and layout (a file left from an earlier build is gone), the
wheelhouse's .complete key, that a second run changes nothing in the wheelhouse (and does
not run pip: the wheel is gone from the index by then), that --check changes nothing and
fails nothing, and that a Hailo wheel is refused with the caller's message."""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from ansible_local import ANSIBLE_PLAYBOOK, ansible_env

PLAYBOOK = """---
- name: Make a build context
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The shared tasks
      ansible.builtin.include_role:
        name: build_context
"""
KEY = "0123456789abcdef"
REFUSAL = "No Hailo package belongs in this test's image: take it out of app/requirements.txt."
# The wheelhouse steps: what a second run must not change.
WHEELHOUSE_TASKS = (
    "Look for the wheelhouse of this key",
    "Create the wheelhouse directory",
    "Download the wheels (exact pins, wheels only, per set of platform tags)",
    "Mark the wheelhouse complete",
    "Look for Hailo packages in the wheelhouse",
    "Refuse Hailo packages in the wheelhouse",
)


def wheel(index: Path, name: str, version: str) -> str:
    """A minimal pure-Python wheel in ``index``; its requirement line, with its sha256."""
    dist = f"{name}-{version}.dist-info"
    path = index / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(f"{name}/__init__.py", "")
        whl.writestr(
            f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        whl.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        whl.writestr(f"{dist}/RECORD", "")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{name}=={version} --hash=sha256:{sha}\n"


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Any]:
    """The controller's source tree, the offline index, and the role's variables."""
    src = tmp_path / "src"
    (src / "app" / "pkg").mkdir(parents=True)
    (src / "app" / "Dockerfile").write_text("FROM scratch\n")
    (src / "app" / "pkg" / "__init__.py").write_text("VERSION = 1\n")
    (src / "app" / "pkg" / "tool.sh").write_text("#!/bin/sh\n")
    (src / "app" / "pkg" / "tool.sh").chmod(0o755)
    (src / "app" / "tests").mkdir()
    (src / "app" / "tests" / "test_x.py").write_text("not packed\n")
    index = tmp_path / "index"
    index.mkdir()
    (src / "app" / "requirements.txt").write_text(wheel(index, "tinypkg", "1.0"))
    (src / "app" / "build-requirements.txt").write_text("")
    host = tmp_path / "host"
    host.mkdir()
    (tmp_path / "tmp").mkdir()
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    variables = {
        "ansible_python_interpreter": sys.executable,
        "build_context_dir": str(host / "context"),
        "build_context_source_root": str(src),
        "build_context_source_paths": [
            "app/Dockerfile", "app/requirements.txt", "app/build-requirements.txt", "app/pkg",
        ],
        "build_context_requirements": ["app/requirements.txt", "app/build-requirements.txt"],
        "build_context_python_version": "3.11",
        "build_context_wheel_platforms": [["manylinux2014_x86_64"], ["manylinux2014_aarch64"]],
        "build_context_wheelhouse": str(host / "wheels" / f"app-{KEY}"),
        "build_context_wheel_key": KEY,
        "build_context_wheels_path": "app/wheels",
        "build_context_pip_env": {
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(index),
            "PIP_CACHE_DIR": str(tmp_path / "pip-cache"),
        },
        "build_context_hailo_refusal": REFUSAL,
        "build_context_owner": pwd.getpwuid(os.getuid()).pw_name,
        "build_context_group": grp.getgrgid(os.getgid()).gr_name,
    }  # fmt: skip
    return {"tmp": tmp_path, "src": src, "index": index, "host": host, "vars": variables}


def play(site: dict[str, Any], *args: str, **overrides: Any) -> tuple[int, str, dict[str, Any]]:
    """(rc, log, {task name: result}) of the role's run, JSON-reported."""
    tmp: Path = site["tmp"]
    env = ansible_env(
        tmp,
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        # `python3 -m pip` on the stand-in host: this venv's, whatever PATH says.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        # The controller's temporary archive goes here (checked to be removed).
        TMPDIR=str(tmp / "tmp"),
    )
    proc = subprocess.run(
        [
            ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local",
            "-e", json.dumps({**site["vars"], **overrides}), *args, str(tmp / "play.yml"),
        ],
        capture_output=True, text=True, env=env, cwd=tmp, check=False, timeout=120,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    try:
        report = json.loads(proc.stdout[proc.stdout.index("{") :])
    except ValueError:
        return proc.returncode, log, {}
    tasks = {
        task["task"]["name"].split(" : ", 1)[-1]: task["hosts"].get("localhost", {})
        for task in report["plays"][0]["tasks"]
    }
    return proc.returncode, log, tasks


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_sources_and_wheelhouse_in_a_clean_context_then_nothing_changes(
    site: dict[str, Any],
) -> None:
    context: Path = site["host"] / "context"
    wheelhouse = Path(site["vars"]["build_context_wheelhouse"])
    (context / "app").mkdir(parents=True)
    (context / "app" / "left-over").write_text("from an earlier build\n")

    rc, log, tasks = play(site)
    assert rc == 0, log[-4000:]
    assert files(context) == {
        "app/Dockerfile", "app/requirements.txt", "app/build-requirements.txt",
        "app/pkg/__init__.py", "app/pkg/tool.sh",
        "app/wheels/.complete", "app/wheels/tinypkg-1.0-py3-none-any.whl",
    }  # fmt: skip
    for name in ("app/Dockerfile", "app/pkg/__init__.py", "app/pkg/tool.sh"):
        assert (context / name).read_bytes() == (site["src"] / name).read_bytes()
    assert os.access(context / "app/pkg/tool.sh", os.X_OK)
    assert (wheelhouse / ".complete").read_text() == KEY + "\n"
    whl = "tinypkg-1.0-py3-none-any.whl"
    assert (context / "app/wheels" / whl).stat().st_ino == (wheelhouse / whl).stat().st_ino
    assert len(tasks["Download the wheels (exact pins, wheels only, per set of platform tags)"]
               ["results"]) == 2  # fmt: skip
    assert not list((site["tmp"] / "tmp").glob("*.build-context.tar.gz"))

    # Second run: the wheelhouse is complete, so pip does not run (the wheel is no longer in
    # the index: a download would fail) and no wheelhouse step changes anything.
    (site["index"] / whl).unlink()
    rc, log, tasks = play(site)
    assert rc == 0, log[-4000:]
    for name in WHEELHOUSE_TASKS:
        assert not tasks[name].get("changed", False), (name, tasks[name])
    assert files(context) >= {"app/Dockerfile", "app/wheels/.complete", f"app/wheels/{whl}"}
    assert not list((site["tmp"] / "tmp").glob("*.build-context.tar.gz"))


def test_check_mode_changes_nothing_and_fails_nothing(site: dict[str, Any]) -> None:
    rc, log, _ = play(site, "--check")
    assert rc == 0, log[-4000:]
    assert not (site["host"] / "context").exists()
    assert not (site["host"] / "wheels").exists()
    assert not list((site["tmp"] / "tmp").glob("*.build-context.tar.gz"))


def test_a_hailo_wheel_is_refused_with_the_callers_message(site: dict[str, Any]) -> None:
    requirements = site["src"] / "app" / "requirements.txt"
    requirements.write_text(requirements.read_text() + wheel(site["index"], "hailort", "4.23.0"))
    rc, log, _ = play(site, build_context_wheel_platforms=[["manylinux2014_x86_64"]])
    assert rc != 0
    wheelhouse = site["vars"]["build_context_wheelhouse"]
    text = " ".join(log.replace("\\n", " ").split())
    assert (
        f"The wheelhouse {wheelhouse} holds hailort-4.23.0-py3-none-any.whl. {REFUSAL}" in text
    ), log[-4000:]
    assert not (site["host"] / "context" / "app" / "wheels").exists()


def test_a_source_path_outside_the_root_is_refused(site: dict[str, Any]) -> None:
    rc, log, _ = play(site, build_context_source_paths=["app/Dockerfile", "../etc"])
    assert rc != 0
    assert "but these are not: ../etc" in log, log[-4000:]
    assert not (site["host"] / "context").exists()
