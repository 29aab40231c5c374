"""Controller-side decisions of sidecar_deploy that are more than a lookup."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# What makes two releases the same (the record's identity, module_utils/hailo_sidecar_host.py).
IDENTITY = ("digest", "model", "version", "sha256")


def gated(hosts: list[str], hostvars: Mapping[str, Any], release: Mapping[str, Any]) -> list[str]:
    """The hosts among `hosts` that passed their gate for `release` in this run (the fact
    tasks/release.yml sets after a commit; facts live for one run)."""
    out = []
    for host in hosts:
        if host not in hostvars:
            continue
        passed = hostvars[host].get("_sidecar_deploy_gated")
        if isinstance(passed, Mapping) and all(
            str(passed.get(k, "")) == str(release.get(k, "")) for k in IDENTITY
        ):
            out.append(host)
    return out


def failure(
    failed_result: Mapping[str, Any] | None,
    failed_task: str,
    install: Mapping[str, Any] | None,
    drift: Any,
) -> dict[str, Any]:
    """What failed in release.yml (its rescue: the failed task's result and name), whether
    the switch had begun (the install step switched, or the host was found switched by an
    interrupted run), and the failed release's last container log lines as text."""
    failed_result = failed_result or {}
    logs = (failed_result.get("gate") or {}).get("logs") or []
    return {
        "failure": str(failed_result.get("msg") or f"task {failed_task} failed"),
        "switched": bool((install or {}).get("switched")) or bool(drift),
        "logs": "\n".join(
            ["Last container log lines of the failed release:", *(f"  {line}" for line in logs)]
        )
        if logs
        else "",
    }


def restore_outcome(
    restore: Mapping[str, Any], gate: Mapping[str, Any], current: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What a host is after tasks/restore.yml (the restore step's result, its gate's, and
    the committed release): rolled_back only when the committed release runs again and
    passed its gate; failed when there was none (the sidecar was removed); else broken.
    With what the report shows: the release that runs (only when rolled back) and the
    gate's latency."""
    latency = (gate.get("gate") or {}).get("latency_ms") or {}
    shown: dict[str, Any] = {
        "image": None,
        "artifact_sha256": None,
        "gate": {"p50_ms": latency["p50"], "p95_ms": latency["p95"]} if latency else {},
    }
    if not current:
        return {
            "result": "failed",
            "summary": "no previous release: the sidecar was removed",
            **shown,
        }
    desc = f"{current.get('model')} {current.get('version')} ({current.get('image')})"
    if restore.get("broken"):
        problem = str(restore.get("msg") or "the restore failed")
    elif not (gate.get("gate") or {}).get("ok"):
        why = (gate.get("gate") or {}).get("reason") or gate.get("msg") or "not gated"
        problem = f"the committed release {desc} did not pass its gate: {why}"
    else:
        return {
            "result": "rolled_back",
            "summary": f"back on {current.get('version')}",
            **shown,
            "image": current.get("digest"),
            "artifact_sha256": current.get("sha256"),
        }
    return {"result": "broken", "summary": f"BROKEN, the host needs a person: {problem}", **shown}


def controller_pid(_: Any = None) -> int:
    """The ansible-playbook process of this run (tasks are templated in its forked
    workers): the deploy lease names it, so that a later run on the same controller can
    tell a dead run's lease from a live one."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid else os.getpid()


def dead_run(holder: Mapping[str, Any] | None, owner: str) -> str:
    """The run id of a lease held by a run of this controller whose ansible-playbook is
    gone (killed, crashed), to take over; "" when the holder may still be alive."""
    if not holder or holder.get("owner") != owner or not holder.get("pid"):
        return ""
    return "" if os.path.exists(f"/proc/{int(holder['pid'])}") else str(holder.get("run_id", ""))


def release_image(release_doc: Any, override: str | None = "") -> dict[str, Any]:
    """The image of a release record (artifacts/release.json, roles/sidecar_image) the
    deploy runs: its `deploy` entry (the image the build says the Pis run), or, when
    `override` (sidecar_deploy_image_name) is set, `images[override]`. Fails with what
    the record has when the entry is missing."""
    if not isinstance(release_doc, Mapping):
        raise AnsibleFilterError(
            f"the release record is not a release record (a JSON object): {release_doc!r:.200}"
        )
    images = release_doc.get("images")
    names = ", ".join(sorted(images)) if isinstance(images, Mapping) and images else "none"
    if override:
        entry = images.get(override) if isinstance(images, Mapping) else None
        if not isinstance(entry, Mapping):
            raise AnsibleFilterError(
                f"the release record has no image {override!r} (sidecar_deploy_image_name) under "
                f"images; it has: {names}. Set sidecar_deploy_image_name to one of them, or leave "
                "it empty for the record's deploy entry."
            )
        return dict(entry)
    entry = release_doc.get("deploy")
    if not isinstance(entry, Mapping):
        raise AnsibleFilterError(
            "the release record has no `deploy` entry (the image the Pis run; "
            "playbooks/build_image.yml writes it): build the images again, or set "
            f"sidecar_deploy_image_name to one of its images: {names}."
        )
    return dict(entry)


def gate_stats(gate_result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The figures the release report shows of a gate (the gate module's registered
    result), or {} when the gate did not run (skipped under --check, or never reached)."""
    gate = (gate_result or {}).get("gate") or {}
    latency = gate.get("latency_ms")
    if not latency:
        return {}
    return {
        "p50_ms": latency["p50"],
        "p95_ms": latency["p95"],
        "max_ms": latency["max"],
        "probes": latency["n"],
        "seconds": gate["elapsed_s"],
        "golden": gate.get("golden"),
        "bake_s": (gate.get("bake") or {}).get("seconds", 0),
    }


def deploy_outcome(
    plan: Mapping[str, Any] | None,
    install: Mapping[str, Any] | None,
    drift: Any,
    mode: str,
    target: Mapping[str, Any],
    found: str = "",
) -> dict[str, str]:
    """A host's line in the release report after a deploy or rollback that passed: its
    result, and why ("already on", "now on", "rolled back to" the target, or the plan's
    note when nothing was to be done), after what was found amiss (`found`)."""
    plan = plan or {}
    if plan.get("already"):
        return {"result": "unchanged", "reason": found + plan.get("note", "")}
    result = "rolled_back" if mode == "rollback" else "deployed"
    if not (install or {}).get("switched") and not drift:
        verb = "already on "
    else:
        verb = "rolled back to " if mode == "rollback" else "now on "
    return {"result": result, "reason": f"{found}{verb}{target['model']} {target['version']}"}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "hailo_sidecar_gated": gated,
            "hailo_sidecar_restore_outcome": restore_outcome,
            "hailo_sidecar_failure": failure,
            "hailo_sidecar_controller_pid": controller_pid,
            "hailo_sidecar_dead_run": dead_run,
            "hailo_sidecar_release_image": release_image,
            "hailo_sidecar_gate_stats": gate_stats,
            "hailo_sidecar_deploy_outcome": deploy_outcome,
        }
