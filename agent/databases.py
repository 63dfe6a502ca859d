"""Databases, as the agent runs them: the ``database`` jobs (create, destroy,
expose), the endpoints a release binds (the password opened here only),
and their containers brought back at start.

A database is one container of an exact image version, on an internal
bridge network of its own that only the containers of apps binding it join
(no host port unless exposed, and then on 127.0.0.1 only), with a named
volume, a memory limit, a health check, ``unless-stopped`` and a stop grace
long enough for a clean shutdown. Its password is made here and sealed to
the agent's key pair (``db-password:<name>``): web never holds it.

PostgreSQL gets it as ``POSTGRES_PASSWORD`` (the official image's contract:
read at the first start only), and the agent sets it again after every
create, so a kept volume comes back with the row's password. Redis gets it
as ``REDISCLI_AUTH`` (so ``redis-cli`` in the health check and the console
authenticates without it on a command line); the container's command
writes ``requirepass`` into a config file in its own ``/dev/shm`` (memory)
with the shell's ``printf`` builtin, so the password is in no process's
arguments and on no disk.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from agent.docker_engine import DockerEngine, EngineError, ServiceSpec
from paas import queue
from paas.bindings import PASSWORD, PORTS, Endpoint, image_for, names_for
from paas.crypto import Keyring, db_password_purpose
from paas.db import session_scope
from paas.errors import InvalidInput
from paas.models import App, Database, DatabaseState, EnvVar, Job
from paas.payloads import DatabasePayload, ReleasePayload
from paas.settings import Settings, memory_bytes
from paas.trust import check_database, check_job, job_payload

__all__ = [
    "DATA_PATHS",
    "DatabaseFailed",
    "Databases",
    "console_argv",
    "dump_database",
    "redis_command",
    "restore_database",
    "restore_dumps",
    "set_postgres_password",
    "table_counts",
    "service_spec",
]

log = logging.getLogger("paas.agent.databases")

DATA_PATHS = {"postgres": "/var/lib/postgresql/data", "redis": "/data"}
STOP_GRACE = {"postgres": 60, "redis": 30}  # seconds between SIGINT/SIGTERM and SIGKILL
# the container's own /dev/shm: memory only, 1777, made afresh at every start (a --tmpfs
# mount's mode is lost when Docker 20.10 restarts a container)
REDIS_CONF_DIR = "/dev/shm"  # noqa: S108  (inside the container, its own)


HEALTH = {  # Docker's health check of each engine (pg_isready; PING, authenticated by REDISCLI_AUTH)
    # over TCP: the official image's entrypoint first runs a server on its socket alone (to
    # init), then stops it and starts the real one; only the real one listens on TCP
    "postgres": lambda db: (
        "CMD",
        "pg_isready",
        "-q",
        "-h",
        "127.0.0.1",
        "-U",
        db.username,
        "-d",
        db.database,
    ),
    "redis": lambda _db: ("CMD-SHELL", '[ "$(redis-cli ping)" = PONG ]'),
}


def redis_command(memory: int, *, appendonly: bool = True) -> tuple[str, ...]:
    """The Redis container's command: its config written to /dev/shm, then
    redis-server on it. ``maxmemory`` is three quarters of the container's
    limit (the rest for the AOF rewrite's fork and the server itself);
    ``noeviction`` makes a full Redis refuse writes rather than drop keys an
    app stored (a queue, a session): a cache that wants eviction says so
    with ``CONFIG SET``. Persistence is AOF, fsynced every second."""
    maxmemory = memory * 3 // 4
    conf = f"{REDIS_CONF_DIR}/redis.conf"
    lines = [
        "port 6379",
        "bind * -::*",
        "dir /data",
        f"appendonly {'yes' if appendonly else 'no'}",
        "appendfsync everysec",
        f"maxmemory {maxmemory}",
        "maxmemory-policy noeviction",
    ]
    script = (
        "umask 077 && "
        f"printf '%s\\n' {' '.join(repr(line) for line in lines)} > {conf} && "
        f"printf 'requirepass %s\\n' \"$REDISCLI_AUTH\" >> {conf} && "
        f"exec redis-server {conf}"
    )
    return ("sh", "-c", script)


def database_labels(instance: str, name: str) -> dict[str, str]:
    """What marks a database's network, volume and container as this installation's."""
    return {"paas.instance": instance, "paas.database": name}


def service_spec(db: Database, *, password: str, instance: str, settings: Settings) -> ServiceSpec:
    """The container of ``db`` (a row :func:`check_database` passed), pure."""
    memory = memory_bytes(db.memory or settings.database_memory)
    labels = (*database_labels(instance, db.name).items(), ("paas.engine", db.engine))
    common = {
        "name": db.container,
        "image": db.image,
        "labels": labels,
        "volume": db.volume,
        "data_path": DATA_PATHS[db.engine],
        "network": db.network,
        "port": PORTS[db.engine],
        "exposed_port": db.exposed_port,
        "publish_network": publish_network(db),
        "start_seconds": 60,
        "stop_timeout": STOP_GRACE[db.engine],
        "memory": memory,
        "nano_cpus": int(settings.app_cpus * 1e9),
        "pids": 512,
    }
    if db.engine == "postgres":
        return ServiceSpec(
            command=(),
            env=(
                ("POSTGRES_PASSWORD", password),
                ("POSTGRES_USER", db.username),
                ("POSTGRES_DB", db.database),
                # said, not left to the image: from PostgreSQL 18 the official image's default
                # moved (/var/lib/postgresql/18/docker), which would leave the data outside the volume
                ("PGDATA", DATA_PATHS["postgres"]),
            ),
            user="",  # the entrypoint starts as root, owns the data directory, then drops to postgres
            health=HEALTH["postgres"](db),
            stop_signal="SIGINT",  # a fast shutdown: clients cut, everything written
            **common,  # type: ignore[arg-type]
        )
    return ServiceSpec(
        command=redis_command(memory),
        env=(("REDISCLI_AUTH", password),),
        user="redis",
        health=HEALTH["redis"](db),
        stop_signal="SIGTERM",
        **common,  # type: ignore[arg-type]
    )


def set_postgres_password(docker: DockerEngine, row: Database, password: str) -> None:
    """The row's password on its role again (a kept volume, a restored dump, has
    another). The SQL goes to psql's stdin from printf, a shell builtin: no
    process's arguments hold the password."""
    script = (
        'printf "ALTER ROLE \\"%s\\" PASSWORD \'%s\';\\n" "$PAAS_DB_USER" "$PAAS_DB_PASSWORD" '
        '| psql -q -v ON_ERROR_STOP=1 -U "$PAAS_DB_USER" -d postgres'
    )
    code, _out, err = docker.exec_to(
        row.container,
        ["sh", "-c", script],
        env={"PAAS_DB_USER": row.username, "PAAS_DB_PASSWORD": password},
        user="postgres",
    )
    if code != 0:
        said = err.decode(errors="replace")[-500:]
        raise DatabaseFailed(f"could not set the password of {row.name}: {said}")


_SERVER_USER = {"postgres": "postgres", "redis": "redis"}  # the official images' own users


def _health_argv(row: Database) -> list[str]:
    """The container's health check as a command the agent can run in it."""
    kind, *test = HEALTH[row.engine](row)
    return ["sh", "-c", test[0]] if kind == "CMD-SHELL" else list(test)


def wait_ready(docker: DockerEngine, row: Database, *, timeout: int) -> None:
    """Until ``row``'s container is running and healthy; a container that
    exits or turns unhealthy first is a :class:`DatabaseFailed` with its last
    lines. While Docker's first check is still to come (it waits an interval),
    the agent runs the same check itself, so a database that is up counts
    at once."""
    deadline = time.monotonic() + timeout
    while True:
        info = docker.container(row.container)
        if info is None:
            raise DatabaseFailed(f"the container of {row.name} is gone")
        if info.status == "running" and info.health == "healthy":
            return
        if info.status == "running" and info.health == "starting":
            try:
                code, _out, _err = docker.exec_to(
                    row.container, _health_argv(row), user=_SERVER_USER[row.engine]
                )
            except EngineError:
                code = -1
            if code == 0:
                return
        if info.status in ("exited", "dead") or info.health == "unhealthy":
            tail = "; ".join(docker.logs_tail(row.container, 5))
            raise DatabaseFailed(f"{row.name} did not start ({info.status}, {info.health}): {tail[-800:]}")
        if time.monotonic() > deadline:
            raise DatabaseFailed(f"{row.name} was not healthy after {timeout}s (PAAS_DATABASE_READY_TIMEOUT)")
        time.sleep(0.5)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def publish_network(db: Database) -> str:
    """The network an exposed database is published through (an internal network cannot publish)."""
    return f"{db.network}_exposed"  # "_": in no database's name, so in no database's network


class DatabaseFailed(InvalidInput):
    """A database job could not do what it was asked; the message says why."""


def open_password(keyring: Keyring, row: Database) -> str:
    """``row``'s password, opened for it alone and of the form the agent makes
    (no line break for a config file, nothing that would change a URL): web
    can seal a value too, so the form is checked at every use."""
    password = keyring.decrypt(row.password, purpose=db_password_purpose(row.name))
    if not PASSWORD.fullmatch(password):
        raise DatabaseFailed(
            f"the password of database {row.name} is not one the agent made (the database was changed "
            "outside paas?): refusing to use it"
        )
    return password


class Databases:
    def __init__(
        self, settings: Settings, db: Engine, docker: DockerEngine, keyring: Keyring, instance: str
    ) -> None:
        self.settings = settings
        self.db = db
        self.docker = docker
        self.keyring = keyring
        self.instance = instance
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    # jobs -------------------------------------------------------------------------

    def run(self, job: Job) -> str:
        """Carry out a ``database`` job; returns what was done, raises on failure."""
        name = check_job(job).app_name
        asked = job_payload(job)
        assert isinstance(asked, DatabasePayload)
        with self._lock(name):
            if asked.op == "create":
                return self.create(name)
            if asked.op == "destroy":
                if asked.previous:
                    return self.destroy_previous(name, purge=asked.purge)
                return self.destroy(name, purge=asked.purge)
            if asked.op == "upgrade":
                return self.upgrade(name, asked.version, actor=asked.actor)
            return self.expose(name, asked.port)

    def _row(self, session: Session, name: str) -> Database:
        row = session.exec(select(Database).where(Database.name == name)).first()
        if row is None:
            raise DatabaseFailed(f"database {name!r} no longer exists")
        return check_database(row, settings=self.settings)

    def _set(self, name: str, **values: object) -> None:
        with session_scope(self.db) as session:
            row = session.exec(select(Database).where(Database.name == name)).first()
            if row is not None:
                for key, value in values.items():
                    setattr(row, key, value)
                session.add(row)

    def create(self, name: str) -> str:
        with session_scope(self.db) as session:
            row = self._row(session, name)
            session.expunge(row)
        try:
            note = self._make(row)
        except Exception as exc:
            self._set(name, state=DatabaseState.failed, error=str(exc)[:2000])
            raise
        return note

    def _make(self, row: Database) -> str:
        labels = database_labels(self.instance, row.name)
        if self.docker.image_id(row.image) is None:
            why = self.docker.pull(row.image, timeout=300)
            if why is not None:
                raise DatabaseFailed(f"cannot pull {row.image}: {why}")
        password = secrets.token_urlsafe(24)  # URL-safe: it goes into DATABASE_URL as it is
        # sealed before the container exists: a crash after it started leaves a password that opens it
        sealed = self.keyring.encrypt(password, secret=True, purpose=db_password_purpose(row.name))
        self._set(row.name, password=sealed, error="")
        self.docker.ensure_network(row.network, labels)
        kept = self.docker.volume_path(row.volume) is not None
        self.docker.ensure_volume(row.volume, labels)
        self.docker.stop_and_remove(row.container, timeout=STOP_GRACE[row.engine])  # a failed try's
        spec = service_spec(row, password=password, instance=self.instance, settings=self.settings)
        self.docker.run_service(spec)
        self.wait_ready(row)
        if row.engine == "postgres":
            set_postgres_password(self.docker, row, password)  # a kept volume has the old one
        digest = self._digest(row.image)
        self._set(
            row.name,
            state=DatabaseState.ready,
            image_digest=digest,
            server_version=self.server_version(row),
            error="",
        )
        log.info("database %s is ready (%s, %s)", row.name, row.image, digest)
        return f"{row.name} is ready" + (f" (on the volume {row.volume} kept from before)" if kept else "")

    def _digest(self, image: str) -> str:
        found = self.docker.image_names_and_labels(image)
        digests = [n for n in (found[0] if found else []) if "@sha256:" in n]
        return digests[0].split("@", 1)[1] if digests else (self.docker.image_id(image) or "")

    def wait_ready(self, row: Database) -> None:
        wait_ready(self.docker, row, timeout=self.settings.database_ready_timeout)

    def server_version(self, row: Database) -> str:
        if row.engine == "postgres":
            command = ["psql", "-tA", "-U", row.username, "-d", row.database, "-c", "SHOW server_version"]
        else:
            command = ["redis-server", "--version"]
        try:
            code, out, _err = self.docker.exec_to(row.container, command, user=_SERVER_USER[row.engine])
        except EngineError:
            return ""
        return out.decode(errors="replace").strip()[:100] if code == 0 else ""

    # upgrades -------------------------------------------------------------------------

    def upgrade(self, name: str, version: str, *, actor: str) -> str:
        """To ``version``: a minor one in place, a major one into a new instance."""
        with session_scope(self.db) as session:
            row = self._row(session, name)
            password = open_password(self.keyring, row)
            session.expunge(row)
        # the image family stays the database's own: its repository and Debian release
        repository, _colon, tag = row.image.partition(":")
        variant = tag.removeprefix(f"{row.version}-")
        container, volume, _network = names_for(name, row.engine, version)
        new = Database(**{**row.model_dump(), "version": version, "container": container, "volume": volume})
        new.image = image_for(repository, version, variant)
        check_database(new, settings=self.settings)
        try:
            if self.docker.image_id(new.image) is None:
                why = self.docker.pull(new.image, timeout=300)
                if why is not None:
                    raise DatabaseFailed(
                        f"cannot pull {new.image}: {why}; {name} runs {row.version} as before"
                    )
            if new.container == row.container:
                note = self._upgrade_in_place(row, new, password)
            else:
                note = self._upgrade_major(row, new, password, actor=actor)
        except Exception as exc:
            self._set(name, state=DatabaseState.ready, error=f"upgrade to {version} failed: {exc}"[:2000])
            raise
        return note

    def _upgrade_in_place(self, row: Database, new: Database, password: str) -> str:
        """Same data directory: a clean stop, the new image, the old back on any failure."""
        before = service_spec(row, password=password, instance=self.instance, settings=self.settings)
        self.docker.stop_and_remove(row.container, timeout=STOP_GRACE[row.engine])
        try:
            self.docker.run_service(
                service_spec(new, password=password, instance=self.instance, settings=self.settings)
            )
            self.wait_ready(new)
        except (EngineError, DatabaseFailed) as exc:
            self.docker.stop_and_remove(row.container, timeout=STOP_GRACE[row.engine])
            self.docker.run_service(before)
            self.wait_ready(row)
            raise DatabaseFailed(
                f"{row.name} did not start at {new.version} ({exc}); it runs {row.version} again"
            ) from exc
        self._set(
            row.name,
            state=DatabaseState.ready,
            version=new.version,
            image=new.image,
            image_digest=self._digest(new.image),
            server_version=self.server_version(new),
            error="",
        )
        return f"{row.name} upgraded in place from {row.version} to {new.version}"

    def _upgrade_major(self, row: Database, new: Database, password: str, *, actor: str) -> str:
        """Writes paused on the old (reads go on), a dump of it restored into a
        new instance, every table's row count compared, then attached apps
        switched by a release each and the old stopped, its volume kept."""
        work = self.settings.backups_dir / f".upgrade-{row.name}-{new.version}"
        shutil.rmtree(work, ignore_errors=True)
        if self.docker.volume_path(new.volume) is not None:  # never removed by this: it is not ours to
            raise DatabaseFailed(
                f"the volume {new.volume} exists already (kept from before?): nothing was changed; "
                "look at it, and remove it (docker volume rm) to go on"
            )
        _pause_writes(self.docker, row)
        try:
            entry = dump_database(self.docker, row, work)
            before = table_counts(self.docker, row)
            restore_database(
                self.docker,
                new,
                password=password,
                files=entry["files"],  # type: ignore[arg-type]
                source=work,
                instance=self.instance,
                settings=self.settings,
            )
            after = table_counts(self.docker, new)
            if after != before:
                differ = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
                raise DatabaseFailed(f"row counts differ after the restore ({', '.join(differ[:10])})")
        except Exception as exc:
            self.docker.stop_and_remove(new.container, timeout=STOP_GRACE[new.engine])
            self.docker.remove_volume(new.volume)
            _resume_writes(self.docker, row)
            raise DatabaseFailed(
                f"{row.name} was not upgraded to {new.version} ({exc}); it runs {row.version} as before"
            ) from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._set(
            row.name,
            state=DatabaseState.ready,
            version=new.version,
            image=new.image,
            container=new.container,
            volume=new.volume,
            image_digest=self._digest(new.image),
            server_version=self.server_version(new),
            upgraded_from=row.version,
            error="",
        )
        apps = self._release_attached(row.name, f"database {row.name} upgraded to {new.version}", actor)
        self.docker.stop(
            row.container, timeout=STOP_GRACE[row.engine]
        )  # kept, stopped: unless-stopped stays so
        counted = sum(before.values())
        return (
            f"{row.name} upgraded from {row.version} to {new.version}: {len(before)} table(s), "
            f"{counted} row(s), the same on both; {len(apps)} app(s) switched "
            f"({', '.join(apps) or 'none'}); the old instance {row.container} is stopped "
            f"and kept until `paas databases destroy {row.name} --previous`"
        )

    def _release_attached(self, name: str, trigger: str, actor: str) -> list[str]:
        """A release of each app that binds ``name`` (its endpoint changed),
        waited for while another worker can run it."""
        jobs: dict[str, int] = {}
        with session_scope(self.db) as session:
            rows = session.exec(select(EnvVar, App).join(App, col(App.id) == EnvVar.app_id)).all()
            apps = sorted(
                {
                    app.name: app
                    for row, app in rows
                    if name in (row.databases or []) and app.state == "active"
                }.items()
            )
            for app_name, app in apps:
                if app.current_deployment_id is None:
                    continue
                payload = ReleasePayload(trigger=trigger[:200], actor=actor, run_release=False)
                job = queue.enqueue(session, kind=queue.RELEASE, app=app, payload=payload)
                assert job.id is not None
                jobs[app_name] = job.id
        if self.settings.agent_workers < 2:
            return sorted(jobs)  # this worker is the only one: the releases run after this job
        deadline = time.monotonic() + 1800
        while jobs and time.monotonic() < deadline:
            with session_scope(self.db) as session:
                ended = [
                    a
                    for a, j in jobs.items()
                    if (found := session.get(Job, j)) is None or found.state not in ("queued", "running")
                ]
            for a in ended:
                jobs.pop(a)
            time.sleep(0.5)
        return sorted({*jobs, *[a for a, _ in apps]})

    def destroy_previous(self, name: str, *, purge: bool) -> str:
        with session_scope(self.db) as session:
            row = self._row(session, name)
            session.expunge(row)
        if not row.upgraded_from:
            raise DatabaseFailed(f"database {name} has no previous instance")
        container, volume, _network = names_for(name, row.engine, row.upgraded_from)
        self.docker.stop_and_remove(container, timeout=STOP_GRACE[row.engine])
        purged = purge and self.docker.remove_volume(volume)
        self._set(name, upgraded_from="")
        return f"{name}'s {row.upgraded_from} instance removed; " + (
            f"volume {volume} removed" if purged else f"volume {volume} kept"
        )

    def destroy(self, name: str, *, purge: bool) -> str:
        with session_scope(self.db) as session:
            row = self._row(session, name)
            session.expunge(row)
        deadline = time.monotonic() + self.settings.drain_seconds + self.settings.stop_timeout + 10
        while True:  # an app's release that bound it may still be retiring
            members = [m for m in self.docker.network_members(row.network) if m != row.container]
            if not members:
                break
            if time.monotonic() > deadline:
                self._set(name, state=DatabaseState.ready)
                raise DatabaseFailed(
                    f"containers are still on the network of {name}: {', '.join(members)} "
                    "(detach their apps first); nothing was removed"
                )
            time.sleep(1)
        self.docker.stop_and_remove(row.container, timeout=STOP_GRACE[row.engine])
        if row.upgraded_from:  # the instance an upgrade left stopped goes too (its volume as the other)
            old_container, old_volume, _net = names_for(name, row.engine, row.upgraded_from)
            self.docker.stop_and_remove(old_container, timeout=STOP_GRACE[row.engine])
            if purge:
                self.docker.remove_volume(old_volume)
        self.docker.remove_network(row.network)
        self.docker.remove_network(publish_network(row))
        purged = purge and self.docker.remove_volume(row.volume)
        with session_scope(self.db) as session:
            found = session.exec(select(Database).where(Database.name == name)).first()
            if found is not None:
                session.delete(found)
        log.info("database %s destroyed (volume %s %s)", name, row.volume, "removed" if purged else "kept")
        return f"{name} destroyed; " + (
            f"volume {row.volume} removed" if purged else f"volume {row.volume} kept"
        )

    def expose(self, name: str, port: int | None) -> str:
        """Publish on 127.0.0.1:``port`` (None: nowhere): the container is
        made again with its volume and password, a restart of a few seconds."""
        with session_scope(self.db) as session:
            row = self._row(session, name)
            password = open_password(self.keyring, row)
            session.expunge(row)
        if port and not _port_free(port):
            raise DatabaseFailed(
                f"127.0.0.1:{port} is taken on this server: choose another port; nothing changed"
            )
        before = service_spec(row, password=password, instance=self.instance, settings=self.settings)
        row.exposed_port = port
        labels = database_labels(self.instance, row.name)
        if port:
            self.docker.ensure_network(publish_network(row), labels, internal=False)
        self.docker.stop_and_remove(row.container, timeout=STOP_GRACE[row.engine])
        try:
            spec = service_spec(row, password=password, instance=self.instance, settings=self.settings)
            self.docker.run_service(spec)
        except EngineError as exc:  # back as it was: a failed expose never leaves it down
            self.docker.run_service(before)
            self.wait_ready(row)
            raise DatabaseFailed(f"{name} could not be exposed ({exc}); it runs as before") from exc
        self.wait_ready(row)
        if not port:
            self.docker.remove_network(publish_network(row))
        self._set(name, exposed_port=port)
        return f"{name} exposed on 127.0.0.1:{port}" if port else f"{name} is not exposed"

    # what it holds and serves -----------------------------------------------------------

    def stats(self, name: str) -> dict[str, int]:
        """Its size in bytes and connections in use against its limit (for
        `paas databases info`, the UI and `paas doctor`); {} when it is not running."""
        with session_scope(self.db) as session:
            row = self._row(session, name)
            session.expunge(row)
        return database_stats(self.docker, row)

    # releases -----------------------------------------------------------------------

    def endpoints(self, session: Session, names: Iterable[str]) -> dict[str, Endpoint]:
        """How an app reaches each database of ``names`` that is ready (or
        being upgraded, the old one serving), the password opened here."""
        found: dict[str, Endpoint] = {}
        for name in sorted(set(names)):
            row = session.exec(select(Database).where(Database.name == name)).first()
            if row is None or row.state not in (DatabaseState.ready, DatabaseState.upgrading):
                continue
            check_database(row, settings=self.settings)
            found[name] = Endpoint(
                engine=row.engine,
                network=row.network,
                hostname=row.container,
                port=PORTS[row.engine],
                username=row.username,
                password=open_password(self.keyring, row),
                database=row.database,
            )
        return found

    # at start -----------------------------------------------------------------------

    def _resume_interrupted_upgrades(self) -> None:
        with session_scope(self.db) as session:
            rows = [r for r in session.exec(select(Database)).all() if r.state == DatabaseState.upgrading]
            for r in rows:
                session.expunge(r)
        for row in rows:  # at start no job runs: an upgrading row's job died with its agent
            try:
                check_database(row, settings=self.settings)
                if self.docker.container(row.container) is not None:
                    self.docker.start_existing(row.container)
                    wait_ready(self.docker, row, timeout=self.settings.database_ready_timeout)
                    _resume_writes(self.docker, row)
                self._set(
                    row.name, state=DatabaseState.ready, error="an upgrade was interrupted; it runs as before"
                )
                log.warning("database %s: an interrupted upgrade was undone; it takes writes again", row.name)
            except Exception:  # noqa: BLE001  (one database must not stop the others)
                log.exception("database %s: could not undo an interrupted upgrade", row.name)

    def reconcile(self) -> None:
        """Every ready database's container running (made again from its row
        when it is gone: its volume holds the data); one whose major upgrade
        an agent's death interrupted takes writes again, as before it."""
        self._resume_interrupted_upgrades()
        with session_scope(self.db) as session:
            rows = [r for r in session.exec(select(Database)).all() if r.state == DatabaseState.ready]
            for r in rows:
                session.expunge(r)
        for row in rows:
            try:
                check_database(row, settings=self.settings)
                info = self.docker.container(row.container)
                if info is None:
                    log.warning("database %s: its container is gone; making it again", row.name)
                    password = open_password(self.keyring, row)
                    labels = database_labels(self.instance, row.name)
                    self.docker.ensure_network(row.network, labels)
                    if row.exposed_port:
                        self.docker.ensure_network(publish_network(row), labels, internal=False)
                    self.docker.run_service(
                        service_spec(row, password=password, instance=self.instance, settings=self.settings)
                    )
                elif info.status != "running":
                    self.docker.start_existing(row.container)
            except Exception:  # noqa: BLE001  (one database must not stop the others)
                log.exception("database %s: could not bring its container back", row.name)


def console_argv(row: Database, *, tty: bool) -> list[str]:
    """``docker exec`` into ``row``'s container with its own client: psql over
    its socket (trust inside the container), redis-cli (REDISCLI_AUTH is in
    its environment): no password on any command line."""
    if row.engine == "postgres":
        tool, user = ["psql", "-U", row.username, "-d", row.database], "postgres"
    else:
        tool, user = ["redis-cli"], "redis"
    return ["docker", "exec", "-it" if tty else "-i", "--user", user, row.container, *tool]


# backups -----------------------------------------------------------------------------------


def dump_database(docker: DockerEngine, row: Database, into: Path) -> dict[str, object]:
    """A logical dump of ``row`` (checked) taken while it runs, into the
    directory ``into``, each file read back by the engine's own tool before
    it counts; returns its manifest entry. Raises :class:`DatabaseFailed`
    naming the database and the step: a backup with a failed dump fails.

    PostgreSQL: ``pg_dumpall --globals-only`` (roles) and ``pg_dump
    --format=custom`` of every database that takes connections, each checked
    with ``pg_restore --list``. Redis: ``BGSAVE``, waited for, its
    ``dump.rdb`` copied and checked with ``redis-check-rdb``. The file names
    are paas's (``db-1.dump``): the server's database names go in the
    manifest only."""
    into.mkdir(mode=0o700, parents=True, exist_ok=True)
    entry: dict[str, object] = {
        "name": row.name,
        "engine": row.engine,
        "database": row.database,
        "version": row.version,
        "image": row.image,
        "exposed_port": row.exposed_port,
        "memory": row.memory,
    }
    if row.engine == "postgres":
        entry["files"] = _dump_postgres(docker, row, into)
    else:
        entry["files"] = _dump_redis(docker, row, into)
    return entry


def _exec(docker: DockerEngine, row: Database, command: list[str], *, user: str, what: str) -> bytes:
    code, out, err = docker.exec_to(row.container, command, user=user)
    if code != 0:
        said = err.decode("utf-8", errors="replace").strip()[-600:]
        raise DatabaseFailed(f"database {row.name}: {what} exited with status {code}: {said}")
    return out


def _exec_into(
    docker: DockerEngine, row: Database, command: list[str], path: Path, *, user: str, what: str
) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        code, _out, err = docker.exec_to(row.container, command, into=fh, user=user)
    if code != 0:
        said = err.decode("utf-8", errors="replace").strip()[-600:]
        raise DatabaseFailed(f"database {row.name}: {what} exited with status {code}: {said}")
    if path.stat().st_size == 0:
        raise DatabaseFailed(f"database {row.name}: {what} wrote nothing")
    os.chmod(path, 0o644)  # the checks read it as the database's user; its directory is root's, 0700


def _check_file(docker: DockerEngine, row: Database, path: Path, tool: list[str], what: str) -> None:
    inside = f"/paas-check/{path.name}"
    code, output = docker.run_tool(
        row.image, [*tool, inside], reads={str(path): inside}, timeout=600, user=_SERVER_USER[row.engine]
    )
    if code != 0:
        why = "timed out" if code is None else f"exited with status {code}"
        raise DatabaseFailed(
            f"database {row.name}: the dump {path.name} is not readable ({what} {why}): {output[-600:]}"
        )


def _dump_postgres(docker: DockerEngine, row: Database, into: Path) -> list[dict[str, str]]:
    user = ["-U", row.username]
    names = _databases_of(docker, row)
    files = [{"file": "globals.sql", "database": ""}]
    _exec_into(
        docker,
        row,
        ["pg_dumpall", *user, "--globals-only"],
        into / "globals.sql",
        user="postgres",
        what="pg_dumpall --globals-only",
    )
    for index, name in enumerate(names, start=1):
        path = into / f"db-{index}.dump"
        _exec_into(
            docker,
            row,
            # a table an app holds locked fails the dump in time rather than hanging the backup
            ["pg_dump", *user, "--format=custom", "--lock-wait-timeout=120s", "-d", conninfo(name)],
            path,
            user="postgres",
            what=f"pg_dump of database {index}",
        )
        _check_file(docker, row, path, ["pg_restore", "--list"], "pg_restore --list")
        files.append({"file": path.name, "database": name})
    return files


def _dump_redis(docker: DockerEngine, row: Database, into: Path) -> list[dict[str, str]]:
    def persistence() -> dict[str, str]:
        out = _exec(docker, row, ["redis-cli", "INFO", "persistence"], user="redis", what="INFO persistence")
        pairs = (
            line.split(":", 1) for line in out.decode("utf-8", errors="replace").splitlines() if ":" in line
        )
        return {k.strip(): v.strip() for k, v in pairs}

    before = persistence().get("rdb_last_save_time", "0")
    deadline = time.monotonic() + 600
    while True:  # a save already running makes BGSAVE wait its turn
        code, out, err = docker.exec_to(row.container, ["redis-cli", "BGSAVE", "SCHEDULE"], user="redis")
        said = (out + err).decode("utf-8", errors="replace").strip()
        if code == 0 and "ERR" not in said:
            break
        if time.monotonic() > deadline:
            raise DatabaseFailed(f"database {row.name}: BGSAVE was refused: {said[:300]}")
        time.sleep(0.5)
    while True:
        state = persistence()
        if state.get("rdb_bgsave_in_progress") == "0" and state.get("rdb_last_save_time", "0") != before:
            break
        if time.monotonic() > deadline:
            raise DatabaseFailed(f"database {row.name}: BGSAVE did not finish in 600s")
        time.sleep(0.2)
    status = state.get("rdb_last_bgsave_status")
    if status != "ok":
        raise DatabaseFailed(f"database {row.name}: BGSAVE failed (rdb_last_bgsave_status {status})")
    path = into / "dump.rdb"
    _exec_into(docker, row, ["cat", "/data/dump.rdb"], path, user="redis", what="copying dump.rdb")
    _check_file(docker, row, path, ["redis-check-rdb"], "redis-check-rdb")
    return [{"file": "dump.rdb", "database": "0"}]


def restore_database(
    docker: DockerEngine,
    row: Database,
    *,
    password: str,
    files: list[dict[str, str]],
    source: Path,
    instance: str,
    settings: Settings,
) -> None:
    """Make ``row`` (checked) afresh, on a new volume, and load its dumps from
    the directory ``source`` (as :func:`dump_database` wrote them), before
    any app starts. Raises :class:`DatabaseFailed` naming the step."""
    labels = database_labels(instance, row.name)
    docker.ensure_network(row.network, labels)
    if row.exposed_port:
        docker.ensure_network(publish_network(row), labels, internal=False)
    docker.ensure_volume(row.volume, labels)
    spec = service_spec(row, password=password, instance=instance, settings=settings)
    docker.run_service(spec)
    wait_ready(docker, row, timeout=settings.database_ready_timeout)
    if row.engine == "postgres":
        _restore_postgres(docker, row, password=password, files=files, source=source)
    else:
        _restore_redis(docker, row, spec=spec, source=source, timeout=settings.database_ready_timeout)


def restore_dumps(
    docker: DockerEngine,
    row: Database,
    *,
    password: str,
    files: list[dict[str, str]],
    source: Path,
    archived_database: str,
    settings: Settings,
    instance: str,
) -> None:
    """Load another database's dumps into ``row`` (running, empty): its main
    database's dump into ``row``'s, the others by their own names; then the
    row's password again (the dump's roles carry theirs)."""
    if row.engine == "postgres":
        mapped = [
            {**item, "database": row.database if item["database"] == archived_database else item["database"]}
            for item in files
        ]
        # another database's dump: its data, not its roles (globals.sql is the source's to shape),
        # owners or grants; the row keeps its own password
        data = [item for item in mapped if item["file"] != "globals.sql"]
        _restore_postgres(
            docker, row, password=password, files=data, source=source, options=("--no-owner", "--no-acl")
        )
    else:
        spec = service_spec(row, password=password, instance=instance, settings=settings)
        _restore_redis(docker, row, spec=spec, source=source, timeout=settings.database_ready_timeout)


def _client(
    docker: DockerEngine, row: Database, password: str, command: list[str], reads: dict[str, str], what: str
) -> None:
    code, output = docker.run_tool(
        row.image,
        command,
        reads=reads,
        timeout=3600,
        user=_SERVER_USER[row.engine],
        network=row.network,
        env={"PGPASSWORD": password, "PGHOST": row.container, "PGUSER": row.username},
    )
    if code != 0:
        why = "timed out" if code is None else f"exited with status {code}"
        raise DatabaseFailed(f"database {row.name}: {what} {why}: {output[-800:]}")


def _restore_postgres(
    docker: DockerEngine,
    row: Database,
    *,
    password: str,
    files: list[dict[str, str]],
    source: Path,
    options: tuple[str, ...] = (),
) -> None:
    for item in files:
        path = source / item["file"]
        inside = f"/paas-restore/{path.name}"
        if item["file"] == "globals.sql":  # roles: the one the image made already exists, and is said so
            _client(
                docker,
                row,
                password,
                ["psql", "-X", "-q", "-d", "postgres", "-f", inside],
                {str(path): inside},
                "psql of globals.sql",
            )
            continue
        name = item["database"]
        if name not in ("postgres", row.database):
            _client(
                docker, row, password, ["createdb", "--", name], {}, f"createdb of database {item['file']}"
            )
        _client(
            docker,
            row,
            password,
            ["pg_restore", "--exit-on-error", "--no-password", *options, "-d", conninfo(name), inside],
            {str(path): inside},
            f"pg_restore of {item['file']}",
        )


def _restore_redis(
    docker: DockerEngine, row: Database, *, spec: ServiceSpec, source: Path, timeout: int
) -> None:
    """Redis loads dump.rdb at start when there is no AOF yet: stop it, put
    the file in its volume with the owner of its data directory, start it."""
    docker.stop_and_remove(row.container, timeout=STOP_GRACE[row.engine])
    data = docker.volume_path(row.volume)
    if data is None:
        raise DatabaseFailed(f"database {row.name}: its volume {row.volume} is gone")
    owner = os.stat(data)
    aof = data / "appendonlydir"
    if aof.is_dir() and not aof.is_symlink():
        shutil.rmtree(aof)
    target = data / "dump.rdb"
    if target.is_symlink() or target.exists():
        target.unlink()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out, open(source / "dump.rdb", "rb") as dump:
        shutil.copyfileobj(dump, out, 1024 * 1024)
    os.chown(target, owner.st_uid, owner.st_gid)
    # with the AOF on and no AOF yet, Redis starts empty and ignores dump.rdb: start it with
    # the AOF off (it loads dump.rdb), turn the AOF on (Redis writes it from what it holds),
    # then start it as it always runs
    loading = replace(spec, command=redis_command(spec.memory, appendonly=False))
    docker.run_service(loading)
    wait_ready(docker, row, timeout=timeout)
    _exec(
        docker,
        row,
        ["redis-cli", "CONFIG", "SET", "appendonly", "yes"],
        user="redis",
        what="CONFIG SET appendonly",
    )
    deadline = time.monotonic() + timeout
    while True:
        info = _exec(docker, row, ["redis-cli", "INFO", "persistence"], user="redis", what="INFO persistence")
        said = info.decode("utf-8", errors="replace")
        if (
            "aof_enabled:1" in said
            and "aof_rewrite_in_progress:0" in said
            and "aof_rewrite_scheduled:0" in said
        ):
            break
        if time.monotonic() > deadline:
            raise DatabaseFailed(f"database {row.name}: the AOF was not written in {timeout}s")
        time.sleep(0.2)
    docker.stop_and_remove(row.container, timeout=STOP_GRACE[row.engine])
    docker.run_service(spec)
    wait_ready(docker, row, timeout=timeout)


# upgrades: writes paused, rows counted ------------------------------------------------------


def _databases_of(docker: DockerEngine, row: Database) -> list[str]:
    listed = _exec(
        docker,
        row,
        [
            "psql",
            "-U",
            row.username,
            "-d",
            "postgres",
            "-X",
            "-tA",
            "-0",  # NUL after each name: a name may hold a line break
            "-c",
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
        ],
        user="postgres",
        what="listing its databases",
    )
    return [n for n in listed.decode("utf-8", errors="replace").rstrip("\n").split("\0") if n]


def conninfo(name: str) -> str:
    """A database's name as psql's, pg_dump's and pg_restore's ``-d`` take it
    safely: a name holding ``=`` would otherwise be read as a connection string."""
    return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


_COUNT_TABLES = (
    "SELECT format('%s.%s', table_schema, table_name), "
    "(xpath('/row/c/text()', query_to_xml("
    "format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]::text "
    "FROM information_schema.tables "
    "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
)


def table_counts(docker: DockerEngine, row: Database) -> dict[str, int]:
    """Every table's exact row count, ``database/schema.table`` → rows (Redis: each keyspace's keys)."""
    counts: dict[str, int] = {}
    if row.engine == "redis":
        info = _exec(docker, row, ["redis-cli", "INFO", "keyspace"], user="redis", what="INFO keyspace")
        for line in info.decode("utf-8", errors="replace").splitlines():
            if line.startswith("db") and ":keys=" in line:
                space, rest = line.split(":", 1)
                counts[space] = int(rest.split(",")[0].removeprefix("keys="))
        return counts
    for name in _databases_of(docker, row):
        out = _exec(
            docker,
            row,
            ["psql", "-U", row.username, "-d", conninfo(name), "-X", "-tA", "-F", "\t", "-c", _COUNT_TABLES],
            user="postgres",
            what=f"counting the rows of {name}",
        )
        for line in out.decode("utf-8", errors="replace").splitlines():
            table, _sep, count = line.rpartition("\t")
            if table:
                counts[f"{name}/{table}"] = int(count)
    return counts


def _pause_writes(docker: DockerEngine, row: Database) -> None:
    """Reads go on, writes stop: each database read-only for new sessions and
    the sessions open now ended (apps reconnect, read-only); Redis: writes paused."""
    _read_only(docker, row, True)


def _resume_writes(docker: DockerEngine, row: Database) -> None:
    try:
        _read_only(docker, row, False)
    except (DatabaseFailed, EngineError):
        log.exception("database %s: could not take writes again", row.name)


def _read_only(docker: DockerEngine, row: Database, on: bool) -> None:
    if row.engine == "redis":
        command = (
            ["redis-cli", "CLIENT", "PAUSE", "3600000", "WRITE"] if on else ["redis-cli", "CLIENT", "UNPAUSE"]
        )
        _exec(docker, row, command, user="redis", what=" ".join(command[1:3]))
        return
    for name in _databases_of(docker, row):
        _psql(
            docker,
            row,
            f'ALTER DATABASE "{_ident(name)}" SET default_transaction_read_only = {"on" if on else "off"}',
        )
    _psql(  # sessions open now took the old setting: they end, and their apps reconnect
        docker,
        row,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )


def _ident(name: str) -> str:
    return name.replace('"', '""')


def _psql(docker: DockerEngine, row: Database, sql: str) -> None:
    _exec(
        docker,
        row,
        ["psql", "-U", row.username, "-d", "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
        user="postgres",
        what="psql",
    )


_STATS_SQL = (
    "SELECT (SELECT sum(pg_database_size(datname)) FROM pg_database)::bigint, "
    "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
    "current_setting('max_connections')::int"
)


def database_stats(docker: DockerEngine, row: Database) -> dict[str, int]:
    """``size`` (bytes on disk, PostgreSQL; memory in use, Redis),
    ``connections`` and ``max_connections``; {} when it does not answer."""
    try:
        if row.engine == "postgres":
            out = _exec(
                docker,
                row,
                ["psql", "-U", row.username, "-d", "postgres", "-X", "-tA", "-F", " ", "-c", _STATS_SQL],
                user="postgres",
                what="reading its statistics",
            )
            size, connections, most = (int(v) for v in out.decode().split())
            return {"size": size, "connections": connections, "max_connections": most}
        out = _exec(docker, row, ["redis-cli", "INFO"], user="redis", what="INFO")
        info = dict(
            line.split(":", 1) for line in out.decode("utf-8", errors="replace").splitlines() if ":" in line
        )
        limit = _exec(
            docker, row, ["redis-cli", "CONFIG", "GET", "maxclients"], user="redis", what="CONFIG GET"
        )
        return {
            "size": int(info.get("used_memory", "0").strip()),
            "connections": int(info.get("connected_clients", "0").strip()),
            "max_connections": int(limit.decode().split()[-1]),
        }
    except (DatabaseFailed, EngineError, ValueError, IndexError):
        return {}
