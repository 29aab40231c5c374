"""Shared-memory input, server side: read windows a client placed in a POSIX segment.

A client creates a named segment (multiprocessing.shared_memory, i.e. shm_open, which
on Linux is a file in /dev/shm), writes float32 windows into it and sends only
(name, offset, n, seq) in an INFER_SHM frame. The server:

- opens the segment **read-only** (open O_RDONLY|O_NOFOLLOW: what shm_open does), keeps
  the descriptor per connection by name (least recently used closed beyond
  `max_segments`), and closes it when the connection ends;
- **copies** the windows out with `preadv` into a private array, never through a
  mapping: a client that shrinks its segment (ftruncate) under the server makes the
  read come up short, a clean `shm_bounds` error, where a read through a mapping
  would take SIGBUS and kill the whole process (HTTP included);
- **never unlinks** a segment and never registers one with multiprocessing's
  resource_tracker (which would unlink it when the server exits, as if it owned it):
  `SharedMemory(name)` is deliberately not used here;
- checks, on every request, with one `fstat` of the kept descriptor, that the segment
  is still linked (the client may have unlinked it, and the name may since be another
  segment: the name is opened again, and if it is gone the request gets an error while
  the connection stays usable) and its current size (what is out of bounds is
  refused before reading);
- refuses offsets that are not a multiple of 4 (float32 alignment) and ranges that
  run past the end of the segment;
- refuses stale references: per connection and per segment name, `seq` must be
  strictly greater than the last accepted one (the first is accepted as is). A
  refused request does not advance it; an accepted one does, even if inference then
  fails. Up to `SEQ_MEMORY` names are remembered (the oldest
  forgotten first).

The copy (3.6 KB per window, one system call) replaces a mapping the backend read
directly: POSIX shared memory cannot be sealed against shrinking, so the only safe
read of memory a client controls is a read(2), which cannot fault. Only members of
the socket's group (mode 0660) can send references at all.
"""

from __future__ import annotations

import os
import re
import stat
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from .. import contract
from .framing import FLOAT32_LE, ErrorCode

SHM_DIR: Final = Path("/dev/shm")
NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
WINDOW_BYTES: Final = contract.WINDOW * contract.CHANNELS * 4
WINDOW_VALUES: Final = contract.WINDOW * contract.CHANNELS
SEQ_MEMORY: Final = 4096


class ShmError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Segment:
    fd: int
    size: int

    def close(self) -> None:
        os.close(self.fd)


class SegmentReader:
    """One connection's view of the client's segments."""

    def __init__(self, max_segments: int = 16, shm_dir: Path = SHM_DIR) -> None:
        self.max_segments = max_segments
        self._dir = os.fspath(shm_dir) + "/"
        self._maps: OrderedDict[str, _Segment] = OrderedDict()
        self._seq: OrderedDict[str, int] = OrderedDict()

    @property
    def attached(self) -> list[str]:
        return list(self._maps)

    def windows(self, name: str, offset: int, n: int, seq: int) -> np.ndarray:
        """A private copy of n windows, (n, 100, 9) float32, read from the segment."""
        last = self._seq.get(name)
        if last is not None and seq <= last:
            raise ShmError(
                ErrorCode.STALE_SEQUENCE,
                f"stale reference to segment {name!r}: sequence {seq} is not after {last}, "
                "the last one accepted on this connection (sequence numbers must increase)",
            )
        if offset % 4:
            raise ShmError(
                ErrorCode.SHM_ALIGNMENT,
                f"offset {offset} into segment {name!r} is not a multiple of 4 (float32)",
            )
        nbytes = n * WINDOW_BYTES
        mapping = self._mapping(name)
        if offset + nbytes > mapping.size:
            raise ShmError(
                ErrorCode.SHM_BOUNDS,
                f"{n} window(s) ({nbytes} bytes) at offset {offset} run past the end of "
                f"segment {name!r} ({mapping.size} bytes)",
            )
        windows = np.empty((n, contract.WINDOW, contract.CHANNELS), FLOAT32_LE)
        try:
            got = os.preadv(mapping.fd, [windows], offset)
        except OSError as exc:
            raise ShmError(
                ErrorCode.SHM_UNAVAILABLE, f"segment {name!r} cannot be read: {exc.strerror}"
            ) from None
        if got != nbytes:
            raise ShmError(
                ErrorCode.SHM_BOUNDS,
                f"segment {name!r} shrank while it was read: {got} of {nbytes} bytes at "
                f"offset {offset}",
            )
        self._seq[name] = seq
        if last is None and len(self._seq) > SEQ_MEMORY:
            self._seq.popitem(last=False)
        return windows

    def _mapping(self, name: str) -> _Segment:
        cached = self._maps.get(name)
        if cached is not None:
            # One fstat per request: still linked (st_nlink 0: the owner unlinked it, and
            # the name may now be another segment) and its size now.
            st = os.fstat(cached.fd)
            if st.st_nlink and st.st_size:
                cached.size = st.st_size
                self._maps.move_to_end(name)
                return cached
            self._drop(name)
        elif not NAME_RE.fullmatch(name):
            raise ShmError(
                ErrorCode.SHM_UNAVAILABLE,
                f"segment name {name!r} is invalid: expected 1-200 of A-Z a-z 0-9 _ . - "
                "(no '/', not starting with '.' or '-')",
            )
        mapping = self._attach(name, self._dir + name)
        self._maps[name] = mapping
        while len(self._maps) > self.max_segments:
            _, old = self._maps.popitem(last=False)
            old.close()
        return mapping

    @staticmethod
    def _attach(name: str, path: str) -> _Segment:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ShmError(
                ErrorCode.SHM_UNAVAILABLE,
                f"segment {name!r} does not exist (never created, or already unlinked by its "
                "owner; with containers, share the IPC namespace: ipc: service:hailo-inference)",
            ) from None
        except PermissionError:
            raise ShmError(
                ErrorCode.SHM_UNAVAILABLE,
                f"segment {name!r} is not readable by the sidecar (uid {os.getuid()}, gid "
                f"{os.getgid()}): create it with mode 0640 and the sidecar's group",
            ) from None
        except OSError as exc:
            raise ShmError(
                ErrorCode.SHM_UNAVAILABLE, f"segment {name!r} cannot be opened: {exc.strerror}"
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                raise ShmError(
                    ErrorCode.SHM_UNAVAILABLE, f"segment {name!r} is empty or not a segment"
                )
        except BaseException:
            os.close(fd)
            raise
        return _Segment(fd, st.st_size)

    def _drop(self, name: str) -> None:
        mapping = self._maps.pop(name, None)
        if mapping is not None:
            mapping.close()

    def close(self) -> None:
        """Close every descriptor (never unlink: the segments are the client's)."""
        while self._maps:
            _, mapping = self._maps.popitem()
            mapping.close()
        self._seq.clear()
