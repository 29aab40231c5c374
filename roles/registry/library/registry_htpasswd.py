#!/usr/bin/python
"""Keep an htpasswd file holding exactly the given users, each as a bcrypt hash of a
given cost. The registry (and its proxy) check that hash on every request, so the cost
is paid per request: it is a setting (registry_bcrypt_cost), and a hash of another cost
is made again."""

from __future__ import annotations

DOCUMENTATION = r"""
module: registry_htpasswd
short_description: An htpasswd file of exactly these users, bcrypt at this cost
description:
  - Writes C(path) with one C(name:hash) line per user, in the order given; lines of
    users not listed are removed.
  - A user's hash is kept when it is bcrypt of the user's password at C(cost); otherwise
    (new user, other password, other cost, another scheme) it is made again with a new salt.
  - The diff names users and costs, never hashes. Check mode changes nothing.
  - Needs the bcrypt Python package on the host (Debian's python3-bcrypt).
options:
  path: {type: path, required: true}
  users:
    type: list
    elements: dict
    required: true
    description:
      - Each {name, password, push} (the registry role's registry_users); a name has no ':' or
        white space, a password is at most 72 bytes.
      - push (default true) says whether the user may push; see push_only.
  push_only:
    type: bool
    default: false
    description: The file holds only the users who may push (the proxy's).
  cost: {type: int, default: 10, description: bcrypt's cost (log2 of its rounds), 4 to 31.}
extends_documentation_fragment: [files]
"""

RETURN = r"""
users: {description: The names in the file, in order., type: list, returned: always}
renewed:
  description: Users whose hash was made (new, other password or other cost).
  type: list
  returned: always
removed: {description: Users removed from the file., type: list, returned: always}
"""

import os
import re
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    import bcrypt
except ImportError:  # reported by main(), with what to install
    bcrypt = None

# What Go's bcrypt (Distribution) and libxcrypt's crypt() (nginx) both read.
_BCRYPT = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
# bcrypt reads only the first 72 bytes of a password: a longer one would pass with any tail.
MAX_PASSWORD_BYTES = 72


def parse(text: str) -> dict[str, str]:
    """name -> hash of each `name:hash` line (blank lines and comments ignored)."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#") and ":" in line:
            name, _, hashed = line.partition(":")
            entries[name] = hashed.strip()
    return entries


def cost_of(hashed: str) -> int | None:
    """The cost of a bcrypt hash; None for anything else."""
    match = _BCRYPT.match(hashed)
    return int(match.group(1)) if match else None


def problems(users: list[dict[str, Any]], cost: int) -> list[str]:
    """What is wrong with the arguments, in words an operator can act on."""
    found = []
    if not 4 <= cost <= 31:
        found.append(f"cost must be 4 to 31 (bcrypt's range), not {cost}")
    names = [str(u.get("name", "")) for u in users]
    for name in sorted({n for n in names if names.count(n) > 1}):
        found.append(f"user {name!r} is listed twice")
    for user, name in zip(users, names, strict=True):
        if not name or ":" in name or re.search(r"\s", name):
            found.append(f"user name {name!r} must be non-empty, without ':' or white space")
        password = user.get("password")
        if not password:
            found.append(f"user {name!r} has no password")
        elif len(str(password).encode()) > MAX_PASSWORD_BYTES:
            found.append(
                f"the password of {name!r} is longer than {MAX_PASSWORD_BYTES} bytes, and "
                "bcrypt reads only the first 72: use a shorter one"
            )
    return found


def matches(password: str, hashed: str, cost: int) -> bool:
    """Whether `hashed` is bcrypt of `password` at `cost` (and so can stay)."""
    if cost_of(hashed) != cost:
        return False
    try:
        return bool(bcrypt.checkpw(password.encode(), hashed.encode()))
    except ValueError:  # a hash this bcrypt cannot read: make it again
        return False


def plan(current: dict[str, str], users: list[dict[str, Any]], cost: int) -> dict[str, Any]:
    """The file's new lines, and which users are renewed and removed."""
    lines, renewed = [], []
    for user in users:
        name, password = user["name"], user["password"]
        hashed = current.get(name, "")
        if not matches(password, hashed, cost):
            salt = bcrypt.gensalt(rounds=cost, prefix=b"2b")
            hashed = bcrypt.hashpw(password.encode(), salt).decode()
            renewed.append(name)
        lines.append(f"{name}:{hashed}\n")
    wanted = {u["name"] for u in users}
    removed = [name for name in current if name not in wanted]
    return {"content": "".join(lines), "renewed": renewed, "removed": removed}


def describe(entries: dict[str, str]) -> str:
    """The diff's view of a file: names and costs, not hashes."""
    return "".join(
        f"{name} (bcrypt cost {cost_of(h)})\n"
        if cost_of(h) is not None
        else f"{name} (not bcrypt)\n"
        for name, h in entries.items()
    )


def write(module: AnsibleModule, path: str, content: str) -> None:
    """Replace `path` atomically (a reader never sees half a file)."""
    handle, temp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".htpasswd-")
    with os.fdopen(handle, "w") as out:
        out.write(content)
    module.atomic_move(temp, path)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "users": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "password": {"type": "str", "required": True, "no_log": True},
                    "push": {"type": "bool", "default": True},
                },
            },
            "push_only": {"type": "bool", "default": False},
            "cost": {"type": "int", "default": 10},
        },
        add_file_common_args=True,
        supports_check_mode=True,
    )
    if bcrypt is None:
        module.fail_json(msg="registry_htpasswd needs Python's bcrypt on the host (python3-bcrypt)")
    path, users, cost = module.params["path"], module.params["users"], module.params["cost"]
    if module.params["push_only"]:
        users = [u for u in users if u["push"]]
    found = problems(users, cost)
    if found:
        module.fail_json(msg="; ".join(found))
    if os.path.isdir(path):
        module.fail_json(msg=f"{path} is a directory, not a password file")

    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as existing:
            text = existing.read()
    current = parse(text)
    new = plan(current, users, cost)
    changed = new["content"] != text
    result: dict[str, Any] = {
        "changed": changed,
        "path": path,
        "users": [u["name"] for u in users],
        "renewed": new["renewed"],
        "removed": new["removed"],
    }
    if module._diff:
        result["diff"] = {
            "before_header": path,
            "after_header": path,
            "before": describe(current),
            "after": describe(parse(new["content"])),
        }
    if changed and not module.check_mode:
        write(module, path, new["content"])
    if os.path.exists(path):
        file_args = module.load_file_common_arguments(module.params)
        result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
