"""The lab's Pis log in to the lab registry with a login of their own, not the build's.

The image build (roles/sidecar_image on GPUSrv, inventories/local/group_vars/gpusrv.yml)
pushes as sidecar_image_registry_username; a Pi keeps its login in its Docker config
(roles/sidecar_deploy), so that login must not be the push login, and it is pull-only:
the registry role's proxy lets only users with `push: true` write (roles/registry/README.md).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from labtools import REPO

GROUP_VARS = REPO / "inventories" / "local" / "group_vars"


def group_vars(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((GROUP_VARS / f"{name}.yml").read_text())
    return data


def referenced_var(template: str) -> str:
    """The one variable a `{{ var }}` password template names."""
    match = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", template.strip())
    assert match, f"expected a plain '{{{{ var }}}}', got {template!r}"
    return match.group(1)


def test_pis_do_not_log_in_as_the_build_user() -> None:
    pi, gpusrv = group_vars("pi"), group_vars("gpusrv")
    assert pi["sidecar_deploy_registry_username"] != gpusrv["sidecar_image_registry_username"]
    assert referenced_var(pi["sidecar_deploy_registry_password"]) != referenced_var(
        gpusrv["sidecar_image_registry_password"]
    )


def test_both_logins_exist_in_the_lab_registry_with_their_passwords() -> None:
    users = {
        u["name"]: referenced_var(u["password"]) for u in group_vars("registry")["registry_users"]
    }
    pi, gpusrv = group_vars("pi"), group_vars("gpusrv")
    for name, password in [
        (pi["sidecar_deploy_registry_username"], pi["sidecar_deploy_registry_password"]),
        (gpusrv["sidecar_image_registry_username"], gpusrv["sidecar_image_registry_password"]),
    ]:
        assert users.get(name) == referenced_var(password), name


def test_each_login_has_its_own_password_file() -> None:
    lab = group_vars("all")
    files = {}
    for user in group_vars("registry")["registry_users"]:
        lookup = lab[referenced_var(user["password"])]
        match = re.search(
            r"lookup\('ansible\.builtin\.password', lab_secrets_dir ~ '/([^ ']+)", lookup
        )
        assert match, f"{user['name']}: its password is not made under lab_secrets_dir: {lookup}"
        files[user["name"]] = match.group(1)
    assert len(set(files.values())) == len(files), files


def test_the_pis_login_is_pull_only_and_the_builds_may_push() -> None:
    registry = group_vars("registry")
    users = {u["name"]: u for u in registry["registry_users"]}
    pi, gpusrv = group_vars("pi"), group_vars("gpusrv")
    assert users[pi["sidecar_deploy_registry_username"]].get("push") is False
    assert users[gpusrv["sidecar_image_registry_username"]].get("push") is True
    # Pull-only users need the role's proxy (its default): the lab must not turn it off.
    assert registry.get("registry_proxy_enabled", True) is True
