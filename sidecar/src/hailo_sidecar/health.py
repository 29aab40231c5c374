"""Backend health: consecutive failed calls and the age of the oldest running call.

`Service.infer` reports every backend call here (`begin` before, `end` after, with the
error if it failed). `problem()` names what is wrong, or None:

- a call has been running longer than `stall_after` seconds (a device that ignores its
  own timeout): "stalled";
- the last `max_failures` calls all failed (a device that times out on every call):
  "failing".

Both clear by themselves: the stalled call returns, or a call succeeds again.
`wedged_for()` says how long the backend has been unhealthy without a break, for the
watchdog (watchdog.py) that ends the process after a longer wedge.

Calls may begin and end on any thread (device backends run in a worker thread);
each update is a single dict or attribute operation, atomic under the GIL.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from time import monotonic


class Health:
    def __init__(
        self,
        max_failures: int,
        stall_after: float,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.stall_after = stall_after
        self.clock = clock
        self.failures = 0
        self.last_error = ""
        self._failing_since: float | None = None
        self._running: dict[int, float] = {}
        self._tokens = itertools.count()

    # ------------------------------------------------------------------ calls
    def begin(self) -> int:
        token = next(self._tokens)
        self._running[token] = self.clock()
        return token

    def end(self, token: int, error: str | None = None) -> None:
        self._running.pop(token, None)
        if error is None:
            self.failures = 0
            self._failing_since = None
            return
        self.last_error = error
        self.failures += 1
        if self.failures >= self.max_failures and self._failing_since is None:
            self._failing_since = self.clock()

    # ------------------------------------------------------------------ verdict
    @property
    def running(self) -> int:
        return len(self._running)

    def oldest_age(self) -> float:
        """Seconds the oldest running call has been running (0 when none is)."""
        starts = list(self._running.values())  # a copy: another thread may change it
        return self.clock() - min(starts) if starts else 0.0

    def problem(self) -> str | None:
        age = self.oldest_age()
        if age > self.stall_after:
            return (
                f"backend stalled: a call has been running for {age:.1f} s "
                f"(STALL_AFTER_MS={self.stall_after * 1000:.0f})"
            )
        if self.failures >= self.max_failures:
            return (
                f"backend failing: the last {self.failures} calls failed "
                f"(UNHEALTHY_AFTER_FAILURES={self.max_failures}); the last error: "
                f"{self.last_error}"
            )
        return None

    def stalled(self) -> bool:
        return self.oldest_age() > self.stall_after

    def wedged_for(self) -> float:
        """Seconds the backend has been unhealthy without a break (0 when healthy)."""
        now = self.clock()
        stalled = self.oldest_age() - self.stall_after
        failing = now - self._failing_since if self._failing_since is not None else 0.0
        return max(stalled, failing, 0.0)
