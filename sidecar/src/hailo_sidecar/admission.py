"""Admission: one backend call at a time, a bounded FIFO of waiters, per-request deadlines.

Shared by every transport (HTTP and IPC call `Service.run`, which owns one of these).
The backend serialises its calls anyway (one device, preallocated buffers), so the
only choice is where requests wait and for how long:

- `acquire(deadline)` takes the slot at once if it is free and nobody waits;
  otherwise it queues, unless `max_waiting` are already waiting (`OverloadedError`, which
  the transports answer with 503 + Retry-After / the IPC code `overloaded`);
- a waiter whose deadline passes leaves the queue (`DeadlineExceededError`); a waiter
  whose task is cancelled (its client went away) leaves it at once;
- `release()` hands the slot to the oldest waiter.

Event-loop only (no locks): every method runs on the loop that serves the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class RefusedError(Exception):
    """The request was not run; `code` names why (the HTTP body's `error`, the IPC code)."""

    code = "refused"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class OverloadedError(RefusedError):
    code = "overloaded"


class DeadlineExceededError(RefusedError):
    code = "deadline_exceeded"


class ClientGoneError(RefusedError):
    code = "client_gone"


class Admission:
    def __init__(self, max_waiting: int, retry_after: int) -> None:
        self.max_waiting = max_waiting
        self.retry_after = retry_after
        self.busy = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def idle(self) -> bool:
        return not self.busy and not self._waiters

    def take(self) -> bool:
        """Take the slot if it is free and nobody waits (no await: the fast path)."""
        if self.busy or self._waiters:
            return False
        self.busy = True
        return True

    async def acquire(self, deadline: float, timeout_ms: int) -> None:
        """The slot, by `deadline` (loop time), or OverloadedError / DeadlineExceededError."""
        if self.take():
            return
        if len(self._waiters) >= self.max_waiting:
            raise OverloadedError(
                f"the sidecar is busy: {len(self._waiters)} requests already waiting "
                f"(MAX_QUEUE={self.max_waiting}); retry later",
                self.retry_after,
            )
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)

        def expire() -> None:
            if not fut.done():
                fut.set_exception(
                    DeadlineExceededError(
                        f"the request waited its whole deadline (REQUEST_DEADLINE_MS={timeout_ms}) "
                        "for the backend; retry later",
                        self.retry_after,
                    )
                )

        timer = loop.call_at(deadline, expire)
        try:
            await fut
        except asyncio.CancelledError:
            # Handed the slot just as we were cancelled: pass it on.
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release()
            raise
        finally:
            timer.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes on: busy stays True
                return
        self.busy = False
