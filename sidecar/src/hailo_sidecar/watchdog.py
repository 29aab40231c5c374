"""End the process after a longer wedge, so the restart policy and the deploy gate see it.

A thread, not a task on the event loop: a backend that hangs on the loop (stub and
onnx run there) stops every task, but not this. Every `interval` seconds it asks
`Health.wedged_for()`; past `exit_after` seconds it logs the reason and exits with
status EXIT_WEDGED without any clean-up (a wedged device call would hang it).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Final

from .health import Health

log = logging.getLogger(__name__)

EXIT_WEDGED: Final = 4


def hard_exit(status: int) -> None:
    """Flush the logs and leave now: no atexit, no lifespan, no backend.close()."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(status)


class Watchdog:
    def __init__(
        self,
        health: Health,
        exit_after: float,
        on_wedged: Callable[[int], None] | None = None,
    ) -> None:
        self.health = health
        self.exit_after = exit_after
        self.interval = min(1.0, max(exit_after / 10, 0.01))
        self.on_wedged = on_wedged or hard_exit
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.exit_after <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="sidecar-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            wedged = self.health.wedged_for()
            if wedged > self.exit_after:
                log.critical(
                    "exiting (status %d): the backend has been unhealthy for %.1f s "
                    "(WEDGE_EXIT_AFTER_MS=%.0f): %s",
                    EXIT_WEDGED,
                    wedged,
                    self.exit_after * 1000,
                    self.health.problem(),
                )
                self.on_wedged(EXIT_WEDGED)
                return
