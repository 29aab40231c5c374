"""Helpers for tests that drive the lab's Docker engine (started by lab/bootstrap.sh)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Debian's client: the docker on PATH may be a newer standalone client.
DOCKER = "/usr/bin/docker"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check)


@contextmanager
def container(
    image: str, *run_args: str, command: tuple[str, ...] = ("sleep", "infinity")
) -> Iterator[str]:
    """A throwaway container, removed afterwards; yields its name."""
    name = f"pytest-{uuid.uuid4().hex[:10]}"
    docker("run", "-d", "--name", name, *run_args, image, *command)
    try:
        yield name
    finally:
        docker("rm", "-f", "-v", name, check=False)
