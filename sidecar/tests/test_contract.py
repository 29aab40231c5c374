"""The HTTP contract: /infer, /infer/batch, /healthz, /readyz, headers, OpenAPI."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from hailo_sidecar import contract

from .conftest import make_window


def check_result(body: dict[str, object], num_motifs: int = 12) -> None:
    latent, motifs = body["latent"], body["motif_scores"]
    assert isinstance(latent, list)
    assert len(latent) == 64
    assert isinstance(motifs, list)
    assert len(motifs) == num_motifs
    assert all(isinstance(v, float) and np.isfinite(v) for v in latent)
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in motifs)


@pytest.mark.parametrize("which", ["client", "onnx_client"])
def test_infer_returns_the_contract(
    which: str, request: pytest.FixtureRequest, window_json: list[list[float]]
) -> None:
    c: TestClient = request.getfixturevalue(which)
    r = c.post("/infer", json={"x": window_json})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    check_result(body)
    assert set(body) == {"latent", "motif_scores", "model", "version", "sha256"}
    ready = c.get("/readyz").json()
    assert body["model"] == ready["model"] == r.headers["x-model"]
    assert body["version"] == ready["version"] == r.headers["x-model-version"]
    assert body["sha256"] == ready["sha256"] == r.headers["x-model-sha256"]
    assert len(body["sha256"]) == 64


def test_onnx_identity_comes_from_the_manifest(onnx_client: TestClient, model_dir) -> None:
    manifest = orjson.loads((model_dir / "manifest.json").read_bytes())
    r = onnx_client.post("/infer", json={"x": make_window(3).tolist()})
    assert r.json()["model"] == "tcn_encoder"
    assert r.json()["version"] == "0.1.0"
    assert r.headers["x-model-sha256"] == manifest["sha256"]
    assert r.headers["x-backend"] == "onnx"


def test_integers_and_json_charset_are_accepted(client: TestClient) -> None:
    x = [[i % 7 - 3 for _ in range(9)] for i in range(100)]  # JSON integers are numbers too
    r = client.post(
        "/infer",
        content=orjson.dumps({"x": x}),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200, r.text
    check_result(r.json())


def test_extra_fields_are_ignored(client: TestClient, window_json: list[list[float]]) -> None:
    r = client.post("/infer", json={"x": window_json, "device": "pi-07", "seq": 12, "flag": True})
    assert r.status_code == 200, r.text


def test_batch_returns_one_result_per_window_in_order(client: TestClient) -> None:
    windows = [make_window(s).tolist() for s in range(5)]
    r = client.post("/infer/batch", json={"windows": windows})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["results"]) == 5
    for result, w in zip(body["results"], windows, strict=True):
        check_result(result)
        single = client.post("/infer", json={"x": w}).json()
        assert result["latent"] == single["latent"]
        assert result["motif_scores"] == single["motif_scores"]
    assert body["sha256"] == r.headers["x-model-sha256"]


def test_onnx_batch_matches_single_calls(onnx_client: TestClient) -> None:
    windows = [make_window(s).tolist() for s in range(3)]
    batch = onnx_client.post("/infer/batch", json={"windows": windows}).json()["results"]
    for result, w in zip(batch, windows, strict=True):
        assert result == {
            k: v
            for k, v in onnx_client.post("/infer", json={"x": w}).json().items()
            if k in ("latent", "motif_scores")
        }


def test_healthz_and_readyz_when_ready(client: TestClient) -> None:
    h = client.get("/healthz")
    assert h.status_code == 200
    assert h.json() == {
        "ok": True,
        "model": "stub",
        "version": "0.1.0",
        "backend": "stub",
        "ready": True,
    }
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["ready"] is True
    assert r.json()["reason"] is None


def test_openapi_documents_the_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    infer = spec["paths"]["/infer"]["post"]
    req = infer["requestBody"]["content"]["application/json"]["schema"]
    assert req["properties"]["x"]["minItems"] == 100
    assert req["properties"]["x"]["maxItems"] == 100
    assert req["properties"]["x"]["items"]["minItems"] == 9
    assert set(infer["responses"]) >= {"200", "400", "413", "415", "422", "503"}
    assert "X-Model-Sha256" in infer["responses"]["200"]["headers"]
    assert "InferResponse" in spec["components"]["schemas"]
    assert "ErrorResponse" in spec["components"]["schemas"]
    assert "/infer/batch" in spec["paths"]
    assert client.get("/docs").status_code == 200


# --------------------------------------------------------------------------- parser units
def test_parse_gives_c_contiguous_float32_window(window: np.ndarray) -> None:
    arr = contract.parse_infer_body(orjson.dumps({"x": window.tolist()}))
    assert arr.shape == (1, 100, 9)
    assert arr.dtype == np.float32
    assert arr.flags.c_contiguous
    np.testing.assert_array_equal(arr[0], window)  # float32 -> JSON -> float32 is exact


def test_slow_path_gives_the_same_array_as_the_fast_path(window: np.ndarray) -> None:
    x = window.tolist()
    fast = contract.parse_infer_body(orjson.dumps({"x": x}))
    # A 'u' elsewhere in the body forces the exact walk; the result must not change.
    slow = contract.parse_infer_body(orjson.dumps({"x": x, "note": "unused"}))
    np.testing.assert_array_equal(fast, slow)


def test_parse_batch_shape() -> None:
    body = orjson.dumps({"windows": [make_window(s).tolist() for s in range(4)]})
    arr = contract.parse_batch_body(body, max_batch=4)
    assert arr.shape == (4, 100, 9)
    assert arr.flags.c_contiguous
    np.testing.assert_array_equal(arr[2], make_window(2))


def test_check_windows_for_non_json_callers(window: np.ndarray) -> None:
    assert contract.check_windows(window).shape == (1, 100, 9)
    bad = window.copy()
    bad[4, 2] = np.nan
    with pytest.raises(contract.ContractError, match=r"window 0 row 4 value 2 is nan"):
        contract.check_windows(bad)
    with pytest.raises(contract.ContractError, match="expected float32"):
        contract.check_windows(window.astype(np.float64))
    with pytest.raises(contract.ContractError, match=r"expected \(N, 100, 9\)"):
        contract.check_windows(window[:50])
