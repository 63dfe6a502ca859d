"""SQLite's write lock within one process: threads queue on a Python lock
(paas/db.py ``_Connection``), which every way a transaction ends gives back."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlmodel import Session, select

from paas import db
from paas.db import session_scope
from paas.models import Event
from paas.settings import Settings


def _database(settings: Settings) -> str:
    return str(Path(settings.db_url.removeprefix("sqlite:///")).resolve())


def _lock(engine: Engine, settings: Settings) -> threading.Lock:
    with session_scope(engine) as session:  # the first transaction makes it
        session.exec(select(Event)).first()
    return db._writer_locks[_database(settings)]


def _write(session: Session, detail: str) -> None:
    session.add(Event(actor="test", action="test.write", detail=detail))
    session.flush()


def test_commit_rollback_error_and_close_each_give_the_lock_back(engine: Engine, settings: Settings) -> None:
    lock = _lock(engine, settings)
    with session_scope(engine) as session:
        _write(session, "committed")
        assert lock.locked()
    assert not lock.locked()

    with pytest.raises(RuntimeError), session_scope(engine) as session:
        _write(session, "rolled back")
        raise RuntimeError("boom")
    assert not lock.locked()

    session = Session(engine)
    _write(session, "closed without commit")
    assert lock.locked()
    session.close()
    assert not lock.locked()

    with session_scope(engine) as session:
        details = [e.detail for e in session.exec(select(Event).where(Event.action == "test.write"))]
    assert details == ["committed"]


def test_a_transaction_ended_in_another_thread_frees_the_lock(engine: Engine, settings: Settings) -> None:
    """FastAPI runs a dependency's teardown on another worker thread than
    the endpoint that began the transaction."""
    lock = _lock(engine, settings)
    session = Session(engine)
    _write(session, "begun here")
    ender = threading.Thread(target=session.commit)
    ender.start()
    ender.join()
    session.close()
    assert not lock.locked()


def test_a_writer_waits_for_the_other_threads_transaction(engine: Engine, settings: Settings) -> None:
    lock = _lock(engine, settings)
    holding, release, second_done = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with session_scope(engine) as session:
            _write(session, "first")
            holding.set()
            release.wait(10)
            order.append("first")

    def second() -> None:
        holding.wait(10)
        with session_scope(engine) as session:
            _write(session, "second")
            order.append("second")
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    assert holding.wait(10)
    assert not second_done.wait(0.3)  # still queued behind the first
    assert lock.locked()
    release.set()
    for t in threads:
        t.join(10)
    assert order == ["first", "second"]
    assert not lock.locked()


def test_a_burst_of_writers_from_many_threads_all_commit(engine: Engine, settings: Settings) -> None:
    lock = _lock(engine, settings)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                with session_scope(engine) as session:
                    _write(session, f"{n}-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with session_scope(engine) as session:
        written = session.exec(select(Event).where(Event.action == "test.write")).all()
    assert len(written) == 8 * 25
    assert not lock.locked()


def test_a_begin_that_sqlite_refuses_gives_the_lock_back(engine: Engine, settings: Settings) -> None:
    """Another process (here a plain connection) holds SQLite's lock: BEGIN
    IMMEDIATE fails after the busy timeout, and this process's lock is free."""
    lock = _lock(engine, settings)
    other = sqlite3.connect(_database(settings), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        mine = sqlite3.connect(_database(settings), timeout=0.1, factory=db._Connection, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            mine.begin_immediate()
        assert not lock.locked()
        mine.close()
    finally:
        other.rollback()
        other.close()


def test_the_head_revision_is_alembics_and_each_file_names_its_revision(settings: Settings) -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db._alembic_config(settings))
    assert db.head_revision() == script.get_current_head()
    for rev in script.walk_revisions():
        assert Path(rev.path).name.startswith(f"{rev.revision}_"), rev.path
        if rev.down_revision is not None:
            assert rev.down_revision == f"{int(rev.revision) - 1:04d}", rev.path


def test_the_current_revision_is_read_from_the_database(engine: Engine, tmp_path: Path) -> None:
    assert db.current_revision(engine) == db.head_revision()
    empty = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    assert db.current_revision(empty) is None
    empty.dispose()
