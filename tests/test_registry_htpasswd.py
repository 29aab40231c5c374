"""The registry role's password-file module (roles/registry/library/registry_htpasswd.py):
exactly the listed users, bcrypt at the asked cost, hashes kept while they still fit,
check mode and a diff without hashes, refusals an operator can act on."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from ansible_local import REPO, run_module

MODULE = REPO / "roles" / "registry" / "library" / "registry_htpasswd.py"
# The lowest cost bcrypt takes keeps these tests fast; the role's default is tested below.
COST = 4


def run(
    path: Path, users: list[dict[str, Any]], check: bool = False, **args: Any
) -> dict[str, Any]:
    return run_module(
        MODULE, {"path": str(path), "users": users, "cost": COST, **args}, check=check, diff=True
    )


def entries(path: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in path.read_text().splitlines())


USERS = [{"name": "pusher", "password": "p" * 24}, {"name": "reader", "password": "r" * 24}]


def test_writes_the_users_with_bcrypt_at_the_cost(tmp_path):
    path = tmp_path / "htpasswd"
    out = run(path, USERS, mode="0640")
    assert out["changed"], out
    assert out["renewed"] == ["pusher", "reader"], out
    found = entries(path)
    assert list(found) == ["pusher", "reader"]
    for user in USERS:
        hashed = found[user["name"]]
        assert hashed.startswith(f"$2b$0{COST}$")
        assert bcrypt.checkpw(user["password"].encode(), hashed.encode())
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_second_run_keeps_every_hash(tmp_path):
    path = tmp_path / "htpasswd"
    run(path, USERS)
    before = path.read_text()
    out = run(path, USERS)
    assert not out["changed"], out
    assert out["renewed"] == out["removed"] == [], out
    assert path.read_text() == before


def test_another_cost_or_password_renews_only_that_hash(tmp_path):
    path = tmp_path / "htpasswd"
    run(path, USERS)
    old = entries(path)
    changed = [USERS[0], {"name": "reader", "password": "another password"}]
    out = run(path, changed)
    assert out["renewed"] == ["reader"], out
    assert entries(path)["pusher"] == old["pusher"]
    # A hash of another cost (e.g. passlib's default 12, the role's before) is made again.
    out = run(path, changed, cost=5)
    assert out["changed"], out
    assert out["renewed"] == ["pusher", "reader"], out
    assert all(h.startswith("$2b$05$") for h in entries(path).values())


def test_removes_users_not_listed_and_other_schemes(tmp_path):
    path = tmp_path / "htpasswd"
    path.write_text("# by hand\nold:$apr1$abcdefgh$0123456789012345678901\npusher:plain\n")
    out = run(path, USERS[:1])
    assert out["removed"] == ["old"], out
    assert out["renewed"] == ["pusher"], out
    assert list(entries(path)) == ["pusher"]
    assert "by hand" not in path.read_text()


def test_check_mode_writes_nothing_and_the_diff_shows_no_hash(tmp_path):
    path = tmp_path / "htpasswd"
    run(path, USERS)
    before = path.read_text()
    out = run(path, [USERS[0]], check=True, cost=5)
    assert out["changed"], out
    assert path.read_text() == before
    assert out["diff"]["before"] == f"pusher (bcrypt cost {COST})\nreader (bcrypt cost {COST})\n"
    assert out["diff"]["after"] == "pusher (bcrypt cost 5)\n"
    assert "$2b$" not in str(out)
    # No password in the result either.
    assert "p" * 24 not in str(out)


def test_check_mode_on_a_missing_file(tmp_path):
    out = run(tmp_path / "htpasswd", USERS, check=True)
    assert out["changed"], out
    assert not (tmp_path / "htpasswd").exists()


@pytest.mark.parametrize(
    ("users", "cost", "message"),
    [
        (USERS, 3, "cost must be 4 to 31 (bcrypt's range), not 3"),
        ([USERS[0], USERS[0]], COST, "user 'pusher' is listed twice"),
        ([{"name": "a:b", "password": "x"}], COST, "must be non-empty, without ':' or white space"),
        ([{"name": "a b", "password": "x"}], COST, "must be non-empty, without ':' or white space"),
        ([{"name": "a", "password": ""}], COST, "user 'a' has no password"),
        (
            [{"name": "a", "password": "x" * 73}],
            COST,
            "the password of 'a' is longer than 72 bytes",
        ),
    ],
)
def test_refuses_bad_arguments(tmp_path, users, cost, message):
    path = tmp_path / "htpasswd"
    out = run(path, users, cost=cost)
    assert out.get("failed"), out
    assert message in out["msg"], out
    assert not path.exists()
    assert "x" * 73 not in str(out)


def test_the_roles_default_cost_is_what_the_module_defaults_to():
    """registry_bcrypt_cost (defaults/main.yml) and the module agree: 10, bcrypt's own
    default and a quarter of the per-request check passlib's 12 cost."""
    defaults = (REPO / "roles" / "registry" / "defaults" / "main.yml").read_text()
    assert "\nregistry_bcrypt_cost: 10\n" in defaults
    assert "cost: {type: int, default: 10" in MODULE.read_text()


def test_push_only_keeps_the_users_who_may_push(tmp_path):
    path = tmp_path / "htpasswd-push"
    users = [USERS[0], {**USERS[1], "push": False}]
    out = run(path, users, push_only=True)
    assert out["users"] == ["pusher"], out
    assert list(entries(path)) == ["pusher"]
    # A user who may no longer push leaves the file.
    out = run(path, [{**USERS[0], "push": False}], push_only=True)
    assert out["removed"] == ["pusher"], out
    assert path.read_text() == ""
