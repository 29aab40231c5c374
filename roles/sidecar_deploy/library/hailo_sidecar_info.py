#!/usr/bin/python
"""Read-only: the Pi's state for the preflight, the deploy gate (and bake), or a diagnosis."""

from __future__ import annotations

DOCUMENTATION = r"""
module: hailo_sidecar_info
short_description: What a Pi runs and whether it passes the sidecar gate (changes nothing)
description:
  - C(gather=state) reads architecture, devices, the Docker engine, free disk, the registry
    CA, the release record, release directories, the current link, the image, network and
    container, and compares what runs with the record (C(drift)).
  - C(gate) runs the deploy gate against the running container (and, with C(bake_s), the
    bake); the module fails when the gate does, with its figures and the container's logs.
  - C(diagnose) returns the container's state and last log lines.
options:
  gather: {type: str, required: true, choices: [state, gate, diagnose]}
  root: {type: path, required: true, description: The models root's parent (sidecar_deploy_root).}
  docker_socket: {type: path, default: /var/run/docker.sock}
  container: {type: str, required: true}
  record_path: {type: path, required: true}
  run_dir: {type: path}
  uid: {type: int}
  gid: {type: int}
  tmpfiles_path: {type: path}
  devices: {type: list, elements: str, default: []}
  registry: {type: str, default: ""}
  image: {type: str, default: ""}
  network: {type: str, default: ""}
  releases: {type: list, elements: dict, default: []}
  port: {type: int, default: 9000}
  log_lines: {type: int, default: 30}
  gate: {type: dict, description: timeout_s, probes, warmup, p95_budget_ms, expect, golden, bake_s.}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hailo_sidecar_gate import bake, diagnose
from ansible.module_utils.hailo_sidecar_host import COMMON_OPTIONS, STATE_OPTIONS, state


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **COMMON_OPTIONS,
            "gather": {"type": "str", "required": True, "choices": ["state", "gate", "diagnose"]},
            **STATE_OPTIONS,
            "gate": {"type": "dict"},
        },
        required_if=[("gather", "gate", ["gate"])],
        supports_check_mode=True,
    )
    p = module.params
    if p["gather"] == "state":
        module.exit_json(changed=False, state=state(p))
    if p["gather"] == "diagnose":
        module.exit_json(changed=False, **diagnose(p))
    result = bake({**p["gate"], **{k: p[k] for k in COMMON_OPTIONS}})
    if not result["ok"]:
        module.fail_json(msg=result["reason"], gate=result)
    module.exit_json(changed=False, gate=result)


if __name__ == "__main__":
    main()
