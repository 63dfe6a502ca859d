"""Who may touch what on disk (ARCHITECTURE.md, "Threat model").

The agent runs as root; web runs as an unprivileged user (``PAAS_WEB_USER``,
else ``nobody``) and is assumed taken over. So the one place web may write is
the database's own directory; it may read the release logs and talk to the
agent's socket; everything the agent executes or writes as root lives where
web cannot write, rename or plant a link:

==========================  =====  ==========  =====================================
path                        mode   owner       why
==========================  =====  ==========  =====================================
``PAAS_DATA_DIR``           0751   root:web    web traverses it; nothing in it is web's
``<data>/db``               3770   root:web    the SQLite database: web writes here (its
                                               files are root's; sticky: web cannot
                                               remove or replace them)
``<data>/logs``             2750   root:web    release logs: web reads them (files 0640)
``<data>/repos``            0700   root:root   git caches: the agent's alone
``<data>/builds``           0700   root:root   build directories: the agent's alone
``<data>/letsencrypt``      0700   root:root   certbot's state and private keys
``PAAS_RUN_DIR``            0750   root:web    the agent's socket (0660 root:web)
==========================  =====  ==========  =====================================

:func:`prepare` makes this layout (``paas migrate``, ``paas up``, install.sh
through ``paas migrate``); :func:`problems` checks it, and the agent refuses
to start while it finds any. Nothing here follows a symlink: a link where a
directory belongs is refused, naming the path.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from paas.errors import PaasError
from paas.settings import Settings

__all__ = [
    "LayoutError",
    "Place",
    "hold_database_files",
    "make_run_dir",
    "places",
    "prepare",
    "problems",
    "web_ids",
]


class LayoutError(PaasError):
    """A path of the data layout is not what it must be."""


@dataclass(frozen=True)
class Place:
    path: Path
    mode: int
    shared: bool  # group: the web user's (else root's)
    why: str
    cache: bool = False  # may be emptied when it was found reachable by web


def places(settings: Settings) -> tuple[Place, ...]:
    s = settings
    found = [
        Place(s.data_dir, 0o751, True, "web traverses it"),
        Place(s.logs_dir, 0o2750, True, "release logs, read by web"),  # setgid: web's group inherits
        Place(s.repos_dir, 0o700, False, "git caches, the agent's alone", cache=True),
        Place(s.builds_dir, 0o700, False, "build directories, the agent's alone", cache=True),
        Place(s.letsencrypt_dir, 0o700, False, "certbot's state and keys"),
        Place(s.run_dir, 0o750, True, "the agent's socket"),
    ]
    if s.default_database:
        # setgid: web's group inherits; sticky: web cannot remove or rename root's files in it
        found.insert(1, Place(s.db_dir, 0o3770, True, "the database, the one place web writes"))
    return tuple(found)


def web_ids(settings: Settings) -> tuple[int, int]:
    """(uid, gid) of the user web runs as when root starts it."""
    name = settings.web_account
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise LayoutError(f"PAAS_WEB_USER: no user named {name!r} on this machine") from None
    if entry.pw_uid == 0:
        raise LayoutError(f"PAAS_WEB_USER: {name!r} is root; web must run as an unprivileged user")
    return entry.pw_uid, entry.pw_gid


def prepare(settings: Settings) -> list[str]:
    """Make the layout; returns what it changed that an operator should
    know. As another user than root it makes the directories and modes only."""
    root = os.geteuid() == 0
    gid = web_ids(settings)[1] if root else None
    notes: list[str] = []
    for place in places(settings):
        _make(place, gid, notes)
    _move_legacy_database(settings, gid, notes)
    if root:
        _tidy_logs(settings.logs_dir, gid)
    return notes


DATABASE_FILES = ("paas.db", "paas.db-wal", "paas.db-shm")


def hold_database_files(settings: Settings) -> None:
    """The SQLite file and its WAL and shared-memory files as root's own
    regular files, 0660 root:web. SQLite (run by root too) opens them by name
    and follows links, and deletes the WAL and -shm files when its last
    connection closes: made root's here, in the sticky directory, web can
    neither remove them nor plant a link in their place. Run before the agent
    opens the database and after it closed it. A WAL or -shm that is not a
    regular file is replaced (only web could have put it there); a database
    that is not one is refused."""
    db = settings.db_dir
    if not settings.default_database or os.geteuid() != 0 or os.path.islink(db) or not os.path.isdir(db):
        return  # another database; not root; or no layout yet (the agent's check says so)
    gid = web_ids(settings)[1]
    fd = os.open(settings.db_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in DATABASE_FILES:
            try:
                info = os.lstat(name, dir_fd=fd)
            except FileNotFoundError:
                info = None
            if info is not None and not (stat.S_ISREG(info.st_mode) and info.st_nlink == 1):
                if name == DATABASE_FILES[0]:
                    raise LayoutError(
                        f"{settings.db_dir / name} is not a regular file of its own: move it away "
                        "and restore the database from a backup"
                    )
                os.unlink(name, dir_fd=fd)
                info = None
            if info is None:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                os.close(os.open(name, flags, 0o660, dir_fd=fd))
            os.chown(name, 0, gid, dir_fd=fd, follow_symlinks=False)
            _chmod_regular(fd, name)
    finally:
        os.close(fd)


def _chmod_regular(dir_fd: int, name: str) -> None:
    file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fchmod(file_fd, 0o660)
    finally:
        os.close(file_fd)


def make_run_dir(settings: Settings) -> None:
    """The agent's socket directory, made again at every agent start: /run
    is emptied by a reboot."""
    gid = web_ids(settings)[1] if os.geteuid() == 0 else None
    _make(next(p for p in places(settings) if p.path == settings.run_dir), gid, [])


def problems(settings: Settings) -> list[str]:
    """What differs from the layout (checked as root only: another user
    cannot own anything else)."""
    if os.geteuid() != 0:
        return []
    gid = web_ids(settings)[1]
    found = []
    if settings.default_database:
        for name in DATABASE_FILES:
            path = settings.db_dir / name
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_nlink != 1:
                found.append(
                    f"{path} is not a regular file of root's own (web must not be able to replace it)"
                )
    for place in places(settings):
        want_gid = gid if place.shared else 0
        try:
            info = os.lstat(place.path)
        except FileNotFoundError:
            found.append(f"{place.path} is missing ({place.why})")
            continue
        if not stat.S_ISDIR(info.st_mode):
            found.append(f"{place.path} is not a directory ({place.why})")
        elif (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) != (place.mode, 0, want_gid):
            found.append(
                f"{place.path} is {stat.S_IMODE(info.st_mode):04o} {_owner(info)}, must be "
                f"{place.mode:04o} root:{_group_name(want_gid)} ({place.why})"
            )
    return found


def _make(place: Place, gid: int | None, notes: list[str]) -> None:
    path = place.path
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(path, 0o700)
        except PermissionError:
            raise LayoutError(
                f"cannot create {path} ({place.why}): permission denied; run as root, or point "
                "PAAS_DATA_DIR and PAAS_RUN_DIR somewhere you can write"
            ) from None
        info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise LayoutError(
            f"{path} is not a directory ({place.why}): move it away, then run `paas migrate` as root"
        )
    if place.cache and gid is not None and (info.st_uid != 0 or stat.S_IMODE(info.st_mode) & 0o077):
        shutil.rmtree(path)  # rmtree never follows links inside
        os.mkdir(path, 0o700)
        notes.append(f"emptied {path}: it was reachable by the web user (a cache, filled again as needed)")
    if gid is not None:
        os.chown(path, 0, gid if place.shared else 0, follow_symlinks=False)
    os.chmod(path, place.mode)


def _move_legacy_database(settings: Settings, gid: int | None, notes: list[str]) -> None:
    """Releases before the layout kept the SQLite file in the data directory itself."""
    if not settings.default_database:
        return
    old, new = settings.data_dir / "paas.db", settings.db_dir / "paas.db"
    if os.path.lexists(old) and not os.path.lexists(new):
        if not stat.S_ISREG(os.lstat(old).st_mode):
            raise LayoutError(f"{old} is not a regular file: move it away, then run `paas migrate` as root")
        for suffix in ("", "-wal", "-shm"):
            if os.path.lexists(f"{old}{suffix}"):
                os.rename(f"{old}{suffix}", f"{new}{suffix}")
        notes.append(f"moved the database from {old} to {new}")
    for suffix in ("", "-wal", "-shm"):
        path = f"{new}{suffix}"
        if os.path.lexists(path) and stat.S_ISREG(os.lstat(path).st_mode):
            if gid is not None:
                os.chown(path, 0, gid, follow_symlinks=False)
            os.chmod(path, 0o660)


def _tidy_logs(logs: Path, gid: int | None) -> None:
    """Logs written before the layout were group-writable: 2750 and 0640
    now, and a link (which only web could have planted) is removed."""
    for dirpath, dirnames, filenames in os.walk(logs):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode) or not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
                os.unlink(path)
                continue
            os.chown(path, 0, gid if gid is not None else 0, follow_symlinks=False)
            os.chmod(path, 0o2750 if stat.S_ISDIR(info.st_mode) else 0o640)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _owner(info: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    return f"{user}:{_group_name(info.st_gid)}"
