"""The framework floor for bench/sidecar_latency.py: bare Starlette on uvicorn.

One route, POST /infer, that reads the body and parses it with orjson (the same
JSON the sidecar gets) and answers a small constant JSON. No validation, no
model, no metrics: whatever the sidecar costs above this is the sidecar's own.
Served with the same uvicorn settings as `python -m hailo_sidecar`.

    python bench/bare_parse_app.py PORT
"""

from __future__ import annotations

import sys

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

OK = b'{"ok":true}'


async def infer(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(OK, media_type="application/json")


async def readyz(request: Request) -> Response:
    return Response(OK, media_type="application/json")


app = Starlette(routes=[Route("/infer", infer, methods=["POST"]), Route("/readyz", readyz)])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        loop="auto",
        http="auto",
        server_header=False,
    )
