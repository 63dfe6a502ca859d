"""The REST API for databases: thin routes over paas/databases.py.

Web records intent (a row, a ``database`` job the agent carries out) and
never holds a database's password: the agent makes it, and resolves an
app's ``${NAME.PART}`` bindings when it releases the app.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, status

from paas import databases
from paas.schemas import (
    DatabaseAttach,
    DatabaseCreate,
    DatabaseDetach,
    DatabaseExpose,
    DatabasePublic,
    DatabaseUpgrade,
    EnvChangeResult,
)
from web.agent_client import database_stats
from web.deps import CurrentToken, KeyringDep, SessionDep, SettingsDep, actor
from web.routes.api import ERRORS

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", responses={400: ERRORS[400], 401: ERRORS[401]})
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such database (or app)"}}
BUSY: dict[int | str, dict[str, Any]] = {
    409: {"description": "The name is taken, the database is busy or attached, or not ready"}
}


@router.get("/databases", response_model=list[DatabasePublic], summary="List databases")
def list_databases(session: SessionDep, _token: CurrentToken) -> list[DatabasePublic]:
    return [databases.database_public(session, d) for d in databases.list_databases(session)]


@router.post(
    "/databases",
    response_model=DatabasePublic,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Create a database",
    description=(
        "Queues the agent's job that makes its container, network, volume and password; follow "
        "`job` (GET /jobs/{id}) until the database is ready. Never published on a host port."
    ),
    responses={409: BUSY[409], 422: {"description": "Invalid field"}},
)
def post_database(
    spec: DatabaseCreate, session: SessionDep, settings: SettingsDep, token: CurrentToken
) -> DatabasePublic:
    db, job = databases.create_database(session, spec=spec, actor=actor(token), settings=settings)
    return databases.database_public(session, db, job=job)


@router.get(
    "/databases/{name}", response_model=DatabasePublic, summary="Show a database", responses=NOT_FOUND
)
def get_database(
    name: str, session: SessionDep, settings: SettingsDep, _token: CurrentToken
) -> DatabasePublic:
    public = databases.database_public(session, databases.get_database(session, name))
    session.commit()  # the agent reads the database too: hold no lock while it answers
    if public.state in ("ready", "upgrading"):
        public.stats = database_stats(settings, name)
    return public


@router.delete(
    "/databases/{name}",
    response_model=DatabasePublic,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Destroy a database",
    description="Refused while any app binds it. Its volume (the data) is kept unless `purge`.",
    responses={**NOT_FOUND, **BUSY},
)
def delete_database(
    name: str,
    session: SessionDep,
    token: CurrentToken,
    purge: bool = Query(default=False, description="Remove its volume too: the data is gone"),
    previous: bool = Query(default=False, description="Only the instance an upgrade left stopped"),
) -> DatabasePublic:
    db, job = databases.destroy_database(
        session, name=name, purge=purge, previous=previous, actor=actor(token)
    )
    return databases.database_public(session, db, job=job)


@router.put(
    "/databases/{name}/expose",
    response_model=DatabasePublic,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Publish a database on 127.0.0.1 (for an SSH tunnel), or stop",
    description="Only ever on 127.0.0.1. The container is made again: a restart of a few seconds.",
    responses={**NOT_FOUND, **BUSY},
)
def put_expose(
    name: str, body: DatabaseExpose, session: SessionDep, settings: SettingsDep, token: CurrentToken
) -> DatabasePublic:
    db, job = databases.expose_database(
        session, name=name, port=body.port, actor=actor(token), settings=settings
    )
    return databases.database_public(session, db, job=job)


@router.put(
    "/databases/{name}/version",
    response_model=DatabasePublic,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Upgrade a database",
    description=(
        "A minor version in place (same data directory, clean stop, new image). A major version "
        "never in place: writes paused, a dump restored into a new instance, every table's row "
        "count compared, attached apps switched by a release, the old instance kept stopped. "
        "An older version than the data's is refused."
    ),
    responses={**NOT_FOUND, **BUSY, 422: {"description": "An older version, or not a version"}},
)
def put_version(
    name: str, body: DatabaseUpgrade, session: SessionDep, settings: SettingsDep, token: CurrentToken
) -> DatabasePublic:
    db, job = databases.upgrade_database(
        session, name=name, version=body.version, actor=actor(token), settings=settings
    )
    return databases.database_public(session, db, job=job)


@router.post(
    "/databases/{name}/attach",
    response_model=EnvChangeResult,
    summary="Attach a database to an app",
    description=(
        "The app gets a secret env var (DATABASE_URL, REDIS_URL, or `key`) bound to "
        "`${NAME.DATABASE_URL}`, applied by an env release with no downtime."
    ),
    responses={**NOT_FOUND, **BUSY},
)
def post_attach(
    name: str, body: DatabaseAttach, session: SessionDep, keyring: KeyringDep, token: CurrentToken
) -> EnvChangeResult:
    return databases.attach(session, name=name, body=body, actor=actor(token), keyring=keyring)


@router.post(
    "/databases/{name}/detach",
    response_model=EnvChangeResult,
    summary="Detach a database from an app",
    description="Every env var of the app that binds the database goes, by one env release.",
    responses=NOT_FOUND,
)
def post_detach(
    name: str, body: DatabaseDetach, session: SessionDep, keyring: KeyringDep, token: CurrentToken
) -> EnvChangeResult:
    return databases.detach(session, name=name, body=body, actor=actor(token), keyring=keyring)
