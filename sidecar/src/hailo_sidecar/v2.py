"""The Open Inference Protocol (KServe V2) beside the fixed contract.

    GET  /v2                                   server metadata (extensions: binary_tensor_data)
    GET  /v2/health/live, /v2/health/ready     200, or 503 with the reason when not ready
    GET  /v2/models/{name}[/versions/{v}]      model metadata: x FP32 [-1,100,9] -> latent
                                               FP32 [-1,64], motif_scores FP32 [-1,NUM_MOTIFS]
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer

Inference takes the input `x`, datatype FP32, shape [N, 100, 9] (1 <= N <= MAX_BATCH;
[100, 9] is one window), its data as JSON (`data`, flat or nested) or, with the binary
tensor data extension, as little-endian float32 bytes after the JSON header
(`Inference-Header-Content-Length`, `parameters.binary_data_size`). Outputs come back
as JSON `data` (flat, row-major), or as binary when the request asks for it
(`parameters.binary_data_output`, or `binary_data` on a requested output). The same
checks, admission queue, deadline and health as `/infer` apply (`Service.run`).
Errors are V2's `{"error": message}` (plus `code`, the sidecar's error code).

`/infer`, `/healthz` and port 9000 stay as EdgeInfer expects; this is an addition.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import __version__, contract
from .contract import CHANNELS, LATENT_DIM, LATENT_NAME, MOTIFS_NAME, WINDOW, ContractError
from .http_body import parse, read_body
from .service import Service

JSON = "application/json"
HEADER_LENGTH = "inference-header-content-length"
WINDOW_VALUES = WINDOW * CHANNELS


def _v2_error(status: int, code: str, message: str) -> Response:
    return Response(
        orjson.dumps({"error": message, "code": code}), status_code=status, media_type=JSON
    )


def routes(service: Service, max_batch: int, limit: int) -> list[Route]:
    """The V2 routes for `service` (the model's name and version come from it)."""

    def model_error(request: Request) -> Response | None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        info = service.info
        if name != info.model:
            return _v2_error(
                404, "model_not_found", f"model {name!r} not found; this sidecar serves "
                f"{info.model!r}"
            )  # fmt: skip
        if version is not None and version != info.version:
            return _v2_error(
                404, "model_not_found", f"model {name!r} has no version {version!r}; it is "
                f"{info.version!r}"
            )  # fmt: skip
        return None

    def ready_response() -> Response:
        ready, reason = service.readiness()
        body: dict[str, Any] = {"ready": ready}
        if reason is not None:
            body["reason"] = reason
        return Response(orjson.dumps(body), status_code=200 if ready else 503, media_type=JSON)

    async def server_metadata(request: Request) -> Response:
        body = {
            "name": "hailo-sidecar",
            "version": __version__,
            "extensions": ["binary_tensor_data"],
        }
        return Response(orjson.dumps(body), media_type=JSON)

    async def live(request: Request) -> Response:
        return Response(orjson.dumps({"live": True}), media_type=JSON)

    async def ready(request: Request) -> Response:
        return ready_response()

    async def model_ready(request: Request) -> Response:
        return model_error(request) or ready_response()

    async def model_metadata(request: Request) -> Response:
        error = model_error(request)
        if error is not None:
            return error
        info = service.info
        body = {
            "name": info.model,
            "versions": [info.version],
            "platform": f"hailo-sidecar-{info.backend}",
            "inputs": [{"name": contract.INPUT_NAME, "datatype": "FP32",
                        "shape": [-1, WINDOW, CHANNELS]}],
            "outputs": [
                {"name": LATENT_NAME, "datatype": "FP32", "shape": [-1, LATENT_DIM]},
                {"name": MOTIFS_NAME, "datatype": "FP32",
                 "shape": [-1, service.config.num_motifs]},
            ],
        }  # fmt: skip
        return Response(orjson.dumps(body), media_type=JSON)

    async def infer(request: Request) -> Response:
        error = model_error(request)
        if error is not None:
            return error
        try:
            body = await read_body(request, limit)
            header, windows, wanted, binary = await parse(
                parse_request, body, request.headers.get(HEADER_LENGTH), max_batch
            )
        except ContractError as exc:
            if exc.status == 413 or exc.code == "bad_content_length":
                raise  # before the body was read: the app's handler closes the connection
            return _v2_error(exc.status, exc.code, exc.message)
        latent, motifs = await service.run(windows, request.is_disconnected)
        return encode_response(service, header, latent, motifs, wanted, binary)

    paths = ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")
    return [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        *(Route(p, model_metadata, methods=["GET"]) for p in paths),
        *(Route(p + "/ready", model_ready, methods=["GET"]) for p in paths),
        *(Route(p + "/infer", infer, methods=["POST"]) for p in paths),
    ]


def _bad(message: str, code: str = "bad_request") -> ContractError:
    return ContractError(400, code, message)


def parse_request(
    body: bytes, header_length: str | None, max_batch: int
) -> tuple[dict[str, Any], np.ndarray, list[tuple[str, bool]], bool]:
    """(the JSON header, windows (N, 100, 9) float32, [(output, binary)], binary default)."""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise _bad(
                f"Inference-Header-Content-Length {header_length!r} is not a length within "
                f"the {len(body)}-byte body"
            )
        text, blob = body[: int(header_length)], memoryview(body)[int(header_length) :]
    else:
        text, blob = body, memoryview(b"")
    if not text:
        raise _bad('request body is empty; send {"inputs": [...]}', "empty_body")
    try:
        header = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"request header is not valid JSON: {exc}", "invalid_json") from None
    if type(header) is not dict or type(header.get("inputs")) is not list:
        raise _bad('the request must be a JSON object with "inputs": [...]', "bad_body")
    inputs = header["inputs"]
    if len(inputs) != 1 or type(inputs[0]) is not dict or inputs[0].get("name") != "x":
        names = [i.get("name") if type(i) is dict else i for i in inputs]
        raise _bad(f"expected one input named 'x', got {names!r}", "bad_input")
    x = inputs[0]
    if x.get("datatype") != "FP32":
        raise _bad(f"input x must be FP32, got {x.get('datatype')!r}", "bad_type")
    shape = x.get("shape")
    if shape == [WINDOW, CHANNELS]:
        shape = [1, WINDOW, CHANNELS]
    if (
        type(shape) is not list
        or len(shape) != 3
        or shape[1:] != [WINDOW, CHANNELS]
        or type(shape[0]) is not int
        or not 1 <= shape[0] <= max_batch
    ):
        raise ContractError(
            422, "bad_shape", f"input x has shape {shape!r}, expected [N, {WINDOW}, {CHANNELS}] "
            f"with N from 1 to {max_batch} (MAX_BATCH)"
        )  # fmt: skip
    n = shape[0]
    params = x.get("parameters") or {}
    size = params.get("binary_data_size") if type(params) is dict else None
    if size is not None:
        if size != n * WINDOW_VALUES * 4 or len(blob) != size:
            raise _bad(
                f"input x: binary_data_size is {size!r} with {len(blob)} bytes after the "
                f"header; {n} window(s) of FP32 are {n * WINDOW_VALUES * 4} bytes",
                "bad_shape",
            )
        windows = np.frombuffer(blob, dtype="<f4").reshape(n, WINDOW, CHANNELS)
        windows = contract.check_windows(windows.astype(np.float32, copy=False))
    else:
        data = x.get("data")
        if type(data) is not list:
            raise _bad("input x has no data (nor binary_data_size)", "missing_field")
        depth, probe = 0, data
        while type(probe) is list and probe:
            depth, probe = depth + 1, probe[0]
        # Flat (row-major, as V2 clients send it), rows of 9, or windows; else the
        # windows' shape, so the exact check names what is wrong.
        want = {1: (n * WINDOW_VALUES,), 2: (n * WINDOW, CHANNELS)}.get(
            depth, (n, WINDOW, CHANNELS)
        )
        windows = contract.parse_values(data, text, want, ["x"]).reshape(n, WINDOW, CHANNELS)
    top = header.get("parameters") or {}
    binary = bool(top.get("binary_data_output", False)) if type(top) is dict else False
    wanted: list[tuple[str, bool]] = []
    requested = header.get("outputs")
    if requested is None:
        wanted = [(LATENT_NAME, binary), (MOTIFS_NAME, binary)]
    else:
        for out in requested if type(requested) is list else [requested]:
            name = out.get("name") if type(out) is dict else None
            if name not in (LATENT_NAME, MOTIFS_NAME):
                raise _bad(
                    f"unknown output {name!r}: the outputs are {LATENT_NAME!r} and "
                    f"{MOTIFS_NAME!r}", "bad_output"
                )  # fmt: skip
            p = out.get("parameters") or {}
            wanted.append((name, bool(p.get("binary_data", binary))))
    return header, np.ascontiguousarray(windows), wanted, binary


def encode_response(
    service: Service,
    header: dict[str, Any],
    latent: np.ndarray,
    motifs: np.ndarray,
    wanted: list[tuple[str, bool]],
    binary: bool,
) -> Response:
    arrays = {LATENT_NAME: latent, MOTIFS_NAME: motifs}
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, as_binary in wanted:
        array = np.ascontiguousarray(arrays[name], dtype="<f4")
        out: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(array.shape)}
        if as_binary:
            data = array.tobytes()
            out["parameters"] = {"binary_data_size": len(data)}
            blobs.append(data)
        else:
            out["data"] = array.reshape(-1)
        outputs.append(out)
    info = service.info
    body: dict[str, Any] = {"model_name": info.model, "model_version": info.version}
    if "id" in header:
        body["id"] = header["id"]
    body["outputs"] = outputs
    text = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        response = Response(text, media_type=JSON)
    else:
        response = Response(b"".join([text, *blobs]), media_type="application/octet-stream")
        response.headers[HEADER_LENGTH] = str(len(text))
    response.raw_headers.extend(service.raw_headers)
    return response
