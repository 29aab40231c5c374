"""Reading a request body within MAX_BODY_BYTES, refusing early what can be refused early."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request

from .contract import ContractError

JSON = "application/json"
# Bodies bigger than this (about three windows of JSON) are parsed in a worker thread,
# so a 64-window batch does not hold /healthz and small requests on the event loop.
PARSE_INLINE_BYTES = 64 * 1024


class BodyNotReadError(ContractError):
    """Refused before the whole body was read: the response closes the connection, so
    the server does not go on reading (and discarding) a body nobody wants."""


async def read_json_body(request: Request, limit: int) -> bytes:
    """The request body, if its Content-Type is JSON and it is at most `limit` bytes."""
    headers = request.headers
    ctype = headers.get("content-type")
    if ctype is None:
        raise BodyNotReadError(
            415, "unsupported_media_type", "Content-Type is missing; send application/json"
        )
    media = ctype.split(";", 1)[0].strip().lower()
    if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
        raise BodyNotReadError(
            415, "unsupported_media_type", f"Content-Type must be application/json, got {ctype!r}"
        )
    return await read_body(request, limit)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, if it is at most `limit` bytes (MAX_BODY_BYTES)."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise BodyNotReadError(
                400, "bad_content_length", f"Content-Length {length!r} is not a number"
            )
        if int(length) > limit:
            raise BodyNotReadError(
                413,
                "body_too_large",
                f"request body is {int(length)} bytes, the limit is {limit} (MAX_BODY_BYTES)",
            )
        return await request.body()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyNotReadError(
                413,
                "body_too_large",
                f"request body is over the limit of {limit} bytes (MAX_BODY_BYTES)",
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def parse(fn: Any, body: bytes, *args: Any) -> Any:
    """fn(body, *args): inline for small bodies, in a worker thread for big ones."""
    if len(body) <= PARSE_INLINE_BYTES:
        return fn(body, *args)
    return await anyio.to_thread.run_sync(fn, body, *args)
