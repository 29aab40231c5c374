"""Each playbook run on its own (and each stage of site.yml run by its tag) reads the
lab registry's address and CA itself before a role uses them: the lab's group_vars take
them from the registry host's facts (registry_address, registry_ca_pem, set by the
registry role's tasks/facts.yml), which a fresh ansible-playbook run has only if one of
its own plays set them (fact_caching is memory: nothing is kept between runs).

The real playbooks run against the lab inventory without the lab: every host is reached
with the local connection, the registry role's facts.yml reads a stand-in CA
(registry_pki_dir), and the roles that would build or deploy are replaced by stubs
(first on the roles path) that only record the variables they are given.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_local import REPO, ansible_env

CA_PEM = "-----BEGIN CERTIFICATE-----\nstand-in CA\n-----END CERTIFICATE-----\n"
LAB_REGISTRY = "lab-gpusrv:5000"  # registry_hostname (inventory_hostname) : registry_port

# A stub role writes <out>/<host>.<role>.json with the variables it was given, or the
# error templating them raised (the variable is undefined).
STUB = """---
- name: Record what the role is given
  ansible.builtin.copy:
    content: "{{{{ {{{fields}}} | to_json }}}}"
    dest: "{{{{ stub_out }}}}/{{{{ inventory_hostname }}}}.{role}.json"
    mode: "0644"
"""
STUBS = {
    "sidecar_image": {"main": "'sidecar_image_registry': sidecar_image_registry"},
    "sidecar_deploy": {
        "main": "'sidecar_deploy_registry_ca_pem': sidecar_deploy_registry_ca_pem",
        "rollback": "'sidecar_deploy_registry_ca_pem': sidecar_deploy_registry_ca_pem",
    },
}


def run_playbook(tmp_path: Path, playbook: str, *args: str) -> tuple[Path, str]:
    roles, out, pki = tmp_path / "roles", tmp_path / "out", tmp_path / "pki"
    for role, entries in STUBS.items():
        (roles / role / "tasks").mkdir(parents=True)
        # The real role's defaults and argument specs: Ansible validates a role's
        # arguments whatever --tags says, so a stage's variables must template even
        # when another stage runs (site.yml --tags deploy validates sidecar_image too).
        for part in ("defaults", "meta"):
            shutil.copytree(REPO / "roles" / role / part, roles / role / part)
        for entry, fields in entries.items():
            (roles / role / "tasks" / f"{entry}.yml").write_text(
                STUB.format(fields=fields, role=role)
            )
    out.mkdir()
    pki.mkdir()
    (pki / "ca.crt").write_text(CA_PEM)
    # The stubs first: they shadow the real sidecar_image and sidecar_deploy roles; the
    # registry role (its facts.yml) is the real one. The lab's passwords go to tmp_path.
    env = ansible_env(tmp_path, f"{roles}:{REPO / 'roles'}", LAB_CACHE=str(tmp_path / "cache"))
    extra = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "registry_pki_dir": str(pki),
        "stub_out": str(out),
    }
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i", str(REPO / "inventories" / "local"),
            "-e", json.dumps(extra),
            str(REPO / "playbooks" / playbook), *args,
        ],
        capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=300,
    )  # fmt: skip
    return out, run.stdout[-4000:] + run.stderr[-2000:]


def recorded(out: Path, host: str, role: str) -> dict[str, str]:
    path = out / f"{host}.{role}.json"
    assert path.is_file(), f"{role} did not run on {host}"
    data: dict[str, str] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize(
    ("playbook", "args"),
    [("build_image.yml", ()), ("site.yml", ("--tags", "image"))],
    ids=["build_image.yml", "site.yml--tags-image"],
)
def test_the_image_build_is_given_the_registry_address(
    tmp_path: Path, playbook: str, args: tuple[str, ...]
) -> None:
    out, log = run_playbook(tmp_path, playbook, *args)
    assert (out / "lab-gpusrv.sidecar_image.json").is_file(), log
    assert recorded(out, "lab-gpusrv", "sidecar_image") == {"sidecar_image_registry": LAB_REGISTRY}


@pytest.mark.parametrize(
    ("playbook", "args"),
    [("deploy.yml", ()), ("site.yml", ("--tags", "deploy"))],
    ids=["deploy.yml", "site.yml--tags-deploy"],
)
def test_the_deploy_is_given_the_registry_ca(
    tmp_path: Path, playbook: str, args: tuple[str, ...]
) -> None:
    out, log = run_playbook(tmp_path, playbook, *args)
    assert (out / "lab-pi-canary-1.sidecar_deploy.json").is_file(), log
    for host in ["lab-pi-canary-1", "lab-pi-fleet-1"]:
        assert recorded(out, host, "sidecar_deploy") == {"sidecar_deploy_registry_ca_pem": CA_PEM}
