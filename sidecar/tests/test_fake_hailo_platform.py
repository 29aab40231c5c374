"""The fake hailo_platform keeps to what pyhailort's source says (see its docstring).

These test the FAKE, not HailoRT: they pin down the behaviours the hailo backend's
tests rely on, so a change to the fake that would make those tests meaningless fails here.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from . import fake_hailo_platform as fake
from .test_hailo import GOOD_STREAMS, importable_fake


@pytest.fixture
def hp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    importable_fake(monkeypatch)
    yield importlib.import_module("hailo_platform")
    fake.reset()


def configured(hp: Any, tmp_path: Path, streams: dict[str, Any] = GOOD_STREAMS) -> Any:
    path = tmp_path / "m.hef"
    path.write_text(json.dumps(streams))
    model = hp.VDevice().create_infer_model(str(path))
    for name in [*model.input_names, *model.output_names]:
        stream = model.input(name) if name in model.input_names else model.output(name)
        stream.set_format_type(hp.FormatType.FLOAT32)
    return model.configure()


def bind(cim: Any, dtype: Any = np.float32) -> tuple[Any, dict[str, np.ndarray]]:
    bufs = {
        "tcn_encoder/input_layer1": np.ones((1, 100, 9), dtype),
        "tcn_encoder/fc1": np.zeros(64, dtype),
        "tcn_encoder/fc2": np.zeros(12, dtype),
    }
    inputs = {k: v for k, v in bufs.items() if "input" in k}
    outputs = {k: v for k, v in bufs.items() if "input" not in k}
    return cim.create_bindings(input_buffers=inputs, output_buffers=outputs), bufs


def test_the_import_checks_the_library_version(monkeypatch: pytest.MonkeyPatch) -> None:
    importable_fake(monkeypatch)
    fake.LIB_VERSION = "4.22.0"
    with pytest.raises(ImportError, match=r"^_pyhailort version \(4.22.0\) does not match "):
        importlib.import_module("hailo_platform")
    fake.reset()
    assert importlib.import_module("hailo_platform").__version__ == "4.23.0"


def test_numpy_2_refusal_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    importable_fake(monkeypatch)
    fake.ENFORCE_NUMPY_LT_2 = True
    with pytest.raises(ImportError, match="built for numpy<2"):
        importlib.import_module("hailo_platform")


def test_the_top_level_names_are_pyhailorts(hp: Any) -> None:
    assert not hasattr(hp, "HailoRTTimeout")  # it lives in hailo_platform.pyhailort.pyhailort
    assert {"VDevice", "HEF", "FormatType", "HailoRTException"} <= set(dir(hp))


def test_buffers_are_checked_by_bytes_when_a_job_is_submitted(hp: Any, tmp_path: Path) -> None:
    cim = configured(hp, tmp_path)
    bindings, _ = bind(cim, np.float64)  # set_buffer takes it, like pyhailort
    with pytest.raises(hp.HailoRTException, match=r"^Invalid operation") as exc:
        cim.run([bindings], 1000)
    assert type(exc.value.__cause__).__name__ == "HailoRTStatusException"
    assert exc.value.__cause__.args == ("6",)
    good, _ = bind(cim)
    with pytest.raises(hp.HailoRTException, match=r"^Stream was aborted$"):
        cim.run([good], 1000)  # the failed submission shut the model down


def test_a_full_queue_refuses_and_shuts_down(hp: Any, tmp_path: Path) -> None:
    cim = configured(hp, tmp_path)
    many = [bind(cim)[0] for _ in range(fake.ASYNC_QUEUE_SIZE + 1)]
    fake.LAGGING_POOL = True
    cim.run(many[:4], 1000)
    with pytest.raises(hp.HailoRTException, match=r"error: 82 \(HAILO_QUEUE_IS_FULL\)$"):
        cim.run(many[:1], 1000)
    with pytest.raises(hp.HailoRTException, match=r"^Stream was aborted$"):
        cim.wait_for_async_ready(1000, 1)


def test_readiness_frees_the_lagging_frames(hp: Any, tmp_path: Path) -> None:
    cim = configured(hp, tmp_path)
    bindings = [bind(cim)[0] for _ in range(4)]
    fake.LAGGING_POOL = True
    for _ in range(3):
        cim.wait_for_async_ready(1000, 4)
        cim.run(bindings, 1000)


def test_run_does_not_report_a_job_that_failed_on_the_device(hp: Any, tmp_path: Path) -> None:
    cim = configured(hp, tmp_path)
    bindings, bufs = bind(cim)
    fake.FAULTS.append("job_error")
    cim.run([bindings], 1000)  # returns, as pyhailort 4.23's run() does
    assert np.isnan(bufs["tcn_encoder/fc1"]).all()
    with pytest.raises(hp.HailoRTException, match=r"error: 87 \(HAILO_DRIVER_TIMEOUT\)$"):
        cim.run([bindings], 1000)  # the pipeline is down


def test_a_completion_callback_sees_a_job_that_failed(hp: Any, tmp_path: Path) -> None:
    cim = configured(hp, tmp_path)
    bindings, _ = bind(cim)
    seen: list[Any] = []
    fake.FAULTS.append("job_error")
    job = cim.run_async([bindings], lambda completion_info: seen.append(completion_info.exception))
    job.wait(1000)
    assert str(seen[0]) == "libhailort failed with error: 87 (HAILO_DRIVER_TIMEOUT)"


def test_a_timed_out_job_writes_later(hp: Any, tmp_path: Path) -> None:
    cim = configured(hp, tmp_path)
    first, first_bufs = bind(cim)
    first_bufs["tcn_encoder/input_layer1"][...] = 2.0
    fake.FAULTS.append("timeout")
    with pytest.raises(hp.HailoRTException, match=r"^Received a timeout") as exc:
        cim.run([first], 1000)
    assert type(exc.value).__name__ == "HailoRTTimeout"
    assert not first_bufs["tcn_encoder/fc1"].any()  # not written yet
    second, _ = bind(cim)
    cim.run([second], 1000)  # the model still takes jobs; the late one lands now
    x = np.full((1, 100, 9), 2.0, np.float32)
    np.testing.assert_array_equal(first_bufs["tcn_encoder/fc1"], fake.fake_outputs(x, [64, 12])[0])


def test_one_vdevice_at_a_time_and_driver_status(hp: Any) -> None:
    vdevice = hp.VDevice()
    with pytest.raises(hp.HailoRTException, match=r"74 \(HAILO_OUT_OF_PHYSICAL_DEVICES\)"):
        hp.VDevice()
    vdevice.release()
    fake.OPEN_STATUS = 76
    with pytest.raises(hp.HailoRTException) as exc:
        hp.VDevice()
    assert str(exc.value) == "libhailort failed with error: 76 (HAILO_INVALID_DRIVER_VERSION)"
    assert exc.value.__cause__.args == ("76",)


def test_identify(hp: Any) -> None:
    vdevice = hp.VDevice()
    (device,) = vdevice.get_physical_devices()
    board = device.control.identify()
    assert str(board.firmware_version) == "4.23.0 (release,app,extended context switch buffer)"
    assert str(board.device_architecture) == "HAILO8L"
    device.release()
    assert fake.OPEN["Device"] == 0
