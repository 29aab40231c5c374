"""Progress lines on stderr (stdout carries only the final JSON summary)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

PREFIX = "[hef-compile]"


def say(message: str) -> None:
    print(f"{PREFIX} {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    """Announce a long step and how long it took."""
    say(f"{message} ...")
    start = time.monotonic()
    yield
    say(f"{message}: done in {time.monotonic() - start:.1f} s")


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to fd 1 (Python or native code) to fd 2 meanwhile.

    Libraries (onnxruntime's quantiser, a DFC subprocess) may print; the caller's
    stdout must stay one JSON line that Ansible can parse.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
