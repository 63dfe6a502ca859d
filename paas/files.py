"""Writing a file all at once: readers see the old file or the new one,
never half of either, and a symlink planted where it goes is replaced, never
followed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(
    path: Path, text: str, *, mode: int, owner: tuple[int, int] | None = None, encoding: str = "utf-8"
) -> None:
    """Write ``text`` to a hidden temporary file beside ``path`` (0600 from
    its first byte; ``mode`` and ``owner`` once written), sync it, then
    rename it over ``path``. The temporary name ends in ``.tmp``, so nginx's
    ``*.conf`` include never reads one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
