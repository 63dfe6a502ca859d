"""The deployment log: one file per release, written line by line as it
happens (so a reader can follow it live), each line stamped with UTC time."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

__all__ = ["DeployLog"]


class DeployLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._handle: TextIO = path.open("a", encoding="utf-8")

    def line(self, text: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        with self._lock:
            if self._handle.closed:
                return
            for part in text.splitlines() or [""]:
                self._handle.write(f"{stamp} {part}\n")
            self._handle.flush()

    def close(self) -> None:
        with self._lock:
            self._handle.close()

    def __enter__(self) -> DeployLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
