"""Backup and restore: one archive that brings an installation back, on this
server or a new one.

``paas backup`` and the agent's schedule (``PAAS_BACKUP_SCHEDULE``) write a
gzipped tar, 0600, that holds::

    paas-backup/manifest.json      paas's version, the database's migration, the
                                   instance, each app's live release and volume
    paas-backup/database/paas.db   SQLite's online backup: consistent while paas runs
                  or database/paas.dump   pg_dump --format=custom (PostgreSQL)
    paas-backup/keys/              the encryption keys: they open every secret
    paas-backup/paas.env           the settings file
    paas-backup/instance-id        the label on everything this installation made
    paas-backup/letsencrypt/       certbot's account, certificates and keys
    paas-backup/logs/              release logs
    paas-backup/volumes/NAME/      each app's data volume, its files as they are (read
                                   without following a link: the app may change it meanwhile)
    paas-backup/databases/NAME/    each database's logical dump, taken while it runs and
                                   read back before the archive counts: PostgreSQL's
                                   globals.sql and db-N.dump (pg_dump --format=custom),
                                   Redis's dump.rdb (BGSAVE); a failed dump fails the backup
    paas-backup/images/APP.tar     with --with-images: each live image (docker save)

``paas restore FILE``, run as root on a freshly installed server with paas
stopped, checks everything first and changes nothing when something is
wrong; then puts each part back where this server's settings say (of the
archive's paas.env, only the installation's own settings, RESTORED_SETTINGS:
paths, users, binaries, ports and whom paas trusts stay this server's), and queues
every app's live release: started again from its image when the archive
had it, else rebuilt from its recorded commit. When paas starts, the apps
come back with their env (the keys came along), domains, certificates,
volumes, webhook secrets and API tokens.

The archive holds the private key that opens every secret: keep it like
one (an rclone ``crypt`` remote for off-site copies).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import sqlite3
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import create_engine, make_url
from sqlmodel import Session, col, select

from agent import commands
from agent.databases import (
    DatabaseFailed,
    dump_database,
    open_password,
    restore_database,
    restore_dumps,
    table_counts,
)
from agent.docker_engine import DockerEngine, EngineError
from agent.plan import data_volume, owned
from agent.probe import connects, connects_unix
from paas import crypto, layout, queue
from paas.bindings import ENGINES, names_for
from paas.db import current_revision, head_revision, make_engine, session_scope
from paas.errors import PaasError, SettingsError
from paas.instance import instance_id
from paas.models import App, Database, DatabaseState, Deployment, DeploymentStatus, Job, JobState, utcnow
from paas.schemas import version_key
from paas.services import live_release
from paas.settings import DATABASE_VERSION, Settings, load_settings, settings_file_values
from paas.trust import UntrustedRow, check_app, check_app_name, check_database, check_release
from paas.version import version

__all__ = [
    "BackupError",
    "BackupMade",
    "backup_database",
    "restore_database_archive",
    "Restored",
    "make_backup",
    "merge_settings",
    "prune_backups",
    "queue_restored_apps",
    "restore_backup",
    "scheduled_backup",
]

log = logging.getLogger("paas.agent.backup")

FORMAT = 1
ROOT = "paas-backup"
NAME_PREFIX = "paas-backup-"
SUFFIX = ".tar.gz"
RESTORE_TRIGGER = "restore"

# what a restore takes from the archive's paas.env: settings of the installation that are
# plain data (names, numbers, sizes, a crontab line). Everything else stays this server's:
# where things are and who runs them, the binaries root runs, where it listens, its
# database, and whatever decides whom paas trusts or sends credentials to (the GitHub API,
# the ACME directory and its CA, the rclone remote backups go to, HTTPS on or off, local
# repositories, the build network and base image). An allowlist: a setting added later
# stays the server's until it is named here.
RESTORED_SETTINGS = frozenset(
    {
        "PAAS_DOMAIN",
        "PAAS_HOST",
        "PAAS_PUBLIC_URL",
        "PAAS_SECRET_KEY",
        "PAAS_SESSION_HOURS",
        "PAAS_SESSION_IDLE_MINUTES",
        "PAAS_ACME_EMAIL",
        "PAAS_CERT_CHECK_SECONDS",
        "PAAS_CERT_RENEW_DAYS",
        "PAAS_AGENT_WORKERS",
        "PAAS_JOB_LEASE_SECONDS",
        "PAAS_POLL_SECONDS",
        "PAAS_KEEP_RELEASES",
        "PAAS_KEEP_RELEASE_LOGS",
        "PAAS_CLEANUP_INTERVAL_SECONDS",
        "PAAS_NGINX_CHECK_SECONDS",
        "PAAS_DISK_CHECK_SECONDS",
        "PAAS_DRAIN_SECONDS",
        "PAAS_STOP_TIMEOUT",
        "PAAS_RELEASE_TIMEOUT",
        "PAAS_BUILD_TIMEOUT",
        "PAAS_WEBHOOK_MAX_BYTES",
        "PAAS_WEB_WORKERS",
        "PAAS_MAX_CONTAINERS_PER_PROCESS",
        "PAAS_MAX_CONTAINERS_PER_APP",
        "PAAS_APP_MEMORY",
        "PAAS_APP_CPUS",
        "PAAS_APP_PIDS",
        "PAAS_BUILD_MEMORY",
        "PAAS_BACKUP_SCHEDULE",
        "PAAS_BACKUP_KEEP",
        "PAAS_BACKUP_WITH_IMAGES",
        "PAAS_GITHUB_TIMEOUT",
        "PAAS_GITHUB_RETRY_MAX_SECONDS",
        "PAAS_NOTIFY_TIMEOUT",
        "PAAS_NOTIFY_ATTEMPTS",
        "PAAS_NOTIFY_RETRY_SECONDS",
    }
)


class BackupError(PaasError):
    """A backup or a restore cannot be made; nothing was changed."""


@dataclass
class BackupMade:
    path: Path
    size: int
    apps: list[str]
    volumes: list[str]
    images: list[str]
    databases: list[str] = field(default_factory=list)


@dataclass
class Restored:
    made_at: str
    made_by: str
    apps: list[str]
    volumes: list[str]
    images: list[str]
    databases: list[str] = field(default_factory=list)
    settings_changed: list[str] = field(default_factory=list)
    settings_refused: list[str] = field(default_factory=list)  # the archive's, not taken
    notes: list[str] = field(default_factory=list)


# backup ------------------------------------------------------------------------------------------


def make_backup(
    settings: Settings, docker: DockerEngine, *, output: Path | None = None, with_images: bool = False
) -> BackupMade:
    """Write the archive to ``output`` (default: a new timestamped file in
    ``PAAS_BACKUP_DIR``); it appears there whole or not at all, never over
    an existing file or through a link, and only in a directory no other
    user can change while root writes in it."""
    output = _archive_path(settings, output, NAME_PREFIX)
    with tempfile.TemporaryDirectory(prefix=".paas-backup-", dir=output.parent) as tmp:
        staged = Path(tmp)
        database = _snapshot_database(settings, staged / "database")
        manifest, volumes, images, databases = _describe(settings, docker, staged / "database", with_images)
        manifest["databases"] = _dump_databases(settings, docker, databases, staged / "databases")
        (staged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for app, image in images.items():
            with open(staged / f"{app}.tar", "wb") as fh:
                docker.save_image(image, fh)
        # written in the private staging directory (0700), not beside the archive where
        # someone could have put a file of theirs under its name; then linked into place
        partial = staged / "archive.partial"
        try:
            # gzip's fastest level: a backup shares the CPU with the apps, and images (most of
            # a large archive) shrink little more at higher levels
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar:
                tar.add(staged / "manifest.json", arcname=f"{ROOT}/manifest.json")
                tar.add(database, arcname=f"{ROOT}/database/{database.name}")
                for path, name in (
                    (settings.keys_dir, "keys"),
                    (settings.env_file, "paas.env"),
                    (settings.data_dir / "instance-id", "instance-id"),
                    (settings.letsencrypt_dir, "letsencrypt"),
                    (settings.logs_dir, "logs"),
                ):
                    if os.path.lexists(path):
                        tar.add(path, arcname=f"{ROOT}/{name}")
                if databases:
                    tar.add(staged / "databases", arcname=f"{ROOT}/databases")
                for name, path in volumes.items():
                    _add_volume(tar, path, f"{ROOT}/volumes/{name}")
                for app in images:
                    tar.add(staged / f"{app}.tar", arcname=f"{ROOT}/images/{app}.tar")
                    (staged / f"{app}.tar").unlink()
            _put_in_place(partial, output)
        except OSError as exc:
            raise BackupError(f"cannot write {output}: {exc}") from exc
    _record_backup(settings, [d.name for d in databases], error="")
    return BackupMade(
        path=output,
        size=output.stat().st_size,
        apps=[a["name"] for a in manifest["apps"]],
        volumes=sorted(volumes),
        images=sorted(images),
        databases=[d.name for d in databases],
    )


def backup_failed_notice(settings: Settings, exc: BaseException, *, scheduled: bool) -> tuple[str, str]:
    """(title, body) of ``backup.failed``: never a "done" for a backup that failed."""
    which = "the scheduled backup" if scheduled else "a backup (paas backup)"
    return (
        f"paas on {settings.control_host}: {which} failed",
        f"{exc}\nNo archive was written. `paas backup` by hand says more; `paas doctor` checks.",
    )


def tell_backup_failed(settings: Settings, exc: BaseException) -> bool:
    """For ``paas backup`` by hand: ``backup.failed`` into the agent's outbox,
    sent by the running agent; whether it could be recorded."""
    from agent.tell.teller import Teller

    engine = make_engine(settings)
    try:
        title, body = backup_failed_notice(settings, exc, scheduled=False)
        teller = Teller(settings, engine, crypto.Keyring(settings.keys_dir, private=True))
        teller.event("backup.failed", title=title, body=body, kind="failure")
        return True
    except Exception:  # noqa: BLE001  (the backup's own failure is what the caller reports)
        log.exception("could not record backup.failed for the notification targets")
        return False
    finally:
        engine.dispose()


def _dump_databases(
    settings: Settings, docker: DockerEngine, databases: list[Database], into: Path
) -> list[dict[str, Any]]:
    """Each database's logical dump, checked (agent/databases.py): one that
    fails fails the backup, recorded on its row for `paas databases info`
    and `paas doctor`, and nothing is written."""
    entries = []
    for db in databases:
        try:
            entries.append(dump_database(docker, db, into / db.name))
        except (DatabaseFailed, EngineError) as exc:
            _record_backup(settings, [db.name], error=str(exc))
            raise BackupError(f"the dump of database {db.name} failed, so the backup did: {exc}") from exc
    return entries


def _record_backup(settings: Settings, names: list[str], *, error: str) -> None:
    if not names:
        return
    engine = make_engine(settings)
    try:
        with session_scope(engine) as session:
            for row in session.exec(select(Database).where(col(Database.name).in_(names))).all():
                row.last_backup_error = error[:2000]
                if not error:
                    row.last_backup_at = utcnow()
                session.add(row)
    except Exception:  # noqa: BLE001  (the archive is what counts; the row is a note)
        log.exception("could not record the backup on the database rows")
    finally:
        engine.dispose()


def _archive_path(settings: Settings, output: Path | None, prefix: str) -> Path:
    """Where an archive goes: ``output``, or a new timestamped file named
    ``prefix…`` in PAAS_BACKUP_DIR; in a directory no other user can change
    while root writes in it, its links resolved once, never over a file."""
    if output is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        output = settings.backups_dir / f"{prefix}{stamp}{SUFFIX}"
        _private_dir(settings.backups_dir)
    output = output.absolute()
    if not output.parent.is_dir():
        raise BackupError(f"cannot write {output}: no directory {output.parent}")
    output = _safe_directory(output.parent) / output.name  # links above it resolved, once
    if os.path.lexists(output):
        raise BackupError(f"{output} exists already: name another file (--output) or move it away")
    return output


def _safe_directory(directory: Path) -> Path:
    """``directory`` with its links resolved, refused when another user could
    rename or replace what root writes in it: when it or a directory above
    it belongs to someone else, or others may write to it without the sticky
    bit (/tmp has it: there, what root makes stays root's)."""
    resolved = directory.resolve(strict=True)
    me = os.geteuid()
    for path in (resolved, *resolved.parents):
        info = os.stat(path)
        if info.st_uid not in (0, me):
            raise BackupError(
                f"cannot write into {directory}: {path} belongs to another user (uid {info.st_uid}), "
                "who could replace what is written there: choose a directory of root's"
            )
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            raise BackupError(
                f"cannot write into {directory}: others may write to {path} "
                f"(mode {stat.S_IMODE(info.st_mode):04o}, no sticky bit): choose a directory of root's"
            )
    return resolved


def _put_in_place(partial: Path, output: Path) -> None:
    """``partial`` appears at ``output`` whole, never over what is there: a file
    or a link put there since the first look is neither replaced nor followed."""
    there = BackupError(f"{output} exists already: name another file (--output) or move it away")
    try:
        os.link(partial, output, follow_symlinks=False)
    except FileExistsError:
        raise there from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP):
            raise
        # a filesystem without hard links (FAT): renamed, after one more look
        if os.path.lexists(output):
            raise there from None
        os.replace(partial, output)


# an app's volume is its own to change while root reads it: each directory is opened
# beneath the one above it, never through a link
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO swapped in: no wait
_VOLUME_DEPTH = 128  # deeper directories are left out: an app cannot break every app's backup


def _add_volume(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    """An app's volume into the archive, read without following a link: each
    directory is opened with O_NOFOLLOW relative to the one above it, and each
    file read from the descriptor its metadata came from. An app that swaps a
    directory for a link (to /etc/paas/keys, say) between two reads gets
    nothing of what the link points to archived; a link is archived as a link.
    Owners are kept as numbers (an app's users are not this host's)."""
    fd = os.open(path, _DIRECTORY)
    try:
        _add_directory(tar, fd, arcname)
    finally:
        os.close(fd)


def _add_directory(tar: tarfile.TarFile, fd: int, arcname: str, depth: int = 0) -> None:
    tar.addfile(_member(arcname, os.fstat(fd), tarfile.DIRTYPE))
    if depth >= _VOLUME_DEPTH:
        log.warning("backup: what is in %s left out: deeper than %d directories", arcname, _VOLUME_DEPTH)
        return
    for name in sorted(os.listdir(fd)):
        member = f"{arcname}/{name}"
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                tar.addfile(_member(member, info, tarfile.SYMTYPE, link=os.readlink(name, dir_fd=fd)))
            elif stat.S_ISDIR(info.st_mode):
                child = os.open(name, _DIRECTORY, dir_fd=fd)
                try:
                    _add_directory(tar, child, member, depth + 1)
                finally:
                    os.close(child)
            elif stat.S_ISREG(info.st_mode):
                with os.fdopen(os.open(name, _FILE, dir_fd=fd), "rb") as fh:
                    opened = os.fstat(fh.fileno())
                    if not stat.S_ISREG(opened.st_mode):
                        raise OSError(errno.ESTALE, "it changed while it was read")
                    reader = _Steady(fh, opened.st_size)
                    tar.addfile(_member(member, opened, tarfile.REGTYPE), reader)
                    if reader.short:
                        log.warning("backup: %s shrank while it was read: its end is zeros", member)
            elif stat.S_ISFIFO(info.st_mode):
                tar.addfile(_member(member, info, tarfile.FIFOTYPE))
            else:
                log.warning("backup: %s left out: a device or socket", member)
        except FileNotFoundError:
            continue  # removed by the app meanwhile
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ESTALE):
                raise
            log.warning("backup: %s left out: it changed while it was read (now a link?)", member)


class _Steady:
    """A file read as the size its header gave: an app that truncates a file
    while it is read gets zeros at its end, not every app's backup failed (tar
    copies exactly the size it wrote down)."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh, self._left, self.short = fh, size, False

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._fh.read(n)
        if len(data) < n:
            self.short = True
            data += bytes(n - len(data))
        self._left -= n
        return data


def _member(name: str, info: os.stat_result, kind: bytes, *, link: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.mode = stat.S_IMODE(info.st_mode)
    member.uid, member.gid = info.st_uid, info.st_gid
    member.mtime = int(info.st_mtime)
    member.size = info.st_size if kind == tarfile.REGTYPE else 0
    member.linkname = link
    return member


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise BackupError(f"{path} is not a directory (PAAS_BACKUP_DIR)")
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)


def _snapshot_database(settings: Settings, into: Path) -> Path:
    """A consistent copy of the database, taken while paas runs."""
    into.mkdir(mode=0o700)
    if settings.default_database:
        source = settings.db_dir / "paas.db"
        if not source.is_file():
            raise BackupError(f"no database at {source}: is PAAS_DATA_DIR right?")
        target = into / "paas.db"
        src = sqlite3.connect(source, timeout=30)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)  # SQLite's online backup: one read transaction, all pages
            finally:
                dst.close()
        except sqlite3.Error as exc:
            raise BackupError(f"cannot copy the database {source}: {exc}") from exc
        finally:
            src.close()
            layout.hold_database_files(settings)  # ours may have been the last connection
        return target
    target = into / "paas.dump"
    url, env = _pg_target(settings)
    _run(["pg_dump", "--format=custom", "--no-owner", f"--file={target}", f"--dbname={url}"], env, "pg_dump")
    return target


def _pg_target(settings: Settings) -> tuple[str, dict[str, str]]:
    """The database URL as libpq reads it, its password in the environment (not in argv)."""
    url = make_url(settings.database_url)
    if not url.drivername.startswith("postgresql"):
        raise BackupError(f"backups support SQLite and PostgreSQL, not {url.drivername}")
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(argv: list[str], env: dict[str, str] | None, what: str) -> str:
    try:
        done = commands.capture(argv, environ=env, timeout=3600)
    except FileNotFoundError:
        raise BackupError(f"{what}: {argv[0]} is not installed (apt-get install it)") from None
    except commands.TimedOut:
        raise BackupError(f"{what}: {argv[0]} did not finish within an hour") from None
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split())[-500:]
        raise BackupError(f"{what} failed (exit {done.returncode}): {said}")
    return done.stdout


def _describe(
    settings: Settings, docker: DockerEngine, snapshot: Path, with_images: bool
) -> tuple[dict[str, Any], dict[str, Path], dict[str, str], list[Database]]:
    """The manifest, read from the snapshot itself; the volumes and images to
    add; the databases to dump (those running: ready)."""
    engine = (
        create_engine(f"sqlite:///{snapshot / 'paas.db'}")
        if settings.default_database
        else make_engine(settings)
    )
    apps: list[dict[str, Any]] = []
    volumes: dict[str, Path] = {}
    images: dict[str, str] = {}
    databases: list[Database] = []
    try:
        revision = current_revision(engine)
        with Session(engine) as session:
            for db in session.exec(select(Database).order_by(col(Database.name))).all():
                if db.state not in (DatabaseState.ready, DatabaseState.upgrading):
                    continue
                try:
                    check_database(db, settings=settings)  # names become paths, the image runs
                except UntrustedRow as exc:
                    raise BackupError(f"database {db.name!r} cannot be backed up: {exc}") from exc
                session.expunge(db)
                databases.append(db)
            for app in session.exec(select(App).order_by(col(App.name))).all():
                try:
                    check_app(app)  # names become paths in the archive
                    current = live_release(session, app)
                    if current is not None:
                        check_release(current, app=app.name)
                except UntrustedRow as exc:
                    raise BackupError(f"app {app.name!r} cannot be backed up: {exc}") from exc
                entry: dict[str, Any] = {"name": app.name, "live": None, "volume": None}
                if current is not None:
                    entry["live"] = {
                        "version": current.version,
                        "commit": current.commit,
                        "ref": current.ref,
                        "image": current.image,
                    }
                    if with_images and current.image and docker.image_id(current.image):
                        images[app.name] = current.image
                if app.data_path:
                    volume = data_volume(app.name)
                    path = docker.volume_path(volume)
                    if path is not None:
                        volumes[volume] = path
                        info = os.stat(path)
                        entry["volume"] = {
                            "name": volume,
                            "uid": info.st_uid,
                            "gid": info.st_gid,
                            "mode": stat.S_IMODE(info.st_mode),
                        }
                apps.append(entry)
    finally:
        engine.dispose()
    manifest = {
        "format": FORMAT,
        "paas_version": version(),
        "made_at": utcnow().isoformat(timespec="seconds"),
        "database": "sqlite" if settings.default_database else "postgresql",
        "revision": revision,
        "instance": instance_id(settings.data_dir),
        "paths": {"data_dir": str(settings.data_dir), "letsencrypt": str(settings.letsencrypt_dir)},
        "apps": apps,
        "images": sorted(images),
    }
    return manifest, volumes, images, databases


# the agent's schedule ------------------------------------------------------------------------------


def scheduled_backup(settings: Settings, docker: DockerEngine) -> BackupMade:
    """A backup into PAAS_BACKUP_DIR, the oldest beyond PAAS_BACKUP_KEEP
    removed; then, with PAAS_BACKUP_RCLONE_REMOTE, copied off the server
    (the remote keeps the newest PAAS_BACKUP_KEEP too)."""
    made = make_backup(settings, docker, with_images=settings.backup_with_images)
    log.info("backup written: %s (%d bytes)", made.path, made.size)
    for old in prune_backups(settings.backups_dir, settings.backup_keep):
        log.info("removed the old backup %s", old)
    remote = settings.backup_rclone_remote
    if remote:
        rclone = settings.rclone_bin
        _run([rclone, "copyto", str(made.path), _remote_path(remote, made.path.name)], None, "rclone copyto")
        listed = _run([rclone, "lsf", "--files-only", remote], None, "rclone lsf").split()
        ours = sorted(n for n in listed if n.startswith(NAME_PREFIX) and n.endswith(SUFFIX))
        for name in ours[: max(0, len(ours) - settings.backup_keep)]:
            _run([rclone, "deletefile", _remote_path(remote, name)], None, "rclone deletefile")
        log.info("backup copied to %s", _remote_path(remote, made.path.name))
    return made


def _remote_path(remote: str, name: str) -> str:
    return f"{remote}{name}" if remote.endswith((":", "/")) else f"{remote}/{name}"


def prune_backups(directory: Path, keep: int) -> list[Path]:
    """Remove the oldest of the timestamped archives in ``directory`` beyond ``keep``."""
    ours = sorted(p for p in directory.glob(f"{NAME_PREFIX}*{SUFFIX}") if p.is_file() and not p.is_symlink())
    gone = ours[: max(0, len(ours) - keep)]
    for path in gone:
        path.unlink()
    return gone


# restore ---------------------------------------------------------------------------------------------


def restore_backup(settings: Settings, docker: DockerEngine, archive: Path) -> Restored:
    """Put the archive's parts back where ``settings`` say. Everything is
    checked first: a wrong archive, a server with apps, paas running or a
    volume that is not empty changes nothing. Then run the migrations and
    :func:`queue_restored_apps`."""
    if not archive.is_file():
        raise BackupError(f"no backup archive at {archive}")
    _refuse_while_running(settings)
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=_staging_parent(settings)) as tmp:
        staging = Path(tmp)
        # GNU tar: no member lands outside the staging directory (no absolute or .. names,
        # nothing written through a link); owners and modes kept (root)
        _run(
            ["tar", "-x", "-z", "-f", str(archive), "-C", str(staging), f"--exclude={ROOT}/volumes"],
            None,
            f"reading {archive}",
        )
        part = staging / ROOT
        manifest = _read_manifest(part, archive)
        apps = [a["name"] for a in manifest["apps"]]
        volumes = [a["volume"] for a in manifest["apps"] if a.get("volume")]
        if (manifest.get("database") == "sqlite") != settings.default_database:
            raise BackupError(
                f"{archive} holds a {manifest.get('database')} database and this server uses "
                f"{'SQLite' if settings.default_database else 'PostgreSQL'}: set PAAS_DATABASE_URL to match"
            )
        _refuse_unless_fresh(settings)
        databases = list(manifest.get("databases") or [])
        for entry in databases:
            volume_name = _check_database_entry(entry, part, archive)
            if docker.volume_path(volume_name) is not None:
                raise BackupError(
                    f"the volume {volume_name} of database {entry['name']} exists: remove it "
                    "(docker volume rm) first"
                )
        for volume in volumes:
            path = docker.volume_path(volume["name"])
            if path is not None and any(path.iterdir()):
                raise BackupError(
                    f"the volume {volume['name']} exists and is not empty: remove it (docker volume rm) first"
                )
        keys = crypto.load_keys(part / "keys", private=True)  # refuses a broken archive's keys
        archived_settings = _read_staged_text(part / "paas.env", archive)
        merged = None
        if archived_settings is not None:
            current = settings.env_file.read_text(encoding="utf-8") if settings.env_file.is_file() else ""
            merged = merge_settings(current, archived_settings)
            _check_merged_settings(merged, archive)
        done = Restored(
            made_at=manifest["made_at"],
            made_by=manifest["paas_version"],
            apps=apps,
            volumes=[v["name"] for v in volumes],
            images=list(manifest.get("images") or []),
        )

        # nothing was changed above; now put everything back
        layout.prepare(settings)
        _restore_database(settings, part / "database")
        crypto.write_keys(settings.keys_dir, keys, web_user=settings.web_account)
        instance = manifest["instance"]
        _write_root_file(settings.data_dir / "instance-id", instance + "\n", 0o644)
        _replace_tree(part / "letsencrypt", settings.letsencrypt_dir)
        old_le = str(manifest["paths"]["letsencrypt"])
        if old_le != str(settings.letsencrypt_dir):
            _repoint_renewals(settings.letsencrypt_dir, old_le)
        if (part / "logs").is_dir():
            for app_logs in (part / "logs").iterdir():
                _replace_tree(app_logs, settings.logs_dir / app_logs.name)
        if merged is not None and archived_settings is not None:
            _write_settings_file(settings, merged, archived_settings)
            done.settings_changed, done.settings_refused = merged.taken, merged.refused
        for entry in manifest["apps"]:
            volume = entry.get("volume")
            if volume:
                _restore_volume(docker, archive, volume, owned(instance, entry["name"]))
        for app in done.images:
            with open(part / "images" / f"{app}.tar", "rb") as fh:
                docker.load_image(fh)
        done.databases = _restore_databases(settings, docker, databases, part / "databases", instance)
        layout.prepare(settings)  # modes and owners of what came back
    return done


def _check_database_entry(entry: Any, part: Path, archive: Path) -> str:
    """A manifest's database: a name, engine and version paas accepts and its
    dumps in the archive; returns the name of the volume it will have."""
    try:
        name = check_app_name(entry["name"], where="a database in the manifest")
        if entry["engine"] not in ENGINES or not DATABASE_VERSION.fullmatch(entry["version"]):
            raise ValueError("unknown engine or version")
        files = entry["files"]
        if not files or not all(
            isinstance(f, dict) and re.fullmatch(r"[a-z0-9.-]{1,40}", f["file"]) for f in files
        ):
            raise ValueError("bad file names")
    except (KeyError, TypeError, ValueError, UntrustedRow) as exc:
        raise BackupError(f"{archive}: a database in its manifest is not readable ({exc})") from None
    for item in files:
        if not (part / "databases" / name / item["file"]).is_file():
            raise BackupError(f"{archive} lacks the dump {item['file']} of database {name}")
    return names_for(name, entry["engine"], entry["version"])[1]


def _restore_databases(
    settings: Settings, docker: DockerEngine, entries: list[dict[str, Any]], dumps: Path, instance: str
) -> list[str]:
    """Each database made afresh from its restored row and loaded from its
    dumps, before paas (and so any app) starts."""
    if not entries:
        return []
    keyring = crypto.Keyring(settings.keys_dir, private=True)
    engine = make_engine(settings)
    restored = []
    try:
        for entry in entries:
            with Session(engine) as session:
                row = session.exec(select(Database).where(Database.name == entry["name"])).first()
                if row is None:
                    raise BackupError(f"database {entry['name']} is in the manifest but not in the database")
                check_database(row, settings=settings)
                password = open_password(keyring, row)
                session.expunge(row)
            if docker.volume_path(row.volume) is not None:
                raise BackupError(f"the volume {row.volume} exists: remove it (docker volume rm) first")
            try:
                restore_database(
                    docker,
                    row,
                    password=password,
                    files=entry["files"],
                    source=dumps / row.name,
                    instance=instance,
                    settings=settings,
                )
            except (DatabaseFailed, EngineError) as exc:
                raise BackupError(f"database {row.name} could not be restored: {exc}") from exc
            restored.append(row.name)
    finally:
        engine.dispose()
    return restored


def _staging_parent(settings: Settings) -> Path:
    """Beside the data directory's parts (one filesystem: the parts move by rename)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.data_dir


def _refuse_while_running(settings: Settings) -> None:
    found = []
    if connects_unix(settings.agent_socket, timeout=2):
        found.append(f"the agent answers on {settings.agent_socket}")
    if connects(settings.web_host, settings.web_port, timeout=2):
        found.append(f"something (web?) listens on {settings.web_host}:{settings.web_port}")
    if found:
        raise BackupError(
            f"paas is running ({'; '.join(found)}): stop it first (systemctl stop paas-agent paas-web, "
            "or kill the `paas up` process), restore, then start it again (deploy/install.sh does)"
        )


def _read_manifest(part: Path, archive: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((part / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{archive} is not a paas backup (no readable manifest.json: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        made = manifest.get("format") if isinstance(manifest, dict) else None
        raise BackupError(f"{archive}: unknown backup format {made!r} (this paas reads {FORMAT})")
    revision = manifest.get("revision")
    if isinstance(revision, str) and revision > head_revision():
        raise BackupError(
            f"{archive} was made by paas {manifest.get('paas_version')}, whose database (migration "
            f"{revision}) is newer than this paas knows ({head_revision()}): install that version or newer"
        )
    for entry in manifest.get("apps") or []:
        check_app_name(entry.get("name"), where=f"{archive}'s manifest")
        volume = entry.get("volume")
        if volume and volume.get("name") != data_volume(entry["name"]):
            raise BackupError(f"{archive}: app {entry['name']}'s volume is named {volume.get('name')!r}")
    for name in manifest.get("images") or []:
        if not (part / "images" / f"{name}.tar").is_file():
            raise BackupError(f"{archive}: the image of {name} is listed but not in the archive")
    if not isinstance(manifest.get("instance"), str) or not manifest["instance"].isalnum():
        raise BackupError(f"{archive}: no valid instance id in the manifest")
    database = "paas.db" if manifest.get("database") == "sqlite" else "paas.dump"
    if not (part / "database" / database).is_file():
        raise BackupError(f"{archive}: the database snapshot database/{database} is missing")
    return manifest


def _refuse_unless_fresh(settings: Settings) -> None:
    """A restore replaces the database: only where it holds no app yet."""
    if settings.default_database and not (settings.db_dir / "paas.db").exists():
        return
    engine = make_engine(settings)
    try:
        with session_scope(engine) as session:
            names = [a.name for a in session.exec(select(App)).all()]
    except Exception:  # noqa: BLE001  (no schema yet: nothing to lose)
        names = []
    finally:
        engine.dispose()
        layout.hold_database_files(settings)
    if names:
        raise BackupError(
            f"this server already has apps ({', '.join(sorted(names))}): restore into a fresh installation "
            "(or delete them first: paas apps delete)"
        )


def _restore_database(settings: Settings, staged: Path) -> None:
    if settings.default_database:
        snapshot = staged / "paas.db"
        for name in layout.DATABASE_FILES[1:]:
            (settings.db_dir / name).unlink(missing_ok=True)
        target = settings.db_dir / "paas.db"
        restoring = settings.db_dir / ".paas.db.restoring"
        shutil.copyfile(snapshot, restoring)
        os.replace(restoring, target)
        layout.hold_database_files(settings)
        return
    dump = staged / "paas.dump"
    url, env = _pg_target(settings)
    _run(
        ["pg_restore", "--clean", "--if-exists", "--no-owner", f"--dbname={url}", str(dump)],
        env,
        "pg_restore",
    )


def _write_root_file(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.restoring")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _replace_tree(source: Path, target: Path) -> None:
    """``target`` becomes ``source`` (moved: the staging directory is on its filesystem)."""
    if not source.exists():
        return
    if os.path.lexists(target):
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        else:
            os.unlink(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(target))


def _repoint_renewals(letsencrypt: Path, old: str) -> None:
    """certbot's renewal files name their directories in full: the old server's."""
    for conf in (letsencrypt / "renewal").glob("*.conf"):
        text = conf.read_text(encoding="utf-8")
        conf.write_text(text.replace(old, str(letsencrypt)), encoding="utf-8")


# paas.env is data, never code: one PAAS_NAME='value' line each, read alike by systemd
# (EnvironmentFile=), python-dotenv without interpolation and deploy/install.sh's reader
_NOT_IN_QUOTES = re.compile(r"['\\\r\n\x00]")
_SETTING_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")


@dataclass
class SettingsMerge:
    """A restore's settings file: this server's, with what it takes from the archive's."""

    text: str
    values: dict[str, str]
    taken: list[str]  # set by the archive, to another value than this server's
    refused: list[str]  # set by the archive to another value, and left as this server's


def merge_settings(current: str, archived: str) -> SettingsMerge:
    """This server's settings file with the archive's values of
    RESTORED_SETTINGS in place of its own; its other lines kept as they are.
    A value that one quoted line cannot hold is not taken."""
    here, there = settings_file_values(current), settings_file_values(archived)
    taken = {k: v for k, v in there.items() if k in RESTORED_SETTINGS and not _NOT_IN_QUOTES.search(v)}
    lines = [line for line in current.splitlines() if _setting_name(line) not in taken]
    if taken:
        lines += ["# taken from the backup by paas restore", *(f"{k}='{v}'" for k, v in taken.items())]
    return SettingsMerge(
        text="\n".join(lines) + "\n",
        values={**here, **taken},
        taken=sorted(k for k, v in taken.items() if here.get(k) != v),
        refused=sorted(k for k, v in there.items() if k not in taken and here.get(k) != v),
    )


def _setting_name(line: str) -> str | None:
    match = _SETTING_LINE.match(line)
    return match[1] if match else None


def _check_merged_settings(merged: SettingsMerge, archive: Path) -> None:
    """The settings paas will start with, checked before anything changes."""
    fields = {k.removeprefix("PAAS_").lower(): v for k, v in merged.values.items() if k.startswith("PAAS_")}
    try:
        load_settings(_env_file=None, **fields)
    except SettingsError as exc:
        raise BackupError(f"{archive}: with the settings it brings, {exc}") from None


def _read_staged_text(path: Path, archive: Path) -> str | None:
    """A file of the unpacked archive, itself and not what a link there points to."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BackupError(f"{archive}: cannot read {path.name}: {exc}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise BackupError(f"{archive}: {path.name} is not a file")
        try:
            return fh.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BackupError(f"{archive}: {path.name} is not UTF-8 text ({exc})") from None


def _write_settings_file(settings: Settings, merged: SettingsMerge, archived: str) -> None:
    """The merged settings file; the file it replaces kept beside it
    (.before-restore), and the archive's own, whole (.from-backup, root's
    alone), for what was not taken."""
    target = settings.env_file
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file():
        shutil.copy2(target, target.with_name(f"{target.name}.before-restore"))
    _write_root_file(target.with_name(f"{target.name}.from-backup"), archived, 0o600)
    _write_root_file(target, merged.text, 0o640)
    if os.geteuid() == 0:
        os.chown(target, 0, layout.web_ids(settings)[1])


def _restore_volume(
    docker: DockerEngine, archive: Path, volume: dict[str, Any], labels: dict[str, str]
) -> None:
    """The volume made (with this installation's labels) and its files put
    back as they were, owners and modes too, read straight from the archive."""
    name = volume["name"]
    path = docker.volume_path(name, labels)
    assert path is not None
    _run(
        [
            "tar",
            "-x",
            "-z",
            "-f",
            str(archive),
            "-C",
            str(path),
            "--strip-components=3",
            f"{ROOT}/volumes/{name}",
        ],
        None,
        f"restoring the volume {name}",
    )
    os.chown(path, int(volume["uid"]), int(volume["gid"]))
    os.chmod(path, int(volume["mode"]))


def queue_restored_apps(settings: Settings, docker: DockerEngine) -> list[str]:
    """After the migrations: fail what was running when the backup was made
    (its agent is gone), and queue each app's live release: started again
    from its image when the engine has it, else rebuilt from its commit.
    Returns one line per app."""
    said = []
    engine = make_engine(settings)
    try:
        with session_scope(engine) as session:
            for job in session.exec(select(Job).where(col(Job.state) == JobState.running)).all():
                job.state, job.error, job.finished_at = (
                    JobState.failed,
                    "interrupted: restored from a backup",
                    utcnow(),
                )
                session.add(job)
            for dep in session.exec(
                select(Deployment).where(col(Deployment.status) == DeploymentStatus.running)
            ).all():
                dep.status, dep.finished_at = DeploymentStatus.failed, utcnow()
                dep.error = f"{dep.step or 'deploy'}: interrupted: restored from a backup"
                session.add(dep)
            for app in session.exec(select(App).order_by(col(App.name))).all():
                current = live_release(session, app)
                if current is None:
                    said.append(f"{app.name}: no live release (deploy it when you like)")
                    continue
                if current.image and docker.image_id(current.image):
                    payload = {
                        "trigger": RESTORE_TRIGGER,
                        "actor": "restore",
                        "source_version": current.version,
                        "run_release": False,
                    }
                    queue.enqueue(session, kind=queue.RELEASE, app=app, payload=payload)
                    said.append(f"{app.name}: v{current.version} starts again from its image")
                else:
                    payload = {
                        "ref": current.ref or f"refs/heads/{app.branch}",
                        "commit": current.commit,
                        "message": f"restored from a backup: v{current.version}",
                        "trigger": RESTORE_TRIGGER,
                        "actor": "restore",
                    }
                    queue.enqueue(session, kind=queue.DEPLOY, app=app, payload=payload)
                    said.append(
                        f"{app.name}: v{current.version} is rebuilt from commit {current.commit[:12]}"
                    )
    finally:
        engine.dispose()
        layout.hold_database_files(settings)
    return said


# one database ----------------------------------------------------------------------------------

DB_ARCHIVE_PREFIX = "paas-db-"


def backup_database(
    settings: Settings, docker: DockerEngine, name: str, *, output: Path | None = None
) -> BackupMade:
    """`paas databases backup NAME`: its dumps, checked as `paas backup`
    checks them, in an archive of their own (0600, whole or not at all)."""
    row = _ready_row(settings, name)
    output = _archive_path(settings, output, f"{DB_ARCHIVE_PREFIX}{name}-")
    with tempfile.TemporaryDirectory(prefix=".paas-db-backup-", dir=output.parent) as tmp:
        staged = Path(tmp)
        entries = _dump_databases(settings, docker, [row], staged / "databases")
        manifest = {
            "format": FORMAT,
            "kind": "database",
            "paas_version": version(),
            "made_at": utcnow().isoformat(timespec="seconds"),
            "databases": entries,
        }
        (staged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        partial = staged / "archive.partial"
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar:
                tar.add(staged / "manifest.json", arcname=f"{ROOT}/manifest.json")
                tar.add(staged / "databases", arcname=f"{ROOT}/databases")
            _put_in_place(partial, output)
        except OSError as exc:
            raise BackupError(f"cannot write {output}: {exc}") from exc
    _record_backup(settings, [name], error="")
    return BackupMade(
        path=output, size=output.stat().st_size, apps=[], volumes=[], images=[], databases=[name]
    )


def restore_database_archive(settings: Settings, docker: DockerEngine, name: str, archive: Path) -> str:
    """`paas databases restore NAME --from FILE`: one database's dumps (from
    `paas databases backup` or `paas backup`) into database NAME, which must
    run, be empty, be of the same engine and no older a major version."""
    if not archive.is_file():
        raise BackupError(f"no archive at {archive}")
    row = _ready_row(settings, name)
    with tempfile.TemporaryDirectory(prefix=".restore-db-", dir=_staging_parent(settings)) as tmp:
        staging = Path(tmp)
        _run(
            [
                "tar",
                "-x",
                "-z",
                "-f",
                str(archive),
                "-C",
                str(staging),
                f"{ROOT}/manifest.json",
                f"{ROOT}/databases",
            ],
            None,
            f"reading {archive}",
        )
        part = staging / ROOT
        try:
            manifest = json.loads((part / "manifest.json").read_text(encoding="utf-8"))
            entries = list(manifest["databases"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"{archive} holds no database dumps paas can read ({exc})") from None
        if len(entries) != 1:
            names = ", ".join(str(e.get("name")) for e in entries if isinstance(e, dict))
            raise BackupError(
                f"{archive} holds {len(entries)} databases ({names}): restore one with `paas restore`"
            )
        entry = entries[0]
        _check_database_entry(entry, part, archive)
        if entry["engine"] != row.engine:
            raise BackupError(f"{archive} holds a {entry['engine']} database; {name} is {row.engine}")
        if version_key(entry["version"])[0] > version_key(row.version)[0]:
            raise BackupError(
                f"{archive} was dumped from {row.engine} {entry['version']}; {name} runs {row.version}, "
                "which cannot read it: create it at that version or newer"
            )
        try:
            held = table_counts(docker, row)
        except (DatabaseFailed, EngineError) as exc:
            raise BackupError(f"cannot look into {name}: {exc}") from exc
        if any(held.values()) or (row.engine == "postgres" and held):
            shown = ", ".join(sorted(held)[:5])
            raise BackupError(
                f"{name} is not empty ({shown}): restore into a new database (paas databases create)"
            )
        password = open_password(crypto.Keyring(settings.keys_dir, private=True), row)
        try:
            restore_dumps(
                docker,
                row,
                password=password,
                files=entry["files"],
                source=part / "databases" / entry["name"],
                archived_database=str(entry.get("database") or entry["name"].replace("-", "_")),
                settings=settings,
                instance=instance_id(settings.data_dir),
            )
        except (DatabaseFailed, EngineError) as exc:
            raise BackupError(f"{name} could not be restored: {exc}") from exc
        after = table_counts(docker, row)
    return f"{name}: {len(after)} table(s), {sum(after.values())} row(s) restored from {entry['name']}"


def _ready_row(settings: Settings, name: str) -> Database:
    engine = make_engine(settings)
    try:
        with Session(engine) as session:
            row = session.exec(select(Database).where(Database.name == name)).first()
            if row is None:
                raise BackupError(f"no database named {name!r}")
            if row.state != DatabaseState.ready:
                raise BackupError(f"database {name} is {row.state}, not ready")
            check_database(row, settings=settings)
            session.expunge(row)
    finally:
        engine.dispose()
        layout.hold_database_files(settings)
    return row
