"""Production SSH checks host keys: nothing in the repo turns the check off.

The lab and Molecule reach their containers with the community.docker.docker
connection (`docker exec`), which has no host keys; real hosts use SSH, where a
disabled check would accept any machine that answers on the Pi's address.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import yaml
from labtools import REPO

PRODUCTION = REPO / "inventories" / "production"
FALSE = {"false", "no", "off", "0", "n", "f"}
# ssh -o StrictHostKeyChecking=no / "StrictHostKeyChecking no", whitespace removed.
SSH_NO_CHECK = re.compile(r"stricthostkeychecking=?(no|off)\b|userknownhostsfile=?/dev/null")


def squashed(text: str) -> str:
    return "".join(text.lower().split())


def test_ansible_cfg_does_not_disable_host_key_checking() -> None:
    config = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    config.read(REPO / "ansible.cfg")
    for section in config.sections():
        value = config[section].get("host_key_checking")
        assert value is None or value.strip().lower() not in FALSE, (
            f"ansible.cfg [{section}] host_key_checking = {value}"
        )
    assert not SSH_NO_CHECK.search(squashed(config.get("ssh_connection", "ssh_args", fallback="")))


def test_make_and_ci_do_not_disable_host_key_checking() -> None:
    for path in [REPO / "Makefile", *(REPO / ".ci").rglob("*")]:
        if path.is_file():
            assert "ANSIBLE_HOST_KEY_CHECKING" not in path.read_text(), path


def walk(data: Any, where: str) -> list[tuple[str, str, Any]]:
    """Every (place, key, value) in a YAML document."""
    found: list[tuple[str, str, Any]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            found.append((where, str(key), value))
            found += walk(value, f"{where}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += walk(value, f"{where}[{i}]")
    return found


def production_files() -> list[Path]:
    files = [p for p in PRODUCTION.rglob("*") if p.is_file()]
    assert any(p.name == "hosts.yml" for p in files)
    return files


def test_production_inventory_does_not_disable_host_key_checking() -> None:
    for path in production_files():
        text = path.read_text()
        # Anywhere (ansible_ssh_common_args, ansible_ssh_extra_args, ...), even in a comment
        # someone might uncomment.
        assert not SSH_NO_CHECK.search(squashed(text)), path
        if path.suffix not in {".yml", ".yaml"}:
            continue
        for doc in yaml.safe_load_all(text):
            for place, key, value in walk(doc, path.name):
                if key in {"ansible_host_key_checking", "ansible_ssh_host_key_checking"}:
                    assert str(value).strip().lower() not in FALSE, f"{place}.{key}: {value}"
