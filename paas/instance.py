"""The installation's id: every container and image paas creates carries it
as the ``paas.instance`` label, so clean-up and reconcile touch only what this
installation made, even with another paas (or a test run) on the same engine."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

__all__ = ["instance_id"]


def instance_id(data_dir: Path) -> str:
    path = data_dir / "instance-id"
    try:
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = uuid.uuid4().hex[:16]
    tmp = path.with_name(f".instance-id.{os.getpid()}")
    tmp.write_text(value + "\n", encoding="utf-8")
    try:
        os.link(tmp, path)  # first writer wins; a racing second one reads it
    except FileExistsError:
        value = path.read_text(encoding="utf-8").strip()
    finally:
        tmp.unlink(missing_ok=True)
    return value
