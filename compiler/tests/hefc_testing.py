"""Helpers shared by the compiler tests (a uniquely named module: the repo's test
directories are not packages, so names must not collide across them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Run:
    code: int
    summary: dict[str, Any]
    stdout: str
    stderr: str


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every regular file (name -> bytes), hidden ones included."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}
