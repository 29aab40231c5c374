"""Property-based: whatever JSON (or bytes) is thrown at /infer, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from hailo_sidecar import contract
from hailo_sidecar.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import client_for, make_window

GOOD = make_window(5).tolist()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=12) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=60,
)


@st.composite
def near_windows(draw: st.DrawFn) -> Any:
    """A valid window with a few random edits: rows dropped/added/resized, values replaced."""
    x: list[Any] = [list(r) for r in GOOD]
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["value", "row_len", "drop_row", "add_row", "row_value"]))
        i = draw(st.integers(0, len(x) - 1)) if x else 0
        if op == "value" and x and isinstance(x[i], list) and x[i]:
            x[i][draw(st.integers(0, len(x[i]) - 1))] = draw(json_values)
        elif op == "row_len" and x and isinstance(x[i], list):
            x[i] = x[i][: draw(st.integers(0, 12))] + [0.5] * draw(st.integers(0, 3))
        elif op == "drop_row" and x:
            del x[i]
        elif op == "add_row":
            x.insert(i, [draw(st.floats(-1e3, 1e3)) for _ in range(9)])
        elif op == "row_value" and x:
            x[i] = draw(json_values)
    return x


@st.composite
def shapes(draw: st.DrawFn) -> Any:
    """Arrays of random shape, filled with random finite floats (some out of float32 range)."""
    dims = draw(st.lists(st.integers(0, 12), min_size=0, max_size=4))
    arr = np.asarray(
        draw(st.lists(st.floats(-1e40, 1e40), min_size=1, max_size=1))
        * int(np.prod(dims) if dims else 1)
    )
    return arr.reshape(dims).tolist() if dims else float(arr[0])


@pytest.fixture(scope="module")
def client() -> Any:
    with client_for(Config(max_batch=4)) as c:
        yield c


def dumps(value: Any) -> bytes:
    """JSON text as a client would send it (stdlib json: it writes ints of any size)."""
    return json.dumps(value).encode()


def post(client: TestClient, path: str, body: bytes) -> Any:
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code < 500, r.text
    payload = r.json()
    if r.status_code == 200:
        assert len(payload["latent" if path == "/infer" else "results"]) in (64, *range(1, 5))
    else:
        assert 400 <= r.status_code < 500
        assert payload["error"]
        assert payload["detail"]
    return r


SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(x=st.one_of(json_values, near_windows(), shapes()))
def test_infer_never_5xx_on_any_x(client: TestClient, x: Any) -> None:
    r = post(client, "/infer", dumps({"x": x}))
    # The verdict agrees with the exact checker: 200 iff x really is 100 x 9 finite float32s.
    try:
        contract._diagnose(orjson.loads(dumps(x)), (100, 9), ["x"])
        valid = True
    except contract.ContractError:
        valid = False
    assert (r.status_code == 200) == valid


@SETTINGS
@given(
    body=st.one_of(
        json_values, st.fixed_dictionaries({"windows": st.lists(near_windows(), max_size=5)})
    )
)
def test_batch_never_5xx(client: TestClient, body: Any) -> None:
    post(client, "/infer/batch", dumps(body))


@SETTINGS
@given(body=st.binary(max_size=300))
def test_infer_never_5xx_on_any_bytes(client: TestClient, body: bytes) -> None:
    post(client, "/infer", body)


@SETTINGS
@given(x=near_windows())
def test_fast_path_agrees_with_the_exact_path(x: Any) -> None:
    """Where the fast path accepts, the slow path accepts with the same array; else both refuse."""
    body = dumps({"x": x})
    fast = contract._fast(orjson.loads(body)["x"], body, (100, 9))  # what the server sees
    seen = orjson.loads(body)["x"]
    try:
        contract._diagnose(seen, (100, 9), ["x"])
        exact = np.array(seen, dtype=np.float64).astype(np.float32)
    except contract.ContractError:
        exact = None
    if fast is not None:
        assert exact is not None
        np.testing.assert_array_equal(fast, exact)
    if exact is not None:
        np.testing.assert_array_equal(contract.parse_infer_body(body)[0], exact)


@SETTINGS
@given(x=near_windows())
def test_the_type_checked_fast_path_agrees_with_the_exact_path(x: Any) -> None:
    """Another key holding strings, null and booleans inside the array's byte span: the
    fast path falls back to a type check of the values, and still agrees."""
    body = dumps({"x": x, "tags": ["a", None, True]})
    fast = contract._fast(orjson.loads(body)["x"], body, (100, 9))
    seen = orjson.loads(body)["x"]
    try:
        contract._diagnose(seen, (100, 9), ["x"])
        exact = np.array(seen, dtype=np.float64).astype(np.float32)
    except contract.ContractError:
        exact = None
    if fast is not None:
        assert exact is not None
        np.testing.assert_array_equal(fast, exact)


@pytest.mark.parametrize(
    "extra",
    [{"meta": "abc"}, {"tags": ["a", "b"], "null": None, "flag": True}, {"z": {"u": "a"}}],
)
def test_extra_keys_keep_the_fast_path(monkeypatch: pytest.MonkeyPatch, extra: Any) -> None:
    """Issue 16, point 6: an extra key used to send every request to the exact walk."""
    x = np.random.default_rng(1).standard_normal((100, 9)).astype(np.float32)
    for body in (dumps({**extra, "x": x.tolist()}), dumps({"x": x.tolist(), **extra})):

        def walk(*args: Any) -> None:
            raise AssertionError("took the slow path")

        monkeypatch.setattr(contract, "_diagnose", walk)
        np.testing.assert_array_equal(contract.parse_infer_body(body)[0], x)
    # A boolean or a numeric string inside x is still refused, with its place named.
    monkeypatch.undo()
    bad = x.tolist()
    bad[3][4] = True
    with pytest.raises(contract.ContractError, match=r"x\[3\]\[4\] must be a finite number"):
        contract.parse_infer_body(dumps({"x": bad, "tags": ["a"]}))
    bad[3][4] = "1.5"
    with pytest.raises(contract.ContractError, match=r"x\[3\]\[4\] must be a finite number"):
        contract.parse_infer_body(dumps({"x": bad}))
