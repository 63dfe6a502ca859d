"""The deployment log: one file per release, written line by line as it
happens (so a reader can follow it live), each line stamped with UTC time.

The agent is root and web reads these logs, so the file is reached without
following any symlink below the data directory (each directory is opened
relative to its parent with ``O_NOFOLLOW``), must be a regular file with one
link, and is created 0640: readable by web's group, writable by root only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

__all__ = ["DeployLog", "open_private_append", "read_private_tail"]

log = logging.getLogger("paas.agent.deploylog")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
LOG_MODE = 0o640
DIR_MODE = 0o750


def _open_below(path: Path, *, under: Path, flags: int, create: bool) -> int:
    """A descriptor of ``path`` (inside ``under``), reached without following
    a symlink below ``under`` nor leaving it by ``..``; a regular file with one
    link, or OSError."""
    parts = path.relative_to(under).parts  # lexical: "a/../../b" passes here, so look at each part
    if not parts or any(part in ("..", ".", "") for part in parts):
        raise OSError(f"{path} is not below {under}: refusing it")
    fd = os.open(under, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the operator's setting may be a link
    try:
        for name in parts[:-1]:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, DIR_MODE, dir_fd=fd)
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        file_fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, LOG_MODE, dir_fd=fd)
    finally:
        os.close(fd)
    info = os.fstat(file_fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(file_fd)
        raise OSError(f"{path} is not a regular file of its own: refusing it")
    return file_fd


def open_private_append(path: Path, *, under: Path) -> TextIO:
    """Open ``path`` (inside ``under``) for appending, creating it and its
    directories below ``under``; refuse a symlink anywhere below ``under``,
    and anything but a regular file at the end."""
    file_fd = _open_below(path, under=under, flags=os.O_WRONLY | os.O_APPEND | os.O_CREAT, create=True)
    os.fchmod(file_fd, LOG_MODE)
    return os.fdopen(file_fd, "a", encoding="utf-8")


def read_private_tail(path: Path, *, under: Path, lines: int, most: int = 1 << 20) -> list[str]:
    """The last ``lines`` lines of a release log (its last ``most`` bytes),
    reached as :func:`open_private_append` reaches it: root reads what it
    wrote, never a file a link or ``..`` points it to."""
    fd = _open_below(path, under=under, flags=os.O_RDONLY, create=False)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(max(0, size - most))
        text = handle.read(most).decode("utf-8", errors="replace")
    return text.splitlines()[-lines:]


class DeployLog:
    def __init__(self, path: Path, *, under: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._handle: TextIO = open_private_append(path, under=under)
        self._failed = False

    def line(self, text: str) -> None:
        """Append a line; a full disk loses lines (said once in paas's own
        log), never the deploy that is being logged."""
        stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        with self._lock:
            if self._handle.closed:
                return
            try:
                for part in text.splitlines() or [""]:
                    self._handle.write(f"{stamp} {part}\n")
                self._handle.flush()
            except OSError as exc:
                if not self._failed:
                    log.error("cannot write the release log %s: %s", self.path, exc)
                self._failed = True

    def close(self) -> None:
        with self._lock, contextlib.suppress(OSError):  # a full disk: what is lost is lost
            self._handle.close()

    def __enter__(self) -> DeployLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
