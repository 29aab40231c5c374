"""uvicorn, configured with the limits a public-facing edge server needs, and a drain.

uvicorn's httptools protocol has no limit on the size of the request head and no
time limit on a connection that sends nothing, half the headers or half a body
(its keep-alive timer only runs between requests). `GuardedHttpToolsProtocol` adds:

- HTTP_MAX_HEADER_BYTES: a request head (request line + headers) over it gets 431
  and the connection is closed before the parser buffers more;
- HTTP_HEADER_TIMEOUT_MS: from the connection (or the first byte of a request) to the
  end of its head; past it: 408 and close (idle and slow-header clients);
- HTTP_BODY_TIMEOUT_MS: from the end of the head to the end of the body; past it
  the connection is closed and the handler sees a disconnect (499 in the metrics).

uvicorn's own limits: `limit_concurrency` (HTTP_MAX_CONNECTIONS: beyond it, 503),
`timeout_keep_alive` (HTTP_KEEPALIVE_S), `timeout_graceful_shutdown` (DRAIN_TIMEOUT_MS).

`SidecarServer` turns readiness to 503 as soon as SIGTERM arrives (before uvicorn
stops accepting and waits for the requests in flight); the app's lifespan then
sends the IPC replies already taken and closes the backend, all within the same
DRAIN_TIMEOUT_MS measured from the signal.
"""

from __future__ import annotations

import asyncio
import logging
from types import FrameType
from typing import Any, ClassVar

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import Config
from .metrics import Metrics
from .service import Service

log = logging.getLogger(__name__)

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head-size limit and head/body time limits."""

    max_header_bytes: ClassVar[int] = 32 * 1024
    header_timeout: ClassVar[float] = 10.0
    body_timeout: ClassVar[float] = 10.0
    metrics: ClassVar[Metrics | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_open = True
        self._head_bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ timers
    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, what: str) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if what == "head":
            if self.cycle is not None and not self.cycle.response_complete:
                # A pipelined head waits (uvicorn paused reading) while the previous
                # request is answered: not this client's delay. Look again later.
                self._arm(self.header_timeout, "head")
                return
            self._close(408, "request_timeout", "the request head did not arrive in time "
                        f"(HTTP_HEADER_TIMEOUT_MS={self.header_timeout * 1000:.0f})")  # fmt: skip
            return
        # The body is late: the handler is waiting for it; it sees a disconnect (499).
        log.info("closing a connection: request body not received in %.1f s", self.body_timeout)
        self._count("body_timeout")
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()

    def _count(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.count_http_cut(reason)

    def _close(self, status: int, code: str, detail: str) -> None:
        """Answer a request the app never saw, and close the connection."""
        self._count(code)
        body = orjson.dumps({"error": code, "detail": detail, "loc": None})
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
            status, _REASONS[status], len(body),
        )  # fmt: skip
        self.transport.write(head + b"connection: close\r\n\r\n" + body)
        self.transport.close()

    # ------------------------------------------------------------------ protocol events
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout, "head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_open:
            end = data.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end
            if self._head_bytes > self.max_header_bytes:
                self._close(431, "headers_too_large", "the request head is over "
                            f"{self.max_header_bytes} bytes (HTTP_MAX_HEADER_BYTES)")  # fmt: skip
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:
            self._arm(self.header_timeout, "head")

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._head_bytes = 0
        self._arm(self.body_timeout, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._head_open = True
        super().on_message_complete()


class SidecarServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM/SIGINT turns readiness 503 before anything else."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.service.begin_drain()
        super().handle_exit(sig, frame)


def protocol_for(cfg: Config, metrics: Metrics | None) -> type[GuardedHttpToolsProtocol]:
    """The protocol class with this configuration's limits (uvicorn takes a class)."""
    limits = {
        "max_header_bytes": cfg.http_max_header_bytes,
        "header_timeout": cfg.http_header_timeout_ms / 1000,
        "body_timeout": cfg.http_body_timeout_ms / 1000,
        "metrics": metrics,
    }
    return type("SidecarHttpProtocol", (GuardedHttpToolsProtocol,), limits)


def build_server(app: Any, cfg: Config, **overrides: Any) -> SidecarServer:
    """The uvicorn server for `app` (from create_app) with `cfg`'s limits."""
    options: dict[str, Any] = {
        "host": cfg.host,
        "port": cfg.port,
        "log_level": cfg.log_level,
        "log_config": None,  # the root logger, configured by __main__
        "access_log": cfg.log_level in ("debug", "trace"),
        "loop": "auto",  # uvloop when installed
        "http": protocol_for(cfg, app.state.metrics),
        "server_header": False,
        "lifespan": "on",
        "limit_concurrency": cfg.http_max_connections,
        "timeout_keep_alive": cfg.http_keepalive_s,
        "timeout_graceful_shutdown": cfg.drain_timeout_ms / 1000,
        **overrides,
    }
    return SidecarServer(uvicorn.Config(app, **options), app.state.service)
