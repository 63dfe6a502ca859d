"""Database engine, sessions and migrations.

SQLite runs in WAL mode with a busy timeout, and every transaction starts
with ``BEGIN IMMEDIATE`` so that the web process and the agent's threads queue
for the write lock instead of failing with "database is locked" when a read
transaction tries to upgrade. Within one process, threads queue for that
lock on a ``threading.Lock`` first (``_Connection``): SQLite's own busy
handler waits by sleeping 1, 2, 5 … 100 ms between tries, so a burst of
webhook deliveries queued behind each other for up to 700 ms though each
held the lock for 2 ms; a Python lock hands over at once. Between processes
(web and the agent) the busy timeout still applies. PostgreSQL is used as
configured by URL.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, create_engine

from paas.settings import Settings

__all__ = [
    "JOB_QUEUED",
    "database_full",
    "hold_key_lock",
    "make_engine",
    "migrate",
    "on_job_queued",
    "session_scope",
]

_PG_DISK_FULL = "53100"  # PostgreSQL's SQLSTATE disk_full


def database_full(exc: BaseException) -> bool:
    """Whether ``exc`` (SQLAlchemy's, or the driver's own) is the database
    saying its disk is full, by its code: SQLite's SQLITE_FULL, PostgreSQL's
    disk_full."""
    driver = getattr(exc, "orig", None) or exc
    code = getattr(driver, "sqlite_errorcode", None)  # the extended code: the primary in its low byte
    if isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL:
        return True
    return getattr(driver, "sqlstate", None) == _PG_DISK_FULL


def make_engine(settings: Settings) -> Engine:
    url = settings.db_url
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            _create_shared_file(Path(url.removeprefix("sqlite:///")))
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": BUSY_SECONDS}
        if ":memory:" not in url:
            connect_args["factory"] = _Connection
        engine = create_engine(url, connect_args=connect_args)
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


BUSY_SECONDS = 30
_writer_locks: dict[str, threading.Lock] = {}
_writer_locks_guard = threading.Lock()


class _Connection(sqlite3.Connection):
    """A connection that takes its process's lock for this database before
    ``BEGIN IMMEDIATE`` and gives it back when the transaction ends (commit,
    rollback or close), whichever thread ends it."""

    _lock: threading.Lock | None = None  # this database's, shared by the process's connections
    _writer: threading.Lock | None = None  # the lock while this connection holds it

    def begin_immediate(self) -> None:
        if self._lock is None:
            path = self.execute("PRAGMA database_list").fetchone()[2]
            with _writer_locks_guard:
                self._lock = _writer_locks.setdefault(path, threading.Lock())
        lock = self._lock
        if not lock.acquire(timeout=BUSY_SECONDS):
            raise sqlite3.OperationalError(
                f"database is locked: another thread of this process held the write lock for {BUSY_SECONDS} s"
            )
        self._writer = lock
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        lock, self._writer = self._writer, None
        if lock is not None:
            lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            if not self.in_transaction:
                self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()


def _create_shared_file(path: Path) -> None:
    """Create the SQLite file group-writable: the web process runs as another
    user in the data directory's group. (SQLite would create it 0644 minus the
    umask; its -wal and -shm files copy the database file's mode.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o660))
        os.chmod(path, 0o660)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        dbapi_conn = conn.connection.dbapi_connection
        if isinstance(dbapi_conn, _Connection):
            dbapi_conn.begin_immediate()
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def hold_key_lock(session: Session, *, exclusive: bool = False) -> None:
    """Begin the transaction holding the lock that orders encryption and key
    rotation: whoever encrypts takes it shared, rotation takes it exclusive.

    SQLite: every transaction starts ``BEGIN IMMEDIATE``, which serialises
    writers anyway. PostgreSQL: a lock on ``app`` (ROW SHARE conflicts only
    with EXCLUSIVE, so writers do not block each other).
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"LOCK TABLE app IN {'EXCLUSIVE' if exclusive else 'ROW SHARE'} MODE"))


JOB_QUEUED = "paas_job_queued"  # in Session.info: this transaction queued a job (paas/queue.py)
_job_queued_callbacks: weakref.WeakKeyDictionary[Engine, Callable[[], None]] = weakref.WeakKeyDictionary()


def on_job_queued(engine: Engine, callback: Callable[[], None]) -> None:
    """Call ``callback`` after every commit on ``engine`` that queued a job
    (it must not raise, and should be quick: it runs in the committing thread)."""
    _job_queued_callbacks[engine] = callback


@event.listens_for(OrmSession, "after_commit")
def _after_commit(session: OrmSession) -> None:
    if session.info.pop(JOB_QUEUED, False):
        bind = session.get_bind()
        callback = _job_queued_callbacks.get(bind) if isinstance(bind, Engine) else None
        if callback is not None:
            callback()


@event.listens_for(OrmSession, "after_rollback")
def _after_rollback(session: OrmSession) -> None:
    session.info.pop(JOB_QUEUED, None)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _alembic_config(settings: Settings) -> Any:
    from alembic.config import Config

    script_location = resources.files("migrations")
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", settings.db_url.replace("%", "%%"))
    cfg.attributes["settings"] = settings
    return cfg


def migrate(settings: Settings, *, revision: str = "head") -> None:
    """Apply pending Alembic migrations (idempotent)."""
    from alembic import command

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(_alembic_config(settings), revision)


def current_revision(engine: Engine) -> str | None:
    """The database's migration revision, None before the first migration.
    Read from Alembic's own table with a plain query: /readyz asks on every
    probe, and Alembic (with Mako) would add 10 MiB to the web process."""
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:  # no such table yet
            return None


@functools.cache
def head_revision() -> str:
    """The newest migration's revision, which is its file name's number:
    ``migrations/versions/NNNN_what_it_does.py`` has revision ``"NNNN"`` and
    the previous number as its down revision (tests/unit/test_db.py checks
    both against Alembic's own reading of the directory)."""
    versions = resources.files("migrations").joinpath("versions")
    numbers = [f.name[:4] for f in versions.iterdir() if f.name[:4].isdigit() and f.name.endswith(".py")]
    return max(numbers)
