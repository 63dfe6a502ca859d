"""Exporting a commit for a build: the tree is readable by the image's
non-root user whatever the agent's umask (Docker's COPY keeps the bits)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from agent.source import SourceCache


def test_export_is_world_readable_under_a_tight_umask(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "pkg").mkdir(parents=True)
    (work / "pkg" / "mod.py").write_text("x = 1\n")
    (work / "run.sh").write_text("#!/bin/sh\n")
    (work / "run.sh").chmod(0o755)
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    cache = SourceCache(tmp_path / "repos")
    old = os.umask(0o077)
    try:
        info = cache.fetch(app="a", url=str(work), ref="main", commit="", on_line=lambda _l: None)
        cache.export(app="a", url=str(work), commit=info.sha, dest=tmp_path / "out")
    finally:
        os.umask(old)
    out = tmp_path / "out"
    mode = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")}
    assert mode == {"pkg": 0o755, "pkg/mod.py": 0o644, "run.sh": 0o755}
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
