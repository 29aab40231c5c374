"""The Open Inference Protocol (KServe V2) beside the fixed contract, driven with a real
V2 client library from PyPI (tritonclient[http]) against the real server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hailo_sidecar.config import Config

from .conftest import make_window
from .live import Live, get, live_server, post_json, read_response

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

WINDOWS = np.stack([make_window(s) for s in (11, 12, 13)])


@pytest.fixture(params=["stub", "onnx"], scope="module")
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    if request.param == "stub":
        cfg = Config(max_batch=8)
    else:
        import shutil

        from hailo_sidecar.manifest import write_manifest

        from .conftest import ARTIFACT_NAME, REFERENCE_ONNX

        d: Path = tmp_path_factory.mktemp("v2model")
        shutil.copyfile(REFERENCE_ONNX, d / ARTIFACT_NAME)
        write_manifest(d, d / ARTIFACT_NAME)
        cfg = Config(infer_mode="onnx", model_manifest=d / "manifest.json", max_batch=8)
    with live_server(cfg) as server:
        yield server


def client(live: Live) -> Any:
    return httpclient.InferenceServerClient(f"127.0.0.1:{live.port}")


def model(live: Live) -> str:
    return str(live.app.state.service.info.model)


def contract_infer(live: Live, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same windows through the fixed contract (/infer/batch)."""
    status, _, body = post_json(live.port, "/infer/batch", {"windows": windows.tolist()})
    assert status == 200, body
    latent = np.array([r["latent"] for r in body["results"]], dtype=np.float32)
    motifs = np.array([r["motif_scores"] for r in body["results"]], dtype=np.float32)
    return latent, motifs


def test_health_and_metadata(live: Live) -> None:
    c = client(live)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready(model(live))
    assert not c.is_model_ready("no-such-model")
    meta = c.get_model_metadata(model(live))
    assert meta["name"] == model(live)
    assert meta["versions"] == [live.app.state.service.info.version]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 100, 9]}]
    assert [o["name"] for o in meta["outputs"]] == ["latent", "motif_scores"]
    assert meta["outputs"][1]["shape"] == [-1, 12]
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]
    # The fixed contract is unchanged beside it.
    assert get(live.port, "/healthz")[0] == 200


@pytest.mark.parametrize(("binary_in", "binary_out"), [(True, True), (False, False), (True, False)])
def test_infer_matches_the_fixed_contract_bit_for_bit(
    live: Live, binary_in: bool, binary_out: bool
) -> None:
    c = client(live)
    x = httpclient.InferInput("x", list(WINDOWS.shape), "FP32")
    x.set_data_from_numpy(WINDOWS, binary_data=binary_in)
    outputs = [
        httpclient.InferRequestedOutput(name, binary_data=binary_out)
        for name in ("latent", "motif_scores")
    ]
    result = c.infer(model(live), [x], outputs=outputs, request_id="r-1")
    latent, motifs = contract_infer(live, WINDOWS)
    assert result.get_response()["id"] == "r-1"
    np.testing.assert_array_equal(result.as_numpy("latent"), latent)
    np.testing.assert_array_equal(result.as_numpy("motif_scores"), motifs)
    assert result.as_numpy("latent").shape == (3, 64)


def test_default_outputs_come_back_binary(live: Live) -> None:
    x = httpclient.InferInput("x", [1, 100, 9], "FP32")
    x.set_data_from_numpy(WINDOWS[:1])
    result = client(live).infer(model(live), [x])  # no outputs named: binary_data_output
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
    np.testing.assert_array_equal(result.as_numpy("latent"), contract_infer(live, WINDOWS[:1])[0])


def test_errors_are_v2_errors(live: Live) -> None:
    c = client(live)
    x = httpclient.InferInput("x", [1, 100, 9], "FP32")
    bad = WINDOWS[:1].copy()
    bad[0, 3, 4] = np.nan
    x.set_data_from_numpy(bad)
    with pytest.raises(InferenceServerException, match="window 0 row 3 value 4 is nan"):
        c.infer(model(live), [x])
    x.set_data_from_numpy(WINDOWS[:1])
    with pytest.raises(InferenceServerException, match="model 'nope' not found"):
        c.infer("nope", [x])
    wrong = httpclient.InferInput("x", [9, 100, 9], "FP32")
    wrong.set_data_from_numpy(np.zeros((9, 100, 9), np.float32))
    with pytest.raises(InferenceServerException, match=r"N from 1 to 8 \(MAX_BATCH\)"):
        c.infer(model(live), [wrong])


def test_json_data_is_checked_like_the_contract(live: Live) -> None:
    data: list[Any] = WINDOWS[0].reshape(-1).tolist()
    data[17] = True
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 100, 9], "data": data}]}
    with live.connect() as s:
        raw = orjson.dumps(body)
        s.sendall(
            f"POST /v2/models/{model(live)}/infer HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n".encode()
            + raw
        )
        status, _, reply = read_response(s)
    assert status == 422
    assert orjson.loads(reply) == {
        "error": "x[17] must be a finite number, got a boolean",
        "code": "bad_type",
    }
    metrics = live.metrics()
    assert 'endpoint="/v2/models/{name}/infer",method="POST",status="422"' in metrics
