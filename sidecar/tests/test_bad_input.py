"""Every bad input gets a 4xx with a message that says what is wrong; the server keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from .conftest import make_window

GOOD = make_window(1).tolist()
F32 = "3.4028235e+38"


def with_row(index: int, row: Any) -> list[Any]:
    x: list[Any] = [list(r) for r in GOOD]
    x[index] = row
    return x


def with_value(r: int, c: int, value: Any) -> list[Any]:
    x: list[Any] = [list(row) for row in GOOD]
    x[r][c] = value
    return x


def body_of(obj: Any) -> bytes:
    return orjson.dumps(obj)


# (id, path, body bytes, content type, status, error code, exact detail or prefix..., loc)
CASES: list[tuple[str, str, bytes, str | None, int, str, str, Any]] = [
    ("empty body", "/infer", b"", "application/json", 400, "empty_body",
     'request body is empty; send JSON like {"x": [...]}', None),
    ("not json", "/infer", b"hello", "application/json", 400, "invalid_json",
     "request body is not valid JSON: unexpected character", None),
    ("truncated json", "/infer", b'{"x": [[1, 2', "application/json", 400, "invalid_json",
     "request body is not valid JSON: unexpected end of data", None),
    ("NaN literal", "/infer", b'{"x": [[NaN]]}', "application/json", 400, "invalid_json",
     "request body is not valid JSON: unexpected character", None),
    ("Infinity literal", "/infer", b'{"x": [[Infinity]]}', "application/json", 400,
     "invalid_json", "request body is not valid JSON: unexpected character", None),
    ("1e999 overflows double", "/infer", b'{"x": [[1e999]]}', "application/json", 400,
     "invalid_json", "request body is not valid JSON: number is infinity", None),
    ("deep nesting", "/infer", b'{"x": ' + b"[" * 2000 + b"]" * 2000 + b"}", "application/json",
     400, "invalid_json", "request body is not valid JSON: depth limit exceeded", None),
    ("body is an array", "/infer", b"[1, 2]", "application/json", 422, "bad_body",
     'request body must be a JSON object like {"x": [[9 numbers] x 100]}, got an array of 2',
     None),
    ("body is a string", "/infer", b'"x"', "application/json", 422, "bad_body",
     'request body must be a JSON object like {"x": [[9 numbers] x 100]}, got a string (\'x\')',
     None),
    ("no x", "/infer", b"{}", "application/json", 422, "missing_field",
     "request body has no 'x' field (keys: none)", ["x"]),
    ("wrong key", "/infer", body_of({"X": GOOD}), "application/json", 422, "missing_field",
     "request body has no 'x' field (keys: 'X')", ["x"]),
    ("x null", "/infer", b'{"x": null}', "application/json", 422, "bad_type",
     "x must be an array of 100 rows, got null", ["x"]),
    ("x string", "/infer", b'{"x": "abc"}', "application/json", 422, "bad_type",
     "x must be an array of 100 rows, got a string ('abc')", ["x"]),
    ("x object", "/infer", b'{"x": {"a": 1}}', "application/json", 422, "bad_type",
     "x must be an array of 100 rows, got an object", ["x"]),
    ("x number", "/infer", b'{"x": 4}', "application/json", 422, "bad_type",
     "x must be an array of 100 rows, got a number (4)", ["x"]),
    ("x empty", "/infer", b'{"x": []}', "application/json", 422, "bad_shape",
     "x has 0 rows, expected 100", ["x"]),
    ("99 rows", "/infer", body_of({"x": GOOD[:99]}), "application/json", 422, "bad_shape",
     "x has 99 rows, expected 100", ["x"]),
    ("101 rows", "/infer", body_of({"x": [*GOOD, GOOD[0]]}), "application/json", 422,
     "bad_shape", "x has 101 rows, expected 100", ["x"]),
    ("flat 900 values", "/infer", body_of({"x": [v for row in GOOD for v in row]}),
     "application/json", 422, "bad_shape", "x has 900 rows, expected 100", ["x"]),
    ("transposed 9x100", "/infer", body_of({"x": [list(c) for c in zip(*GOOD, strict=True)]}),
     "application/json", 422, "bad_shape", "x has 9 rows, expected 100", ["x"]),
    ("short row", "/infer", body_of({"x": with_row(17, GOOD[17][:8])}), "application/json",
     422, "bad_shape", "x[17] has 8 values, expected 9", ["x", 17]),
    ("long row", "/infer", body_of({"x": with_row(42, [*GOOD[42], 0.5])}), "application/json",
     422, "bad_shape", "x[42] has 10 values, expected 9", ["x", 42]),
    ("empty row", "/infer", body_of({"x": with_row(99, [])}), "application/json", 422,
     "bad_shape", "x[99] has 0 values, expected 9", ["x", 99]),
    ("row is a number", "/infer", body_of({"x": with_row(3, 1.5)}), "application/json", 422,
     "bad_type", "x[3] must be an array of 9 values, got a number (1.5)", ["x", 3]),
    ("row is null", "/infer", body_of({"x": with_row(3, None)}), "application/json", 422,
     "bad_type", "x[3] must be an array of 9 values, got null", ["x", 3]),
    ("row is an object", "/infer", body_of({"x": with_row(0, {})}), "application/json", 422,
     "bad_type", "x[0] must be an array of 9 values, got an object", ["x", 0]),
    ("string value", "/infer", body_of({"x": with_value(5, 2, "abc")}), "application/json",
     422, "bad_type", "x[5][2] must be a finite number, got a string ('abc')", ["x", 5, 2]),
    ("numeric string", "/infer", body_of({"x": with_value(5, 2, "1.5")}), "application/json",
     422, "bad_type", "x[5][2] must be a finite number, got a string ('1.5')", ["x", 5, 2]),
    ("null value", "/infer", body_of({"x": with_value(0, 8, None)}), "application/json", 422,
     "bad_type", "x[0][8] must be a finite number, got null", ["x", 0, 8]),
    ("boolean value", "/infer", body_of({"x": with_value(99, 0, True)}), "application/json",
     422, "bad_type", "x[99][0] must be a finite number, got a boolean", ["x", 99, 0]),
    ("false among numbers", "/infer", body_of({"x": with_value(7, 7, False)}),
     "application/json", 422, "bad_type", "x[7][7] must be a finite number, got a boolean",
     ["x", 7, 7]),
    ("nested array value", "/infer", body_of({"x": with_value(5, 2, [1.0])}),
     "application/json", 422, "bad_type", "x[5][2] must be a finite number, got an array of 1",
     ["x", 5, 2]),
    ("object value", "/infer", body_of({"x": with_value(5, 2, {})}), "application/json", 422,
     "bad_type", "x[5][2] must be a finite number, got an object", ["x", 5, 2]),
    ("over float32 max", "/infer", body_of({"x": with_value(5, 2, 1e39)}), "application/json",
     422, "not_finite", f"x[5][2] is 1e+39, outside the float32 range (max {F32})", ["x", 5, 2]),
    ("huge negative", "/infer", body_of({"x": with_value(60, 1, -1e300)}), "application/json",
     422, "not_finite", f"x[60][1] is -1e+300, outside the float32 range (max {F32})",
     ["x", 60, 1]),
    ("text/plain", "/infer", body_of({"x": GOOD}), "text/plain", 415, "unsupported_media_type",
     "Content-Type must be application/json, got 'text/plain'", None),
    ("form encoded", "/infer", b"x=1", "application/x-www-form-urlencoded", 415,
     "unsupported_media_type",
     "Content-Type must be application/json, got 'application/x-www-form-urlencoded'", None),
    ("no content type", "/infer", body_of({"x": GOOD}), None, 415, "unsupported_media_type",
     "Content-Type is missing; send application/json", None),
    ("oversized", "/infer", b"[" + b"0," * 1_500_000 + b"0]", "application/json", 413,
     "body_too_large", "request body is 3000003 bytes, the limit is 2097152 (MAX_BODY_BYTES)",
     None),
    # batch form (the client fixture has MAX_BATCH=8)
    ("batch: no windows", "/infer/batch", body_of({"x": GOOD}), "application/json", 422,
     "missing_field", "request body has no 'windows' field (keys: 'x')", ["windows"]),
    ("batch: windows object", "/infer/batch", b'{"windows": {}}', "application/json", 422,
     "bad_type", "windows must be an array of windows, got an object", ["windows"]),
    ("batch: empty", "/infer/batch", b'{"windows": []}', "application/json", 422,
     "bad_batch_size", "windows has 0 windows, expected 1 to 8", ["windows"]),
    ("batch: too many", "/infer/batch", body_of({"windows": [GOOD] * 9}), "application/json",
     422, "bad_batch_size", "windows has 9 windows, expected 1 to 8", ["windows"]),
    ("batch: short window", "/infer/batch", body_of({"windows": [GOOD, GOOD, GOOD[:99]]}),
     "application/json", 422, "bad_shape", "windows[2] has 99 rows, expected 100",
     ["windows", 2]),
    ("batch: short row", "/infer/batch", body_of({"windows": [GOOD, with_row(5, [0.0] * 8)]}),
     "application/json", 422, "bad_shape", "windows[1][5] has 8 values, expected 9",
     ["windows", 1, 5]),
    ("batch: null value", "/infer/batch", body_of({"windows": [with_value(0, 0, None)]}),
     "application/json", 422, "bad_type", "windows[0][0][0] must be a finite number, got null",
     ["windows", 0, 0, 0]),
    ("batch: window is x", "/infer/batch", body_of({"windows": [{"x": GOOD}]}),
     "application/json", 422, "bad_type", "windows[0] must be an array of 100 rows, got an object",
     ["windows", 0]),
]  # fmt: skip


def assert_still_serving(client: TestClient) -> None:
    r = client.post("/infer", json={"x": GOOD})
    assert r.status_code == 200, r.text
    assert len(r.json()["latent"]) == 64


@pytest.mark.parametrize(
    ("path", "body", "ctype", "status", "code", "detail", "loc"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_bad_input_gets_a_precise_4xx(
    client: TestClient,
    path: str,
    body: bytes,
    ctype: str | None,
    status: int,
    code: str,
    detail: str,
    loc: Any,
) -> None:
    headers = {"content-type": ctype} if ctype else {}
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == status, r.text
    got = r.json()
    assert got["error"] == code
    if code == "invalid_json":  # orjson's own wording follows our prefix
        assert got["detail"].startswith(detail), got["detail"]
    else:
        assert got["detail"] == detail
    assert got["loc"] == loc
    assert_still_serving(client)


def test_oversized_chunked_body_without_length_is_refused(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"x": ['
        for _ in range(300):
            yield b"[" + b"0.0," * 2000 + b"0.0],"
        yield b"[0]]}"

    r = client.post("/infer", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {
        "error": "body_too_large",
        "detail": "request body is over the limit of 2097152 bytes (MAX_BODY_BYTES)",
        "loc": None,
    }
    assert_still_serving(client)


def test_chunked_body_within_limit_is_accepted(client: TestClient) -> None:
    body = orjson.dumps({"x": GOOD})
    r = client.post(
        "/infer",
        content=iter([body[:5000], body[5000:]]),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200, r.text


def test_wrong_method_and_unknown_path_are_4xx(client: TestClient) -> None:
    r = client.get("/infer")
    assert r.status_code == 405
    assert r.json()["error"] == "http_405"
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.json() == {"error": "http_404", "detail": "Not Found", "loc": None}
    assert_still_serving(client)


def test_errors_are_counted_by_status(client: TestClient) -> None:
    for _ in range(3):
        client.post("/infer", content=b"nope", headers={"content-type": "application/json"})
    text = client.get("/metrics").text
    assert 'sidecar_http_requests_total{endpoint="/infer",method="POST",status="400"} 3.0' in text
