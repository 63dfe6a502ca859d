"""Databases beside the apps, as web keeps them: the operations behind the
API, CLI and UI (create, list, show, destroy, expose, attach, detach).

Web only records intent: a row and a ``database`` job the agent carries
out (agent/databases.py), which also makes the password, so web never
holds it. Attaching is an env change like any other: the app gets a
secret variable whose value is a reference, ``${NAME.DATABASE_URL}``,
which the agent resolves at release time (paas/bindings.py).
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from paas import envvars, queue, services
from paas.bindings import DEFAULT_KEY, PARTS, PORTS, account_for, image_for, names_for
from paas.crypto import Keyring
from paas.errors import Conflict, InvalidInput, NotFound, found
from paas.models import App, Database, DatabaseState, EnvVar, Job
from paas.payloads import DatabasePayload
from paas.schemas import (
    AttachmentPublic,
    DatabaseAttach,
    DatabaseCreate,
    DatabaseDetach,
    DatabasePublic,
    EnvChange,
    EnvChangeResult,
    EnvSet,
    version_key,
)
from paas.settings import Settings

__all__ = [
    "attach",
    "attachments",
    "create_database",
    "database_public",
    "destroy_database",
    "detach",
    "expose_database",
    "upgrade_database",
    "get_database",
    "list_databases",
]


def get_database(session: Session, name: str) -> Database:
    return found(
        session.exec(select(Database).where(Database.name == name)).first(), f"no database named {name!r}"
    )


def list_databases(session: Session) -> list[Database]:
    return list(session.exec(select(Database).order_by(col(Database.name))).all())


def attachments(session: Session, name: str) -> list[AttachmentPublic]:
    """The apps whose env binds database ``name``, with the variables that do
    (an app being deleted no longer counts: deleting an app detaches it)."""
    keys: dict[str, list[str]] = {}
    rows = session.exec(select(EnvVar, App).join(App, col(App.id) == EnvVar.app_id)).all()
    for row, app in rows:
        if name in (row.databases or []) and app.state == "active":
            keys.setdefault(app.name, []).append(row.key)
    return [AttachmentPublic(app=a, keys=sorted(k)) for a, k in sorted(keys.items())]


def database_public(session: Session, db: Database, *, job: Job | None = None) -> DatabasePublic:
    return DatabasePublic(
        name=db.name,
        engine=db.engine,
        version=db.version,
        image=db.image,
        image_digest=db.image_digest,
        server_version=db.server_version,
        state=db.state,
        error=db.error,
        hostname=db.container,
        port=PORTS.get(db.engine, 0),
        username=db.username,
        database=db.database,
        memory=db.memory,
        exposed_port=db.exposed_port,
        attached=attachments(session, db.name),
        bindable=[f"${{{db.name}.{part}}}" for part in PARTS],
        upgraded_from=db.upgraded_from,
        last_backup_at=db.last_backup_at,
        last_backup_error=db.last_backup_error,
        created_at=db.created_at,
        created_by=db.created_by,
        job=services.job_public(session, job) if job is not None else None,
    )


def create_database(
    session: Session, *, spec: DatabaseCreate, actor: str, settings: Settings
) -> tuple[Database, Job]:
    """A row and the job that makes it; the agent makes the container,
    network, volume and password."""
    if session.exec(select(Database).where(Database.name == spec.name)).first() is not None:
        raise Conflict(f"a database named {spec.name!r} already exists")
    if spec.engine == "postgres":
        repository, version = settings.postgres_image, spec.version or settings.postgres_version
    else:
        repository, version = settings.redis_image, spec.version or settings.redis_version
    username, dbname = account_for(spec.name, spec.engine)
    container, volume, network = names_for(spec.name, spec.engine, version)
    db = Database(
        name=spec.name,
        engine=spec.engine,
        version=version,
        image=image_for(repository, version, settings.database_variant),
        username=username,
        database=dbname,
        memory=spec.memory,
        container=container,
        volume=volume,
        network=network,
        created_by=actor,
    )
    session.add(db)
    session.flush()
    job = queue.enqueue_database(session, name=db.name, payload=DatabasePayload(op="create", actor=actor))
    services.record_event(
        session, actor=actor, action="database.create", detail=f"{db.name}: {db.engine} {db.image}"
    )
    return db, job


def _busy(session: Session, db: Database) -> None:
    running = session.exec(
        select(Job).where(
            Job.kind == queue.DATABASE,
            Job.app_name == db.name,
            col(Job.state).in_(("queued", "running")),
        )
    ).first()
    if running is not None:
        raise Conflict(
            f"database {db.name!r} is busy (job {running.id} is {running.state}); try again when it ends"
        )


def destroy_database(
    session: Session, *, name: str, purge: bool, actor: str, previous: bool = False
) -> tuple[Database, Job]:
    """Refused while an app binds it; the volume stays unless ``purge``.
    With ``previous``, only the instance an upgrade left stopped goes."""
    db = get_database(session, name)
    if previous:
        if not db.upgraded_from:
            raise NotFound(f"database {name!r} has no previous instance (no major upgrade left one)")
        _busy(session, db)
        job = queue.enqueue_database(
            session, name=name, payload=DatabasePayload(op="destroy", actor=actor, purge=purge, previous=True)
        )
        services.record_event(
            session, actor=actor, action="database.destroy", detail=f"{name}: its {db.upgraded_from} instance"
        )
        return db, job
    attached = attachments(session, name)
    if attached:
        apps = ", ".join(a.app for a in attached)
        raise Conflict(
            f"database {name!r} is attached to {apps}: detach it first (paas databases detach {name} APP)"
        )
    _busy(session, db)
    db.state = DatabaseState.destroying
    session.add(db)
    job = queue.enqueue_database(
        session, name=name, payload=DatabasePayload(op="destroy", actor=actor, purge=purge)
    )
    services.record_event(
        session,
        actor=actor,
        action="database.destroy",
        detail=f"{name}: {'volume purged' if purge else f'volume {db.volume} kept'}",
    )
    return db, job


def expose_database(
    session: Session, *, name: str, port: int | None, actor: str, settings: Settings
) -> tuple[Database, Job]:
    db = get_database(session, name)
    if port is not None:
        check_port_free_of_apps(port, settings)
    if db.state != DatabaseState.ready:
        raise Conflict(f"database {name!r} is {db.state}, not ready")
    if port is not None:
        taken = session.exec(
            select(Database).where(Database.exposed_port == port, Database.name != name)
        ).first()
        if taken is not None:
            raise Conflict(f"port {port} is already where database {taken.name!r} is exposed")
    _busy(session, db)
    job = queue.enqueue_database(
        session, name=name, payload=DatabasePayload(op="expose", actor=actor, port=port)
    )
    where = f"127.0.0.1:{port}" if port else "nowhere (not exposed)"
    services.record_event(session, actor=actor, action="database.expose", detail=f"{name}: {where}")
    return db, job


def upgrade_database(
    session: Session, *, name: str, version: str, actor: str, settings: Settings
) -> tuple[Database, Job]:
    """Refused: an older version than the data's, the same, or a database
    not ready. The image family stays the database's own."""
    db = get_database(session, name)
    if db.state != DatabaseState.ready:
        raise Conflict(f"database {name!r} is {db.state}, not ready")
    current, wanted = version_key(db.version), version_key(version)
    if wanted[0] < current[0] or (wanted[0] == current[0] and wanted < current):
        raise InvalidInput(
            f"{name} holds data of {db.engine} {db.version}: an older version ({version}) cannot read it"
        )
    if wanted == current:
        raise Conflict(f"{name} runs {db.engine} {db.version} already")
    if wanted[0] != current[0]:
        if db.upgraded_from:
            raise Conflict(
                f"{name} keeps its {db.upgraded_from} instance from the last major upgrade: "
                f"destroy it first (paas databases destroy {name} --previous)"
            )
        if db.exposed_port:
            raise Conflict(
                f"{name} is exposed on 127.0.0.1:{db.exposed_port}: --no-expose it for the upgrade"
            )
    _busy(session, db)
    db.state = DatabaseState.upgrading
    session.add(db)
    job = queue.enqueue_database(
        session, name=name, payload=DatabasePayload(op="upgrade", actor=actor, version=version)
    )
    how = "in place (a minor version)" if wanted[0] == current[0] else "by dump and restore (a major version)"
    services.record_event(
        session, actor=actor, action="database.upgrade", detail=f"{name}: {db.version} to {version}, {how}"
    )
    return db, job


def attach(
    session: Session, *, name: str, body: DatabaseAttach, actor: str, keyring: Keyring
) -> EnvChangeResult:
    """The app gets ``KEY=${NAME.DATABASE_URL}`` as a secret variable, by an
    env release (zero downtime), or staged with ``restart: false``."""
    db = get_database(session, name)
    if db.state not in (DatabaseState.ready, DatabaseState.creating):
        raise Conflict(f"database {name!r} is {db.state}: only a ready database can be attached")
    key = body.key or DEFAULT_KEY[db.engine]
    change = EnvChange(
        set=[EnvSet(key=key, value=f"${{{name}.DATABASE_URL}}", secret=True)], restart=body.restart
    )
    result = envvars.change_env(session, name=body.app, change=change, actor=actor, keyring=keyring)
    services.record_event(
        session, actor=actor, action="database.attach", app_name=body.app, detail=f"{name} as {key}"
    )
    return result


def detach(
    session: Session, *, name: str, body: DatabaseDetach, actor: str, keyring: Keyring
) -> EnvChangeResult:
    """Every variable of the app that binds the database goes, by one env release."""
    get_database(session, name)
    app = services.get_app(session, body.app)
    keys = [
        row.key
        for row in session.exec(select(EnvVar).where(EnvVar.app_id == app.id)).all()
        if name in (row.databases or [])
    ]
    if not keys:
        raise NotFound(f"app {body.app!r} has no env var that binds database {name!r}")
    change = EnvChange(unset=keys, restart=body.restart)
    result = envvars.change_env(session, name=body.app, change=change, actor=actor, keyring=keyring)
    services.record_event(
        session, actor=actor, action="database.detach", app_name=body.app, detail=f"{name}: {', '.join(keys)}"
    )
    return result


def check_port_free_of_apps(port: int, settings: Settings) -> None:
    if settings.port_range_start <= port <= settings.port_range_end:
        raise InvalidInput(
            f"port {port} is in the range apps are published on "
            f"({settings.port_range_start}-{settings.port_range_end}): choose another"
        )
