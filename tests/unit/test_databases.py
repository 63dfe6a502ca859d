"""Databases without an engine: bindable variables (pure), each container's
spec (pure, by equality), the agent's re-check of a database row, and the
API's rows and jobs (the real containers are tests/integration/test_databases.py)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from agent.databases import publish_network, redis_command, service_spec
from paas.bindings import Endpoint, names_for, references, resolve
from paas.crypto import Keyring, db_password_purpose, ensure_keys
from paas.db import session_scope
from paas.env_snapshots import bind_databases, open_snapshot, snapshot_env
from paas.errors import InvalidInput
from paas.models import App, Database, DatabaseState, EnvVar, Job
from paas.settings import Settings
from paas.trust import UntrustedRow, check_database
from tests.unit.test_rollback_api import shop as shop  # the fixture

PG = Endpoint(
    engine="postgres",
    network="paasdb-db",
    hostname="paasdb-db-pg15",
    port=5432,
    username="postgres",
    password="pw-Secret_1",
    database="db",
)


# bindable variables (pure) ---------------------------------------------------------------


def test_references_are_the_known_parts_of_a_database_name_each_once() -> None:
    value = "${db.HOSTNAME}:${db.PORT} ${cache.DATABASE_URL} ${db.HOSTNAME} ${HOME} ${db.OTHER} ${Db.PORT}"
    assert references(value) == ["db", "cache"]
    assert references("$db.HOSTNAME {db.PORT}") == []


def test_resolve_replaces_every_part_and_leaves_other_text_alone() -> None:
    value = (
        "postgresql+psycopg://${db.USERNAME}:${db.PASSWORD}@${db.HOSTNAME}:${db.PORT}/${db.DATABASE} ${HOME}"
    )
    assert (
        resolve(value, {"db": PG})
        == "postgresql+psycopg://postgres:pw-Secret_1@paasdb-db-pg15:5432/db ${HOME}"
    )
    assert (
        resolve("${db.DATABASE_URL}", {"db": PG})
        == "postgresql://postgres:pw-Secret_1@paasdb-db-pg15:5432/db"
    )
    redis = Endpoint("redis", "paasdb-c", "paasdb-c-redis7", 6379, "default", "pw", "0")
    assert resolve("${c.DATABASE_URL}", {"c": redis}) == "redis://default:pw@paasdb-c-redis7:6379/0"
    with pytest.raises(KeyError):
        resolve("${gone.PORT}", {"db": PG})


def test_names_never_collide_with_an_apps_and_carry_the_major_version() -> None:
    assert names_for("db", "postgres", "15.4") == ("paasdb-db-pg15", "paasdb-db-pg15-data", "paasdb-db")
    assert names_for("cache", "redis", "7.2") == (
        "paasdb-cache-redis7",
        "paasdb-cache-redis7-data",
        "paasdb-cache",
    )


def test_a_password_the_agent_did_not_make_is_refused(settings: Settings) -> None:
    """Web holds the public key: it can seal a password of its choosing, with a
    line break for redis.conf or an @ for the URL; the agent refuses its form."""
    from agent.databases import DatabaseFailed, open_password

    ensure_keys(settings.keys_dir)
    web = Keyring(settings.keys_dir, private=False)
    agent = Keyring(settings.keys_dir, private=True)
    for chosen in ("known\nenable-module-command yes", "x@evil:1/", "short"):
        row = _row(password=web.encrypt(chosen, secret=True, purpose=db_password_purpose("db")))
        with pytest.raises(DatabaseFailed, match="not one the agent made"):
            open_password(agent, row)
    good = "A" * 32
    row = _row(password=web.encrypt(good, secret=True, purpose=db_password_purpose("db")))
    assert open_password(agent, row) == good


def test_names_from_the_server_never_become_connection_strings() -> None:
    from agent.databases import conninfo

    assert conninfo("db") == "dbname='db'"
    assert conninfo("host=evil.example user=x") == "dbname='host=evil.example user=x'"
    assert conninfo("a'b\\c") == "dbname='a\\'b\\\\c'"


def test_a_release_binds_its_databases_and_joins_their_networks(settings: Settings) -> None:
    ensure_keys(settings.keys_dir)
    keyring = Keyring(settings.keys_dir, private=True)
    snapshot = [
        {
            "key": "POSTGRES_SERVER",
            "scope": "run",
            "secret": False,
            "value": keyring.encrypt("${db.HOSTNAME}"),
        },
        {
            "key": "POSTGRES_PASSWORD",
            "scope": "run",
            "secret": True,
            "value": keyring.encrypt(
                "${db.PASSWORD}", secret=True, purpose=_env("shop", "POSTGRES_PASSWORD")
            ),
        },
        {"key": "GREETING", "scope": "run", "secret": False, "value": keyring.encrypt("hi ${x}")},
    ]
    opened = open_snapshot(snapshot, keyring, app="shop")
    assert opened.bound() == {"db"}
    bound = bind_databases(opened, {"db": PG})
    assert bound.run == {
        "POSTGRES_SERVER": "paasdb-db-pg15",
        "POSTGRES_PASSWORD": "pw-Secret_1",
        "GREETING": "hi ${x}",
    }
    assert bound.networks == ("paasdb-db",)
    with pytest.raises(
        InvalidInput, match="POSTGRES_SERVER binds database 'db', which does not exist"
    ) as caught:
        bind_databases(opened, {})
    assert "pw-Secret_1" not in str(caught.value)


def _env(app: str, key: str) -> Any:
    from paas.crypto import env_purpose

    return env_purpose(app, key)


# each container (pure) --------------------------------------------------------------------


def _row(**kw: Any) -> Database:
    base = {
        "name": "db",
        "engine": "postgres",
        "version": "15",
        "image": "postgres:15-bookworm",
        "username": "postgres",
        "database": "db",
        "container": "paasdb-db-pg15",
        "volume": "paasdb-db-pg15-data",
        "network": "paasdb-db",
    }
    return Database(**{**base, **kw})


def test_postgres_runs_private_bounded_and_stops_cleanly(settings: Settings) -> None:
    spec = service_spec(_row(), password="pw", instance="i1", settings=settings)
    assert (spec.name, spec.image, spec.network, spec.port, spec.exposed_port) == (
        "paasdb-db-pg15",
        "postgres:15-bookworm",
        "paasdb-db",
        5432,
        None,
    )
    assert dict(spec.env) == {
        "POSTGRES_PASSWORD": "pw",
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": "db",
        "PGDATA": "/var/lib/postgresql/data",  # the volume's path, whatever the image's default
    }
    assert (spec.volume, spec.data_path) == ("paasdb-db-pg15-data", "/var/lib/postgresql/data")
    assert spec.health == ("CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "db")
    assert (spec.stop_signal, spec.stop_timeout, spec.memory) == ("SIGINT", 60, 256 * 1024 * 1024)
    assert dict(spec.labels) == {"paas.instance": "i1", "paas.database": "db", "paas.engine": "postgres"}
    assert "pw" not in repr(spec)  # the password is never in a log line made of the spec
    exposed = service_spec(_row(exposed_port=15432), password="pw", instance="i1", settings=settings)
    assert (exposed.exposed_port, exposed.publish_network) == (15432, publish_network(_row()))


def test_redis_has_its_password_only_in_its_environment(settings: Settings) -> None:
    row = _row(name="c", engine="redis", version="7.0", image="redis:7.0-bookworm", username="default")
    spec = service_spec(row, password="pw-Secret_1", instance="i1", settings=settings)
    assert dict(spec.env) == {"REDISCLI_AUTH": "pw-Secret_1"}
    assert spec.user == "redis" and spec.data_path == "/data"
    assert "pw-Secret_1" not in " ".join(spec.command)
    script = redis_command(256 * 1024 * 1024)[2]
    assert "appendonly yes" in script and "maxmemory 201326592" in script
    assert "maxmemory-policy noeviction" in script
    assert '"$REDISCLI_AUTH"' in script and script.endswith("exec redis-server /dev/shm/redis.conf")


# the agent's re-check ------------------------------------------------------------------------


def test_a_row_pointing_at_another_image_or_volume_is_refused(settings: Settings) -> None:
    assert check_database(_row(), settings=settings).name == "db"
    # made before PAAS_DATABASE_VARIANT changed: its own image stays trusted
    assert check_database(_row(image="postgres:15-trixie"), settings=settings).image == "postgres:15-trixie"
    for change in (
        {"image": "evil/postgres:15-bookworm"},
        {"image": "postgres:latest"},
        {"image": "postgres:15-bookworm@sha256:" + "0" * 64},
        {"image": "postgres:16-bookworm"},
        {"image": "redis:15-bookworm"},
        {"volume": "paas-shop-data"},
        {"container": "paas-shop-web-v1-1"},
        {"network": "bridge"},
        {"engine": "mysql"},
        {"version": "15\n"},
        {"exposed_port": 22},
        {"username": "app"},
        {"name": "../db"},
        {"upgraded_from": "1-redis7"},
    ):
        with pytest.raises(UntrustedRow):
            check_database(_row(**change), settings=settings)


# the API ---------------------------------------------------------------------------------------


def _jobs(engine: Engine) -> list[Job]:
    with Session(engine) as s:
        return list(s.exec(select(Job).order_by(Job.id)).all())  # type: ignore[arg-type]


def _ready(engine: Engine, name: str, settings: Settings) -> None:
    """As the agent leaves it: ready, its password sealed."""
    keyring = Keyring(settings.keys_dir, private=True)
    with session_scope(engine) as s:
        row = s.exec(select(Database).where(Database.name == name)).one()
        row.state = DatabaseState.ready
        row.password = keyring.encrypt("pw", secret=True, purpose=db_password_purpose(name))
        s.add(row)
        for job in s.exec(select(Job).where(Job.app_name == name)).all():
            job.state = "done"
            s.add(job)


def test_create_records_intent_and_queues_the_agents_job(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    r = client.post(
        "/api/v1/databases", json={"name": "db", "engine": "postgres", "version": "15"}, headers=auth
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["state"] == "creating" and body["image"] == "postgres:15-bookworm"
    assert body["hostname"] == "paasdb-db-pg15" and body["port"] == 5432 and body["exposed_port"] is None
    assert "${db.DATABASE_URL}" in body["bindable"] and body["job"]["kind"] == "database"
    (job,) = _jobs(engine)
    assert (job.kind, job.app_id, job.app_name, job.payload["op"]) == ("database", None, "db", "create")
    with Session(engine) as s:
        assert s.exec(select(Database)).one().password == ""  # the agent makes it; web never holds it
    again = client.post("/api/v1/databases", json={"name": "db", "engine": "redis"}, headers=auth)
    assert again.status_code == 409
    for bad in (
        {"name": "db2", "engine": "mysql"},
        {"name": "db2", "engine": "postgres", "version": "latest"},
    ):
        assert client.post("/api/v1/databases", json=bad, headers=auth).status_code == 422
    redis = client.post("/api/v1/databases", json={"name": "cache", "engine": "redis"}, headers=auth).json()
    assert redis["image"] == "redis:7.2-bookworm" and redis["username"] == "default"


def test_a_binding_must_name_a_database_and_run_scope(
    client: TestClient, auth: dict[str, str], shop: dict[str, Any], engine: Engine, settings: Settings
) -> None:
    def put(**item: Any) -> Any:
        return client.patch("/api/v1/apps/shop/env", json={"set": [item]}, headers=auth)

    r = put(key="DATABASE_URL", value="${nope.DATABASE_URL}")
    assert r.status_code == 422 and "database 'nope', which does not exist" in r.text
    client.post("/api/v1/databases", json={"name": "db", "engine": "postgres"}, headers=auth)
    r = put(key="HOST", value="${db.HOSTNAME}", scope="both")
    assert r.status_code == 422 and "not at build time" in r.text
    assert put(key="HOST", value="${db.HOSTNAME}").status_code == 200
    with Session(engine) as s:
        assert s.exec(select(EnvVar).where(EnvVar.key == "HOST")).one().databases == ["db"]
    assert client.get("/api/v1/databases/db", headers=auth).json()["attached"] == [
        {"app": "shop", "keys": ["HOST"]}
    ]


def test_attach_binds_a_secret_url_and_destroy_waits_for_detach(
    client: TestClient, auth: dict[str, str], shop: dict[str, Any], engine: Engine, settings: Settings
) -> None:
    client.post("/api/v1/databases", json={"name": "db", "engine": "postgres"}, headers=auth)
    _ready(engine, "db", settings)
    r = client.post("/api/v1/databases/db/attach", json={"app": "shop"}, headers=auth)
    assert r.status_code == 200, r.text
    (var,) = [v for v in r.json()["env"] if v["key"] == "DATABASE_URL"]
    assert var["secret"] is True and var["value"] is None
    keyring = Keyring(settings.keys_dir, private=True)
    with Session(engine) as s:
        app = s.exec(select(App)).one()
        (item,) = snapshot_env(s, app)
    assert item["databases"] == ["db"]
    assert open_snapshot([item], keyring, app="shop").run == {"DATABASE_URL": "${db.DATABASE_URL}"}
    refused = client.delete("/api/v1/databases/db", headers=auth)
    assert refused.status_code == 409 and "attached to shop" in refused.text
    assert client.post("/api/v1/databases/db/detach", json={"app": "shop"}, headers=auth).status_code == 200
    assert client.post("/api/v1/databases/db/detach", json={"app": "shop"}, headers=auth).status_code == 404
    gone = client.delete("/api/v1/databases/db?purge=true", headers=auth)
    assert gone.status_code == 202 and gone.json()["state"] == "destroying"
    payload = _jobs(engine)[-1].payload
    assert (payload["op"], payload["purge"], payload["previous"]) == ("destroy", True, False)


def test_expose_is_loopback_only_and_out_of_the_apps_ports(
    client: TestClient, auth: dict[str, str], engine: Engine, settings: Settings
) -> None:
    client.post("/api/v1/databases", json={"name": "db", "engine": "postgres"}, headers=auth)
    assert (
        client.put("/api/v1/databases/db/expose", json={"port": 15432}, headers=auth).status_code == 409
    )  # creating
    _ready(engine, "db", settings)
    in_range = client.put(
        "/api/v1/databases/db/expose", json={"port": settings.port_range_start}, headers=auth
    )
    assert in_range.status_code == 422 and "range apps are published on" in in_range.text
    assert client.put("/api/v1/databases/db/expose", json={"port": 22}, headers=auth).status_code == 422
    r = client.put("/api/v1/databases/db/expose", json={"port": 15432}, headers=auth)
    assert r.status_code == 202 and _jobs(engine)[-1].payload["port"] == 15432
    busy = client.put("/api/v1/databases/db/expose", json={"port": None}, headers=auth)
    assert busy.status_code == 409 and "busy" in busy.text


def test_upgrade_refuses_an_older_version_and_queues_a_newer_one(
    client: TestClient, auth: dict[str, str], engine: Engine, settings: Settings
) -> None:
    client.post(
        "/api/v1/databases", json={"name": "db", "engine": "postgres", "version": "15.4"}, headers=auth
    )
    _ready(engine, "db", settings)
    for older in ("15.3", "14", "14.9"):
        r = client.put("/api/v1/databases/db/version", json={"version": older}, headers=auth)
        assert r.status_code == 422 and "older version" in r.text, (older, r.text)
    assert (
        client.put("/api/v1/databases/db/version", json={"version": "15.4"}, headers=auth).status_code == 409
    )
    assert (
        client.put("/api/v1/databases/db/version", json={"version": "latest"}, headers=auth).status_code
        == 422
    )
    r = client.put("/api/v1/databases/db/version", json={"version": "17"}, headers=auth)
    assert r.status_code == 202 and r.json()["state"] == "upgrading"
    payload = _jobs(engine)[-1].payload
    assert (payload["op"], payload["version"]) == ("upgrade", "17")
    gone = client.delete("/api/v1/databases/db?previous=true", headers=auth)
    assert gone.status_code == 404 and "no previous instance" in gone.text
    # a second major upgrade waits until the first one's old instance is gone
    with session_scope(engine) as s:
        row = s.exec(select(Database)).one()
        row.state, row.version, row.upgraded_from = "ready", "17", "15.4"
        row.image, row.container, row.volume = "postgres:17-bookworm", "paasdb-db-pg17", "paasdb-db-pg17-data"
        s.add(row)
        for job in s.exec(select(Job)).all():
            job.state = "done"
            s.add(job)
    r = client.put("/api/v1/databases/db/version", json={"version": "18"}, headers=auth)
    assert r.status_code == 409 and "destroy it first" in r.text


# the web UI -------------------------------------------------------------------------------------


def test_the_databases_pages_create_attach_and_never_show_the_password(
    client: TestClient, engine: Engine, settings: Settings, shop: dict[str, Any]
) -> None:
    from paas.users import create_user
    from tests.unit.test_ui import csrf_of, sign_in

    with session_scope(engine) as s:
        create_user(s, username="admin", password="correct horse battery")
    assert client.get("/databases", follow_redirects=False).status_code == 303
    sign_in(client)
    page = client.get("/databases")
    assert page.status_code == 200 and "No databases yet" in page.text
    token = csrf_of(page.text)
    bad = client.post("/databases", data={"name": "Bad", "engine": "postgres", "csrf": token})
    assert bad.status_code == 422 and "must be 1-30 characters" in bad.text and 'value="Bad"' in bad.text
    made = client.post(
        "/databases",
        data={"name": "db", "engine": "postgres", "version": "15", "csrf": token},
        follow_redirects=False,
    )
    assert made.status_code == 303 and made.headers["location"] == "/databases/db"
    with Session(engine) as s:
        (job,) = [j for j in s.exec(select(Job)).all() if j.kind == "database"]
        assert job.payload["op"] == "create"
    _ready(engine, "db", settings)
    page = client.get("/databases/db")
    assert page.status_code == 200
    assert (
        "paasdb-db-pg15" in page.text and "${db.DATABASE_URL}" in page.text and "${db.PASSWORD}" in page.text
    )
    r = client.post(
        "/databases/db/attach", data={"app": "shop", "key": "", "csrf": token}, follow_redirects=False
    )
    assert r.status_code == 303
    page = client.get("/databases/db").text
    assert "DATABASE_URL" in page and 'href="/apps/shop"' in page
    refused = client.post("/databases/db/destroy", data={"confirm": "db", "csrf": token})
    assert "attached to shop" in refused.text  # shown as the next page's message
    # the password lives sealed; it is on no page
    keyring = Keyring(settings.keys_dir, private=True)
    with Session(engine) as s:
        sealed = s.exec(select(Database)).one().password
    password = keyring.decrypt(sealed, purpose=db_password_purpose("db"))
    for path in ("/databases", "/databases/db", "/apps/shop/settings", "/api/v1/databases/db"):
        shown = client.get(path).text
        assert password not in shown and sealed not in shown, path
