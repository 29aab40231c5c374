#!/usr/bin/env python3
"""The lab's simulated Pi fleet, sized by LAB_FLEET_SIZE (default 3).

Ansible runs this inventory script beside hosts.yml: it puts lab-pi-fleet-1..N in
group pi_fleet. The last of them gets no /dev/hailo0 stand-in (lab_hailo_device:
false), so every lab run shows how the deploy treats a Pi without its Hailo-8.
"""

import json
import os
import sys

DEFAULT_SIZE = 3


def fleet_size() -> int:
    raw = os.environ.get("LAB_FLEET_SIZE", str(DEFAULT_SIZE))
    if not raw.isdigit() or int(raw) < 2:
        sys.exit(
            f"LAB_FLEET_SIZE={raw!r}: needs a whole number >= 2 (the fleet's last host has "
            "no /dev/hailo0, at least one other host must have one)"
        )
    return int(raw)


def inventory(size: int) -> dict[str, object]:
    hosts = [f"lab-pi-fleet-{i}" for i in range(1, size + 1)]
    return {
        "pi_fleet": {"hosts": hosts},
        "_meta": {"hostvars": {hosts[-1]: {"lab_hailo_device": False}}},
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--host":
        print("{}")  # every host's variables are in _meta above
    else:
        print(json.dumps(inventory(fleet_size())))
