"""Where the pipeline's files are on the controller is set in one place.

Two variables in each inventory's group_vars/all.yml, hailo_pipeline_root (the checkout)
and hailo_pipeline_artifacts_dir (default <root>/artifacts), and every path default of
hef_compile, sidecar_image and sidecar_deploy derives from them, with the same values as
a fallback when a role runs without them. So moving artifacts/ is one variable, and the
fleet scenario's converge sets that one variable instead of each role's paths.

The role defaults are rendered by ansible-playbook (local connection) in role context:
stand-in roles whose defaults/ are the real roles' (symlinks) and whose only
task writes the path variables out, in a stand-in checkout in tmp_path, run by a playbook
outside it. A last test runs the real sidecar_deploy role's inputs with the one variable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_local import ANSIBLE_PLAYBOOK, REPO, ansible_env

SHARED = ("hailo_pipeline_root", "hailo_pipeline_artifacts_dir")
INVENTORIES = ("local", "production")

# Each role's controller paths: variable -> where it must be.
PATHS: dict[str, dict[str, str]] = {
    "hef_compile": {
        "hef_compile_repo_root": "{root}",
        "hef_compile_source_dir": "{root}/compiler",
        "hef_compile_artifacts_dir": "{artifacts}",
    },
    "sidecar_image": {
        "sidecar_image_repo_root": "{root}",
        "sidecar_image_release_file": "{artifacts}/release.json",
    },
    "sidecar_deploy": {
        "sidecar_deploy_artifacts_dir": "{artifacts}",
        "sidecar_deploy_release_file": "{artifacts}/release.json",
        "sidecar_deploy_model_config": "{root}/hailo_models/tcn_encoder.yaml",
    },
}
# What the fleet converge used to set, one by one.
ROLE_PATH_VARIABLES = sorted({v for p in PATHS.values() for v in p} - {"hef_compile_source_dir"})

SHOW = """---
- name: Write the path variables
  ansible.builtin.copy:
    content: "{{{{ dict({names} | zip(query('ansible.builtin.vars', *{names}))) | to_json }}}}"
    dest: "{{{{ paths_out }}}}/{{{{ inventory_hostname }}}}.{role}.json"
    mode: "0644"
  delegate_to: localhost
"""

PLAYBOOK = """---
- name: Render the roles' path defaults
  hosts: "{{ paths_hosts }}"
  gather_facts: false
  tasks:
    - name: Each role
      ansible.builtin.include_role:
        name: "{{ item }}"
      loop: [hef_compile, sidecar_image, sidecar_deploy]
"""


def expected(root: Path | str, artifacts: Path | str) -> dict[str, str]:
    return {
        var: where.format(root=root, artifacts=artifacts)
        for paths in PATHS.values()
        for var, where in paths.items()
    }


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A stand-in checkout: roles/<role> with the real defaults/ and one task (no
    meta/: the argument specs' checks would template the lab's unrelated variables)."""
    root = tmp_path / "checkout"
    for role, paths in PATHS.items():
        role_dir = root / "roles" / role
        (role_dir / "tasks").mkdir(parents=True)
        (role_dir / "defaults").symlink_to(REPO / "roles" / role / "defaults")
        names = json.dumps(sorted(paths)).replace('"', "'")
        (role_dir / "tasks" / "main.yml").write_text(SHOW.format(names=names, role=role))
    return root


def render(
    tmp_path: Path, checkout: Path, inventory: str | Path | None, **extra: str
) -> dict[str, dict[str, str]]:
    """{host: {variable: value}} for a gpusrv and a pi_canary host of `inventory` (a name
    under inventories/ or a path; None: the implicit localhost of an inventory without
    variables)."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    # Elsewhere than the checkout: the paths must not depend on the playbook's directory.
    playbook = tmp_path / "elsewhere" / "deeper" / "paths.yml"
    playbook.parent.mkdir(parents=True, exist_ok=True)
    playbook.write_text(PLAYBOOK)
    variables = {
        "ansible_connection": "local",
        "ansible_become": False,
        "ansible_python_interpreter": sys.executable,
        "paths_out": str(out),
        "paths_hosts": "localhost" if inventory is None else "gpusrv[0]:pi_canary[0]",
        **extra,
    }
    env = ansible_env(tmp_path, str(checkout / "roles"))
    source = "localhost," if inventory is None else str(REPO / "inventories" / inventory)
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", source, "-e", json.dumps(variables), str(playbook)],
        capture_output=True, text=True, env=env, check=False, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rendered: dict[str, dict[str, str]] = {}
    for path in sorted(out.glob("*.json")):
        host = path.name.rsplit(".", 2)[0]  # <host>.<role>.json
        rendered.setdefault(host, {}).update(json.loads(path.read_text()))
    assert len(rendered) == (1 if inventory is None else 2), rendered
    return rendered


INVENTORY_CASES = [None, *INVENTORIES]


@pytest.mark.parametrize("inventory", INVENTORY_CASES, ids=lambda i: i or "no-inventory-vars")
def test_by_default_the_paths_are_the_checkout_the_roles_are_in(
    tmp_path: Path, checkout: Path, inventory: str | None
) -> None:
    for host, values in render(tmp_path, checkout, inventory).items():
        assert values == expected(checkout, checkout / "artifacts"), host


@pytest.mark.parametrize("inventory", INVENTORY_CASES, ids=lambda i: i or "no-inventory-vars")
def test_one_variable_moves_every_artifacts_path(
    tmp_path: Path, checkout: Path, inventory: str | None
) -> None:
    moved = tmp_path / "moved-artifacts"
    rendered = render(tmp_path, checkout, inventory, hailo_pipeline_artifacts_dir=str(moved))
    for host, values in rendered.items():
        assert values == expected(checkout, moved), host


@pytest.mark.parametrize("inventory", INVENTORY_CASES, ids=lambda i: i or "no-inventory-vars")
def test_the_root_moves_the_checkout_paths_and_artifacts_with_them(
    tmp_path: Path, checkout: Path, inventory: str | None
) -> None:
    other = tmp_path / "other-checkout"
    for host, values in render(
        tmp_path, checkout, inventory, hailo_pipeline_root=str(other)
    ).items():
        assert values == expected(other, other / "artifacts"), host


def test_a_role_variable_still_wins(tmp_path: Path, checkout: Path) -> None:
    moved = tmp_path / "moved-artifacts"
    rendered = render(
        tmp_path,
        checkout,
        "local",
        hailo_pipeline_artifacts_dir=str(moved),
        sidecar_deploy_artifacts_dir="/elsewhere",
    )
    for host, values in rendered.items():
        assert values == {
            **expected(checkout, moved),
            "sidecar_deploy_artifacts_dir": "/elsewhere",
        }, host


def test_the_inventorys_one_line_moves_every_artifacts_path(tmp_path: Path, checkout: Path) -> None:
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventories" / "production", inventory)
    all_yml = inventory / "group_vars" / "all.yml"
    line = 'hailo_pipeline_artifacts_dir: "{{ hailo_pipeline_root }}/artifacts"\n'
    assert all_yml.read_text().count(line) == 1
    moved = tmp_path / "srv" / "artifacts"
    all_yml.write_text(
        all_yml.read_text().replace(line, f"hailo_pipeline_artifacts_dir: {moved}\n")
    )
    for host, values in render(tmp_path, checkout, inventory).items():
        assert values == expected(checkout, moved), host


def group_vars_all(inventory: str) -> dict[str, Any]:
    data = yaml.safe_load((REPO / "inventories" / inventory / "group_vars" / "all.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_every_inventory_defines_the_two_variables_alike() -> None:
    definitions = {inv: {k: group_vars_all(inv).get(k) for k in SHARED} for inv in INVENTORIES}
    assert definitions["local"] == {
        "hailo_pipeline_root": "{{ role_path | dirname | dirname }}",
        "hailo_pipeline_artifacts_dir": "{{ hailo_pipeline_root }}/artifacts",
    }
    assert all(d == definitions["local"] for d in definitions.values()), definitions


def test_no_role_default_spec_or_readme_uses_playbook_dir() -> None:
    files = [
        *REPO.glob("roles/*/defaults/*.yml"),
        *REPO.glob("roles/*/meta/argument_specs.yml"),
        *REPO.glob("roles/*/README.md"),
        *REPO.glob("inventories/*/group_vars/*.yml"),
        *REPO.glob("molecule/*/*.yml"),
    ]
    assert files
    assert [str(f.relative_to(REPO)) for f in files if "playbook_dir" in f.read_text()] == []


@pytest.mark.parametrize("role", sorted(PATHS))
def test_the_argument_specs_document_the_derived_defaults(role: str) -> None:
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())[
        "argument_specs"
    ]
    for entry, spec in specs.items():
        for var in PATHS[role]:
            if var in spec.get("options", {}):
                assert spec["options"][var]["default"] == defaults[var], (entry, var)
    readme = (REPO / "roles" / role / "README.md").read_text()
    for var in PATHS[role]:
        assert f"`{var}`" in readme or f"\n{var}:" in readme, var


def test_the_fleet_converge_sets_only_the_artifacts_directory() -> None:
    converge = yaml.safe_load((REPO / "molecule" / "fleet" / "converge.yml").read_text())
    assert [set(play.get("vars", {})) for play in converge] == [{"hailo_pipeline_artifacts_dir"}]
    assert "MOLECULE_EPHEMERAL_DIRECTORY" in converge[0]["vars"]["hailo_pipeline_artifacts_dir"]


def keys(data: Any) -> set[str]:
    """Every mapping key in a loaded YAML document, at any depth."""
    if isinstance(data, dict):
        return {str(k) for k in data} | {k for v in data.values() for k in keys(v)}
    if isinstance(data, list):
        return {k for v in data for k in keys(v)}
    return set()


def test_no_scenario_sets_a_roles_paths_or_the_checkout() -> None:
    files = [*REPO.glob("molecule/*/*.yml"), REPO / ".config" / "molecule" / "config.yml"]
    assert len(files) > 3
    forbidden = {*ROLE_PATH_VARIABLES, "hef_compile_source_dir", "hailo_pipeline_root"}
    found = {
        (str(f.relative_to(REPO)), k)
        for f in files
        for k in keys(yaml.safe_load(f.read_text())) & forbidden
    }
    assert found == set()


def test_the_fleet_tests_run_playbooks_with_the_converge_setting() -> None:
    """molecule/fleet/tests/fleet.py's start_playbook passes the same one variable (a test
    may still point sidecar_deploy_artifacts_dir at another compile output)."""
    text = (REPO / "molecule" / "fleet" / "tests" / "fleet.py").read_text()
    assert 'base = {"hailo_pipeline_artifacts_dir": str(ARTIFACTS)}' in text
