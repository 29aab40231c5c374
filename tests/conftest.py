"""Fixtures shared by the tests in this directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_docker import FakeDocker


@pytest.fixture
def fake_docker(tmp_path: Path) -> Iterator[FakeDocker]:
    """A fake Docker engine listening on tmp_path/docker.sock (see fake_docker.py)."""
    fake = FakeDocker(tmp_path / "docker.sock").start()
    try:
        yield fake
    finally:
        fake.stop()
