#!/usr/bin/python
"""Change a Pi for sidecar_deploy: prepare (lease, layout, CA), pull, install, restore,
commit, unlock. Install -> gate -> commit, Mender-style: a pending entry is recorded
before anything switches and becomes current only at the commit."""

from __future__ import annotations

DOCUMENTATION = r"""
module: hailo_sidecar
short_description: Put a sidecar release on a Pi, install -> commit, under a per-host lease
description:
  - C(prepare) reads the host's state (as hailo_sidecar_info), decides the target (a
    rollback's choice, a rolled-back release refused), then takes the deploy lease and lays
    out the host and the registry CA. No lease is taken on a host that will be skipped or
    refused.
  - C(pull) pulls the image by digest with the credentials in the request only (nothing is
    stored on the Pi).
  - C(install) places the staged artifact (sha256 checked), records it as pending, switches
    the current link and replaces the container; the container of the committed release
    waits, stopped, as <name>.previous.
  - C(restore) puts the committed release back (the waiting container, or a new one from
    the record), clears the pending entry.
  - C(commit) makes the pending release current, removes the waiting container, keeps the
    images of the current and previous release under local tags, releases the lease.
  - C(unlock) releases the lease if this run holds it.
  - Every step but prepare and unlock refuses to run without this run's lease.
options:
  step: {type: str, required: true, choices: [prepare, pull, install, restore, commit, unlock]}
  run_id: {type: str, required: true}
  owner: {type: str, default: "", description: user@controller, for "locked by".}
  pid: {type: int, default: 0, description: The controller's ansible-playbook process.}
  break_lease: {type: str, default: "", description: Take over the lease of this (dead) run id.}
  lease_seconds: {type: int, default: 1800}
  env: {type: dict, default: {}, no_log: true, description: The sidecar's extra environment.}
  registry_password: {type: str, no_log: true}
"""

from typing import Any

from ansible.module_utils import hailo_sidecar_hailo as hailo
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hailo_sidecar_docker import (
    DockerAPI,
    DockerError,
    cannot_run,
    drop_previous,
    keep_images,
    owned,
    previous_name,
    release_of,
    replace,
    restore_previous,
    same_release,
)
from ansible.module_utils.hailo_sidecar_host import (
    COMMON_OPTIONS,
    STATE_OPTIONS,
    commit,
    describe,
    layout,
    lease,
    normalize,
    place,
    prune,
    read_record,
    refusal,
    release_name,
    rollback_target,
    state,
    switch,
    trust,
    unlease,
    write_record,
)


def prepare(module: AnsibleModule, p: dict[str, Any]) -> dict[str, Any]:
    st = state(p)
    plan: dict[str, Any] = {}
    if p["mode"] == "rollback":
        plan = rollback_target(st["record"], p["rollback_to"], st["drift"])
        if "target" in plan:
            found = state(
                {**p, "devices": [], "releases": [plan["target"]], "image": plan["target"]["image"]}
            )
            plan["release_dir"] = found["releases"][release_name(plan["target"])]
            plan["image_present"] = found["image_present"]
    else:
        plan = {"target": p["target"]}
        why = None if p["allow_rolled_back"] else refusal(st["record"], p["target"])
        if why:
            plan["error"] = why
    out: dict[str, Any] = {"changed": False, "state": st, "plan": plan, "lease": None}
    usable = (
        st["docker"]["ok"]
        and all(d["char"] for d in st["devices"].values())
        and st["record_error"] is None
        and "error" not in plan
    )
    if not usable or module.check_mode:
        return out
    out["lease"] = lease(
        p["root"],
        p["run_id"],
        p["owner"],
        p["lease_seconds"],
        take=True,
        pid=p["pid"],
        take_over=p["break_lease"],
    )
    if not out["lease"]["ok"]:
        return out
    out["changed"] = layout(p["root"], p["run_dir"], p["uid"], p["gid"], p["tmpfiles_path"], False)
    if p["registry"] and p["ca_pem"]:
        out["changed"] = trust(p["registry"], p["ca_pem"], False) or out["changed"]
    return out


def hold(module: AnsibleModule, p: dict[str, Any]) -> None:
    """Every change is made under this run's lease (extended each time)."""
    if module.check_mode:
        return
    held = lease(p["root"], p["run_id"], p["owner"], p["lease_seconds"], take=False)
    if not held["ok"]:
        # A restore that may not run leaves the host as it is: broken, not rolled back.
        module.fail_json(
            msg=f"not changed: {held['reason']}", lease=held, broken=p["step"] == "restore"
        )


def pull(module: AnsibleModule, p: dict[str, Any]) -> dict[str, Any]:
    api = DockerAPI(p["docker_socket"])
    image = p["release"]["image"]
    if api.image(image) is not None:
        return {"changed": False}
    if not module.check_mode:
        auth = None
        if p["registry_username"]:
            auth = {"username": p["registry_username"], "password": p["registry_password"] or ""}
        try:
            api.pull(image, p["spec"]["platform"], auth)
        except (DockerError, OSError) as exc:
            module.fail_json(msg=f"pulling {image} failed before any switch: {exc}")
    return {"changed": True}


def container_env(p: dict[str, Any], release: dict[str, Any]) -> dict[str, str]:
    """What the sidecar is told: the release (model, version, manifest, backend), the
    role's settings (spec.env), then the operator's extra environment."""
    models = p["spec"]["container_models"]
    return {
        **{k: str(v) for k, v in p["spec"]["env"].items()},
        "MODEL_NAME": release["model"],
        "MODEL_VERSION": release["version"],
        "MODELS_DIR": models,
        "MODEL_MANIFEST": f"{models}/{release_name(release)}/{release['manifest']}",
        "INFER_MODE": release["infer_mode"],
        **{k: str(v) for k, v in p["env"].items()},
    }


def install(module: AnsibleModule, p: dict[str, Any]) -> dict[str, Any]:
    check = module.check_mode
    release = {**p["release"], "env_keys": sorted(p["env"])}
    models = f"{p['root']}/models"
    record, error = read_record(p["record_path"])
    if error:
        module.fail_json(msg=error)
    record = normalize(record or {})
    out: dict[str, Any] = {"changed": False, "switched": False, "pruned": []}
    protect = {release_name(r) for r in (record["current"], record["previous"], release) if r}
    if p["staging"] and not check:
        placed = place(models, p["staging"], release, protect)
        if not placed["ok"]:
            module.fail_json(msg=placed["reason"], switched=False)
        out["changed"] = placed["changed"]
    link = switch(models, release, check=True)
    if not link["ok"] and not (check and p["staging"]):
        module.fail_json(msg=f"refused before any switch: {link['reason']}", switched=False)
    api = DockerAPI(p["docker_socket"])
    before = {"link": link["before"], "container": release_of(api.container(p["spec"]["name"]))}
    would = replace(
        api, p["spec"], release, container_env(p, release), record["current"], check=True
    )
    if not would["ok"]:
        module.fail_json(msg=would["reason"], switched=False)
    pending = record["pending"]
    if not (
        link["changed"] or would["changed"] or (pending and not same_release(pending, release))
    ):
        out["diff"] = {"before": "", "after": ""}
        return out
    out.update(changed=True, switched=True)
    out["diff"] = {
        "before": (
            f"current link: {before['link']}\ncontainer runs: {describe(before['container'])}\n"
        ),
        "after": f"current link: {release_name(release)}\ncontainer runs: {describe(release)}\n",
    }
    if check:
        return out
    problem = cannot_run(api, p["spec"], release)
    if problem:
        module.fail_json(msg=f"refused before any switch: {problem}", switched=False)
    if release.get("infer_mode") == "hailo":
        labels = ((api.image(release["image"]) or {}).get("Config") or {}).get("Labels") or {}
        uid, _, gid = p["spec"]["user"].partition(":")
        found, out["hailo_notes"] = hailo.problems(
            release, labels, p["spec"]["devices"], int(uid), int(gid or uid), p["hailo_paths"]
        )
        if found:
            module.fail_json(msg="refused before any switch: " + "; ".join(found), switched=False)
    # Pending first: whatever happens next, the record says a switch is under way.
    entry = {
        **release,
        "since": p["stamp"]["deployed_at"],
        "run_id": p["run_id"],
        "mode": p["mode"],
    }
    write_record(p["record_path"], {**record, "pending": entry})
    done = switch(models, release)
    if not done["ok"]:
        module.fail_json(msg=done["reason"], switched=True)
    try:
        ran = replace(api, p["spec"], release, container_env(p, release), record["current"])
    except (DockerError, OSError) as exc:
        ran = {"ok": False, "reason": str(exc)}
    if not ran["ok"]:
        module.fail_json(msg=ran["reason"], switched=True)
    out["pruned"] = prune(models, p["keep"], protect)
    keep_images(api, [r for r in (record["current"], record["previous"], release) if r])
    return out


def restore(module: AnsibleModule, p: dict[str, Any]) -> dict[str, Any]:
    """The committed release back (container, link), the pending entry cleared."""
    record, error = read_record(p["record_path"])
    if error:
        module.fail_json(msg=error)
    record = normalize(record or {})
    current = record["current"]
    api = DockerAPI(p["docker_socket"])
    name = p["spec"]["name"]
    models = f"{p['root']}/models"
    out: dict[str, Any] = {"changed": True, "restored": current, "steps": []}
    try:
        if current is None:
            for each in (name, previous_name(name)):
                if owned(api.container(each)):
                    api.remove(each)
                    out["steps"].append(f"removed {each}")
            switch(models, None)
            out["steps"].append("removed the current link")
        else:
            running = api.container(name)
            if same_release(release_of(running), current) and (running.get("State") or {}).get(
                "Running"
            ):
                out["steps"].append(f"{name} runs {describe(current)} already")
            else:
                waiting = api.container(previous_name(name))
                if same_release(release_of(waiting), current):
                    out["steps"].append(restore_previous(api, name))
                else:
                    if owned(running):
                        api.remove(name)
                    env = container_env(p, current)
                    ran = replace(api, p["spec"], current, env, None)
                    if not ran["ok"]:
                        raise DockerError(f"run {describe(current)}", 0, ran["reason"])
                    out["steps"].append(f"a new container for {describe(current)} from the record")
            link = switch(models, current)
            if not link["ok"]:
                raise DockerError("switch the current link back", 0, link["reason"])
    except (DockerError, OSError) as exc:
        module.fail_json(msg=f"the restore failed: {exc}", broken=True, steps=out["steps"])
    write_record(p["record_path"], {**record, "pending": None})
    return out


def commit_step(module: AnsibleModule, p: dict[str, Any]) -> dict[str, Any]:
    record, error = read_record(p["record_path"])
    if error:
        module.fail_json(msg=error)
    release = {**p["release"], "env_keys": sorted(p["env_keys"])}
    new = commit(record or {}, release, p["mode"], p["stamp"])
    changed = write_record(p["record_path"], new, check=module.check_mode)
    out = {"changed": changed, "record": new}
    if not module.check_mode:
        api = DockerAPI(p["docker_socket"])
        out["changed"] = drop_previous(api, p["spec"]["name"]) or changed
        keep_images(api, [r for r in (new["current"], new["previous"]) if r])
        out["unlocked"] = unlease(p["root"], p["run_id"]) if p["unlock"] else False
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **COMMON_OPTIONS,
            **STATE_OPTIONS,
            "step": {
                "type": "str",
                "required": True,
                "choices": ["prepare", "pull", "install", "restore", "commit", "unlock"],
            },
            "run_id": {"type": "str", "required": True},
            "owner": {"type": "str", "default": ""},
            "pid": {"type": "int", "default": 0},
            "break_lease": {"type": "str", "default": ""},
            "lease_seconds": {"type": "int", "default": 1800},
            "mode": {"type": "str", "default": "deploy", "choices": ["deploy", "rollback"]},
            "target": {"type": "dict"},
            "rollback_to": {"type": "str", "default": ""},
            "allow_rolled_back": {"type": "bool", "default": False},
            "ca_pem": {"type": "str", "default": ""},
            "release": {"type": "dict"},
            "spec": {"type": "dict"},
            # Only the steps that start a container get the values (install, restore): a
            # no_log value is masked wherever it appears in a module's result, and a short
            # one ("0") would mask release names in what prepare returns.
            "env": {"type": "dict", "default": {}, "no_log": True},
            "env_keys": {"type": "list", "elements": "str", "default": []},
            "registry_username": {"type": "str", "default": ""},
            "registry_password": {"type": "str", "no_log": True},
            "staging": {"type": "str", "default": ""},
            "keep": {"type": "int", "default": 3},
            "stamp": {"type": "dict", "default": {}},
            "unlock": {"type": "bool", "default": True},
            # Where a Hailo host's driver version, firmware and CLI are (tests point them
            # at a fake sysfs and CLI).
            "hailo_paths": {
                "type": "dict",
                "default": {},
                "apply_defaults": True,
                "options": {
                    "driver_version": {"type": "path", "default": hailo.DRIVER_VERSION},
                    "firmware": {"type": "path", "default": hailo.FIRMWARE},
                    "hailortcli": {"type": "str", "default": "hailortcli"},
                },
            },
        },
        required_if=[
            ("step", "prepare", ["run_dir", "uid", "gid", "tmpfiles_path"]),
            ("step", "pull", ["release", "spec"]),
            ("step", "install", ["release", "spec", "stamp"]),
            ("step", "restore", ["spec", "stamp"]),
            ("step", "commit", ["release", "spec", "stamp"]),
        ],
        supports_check_mode=True,
    )
    p = module.params
    if p["step"] == "prepare":
        if p["mode"] == "deploy" and not p["target"]:
            module.fail_json(msg="step=prepare with mode=deploy needs target")
        module.exit_json(**prepare(module, p))
    if p["step"] == "unlock":
        done = False if module.check_mode else unlease(p["root"], p["run_id"])
        module.exit_json(changed=False, unlocked=done)
    hold(module, p)
    step = {"pull": pull, "install": install, "restore": restore, "commit": commit_step}[p["step"]]
    module.exit_json(**step(module, p))


if __name__ == "__main__":
    main()
