"""The listening Unix socket: a private directory, mode 0660, no stale or foreign files.

- The directory (`/run/hailo-sidecar` by default) is created with mode 0750 when it
  does not exist. When it exists (a volume or tmpfs mounted there, possibly owned by
  someone else) its mode is left alone: it is only checked. World-writable without
  the sticky bit is refused (anyone could replace the socket and impersonate the
  sidecar); world-writable with the sticky bit (a bare tmpfs, 1777) is served with a
  warning; anything wider than 0750 is logged.
- The socket is bound under a temporary name, chmod'ed to 0660 and renamed into
  place, so it never exists at its public path with the umask's mode.
- A socket file left by a process that died is replaced; a live one (something
  answers on it) or a file that is not a socket is refused.
- On close, the path is unlinked only if it is still the socket this process made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

DIR_MODE: Final = 0o750
SOCKET_MODE: Final = 0o660
BACKLOG: Final = 128
_MAX_PATH: Final = 107


class IpcSetupError(Exception):
    """The socket cannot be created; the message says what to change."""


def prepare_directory(directory: Path) -> str:
    """Create (0750) or check the socket's directory; return a note for the start-up log."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(directory, DIR_MODE)
        os.chmod(directory, DIR_MODE)  # the umask may have removed bits
        return f"created {directory} with mode 0750"
    except FileExistsError:
        pass
    except PermissionError:
        raise IpcSetupError(
            f"cannot create the IPC directory {directory}: permission denied for uid "
            f"{os.getuid()}; mount a volume or tmpfs there that uid {os.getuid()} can write, "
            "or set SOCKET_PATH elsewhere (SOCKET_PATH= turns IPC off)"
        ) from None
    except OSError as exc:
        raise IpcSetupError(
            f"cannot create the IPC directory {directory}: {exc.strerror}"
        ) from None
    st = os.stat(directory)
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISDIR(st.st_mode):
        raise IpcSetupError(f"{directory} (the IPC directory) is not a directory")
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise IpcSetupError(
            f"the IPC directory {directory} is world-writable (mode {mode:04o}): anyone could "
            f"replace the socket; make it 0750 (or 0770) and owned by the sidecar's uid/gid"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise IpcSetupError(
            f"the IPC directory {directory} (mode {mode:04o}, owner {st.st_uid}:{st.st_gid}) "
            f"is not writable by uid {os.getuid()} gid {os.getgid()}"
        )
    note = f"using existing {directory} (mode {mode:04o}, owner {st.st_uid}:{st.st_gid})"
    if mode & stat.S_IWOTH:
        log.warning(
            "the IPC directory %s is world-writable with the sticky bit (mode %04o): other "
            "users cannot remove the socket, but can squat names in it; prefer 0750",
            directory, mode,
        )  # fmt: skip
    elif mode & 0o007:
        # Not ours to change (a mounted volume), but say so.
        note += "; other users have access (wider than 0750), left as is"
    return note


def _clear_stale(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise IpcSetupError(f"{path} exists and is not a socket: refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a process that is gone
        log.info("removed a stale IPC socket at %s", path)
        return
    except OSError as exc:
        raise IpcSetupError(f"cannot check the existing socket {path}: {exc.strerror}") from None
    finally:
        probe.close()
    raise IpcSetupError(f"another process is already serving on {path}")


def listen(path: Path) -> tuple[socket.socket, tuple[int, int], str]:
    """A non-blocking listening socket at `path` (mode 0660); (sock, (dev, ino), note)."""
    note = prepare_directory(path.parent)
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        tmp = path.parent / f".{os.getpid()}.tmp.sock"
        if len(os.fsencode(tmp)) <= _MAX_PATH:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            sock.bind(os.fspath(tmp))
            os.chmod(tmp, SOCKET_MODE)
            os.rename(tmp, path)
        else:  # no room for a temporary name: bind in place (the directory is private)
            sock.bind(os.fspath(path))
            os.chmod(path, SOCKET_MODE)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        st = os.stat(path)
    except OSError as exc:
        sock.close()
        raise IpcSetupError(f"cannot create the IPC socket {path}: {exc.strerror}") from None
    return sock, (st.st_dev, st.st_ino), note


def unlink_if_ours(path: Path, ident: tuple[int, int]) -> None:
    """Remove the socket file, unless another process has replaced it since."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if (st.st_dev, st.st_ino) == ident:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
