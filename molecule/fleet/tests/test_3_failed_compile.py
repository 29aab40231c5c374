"""A failed compile: playbooks/compile.yml with a corrupt ONNX must fail with the compiler's
message and leave the previous artifacts byte-identical, on GPUSrv and on the controller.

Runs after test_2_compile.py (file order) because it leaves the corrupt ONNX in GPUSrv's
inputs directory (the next compile run copies the good one back; the later tests deploy
from the converge's artifacts without compiling).
"""

import hashlib
import shutil
from pathlib import Path

import pytest
from fleet import ARTIFACTS, REPO, run_playbook

GPUSRV_OUTPUT = "/var/lib/hef-compile/artifacts/cpu"


def snapshot_controller() -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(ARTIFACTS.iterdir())
    }


def snapshot_gpusrv(gpusrv) -> str:
    return gpusrv.check_output(
        f"cd {GPUSRV_OUTPUT} && ls -la --time-style=full-iso . && sha256sum *"
    )


@pytest.fixture(scope="module")
def corrupt_repo(tmp_path_factory) -> Path:
    """A repo root like ours whose exports/tcn_encoder.onnx is a truncated file."""
    root = tmp_path_factory.mktemp("corrupt-repo")
    (root / "exports").mkdir()
    shutil.copytree(REPO / "hailo_models", root / "hailo_models")
    good = (REPO / "exports" / "tcn_encoder.onnx").read_bytes()
    (root / "exports" / "tcn_encoder.onnx").write_bytes(good[: len(good) // 3])
    return root


@pytest.fixture(scope="module")
def failed_run(gpusrv, corrupt_repo):
    before = snapshot_controller(), snapshot_gpusrv(gpusrv)
    extra = {
        # The converge's settings, but the inputs come from the corrupt repo.
        "hef_compile_target": "cpu",
        "hef_compile_repo_root": str(corrupt_repo),
        "hef_compile_source_dir": str(REPO / "compiler"),
        "hef_compile_artifacts_dir": str(ARTIFACTS),
    }
    proc = run_playbook("compile.yml", extra, label="compile-corrupt-onnx")
    after = snapshot_controller(), snapshot_gpusrv(gpusrv)
    return proc, before, after


def test_playbook_fails(failed_run):
    proc, _, _ = failed_run
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "failed=1" in proc.stdout


def test_failure_shows_the_compilers_message(failed_run):
    proc, _, _ = failed_run
    out = proc.stdout + proc.stderr
    assert "hef-compile failed on" in out, out[-3000:]
    assert "exit 3, onnx" in out
    assert "/work/exports/tcn_encoder.onnx is not a valid ONNX file" in out
    # ... including how to make a good one, and the job's own log.
    assert "python exports/make_tcn_encoder.py" in out
    assert "--- job log" in out
    assert "Nothing was published" in out


def test_controller_artifacts_untouched(failed_run):
    _, before, after = failed_run
    assert after[0] == before[0]


def test_gpusrv_artifacts_untouched(failed_run, gpusrv):
    _, before, after = failed_run
    assert after[1] == before[1]
    check = gpusrv.run(f"cd {GPUSRV_OUTPUT} && sha256sum -c hef_sha256sum.txt")
    assert check.rc == 0, check.stdout


def test_no_job_container_left_after_failure(failed_run, gpusrv):
    left = gpusrv.check_output(
        "docker ps --all --quiet --filter label=org.hailo-pipeline.job=hef-compile"
    )
    assert left == ""
