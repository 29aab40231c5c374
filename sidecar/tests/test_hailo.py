"""The hailo backend's guardrails, shape checks and call sequence, against a FAKE hailo_platform.

Nothing here touches HailoRT or a Hailo-8 (neither exists on the machines these tests
run on). `fake_hailo_platform` mirrors the documented API names; these tests show the
backend calls them in the documented order and refuses what it must refuse.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hailo_sidecar.backends import BackendError
from hailo_sidecar.backends.hailo import HailoBackend
from hailo_sidecar.config import Config
from hailo_sidecar.manifest import write_manifest

from . import fake_hailo_platform as fake
from .conftest import client_for, make_window

CHAR_DEVICE = Path("/dev/null")  # a character device standing in for /dev/hailo0 (not a Hailo-8)
GOOD_STREAMS = {
    "inputs": {"tcn_encoder/input_layer1": [1, 100, 9]},
    "outputs": {"tcn_encoder/fc1": [64], "tcn_encoder/fc2": [12]},
}


def importable_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import hailo_platform` runs the fake's import (and its checks) until the test ends."""
    fake.reset()
    monkeypatch.setattr(sys, "meta_path", [fake.FINDER, *sys.meta_path])
    # set, then delete: the test's end restores both to "absent", whatever the test did
    monkeypatch.setitem(sys.modules, "hailo_platform", None)
    monkeypatch.delitem(sys.modules, "hailo_platform")
    monkeypatch.setenv("HAILORT_LOGGER_PATH", "")
    monkeypatch.delenv("HAILORT_LOGGER_PATH")


@pytest.fixture
def on_a_pi(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """aarch64, and the fake module importable as hailo_platform."""
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    importable_fake(monkeypatch)
    yield
    fake.reset()


def hef(tmp_path: Path, streams: dict[str, Any] = GOOD_STREAMS, name: str = "m.hef") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(streams))
    return path


def backend(path: Path, *, max_batch: int = 8, num_motifs: int = 12, **kw: Any) -> HailoBackend:
    kw.setdefault("device", CHAR_DEVICE)
    return HailoBackend(path, num_motifs, model="m", version="v", sha256="s", max_batch=max_batch,
                        **kw)  # fmt: skip


# --------------------------------------------------------------------------- guardrails
def test_refuses_a_non_aarch64_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    importable_fake(monkeypatch)
    with pytest.raises(BackendError) as exc:
        backend(hef(tmp_path)).load()
    assert str(exc.value) == (
        "INFER_MODE=hailo needs an aarch64 host (a Raspberry Pi 5 with a Hailo-8); this machine "
        "is x86_64. Use INFER_MODE=onnx (CPU) or INFER_MODE=stub here."
    )
    assert fake.CALLS == []  # nothing was opened


def test_refuses_when_the_device_is_missing(on_a_pi: None, tmp_path: Path) -> None:
    missing = tmp_path / "hailo0"
    with pytest.raises(BackendError) as exc:
        backend(hef(tmp_path), device=missing).load()
    assert str(exc.value) == (
        f"{missing} is missing: is the Hailo PCIe driver loaded (lsmod | grep hailo_pci) and "
        f"the device passed to the container (--device {missing})?"
    )
    assert fake.CALLS == []


def test_refuses_a_device_that_is_not_a_character_device(on_a_pi: None, tmp_path: Path) -> None:
    regular = tmp_path / "hailo0"
    regular.write_text("")
    with pytest.raises(BackendError, match="exists but is not a character device"):
        backend(hef(tmp_path), device=regular).load()


def test_refuses_when_hailo_platform_is_not_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    monkeypatch.setitem(sys.modules, "hailo_platform", None)  # import fails
    with pytest.raises(BackendError) as exc:
        backend(hef(tmp_path)).load()
    assert str(exc.value).startswith(
        "hailo_platform (HailoRT's Python binding, pyhailort) is not installed ("
    )
    assert str(exc.value).endswith(
        "install the hailort wheel that matches the driver version on this host"
    )


def test_hailo_platform_is_not_imported_unless_selected() -> None:
    import hailo_sidecar.app
    import hailo_sidecar.backends  # noqa: F401

    assert "hailo_platform" not in sys.modules


@pytest.mark.parametrize(
    ("streams", "message"),
    [
        (
            {**GOOD_STREAMS, "inputs": {"in": [1, 100, 8]}},
            "input 'in' has shape [1, 100, 8]; the contract is one window of 100 x 9",
        ),
        (
            {**GOOD_STREAMS, "inputs": {"in": [9, 100]}},
            "input 'in' has shape [9, 100]; the contract is one window of 100 x 9",
        ),
        (
            {**GOOD_STREAMS, "inputs": {"a": [1, 100, 9], "b": [1, 100, 9]}},
            "has inputs ['a', 'b']; the contract has one input, x (1, 100, 9)",
        ),
        (
            {**GOOD_STREAMS, "outputs": {"fc1": [64], "fc2": [10]}},
            "outputs {'fc1': [64], 'fc2': [10]} do not match the contract: expected latent of "
            "64 and motif_scores of 12 values (NUM_MOTIFS=12)",
        ),
        (
            {**GOOD_STREAMS, "outputs": {"fc1": [1, 1, 32], "fc2": [12]}},
            "do not match the contract",
        ),
        (
            {**GOOD_STREAMS, "outputs": {"fc1": [64], "fc2": [12], "fc3": [3]}},
            "has 3 outputs ['fc1', 'fc2', 'fc3']; the contract has 2",
        ),
    ],
    ids=["input-channels", "input-transposed", "two-inputs", "motifs-10", "latent-32", "3-out"],
)
def test_refuses_a_hef_off_contract(
    on_a_pi: None, tmp_path: Path, streams: dict[str, Any], message: str
) -> None:
    path = hef(tmp_path, streams)
    b = backend(path)
    with pytest.raises(BackendError) as exc:
        b.load()
    assert str(exc.value).startswith(f"HEF {path}")
    assert message in str(exc.value)
    assert ("configure", None) not in fake.CALLS  # refused before configuring the device
    assert ("release", None) in fake.CALLS  # and the VDevice was released


def test_hef_that_hailort_cannot_open(on_a_pi: None, tmp_path: Path) -> None:
    path = tmp_path / "garbage.hef"
    path.write_text("not a hef")
    with pytest.raises(BackendError, match=r"HailoRT cannot open .*garbage.hef: JSONDecodeError"):
        backend(path).load()


# --------------------------------------------------------------------------- the call sequence
def test_documented_call_sequence_and_reuse(on_a_pi: None, tmp_path: Path) -> None:
    path = hef(tmp_path)
    b = backend(path, max_batch=6)
    b.load()
    b.warm_up()
    names = [c[0] for c in fake.CALLS]
    # VDevice with the ROUND_ROBIN scheduler, then the infer model from the HEF path
    assert fake.CALLS[0] == ("VDevice", fake.HailoSchedulingAlgorithm.ROUND_ROBIN)
    assert fake.CALLS[1] == ("create_infer_model", str(path))
    assert ("set_batch_size", 1) in fake.CALLS
    # FLOAT32 on the input and both outputs, before configure()
    formats = [c[1] for c in fake.CALLS if c[0] == "set_format_type"]
    assert sorted(n for n, _ in formats) == [
        "tcn_encoder/fc1", "tcn_encoder/fc2", "tcn_encoder/input_layer1",
    ]  # fmt: skip
    assert all(t == fake.FormatType.FLOAT32 for _, t in formats)
    assert names.index("configure") > max(i for i, n in enumerate(names) if n == "set_format_type")
    # configure once; one bindings object per batch slot, created once
    assert names.count("configure") == 1
    assert names.count("create_bindings") == 6
    before = len(fake.CALLS)
    for seed in range(3):
        b.infer(make_window(seed)[None])
    b.infer(np.stack([make_window(s) for s in range(6)]))
    later = fake.CALLS[before:]
    # 3 singles + 6 windows in chunks of 4 and 2 (the async queue holds 4), nothing else
    assert [c[1] for c in later if c[0] == "run_async"] == [1, 1, 1, 4, 2]
    waits = [c[1] for c in later if c[0] == "wait"]
    assert len(waits) == 5
    assert all(0 < t <= 1000 for t in waits)
    assert {c[0] for c in later} <= {"run", "run_async", "wait", "wait_for_async_ready"}
    b.close()
    assert fake.CALLS[-2:] == [("shutdown", None), ("release", None)]


def test_outputs_are_mapped_and_copied_out(on_a_pi: None, tmp_path: Path) -> None:
    # Streams listed motif-first: the backend maps them by size, not by order.
    streams = {"inputs": {"in": [100, 9]}, "outputs": {"b_scores": [1, 12], "a_emb": [1, 1, 64]}}
    b = backend(hef(tmp_path, streams))
    b.load()
    x = np.stack([make_window(1), make_window(2)])
    latent, motifs = b.infer(x)
    assert latent.shape == (2, 64)
    assert motifs.shape == (2, 12)
    for i in range(2):
        want_motifs, want_latent = fake.fake_outputs(x[i], [12, 64])
        np.testing.assert_array_equal(latent[i], want_latent)
        np.testing.assert_array_equal(motifs[i], want_motifs)
    first = latent.copy()
    b.infer(make_window(9)[None])
    np.testing.assert_array_equal(latent, first)  # results are not views of device buffers
    assert b.describe().details["streams"] == {
        "x": "in",
        "latent": "a_emb",
        "motif_scores": "b_scores",
    }


def test_same_sized_outputs_fall_back_to_names(on_a_pi: None, tmp_path: Path) -> None:
    streams = {"inputs": {"in": [1, 100, 9]}, "outputs": {"net/motif": [64], "net/latent": [64]}}
    b = backend(hef(tmp_path, streams), num_motifs=64)
    b.load()
    assert b.describe().details["streams"]["latent"] == "net/latent"


def test_device_error_during_inference_is_a_backend_error(on_a_pi: None, tmp_path: Path) -> None:
    b = backend(hef(tmp_path, {**GOOD_STREAMS, "fail_run": True}))
    b.load()
    with pytest.raises(BackendError, match="HailoRT inference failed: HailoRTTimeout: "):
        b.infer(make_window(0)[None])


# --------------------------------------------------------------------------- through the app
def hailo_config(tmp_path: Path, streams: dict[str, Any] = GOOD_STREAMS) -> Config:
    artifact = hef(tmp_path, streams, name="tcn_encoder-0.1.0.hef")
    manifest = write_manifest(tmp_path, artifact, target="hailo8")
    return Config(infer_mode="hailo", model_manifest=manifest, hailo_device=CHAR_DEVICE)


def test_app_serves_through_the_fake_device(on_a_pi: None, tmp_path: Path) -> None:
    with client_for(hailo_config(tmp_path)) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["backend"] == "hailo"
        r = c.post("/infer", json={"x": make_window(3).tolist()})
        assert r.status_code == 200
        assert r.headers["x-backend"] == "hailo"
        want_latent, _ = fake.fake_outputs(make_window(3), [64, 12])  # GOOD_STREAMS' order
        np.testing.assert_array_equal(np.array(r.json()["latent"], np.float32), want_latent)
        assert (
            c.post("/infer/batch", json={"windows": [make_window(0).tolist()] * 3}).status_code
            == 200
        )
        assert (
            'sidecar_inference_duration_seconds_count{backend="hailo"} 2.0'
            in c.get("/metrics").text
        )
    assert fake.CALLS[-2:] == [("shutdown", None), ("release", None)]  # closed in the lifespan


def test_app_not_ready_on_x86_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    with client_for(hailo_config(tmp_path)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["reason"].startswith("INFER_MODE=hailo needs an aarch64 host")
        assert c.get("/healthz").status_code == 200
        assert c.post("/infer", json={"x": make_window(0).tolist()}).status_code == 503


def loaded(path: Path, **kw: Any) -> HailoBackend:
    b = backend(path, **kw)
    b.load()
    return b


def expected(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the fake computes for GOOD_STREAMS (latent first, then motif_scores)."""
    latent, motifs = fake.fake_outputs(window, [64, 12])
    return latent, motifs


# --------------------------------------------------------------------------- 1. recovery
def test_a_timed_out_job_never_writes_into_a_later_answer(on_a_pi: None, tmp_path: Path) -> None:
    # A wait that times out leaves the job running; the fake lets it write its outputs
    # after the next job's (the worst timing). Buffers bound to it must not be reused.
    b = loaded(hef(tmp_path))
    fake.FAULTS.append("timeout")
    with pytest.raises(BackendError, match="HailoRT inference failed: HailoRTTimeout: "):
        b.infer(make_window(1)[None])
    latent, motifs = b.infer(make_window(2)[None])
    want_latent, want_motifs = expected(make_window(2))
    np.testing.assert_array_equal(latent[0], want_latent)
    np.testing.assert_array_equal(motifs[0], want_motifs)
    assert fake.LATE_WRITES == []  # the late write did land (in the old buffers)


def test_recovers_after_hailort_refuses_a_job(on_a_pi: None, tmp_path: Path) -> None:
    # A failed submission shuts the model down; HailoRT refuses every later job.
    path = hef(tmp_path)
    b = loaded(path)
    fake.FAULTS.append("submit_error")
    with pytest.raises(BackendError) as exc:
        b.infer(make_window(1)[None])
    assert str(exc.value).startswith(
        "HailoRT inference failed: HailoRTDriverOperationFailedException: Failure in hailort "
        "driver ioctl."
    )
    assert str(exc.value).endswith("the model was shut down and is reloaded on the next call")
    assert fake.CALLS[-2:] == [("shutdown", None), ("release", None)]  # torn down at once
    assert fake.OPEN["VDevice"] == 0
    fake.CALLS.clear()
    latent, _ = b.infer(make_window(2)[None])  # reloaded: a new VDevice, model and buffers
    np.testing.assert_array_equal(latent[0], expected(make_window(2))[0])
    names = [c[0] for c in fake.CALLS]
    assert names[:2] == ["VDevice", "create_infer_model"]
    assert names.count("configure") == 1
    assert names.count("create_bindings") == 8
    assert fake.OPEN["VDevice"] == 1
    b.close()
    assert fake.OPEN["VDevice"] == 0


def test_a_failed_reload_says_so_and_is_retried(on_a_pi: None, tmp_path: Path) -> None:
    b = loaded(hef(tmp_path))
    fake.FAULTS.append("submit_error")
    with pytest.raises(BackendError):
        b.infer(make_window(1)[None])
    fake.OPEN_STATUS = 36  # the device does not come back
    for _ in range(2):
        with pytest.raises(BackendError) as exc:
            b.infer(make_window(2)[None])
        assert str(exc.value).startswith(
            "HailoRT failed and reloading the model failed: HailoRT cannot open /dev/null: "
            "HailoRTDriverOperationFailedException: "
        )
    fake.OPEN_STATUS = None
    latent, _ = b.infer(make_window(3)[None])
    np.testing.assert_array_equal(latent[0], expected(make_window(3))[0])


def test_a_job_that_fails_on_the_device_is_an_error(on_a_pi: None, tmp_path: Path) -> None:
    # pyhailort's run() does not raise for a job that completes with an error status;
    # only a completion callback sees it. The fake's failed job leaves NaN behind.
    b = loaded(hef(tmp_path))
    fake.FAULTS.append("job_error")
    with pytest.raises(BackendError, match=r"error: 87 \(HAILO_DRIVER_TIMEOUT\)"):
        b.infer(make_window(1)[None])
    latent, _ = b.infer(make_window(2)[None])
    np.testing.assert_array_equal(latent[0], expected(make_window(2))[0])


def test_after_a_failure_readyz_recovers_or_turns_503(on_a_pi: None, tmp_path: Path) -> None:
    window = {"x": make_window(0).tolist()}
    with client_for(hailo_config(tmp_path)) as c:
        fake.FAULTS.append("submit_error")
        r = c.post("/infer", json=window)
        assert r.status_code == 503
        assert r.json()["error"] == "inference_failed"
        assert c.post("/infer", json=window).status_code == 200  # reloaded
        assert c.get("/readyz").status_code == 200
        fake.FAULTS.append("submit_error")
        fake.OPEN_STATUS = 36
        for _ in range(3):  # UNHEALTHY_AFTER_FAILURES
            assert c.post("/infer", json=window).json()["error"] == "inference_failed"
        r = c.get("/readyz")
        assert r.status_code == 503
        assert "reloading the model failed" in r.json()["reason"]
        fake.OPEN_STATUS = None
        assert c.post("/infer", json=window).status_code == 200
        assert c.get("/readyz").status_code == 200


# --------------------------------------------------------------------------- 2. async readiness
def test_waits_for_async_readiness_before_each_job(on_a_pi: None, tmp_path: Path) -> None:
    # pyhailort's run() submits without waiting; a queue that is still full refuses the
    # job (HAILO_QUEUE_IS_FULL) and shuts the model down.
    fake.LAGGING_POOL = True
    b = loaded(hef(tmp_path))
    for seed in range(6):
        b.infer(make_window(seed)[None])
    b.infer(np.stack([make_window(s) for s in range(6)]))
    submitted = [c for c in fake.CALLS if c[0] in ("wait_for_async_ready", "run_async")]
    assert [c[0] for c in submitted] == ["wait_for_async_ready", "run_async"] * 8
    assert [c[1] for c in submitted[::2]] == [(1000, 1)] * 6 + [(1000, 4), (1000, 2)]
    assert [c[0] for c in fake.CALLS].count("configure") == 1  # never reloaded


# --------------------------------------------------------------------------- 3. device identity
def test_readyz_reports_hailort_driver_firmware_and_architecture(
    on_a_pi: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = tmp_path / "version"
    driver.write_text("4.23.0\n")
    monkeypatch.setattr("hailo_sidecar.backends.hailo.DRIVER_VERSION_FILE", driver, raising=False)
    with client_for(hailo_config(tmp_path)) as c:
        details = c.get("/readyz").json()["details"]
    assert details["hailort"] == "4.23.0"
    assert details["driver"] == "4.23.0"
    assert details["firmware"] == "4.23.0 (release,app,extended context switch buffer)"
    assert details["architecture"] == "HAILO8L"
    assert details["device_id"] == "0000:01:00.0"
    assert details["device_error"] is None
    assert fake.OPEN["Device"] == 0  # the identify handle was released
    assert [c[0] for c in fake.CALLS].count("Device") == 1  # identified once, at load


def test_device_identity_that_cannot_be_read_is_none_with_why(
    on_a_pi: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "hailo_sidecar.backends.hailo.DRIVER_VERSION_FILE", tmp_path / "nope", raising=False
    )
    fake.IDENTIFY_STATUS = 36
    b = loaded(hef(tmp_path))
    b.warm_up()
    details = b.describe().details
    assert details["firmware"] is None
    assert details["architecture"] is None
    assert details["device_error"].startswith(
        "identify failed: HailoRTDriverOperationFailedException: Failure in hailort driver ioctl"
    )
    assert details["driver"] is None
    assert details["driver_error"].startswith(f"{tmp_path / 'nope'}: ")
    assert fake.OPEN["Device"] == 0


# --------------------------------------------------------------------------- 4. status 76
@pytest.fixture
def driver_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str | None], Path]:
    """The host's /sys/module/hailo_pci/version as the container sees it (None: unreadable)."""

    def make(version: str | None) -> Path:
        path = tmp_path / "version"
        if version is not None:
            path.write_text(version + "\n")
        monkeypatch.setattr("hailo_sidecar.backends.hailo.DRIVER_VERSION_FILE", path, raising=False)
        return path

    return make


def test_driver_version_mismatch_in_plain_words(
    on_a_pi: None, tmp_path: Path, driver_file: Callable[[str | None], Path]
) -> None:
    driver = driver_file("4.20.0")
    fake.OPEN_STATUS = 76
    with pytest.raises(BackendError) as exc:
        backend(hef(tmp_path)).load()
    assert str(exc.value) == (
        f"the Hailo PCIe driver on the host (hailo_pci 4.20.0, from {driver}) does not match "
        "this image's HailoRT 4.23.0 (hailo_platform): HailoRT needs both to be the same "
        "major.minor.revision and refused to open /dev/null (status 76, "
        "HAILO_INVALID_DRIVER_VERSION). Fix: install hailo_pci 4.23.0 on the host and reload "
        "it (or reboot), or deploy an image with HailoRT 4.20.0. (HailoRTException: libhailort "
        "failed with error: 76 (HAILO_INVALID_DRIVER_VERSION))"
    )
    assert fake.OPEN["VDevice"] == 0


def test_driver_version_mismatch_when_the_version_cannot_be_read(
    on_a_pi: None, tmp_path: Path, driver_file: Callable[[str | None], Path]
) -> None:
    missing = driver_file(None)
    fake.OPEN_STATUS = 76
    with pytest.raises(BackendError) as exc:
        backend(hef(tmp_path)).load()
    message = str(exc.value)
    assert message.startswith(
        f"the Hailo PCIe driver on the host (hailo_pci, version unknown here: {missing}: "
    )
    assert (
        "on the host, `cat /sys/module/hailo_pci/version` shows the loaded driver's version"
        in message
    )
    assert "does not match this image's HailoRT 4.23.0 (hailo_platform)" in message
    assert "or deploy an image with the driver's HailoRT version" in message


def test_driver_ioctl_errors_mention_a_possible_version_mismatch(
    on_a_pi: None, tmp_path: Path, driver_file: Callable[[str | None], Path]
) -> None:
    driver_file("4.23.0")
    fake.OPEN_STATUS = 86
    with pytest.raises(BackendError) as exc:
        backend(hef(tmp_path)).load()
    assert (
        "could not talk to the driver on /dev/null (status 86, HAILO_DRIVER_INVALID_IOCTL, "
        "which HailoRT says can mean the versions differ)" in str(exc.value)
    )
    fake.OPEN_STATUS = 74  # any other status: HailoRT's words only
    with pytest.raises(BackendError) as exc:
        backend(hef(tmp_path)).load()
    assert str(exc.value) == (
        "HailoRT cannot open /dev/null: HailoRTException: libhailort failed with error: 74 "
        "(HAILO_OUT_OF_PHYSICAL_DEVICES)"
    )


# --------------------------------------------------------------------------- 5. output names
HAILO_NAMED = {
    "inputs": {"tcn_encoder/input_layer1": [1, 100, 9]},
    "outputs": {"tcn_encoder/fc2": [64], "tcn_encoder/fc1": [64]},
}


def test_outputs_are_matched_by_their_original_names(on_a_pi: None, tmp_path: Path) -> None:
    # Same size (NUM_MOTIFS=64), Hailo layer names: only the original names tell them apart.
    streams = {
        **HAILO_NAMED,
        "original_names": {"tcn_encoder/fc1": ["motif_scores"], "tcn_encoder/fc2": ["latent"]},
    }
    b = loaded(hef(tmp_path, streams), num_motifs=64)
    assert b.describe().details["streams"] == {
        "x": "tcn_encoder/input_layer1",
        "latent": "tcn_encoder/fc2",
        "motif_scores": "tcn_encoder/fc1",
    }
    assert b.describe().details["matched_by"] == {
        "latent": "original name",
        "motif_scores": "original name",
    }
    x = make_window(4)
    latent, motifs = b.infer(x[None])
    want_latent, want_motifs = fake.fake_outputs(x, [64, 64])  # fc2 first in the HEF
    np.testing.assert_array_equal(latent[0], want_latent)
    np.testing.assert_array_equal(motifs[0], want_motifs)


def test_original_names_that_contradict_the_shapes_are_refused(
    on_a_pi: None, tmp_path: Path
) -> None:
    streams = {
        **GOOD_STREAMS,
        "original_names": {"tcn_encoder/fc1": ["motif_scores"], "tcn_encoder/fc2": ["latent"]},
    }
    path = hef(tmp_path, streams)
    with pytest.raises(BackendError) as exc:
        backend(path).load()
    assert str(exc.value) == (
        f"HEF {path}: output 'tcn_encoder/fc2' is latent in the source model (original names "
        "['latent']) but has shape [12]; the contract's latent has 64 values"
    )


def test_without_original_names_the_shapes_decide(on_a_pi: None, tmp_path: Path) -> None:
    b = loaded(hef(tmp_path))  # GOOD_STREAMS: the fake HEF has no original names
    assert b.describe().details["matched_by"] == {"latent": "shape", "motif_scores": "shape"}
    assert b.describe().details["original_names"] == {}
    assert b.describe().details["streams"]["latent"] == "tcn_encoder/fc1"


def test_same_sized_outputs_fall_back_to_original_name_stems(on_a_pi: None, tmp_path: Path) -> None:
    # Original names that are ONNX node names (latent_head, motif_prob), not output names.
    streams = {
        **HAILO_NAMED,
        "original_names": {
            "tcn_encoder/fc1": ["motif_head", "motif_prob"],
            "tcn_encoder/fc2": ["latent_head"],
        },
    }
    b = loaded(hef(tmp_path, streams), num_motifs=64)
    assert b.describe().details["streams"]["latent"] == "tcn_encoder/fc2"
    assert b.describe().details["matched_by"]["latent"] == "shape and name"


# --------------------------------------------------------------------------- 6. HailoRT's log
def test_hailort_log_files_are_off_before_hailo_platform_is_imported(
    on_a_pi: None, tmp_path: Path
) -> None:
    loaded(hef(tmp_path))
    assert fake.ENV_AT_IMPORT["HAILORT_LOGGER_PATH"] == "NONE"


def test_an_empty_hailort_log_path_is_unset(
    on_a_pi: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HAILORT_LOGGER_PATH", "")  # libhailort reads empty as the working dir
    loaded(hef(tmp_path))
    assert fake.ENV_AT_IMPORT["HAILORT_LOGGER_PATH"] == "NONE"


def test_a_hailort_log_path_that_is_set_is_kept(
    on_a_pi: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HAILORT_LOGGER_PATH", str(tmp_path))
    loaded(hef(tmp_path))
    assert fake.ENV_AT_IMPORT["HAILORT_LOGGER_PATH"] == str(tmp_path)


# --------------------------------------------------------------------------- 7. import checks
def test_a_pyhailort_of_mixed_versions_is_not_called_missing(on_a_pi: None, tmp_path: Path) -> None:
    fake.LIB_VERSION = "4.22.0"
    with pytest.raises(BackendError) as exc:
        backend(hef(tmp_path)).load()
    assert str(exc.value) == (
        "hailo_platform (HailoRT's Python binding, pyhailort) is installed but cannot be "
        "imported: ImportError: _pyhailort version (4.22.0) does not match pyhailort version "
        "(4.23.0); its Python files and its _pyhailort library come from different HailoRT "
        "releases: install one hailort wheel, of the driver's version"
    )


def test_an_import_failure_under_numpy_2_names_numpy(on_a_pi: None, tmp_path: Path) -> None:
    fake.ENFORCE_NUMPY_LT_2 = True
    with pytest.raises(BackendError) as exc:
        backend(hef(tmp_path)).load()
    assert str(exc.value).startswith(
        "hailo_platform (HailoRT's Python binding, pyhailort) is installed but cannot be "
        "imported: ImportError: fake hailo_platform 4.23.0 is built for numpy<2"
    )
    assert str(exc.value).endswith(
        f"; numpy is {np.__version__} here, and pyhailort 4.x wheels declare numpy<2"
    )


def test_a_hailort_wheel_that_declares_numpy_below_2_is_refused_before_import(
    on_a_pi: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata

    def requires(dist: str) -> list[str]:
        assert dist == "hailort"
        return ["argcomplete", "numpy<2", "netifaces"]

    monkeypatch.setattr(importlib.metadata, "requires", requires)
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: "4.23.0")
    with pytest.raises(BackendError) as exc:
        backend(hef(tmp_path)).load()
    assert str(exc.value) == (
        f"the installed hailort 4.23.0 (pyhailort) requires numpy<2, but numpy is "
        f"{np.__version__} here. Run the hailo backend in an image with numpy<2, or with a "
        "HailoRT built and declared for numpy 2"
    )
    assert "hailo_platform" not in sys.modules  # not imported
    assert fake.CALLS == []


@pytest.mark.parametrize(
    ("requires", "refused"),
    [
        (["numpy<2"], True),
        (["numpy (<2.0)"], True),
        (["numpy>=1.21,<2"], True),
        (["numpy<=2.4.6"], False),
        (["numpy<3"], False),
        (["numpy"], False),
        (['numpy<2; python_version < "3.13"'], False),  # a marker: not evaluated, not refused
        (["numpy-financial<2"], False),
        ([], False),
    ],
)
def test_numpy_requirement_parsing(
    monkeypatch: pytest.MonkeyPatch, requires: list[str], refused: bool
) -> None:
    import importlib.metadata

    from hailo_sidecar.backends.hailo import numpy_conflict

    monkeypatch.setattr(importlib.metadata, "requires", lambda dist: requires)
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: "4.23.0")
    monkeypatch.setattr(np, "__version__", "2.4.6")
    assert (numpy_conflict() is not None) is refused


def test_no_hailort_metadata_no_numpy_verdict() -> None:
    from hailo_sidecar.backends.hailo import numpy_conflict

    assert numpy_conflict() is None  # the venv has no hailort distribution


def test_a_missing_dependency_of_pyhailort_is_not_pyhailort_missing(
    on_a_pi: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def import_module(name: str) -> Any:
        raise ModuleNotFoundError("No module named 'netifaces'", name="netifaces")

    monkeypatch.setattr("hailo_sidecar.backends.hailo.importlib.import_module", import_module)
    with pytest.raises(BackendError) as exc:
        backend(hef(tmp_path)).load()
    assert str(exc.value).startswith(
        "hailo_platform (HailoRT's Python binding, pyhailort) is installed but cannot be "
        "imported: ModuleNotFoundError: No module named 'netifaces'"
    )
    assert "numpy" not in str(exc.value)
