"""The data layout that holds the boundary between web (unprivileged,
assumed taken over) and the agent (root). These tests run as root, as
scripts/test.sh does, so owners are real."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.deploylog import DeployLog
from paas import layout
from paas.settings import Settings, load_settings
from testkit.harness import traversable_dir

NOBODY_GID = pwd.getpwnam("nobody").pw_gid


@pytest.fixture(autouse=True)
def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the layout tests need root (owners); scripts/test.sh runs as root")


def _settings(tmp_path: Path, **extra: object) -> Settings:
    tmp_path.chmod(0o755)
    return load_settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        run_dir=tmp_path / "run",
        keys_dir=tmp_path / "keys",
        **extra,
    )


def _shape(path: Path) -> tuple[str, str]:
    info = os.lstat(path)
    return (
        f"{stat.S_IMODE(info.st_mode):04o}",
        f"{pwd.getpwuid(info.st_uid).pw_name}:{grp.getgrgid(info.st_gid).gr_name}",
    )


def test_prepare_makes_the_table_and_the_agent_finds_nothing_wrong(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    assert layout.problems(s) != []  # nothing made yet
    assert layout.prepare(s) == []
    group = grp.getgrgid(NOBODY_GID).gr_name
    assert {p.relative_to(tmp_path).as_posix(): _shape(p) for p in _all(s)} == {
        "data": ("0751", f"root:{group}"),
        "data/db": ("3770", f"root:{group}"),
        "data/logs": ("2750", f"root:{group}"),
        "data/repos": ("0700", "root:root"),
        "data/builds": ("0700", "root:root"),
        "data/letsencrypt": ("0700", "root:root"),
        "run": ("0750", f"root:{group}"),
    }
    assert layout.problems(s) == []
    assert layout.prepare(s) == []  # a second run changes nothing


def _all(s: Settings) -> list[Path]:
    return [p.path for p in layout.places(s)]


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory nobody can traverse to (pytest's own are 0700)."""
    root = traversable_dir("paas-layout-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_the_web_user_can_write_the_database_directory_and_nothing_else(open_tmp: Path) -> None:
    s = _settings(open_tmp)
    layout.prepare(s)

    def as_nobody(*args: str) -> int:
        return subprocess.run(["runuser", "-u", "nobody", "--", *args], capture_output=True).returncode

    layout.hold_database_files(s)
    assert as_nobody("sh", "-c", f"echo x >> {s.db_dir / 'paas.db'}") == 0  # web writes the database
    assert as_nobody("touch", str(s.db_dir / "web-made")) == 0  # and may make files beside it
    # but cannot remove or replace root's: no link where SQLite (as root too) opens the WAL
    assert as_nobody("rm", "-f", str(s.db_dir / "paas.db-wal")) != 0
    assert as_nobody("mv", str(s.db_dir / "paas.db-shm"), str(s.db_dir / "old")) != 0
    for where in (s.data_dir, s.logs_dir, s.repos_dir, s.builds_dir, s.letsencrypt_dir, s.run_dir):
        assert as_nobody("touch", str(where / "planted")) != 0, where
    assert as_nobody("mv", str(s.repos_dir), str(s.data_dir / "moved")) != 0
    assert as_nobody("ls", str(s.logs_dir)) == 0
    assert as_nobody("ls", str(s.repos_dir)) != 0
    # a release log the agent writes: web reads it, cannot change it
    log = s.release_log("shop", 1)
    with DeployLog(log, under=s.data_dir) as dlog:
        dlog.line("==> fetch")
    assert as_nobody("cat", str(log)) == 0
    assert as_nobody("sh", "-c", f"echo forged >> {log}") != 0


def test_an_old_shared_layout_is_repaired_caches_emptied_and_the_database_moved(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    data = s.data_dir
    for sub in ("repos/shop.git/hooks", "logs/shop", "builds/shop-v3"):
        (data / sub).mkdir(parents=True)
    os.chown(data, 0, NOBODY_GID)
    for path in (data, data / "repos", data / "logs", data / "logs" / "shop"):
        path.chmod(0o2770)
    (data / "repos" / "shop.git" / "hooks" / "reference-transaction").write_text("#!/bin/sh\ntouch /pwned\n")
    (data / "paas.db").write_bytes(b"SQLite format 3\x00")
    (data / "paas.db-wal").write_bytes(b"")
    (data / "logs" / "shop" / "v1.log").write_text("old log\n")
    (data / "logs" / "shop" / "v2.log").symlink_to("/etc/passwd")

    notes = layout.prepare(s)

    assert any("emptied" in n and "repos" in n for n in notes), notes
    assert any("moved the database" in n for n in notes), notes
    assert list(s.repos_dir.iterdir()) == [] and list(s.builds_dir.iterdir()) == []
    assert (s.db_dir / "paas.db").read_bytes() == b"SQLite format 3\x00" and (
        s.db_dir / "paas.db-wal"
    ).exists()
    assert not (data / "paas.db").exists()
    assert _shape(s.db_dir / "paas.db")[0] == "0660"
    assert not os.path.lexists(data / "logs" / "shop" / "v2.log")
    assert _shape(data / "logs" / "shop") == ("2750", f"root:{grp.getgrgid(NOBODY_GID).gr_name}")
    assert _shape(data / "logs" / "shop" / "v1.log")[0] == "0640"
    assert layout.problems(s) == []


def test_a_link_where_a_directory_belongs_is_refused_and_not_followed(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    target = tmp_path / "target"
    target.mkdir(mode=0o755)
    s.data_dir.mkdir()
    s.repos_dir.symlink_to(target)
    with pytest.raises(layout.LayoutError, match=f"{s.repos_dir} is not a directory"):
        layout.prepare(s)
    assert _shape(target) == ("0755", "root:root")
    assert any(f"{s.repos_dir} is not a directory" in p for p in layout.problems(s))


def test_the_agent_check_names_each_wrong_path(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    layout.prepare(s)
    s.repos_dir.chmod(0o770)
    os.chown(s.logs_dir, 0, 0)
    found = layout.problems(s)
    assert found == [
        f"{s.logs_dir} is 2750 root:root, must be 2750 root:{grp.getgrgid(NOBODY_GID).gr_name} "
        "(release logs, read by web)",
        f"{s.repos_dir} is 0770 root:root, must be 0700 root:root (git caches, the agent's alone)",
    ]


def test_web_never_runs_as_root(tmp_path: Path) -> None:
    assert layout.web_ids(_settings(tmp_path)) == (pwd.getpwnam("nobody").pw_uid, NOBODY_GID)
    with pytest.raises(layout.LayoutError, match="is root"):
        layout.web_ids(_settings(tmp_path, web_user="root"))
    with pytest.raises(layout.LayoutError, match="no user named"):
        layout.web_ids(_settings(tmp_path, web_user="no-such-user-here"))


def test_the_database_files_are_roots_and_a_planted_link_is_replaced(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    layout.prepare(s)
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    (s.db_dir / "paas.db").write_bytes(b"")
    (s.db_dir / "paas.db-wal").symlink_to(victim)  # what web could plant while the names were free
    (s.db_dir / "paas.db-shm").write_bytes(b"web's")
    os.chown(s.db_dir / "paas.db-shm", pwd.getpwnam("nobody").pw_uid, NOBODY_GID)
    assert any("paas.db-wal is not a regular file" in p for p in layout.problems(s))

    layout.hold_database_files(s)

    group = grp.getgrgid(NOBODY_GID).gr_name
    for name in layout.DATABASE_FILES:
        assert _shape(s.db_dir / name) == ("0660", f"root:{group}"), name
    assert not (s.db_dir / "paas.db-wal").is_symlink() and victim.read_text() == "root's file\n"
    assert (s.db_dir / "paas.db-shm").read_bytes() == b"web's"  # kept, now root's
    assert layout.problems(s) == []

    (s.db_dir / "paas.db").unlink()
    (s.db_dir / "paas.db").symlink_to(victim)
    with pytest.raises(layout.LayoutError, match="paas.db is not a regular file"):
        layout.hold_database_files(s)
    assert victim.read_text() == "root's file\n"
