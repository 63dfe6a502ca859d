"""The release log is written by root where web can read it: no symlink
below the data directory is followed, and the file is 0640."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.deploylog import DeployLog


def test_lines_are_stamped_and_the_file_is_readable_not_writable_by_the_group(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "shop" / "v1.log"
    old = os.umask(0o007)  # as the agent runs
    try:
        with DeployLog(path, under=tmp_path) as log:
            log.line("==> fetch\nsecond line")
    finally:
        os.umask(old)
    lines = path.read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["==> fetch", "second line"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750


@pytest.mark.parametrize("planted", ["file", "app-dir", "logs-dir"])
def test_a_planted_symlink_is_refused_and_its_target_untouched(tmp_path: Path, planted: str) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    victim = target / "v1.log"
    victim.write_text("root's file\n")
    data = tmp_path / "data"
    (data / "logs" / "shop").mkdir(parents=True)
    if planted == "file":
        (data / "logs" / "shop" / "v1.log").symlink_to(victim)
    elif planted == "app-dir":
        (data / "logs" / "shop").rmdir()
        (data / "logs" / "shop").symlink_to(target)
    else:
        (data / "logs" / "shop").rmdir()
        (data / "logs").rmdir()
        (data / "logs").symlink_to(tmp_path / "links")
        (tmp_path / "links").mkdir()
        (tmp_path / "links" / "shop").symlink_to(target)
    with pytest.raises(OSError):
        DeployLog(data / "logs" / "shop" / "v1.log", under=data)
    assert victim.read_text() == "root's file\n"


def test_a_hard_link_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    (tmp_path / "logs" / "shop").mkdir(parents=True)
    os.link(victim, tmp_path / "logs" / "shop" / "v1.log")
    with pytest.raises(OSError, match="not a regular file of its own"):
        DeployLog(tmp_path / "logs" / "shop" / "v1.log", under=tmp_path)
    assert victim.read_text() == "root's file\n"


def test_dot_dot_in_a_name_never_leaves_the_data_directory(tmp_path: Path) -> None:
    """An app named ``../../elsewhere`` (a row web wrote) reaches neither a log
    elsewhere to append to nor one to read back and mail out."""
    from agent.deploylog import read_private_tail

    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "logs").mkdir(parents=True)
    outside.mkdir()
    victim = outside / "v1.log"
    victim.write_text("private line\n")
    victim.chmod(0o600)
    sneaky = data / "logs" / ".." / ".." / "outside" / "v1.log"
    with pytest.raises(OSError, match="not below"):
        DeployLog(sneaky, under=data)
    with pytest.raises(OSError, match="not below"):
        read_private_tail(sneaky, under=data, lines=5)
    assert victim.read_text() == "private line\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_the_tail_is_read_through_no_link(tmp_path: Path) -> None:
    from agent.deploylog import read_private_tail

    logs = tmp_path / "logs" / "shop"
    logs.mkdir(parents=True)
    (tmp_path / "secret").write_text("root's secret\n")
    (logs / "v1.log").symlink_to(tmp_path / "secret")
    with pytest.raises(OSError):
        read_private_tail(logs / "v1.log", under=tmp_path, lines=5)
    (logs / "v2.log").write_text("".join(f"line {n}\n" for n in range(30)))
    assert read_private_tail(logs / "v2.log", under=tmp_path, lines=3) == ["line 27", "line 28", "line 29"]
