"""Databases for real: PostgreSQL and Redis containers (the stand-ins
scripts/db-images.sh builds from Debian's packages, under the official
names), bound to a FastAPI + SQLModel + Alembic app through bindable
variables, kept private, and every acknowledged row still there after a
redeploy, a rollback, an engine restart and a killed database.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from testkit import db_app, sample_app
from testkit.harness import (
    LOOPBACK,
    GitRemote,
    JsonReceiver,
    NetworkNamespace,
    Stack,
    canary_hits,
    free_port,
    restart_docker_engine,
    wait_until,
)

pytestmark = pytest.mark.integration

TAG = os.getpid() % 100000
APP = f"shop{TAG}"
OTHER = f"other{TAG}"
COUNTER = f"count{TAG}"
DB = f"db{TAG}"  # database names are the engine's, across installations: one of its own per run
CACHE = f"cache{TAG}"
PG = f"paasdb-{DB}-pg15"
REDIS = f"paasdb-{CACHE}-redis7"
PG_IMAGE = "postgres:15-bookworm"
REDIS_IMAGE = "redis:7.0-bookworm"
PROBE = """\
import socket, sys
try:
    socket.getaddrinfo(sys.argv[1], 5432)
    print("resolved")
except OSError:
    print("unresolved")
s = socket.socket()
s.settimeout(3)
try:
    s.connect((sys.argv[2], 5432))
    print("connected")
except OSError:
    print("refused")
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, nginx: Any) -> Iterator[Stack]:
    for image in (PG_IMAGE, REDIS_IMAGE):
        try:
            docker.from_env().images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"no {image} image; run scripts/test.sh, which builds it (scripts/db-images.sh)")
    paas = Stack(tmp_path_factory.mktemp("paas-db"), nginx)
    paas.start()
    yield paas
    paas.stop()
    paas.remove_everything()


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def _app_post(stack: Stack, app: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(
        f"http://{stack.address}:{stack.nginx.port}{path}",
        headers={"Host": f"{app}.{stack.domain}"},
        json=body or {},
        timeout=10,
    )


def _ids(stack: Stack) -> set[int]:
    r = stack.get_app(APP, "/items")
    assert r.status_code == 200, r.text
    return set(r.json()["ids"])


@pytest.fixture(scope="module")
def db(stack: Stack) -> dict[str, Any]:
    created = _json(
        stack.paas("databases", "create", DB, "--engine", "postgres", "--version", "15", "--json")
    )
    assert created["state"] == "ready", created
    return dict(created)


@pytest.fixture(scope="module")
def shop(stack: Stack, db: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The app bound to ``db`` by parts (no DATABASE_URL), deployed by a push, with rows."""
    repo = GitRemote(tmp_path_factory.mktemp("git-shop"))
    created = _json(
        stack.paas(
            "apps",
            "create",
            APP,
            "--repo",
            str(repo.bare),
            "--health-path",
            "/healthz",
            "--release-command",
            db_app.RELEASE_COMMAND,
            "--json",
        )
    )
    general, secret = db_app.postgres_bindings(DB)
    stack.paas("env", "set", APP, *[f"{k}={v}" for k, v in general.items()])
    stack.paas("env", "set", APP, "--secret", *[f"{k}={v}" for k, v in secret.items()])
    payload = repo.commit(db_app.files("v1"), "shop v1")
    assert stack.webhook(APP, created["webhook_secret"], payload).status_code == 202
    release = stack.wait_release(APP, 1)
    assert release["status"] == "succeeded", stack.release_log(APP, 1)
    for i in range(20):
        r = _app_post(stack, APP, "/items", {"text": f"row {i}"})
        assert r.status_code == 200, r.text
    return {"repo": repo, "secret": created["webhook_secret"]}


def test_a_database_is_made_of_an_exact_version_and_published_nowhere(
    stack: Stack, db: dict[str, Any]
) -> None:
    assert db["image"] == PG_IMAGE and db["version"] == "15"
    assert db["image_digest"].startswith("sha256:")
    assert db["server_version"].startswith("15.")
    client = docker.from_env()
    container = client.containers.get(db["hostname"])
    attrs = container.attrs
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["HostConfig"]["Memory"] == 256 * 1024 * 1024
    assert attrs["Config"]["StopTimeout"] == 60 and attrs["Config"]["StopSignal"] == "SIGINT"
    assert attrs["State"]["Health"]["Status"] in ("starting", "healthy")  # ready by its own check already
    wait_until(lambda: _healthy(db["hostname"]), "Docker's health check of the database", 30)
    assert list(attrs["NetworkSettings"]["Networks"]) == [f"paasdb-{DB}"]
    assert container.ports == {} or all(not v for v in container.ports.values())
    out = subprocess.run(["docker", "port", db["hostname"]], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_app_migrates_in_prestart_and_writes_rows_through_its_bindings(
    stack: Stack, shop: dict[str, Any]
) -> None:
    log = stack.release_log(APP, 1)
    assert f"running /bin/sh -c {db_app.RELEASE_COMMAND} in a one-off container" in log  # the app's setting
    assert "prestart: migrating" in log
    assert "POSTGRES_PASSWORD (secret)" in log
    assert len(_ids(stack)) == 20
    info = _json(stack.paas("databases", "info", DB, "--json"))
    assert info["stats"]["connections"] >= 1 and info["stats"]["max_connections"] == 100
    assert info["stats"]["size"] > 1_000_000  # bytes on disk, every database of the server
    shown = stack.paas("databases", "info", DB).stdout
    assert "connections:" in shown and " of 100" in shown
    assert info["attached"] == [
        {
            "app": APP,
            "keys": ["POSTGRES_DB", "POSTGRES_PASSWORD", "POSTGRES_PORT", "POSTGRES_SERVER", "POSTGRES_USER"],
        }
    ]


def test_an_app_not_attached_cannot_reach_the_database(
    stack: Stack, db: dict[str, Any], shop: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    repo = GitRemote(tmp_path_factory.mktemp("git-other"))
    created = _json(stack.paas("apps", "create", OTHER, "--repo", str(repo.bare), "--json"))
    main = "from fastapi import FastAPI\n\napp = FastAPI()\n\n\n@app.get('/')\ndef root():\n    return {}\n"
    payload = repo.commit(
        {"Dockerfile": sample_app.DOCKERFILE, "requirements.txt": sample_app.REQUIREMENTS, "main.py": main},
        "other v1",
    )
    assert stack.webhook(OTHER, created["webhook_secret"], payload).status_code == 202
    assert stack.wait_release(OTHER, 1)["status"] == "succeeded", stack.release_log(OTHER, 1)
    client = docker.from_env()
    address = client.containers.get(db["hostname"]).attrs["NetworkSettings"]["Networks"][f"paasdb-{DB}"][
        "IPAddress"
    ]
    other = client.containers.get(f"paas-{OTHER}-web-v1-1")
    code, output = other.exec_run(["python", "-c", PROBE, db["hostname"], address])
    assert output.decode().split() == ["unresolved", "refused"]
    # the attached app's container does reach it, by name: the probe can tell
    web = client.containers.get(f"paas-{APP}-web-v1-1")
    code, output = web.exec_run(["python", "-c", PROBE, db["hostname"], address])
    assert output.decode().split() == ["resolved", "connected"]
    # nothing on the host answers on the database's port, on any of its addresses
    for host in {LOOPBACK, *_host_addresses()}:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((host, 5432)) != 0, host


def _host_addresses() -> list[str]:
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()]


def test_rows_survive_a_redeploy_a_rollback_and_an_engine_restart(stack: Stack, shop: dict[str, Any]) -> None:
    before = _ids(stack)
    payload = shop["repo"].commit(db_app.files("v2"), "shop v2")
    assert stack.webhook(APP, shop["secret"], payload).status_code == 202
    assert stack.wait_release(APP, 2)["status"] == "succeeded", stack.release_log(APP, 2)
    assert stack.get_app(APP, "/items").json()["version"] == "v2"
    assert _ids(stack) == before
    stack.paas("rollback", APP)
    assert stack.get_app(APP, "/items").json()["version"] == "v1"
    assert _ids(stack) == before
    restart_docker_engine()
    wait_until(
        lambda: stack.get_app(APP, "/items").status_code == 200, "the app after the engine restart", 120
    )
    assert _ids(stack) == before


def test_every_acknowledged_write_survives_the_database_killed(stack: Stack, shop: dict[str, Any]) -> None:
    acknowledged: list[int] = []
    failed: list[str] = []
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = _app_post(stack, APP, "/items", {"text": f"load {i}"})
                if r.status_code == 200:
                    acknowledged.append(r.json()["id"])
                else:
                    failed.append(str(r.status_code))
            except httpx.HTTPError as exc:
                failed.append(type(exc).__name__)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(2)
    container = docker.from_env().containers.get(PG)
    started = container.attrs["State"]["StartedAt"]
    os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)  # a crash, not a stop: Docker restarts it
    time.sleep(1)
    wait_until(lambda: _healthy(PG), "the database back after SIGKILL", 90)
    time.sleep(2)
    stop.set()
    writer.join(timeout=30)
    container.reload()
    assert container.attrs["State"]["StartedAt"] != started  # it was killed and started again
    assert len(acknowledged) > 10, (len(acknowledged), failed[:5])
    print(f"\nSIGKILL under writes: {len(acknowledged)} acknowledged, {len(failed)} failed, none lost")
    assert set(acknowledged) <= _ids(stack)


def _healthy(name: str) -> bool:
    c = docker.from_env().containers.get(name)
    return bool(c.attrs["State"].get("Health", {}).get("Status") == "healthy")


def test_redis_counts_survive_a_restart(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    made = _json(stack.paas("databases", "create", CACHE, "--engine", "redis", "--version", "7.0", "--json"))
    assert made["state"] == "ready", made
    repo = GitRemote(tmp_path_factory.mktemp("git-counter"))
    created = _json(stack.paas("apps", "create", COUNTER, "--repo", str(repo.bare), "--json"))
    out = stack.paas("databases", "attach", CACHE, COUNTER, "--no-restart").stdout
    assert "staged" in out
    payload = repo.commit(db_app.counter_files(), "counter v1")
    assert stack.webhook(COUNTER, created["webhook_secret"], payload).status_code == 202
    assert stack.wait_release(COUNTER, 1)["status"] == "succeeded", stack.release_log(COUNTER, 1)
    for _ in range(5):
        assert _app_post(stack, COUNTER, "/count").status_code == 200
    client = docker.from_env()
    redis = client.containers.get(REDIS)
    password = dict(e.split("=", 1) for e in redis.attrs["Config"]["Env"])["REDISCLI_AUTH"]
    assert password not in json.dumps([redis.attrs["Path"], redis.attrs["Args"]])
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "redis-server" in ps and password not in ps
    redis.restart(timeout=30)
    wait_until(lambda: _healthy(REDIS), "redis back after a restart", 60)
    assert stack.get_app(COUNTER, "/count").json() == {"count": 5}


def test_expose_binds_loopback_only_and_no_expose_removes_it(stack: Stack, db: dict[str, Any]) -> None:
    apps_range = range(int(stack.env["PAAS_PORT_RANGE_START"]), int(stack.env["PAAS_PORT_RANGE_END"]) + 1)
    with contextlib.ExitStack() as held:
        while True:  # a port something else holds (not one of the apps' range: refused for that)
            taken = held.enter_context(socket.socket())
            taken.bind((LOOPBACK, 0))
            if taken.getsockname()[1] not in apps_range:
                break
        taken.listen()
        refused = stack.paas("databases", "expose", DB, "--port", str(taken.getsockname()[1]), check=False)
    assert refused.returncode != 0 and "is taken" in refused.stderr, refused.stderr
    assert _healthy(PG) and stack.get_app(APP, "/items").status_code == 200
    port = free_port()
    stack.paas("databases", "expose", DB, "--port", str(port))
    out = subprocess.run(["docker", "port", PG], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"5432/tcp -> 127.0.0.1:{port}"
    with socket.create_connection((LOOPBACK, port), timeout=5):
        pass
    # from another machine (a network namespace joined by a veth pair), no address of this host
    # answers: not the exposed port, not the database's own
    outside = NetworkNamespace()
    outside.start({})
    try:
        probe = (
            "import socket, sys\n"
            "for port in sys.argv[2:]:\n"
            "    s = socket.socket(); s.settimeout(3)\n"
            "    print(port, s.connect_ex((sys.argv[1], int(port))) == 0)\n"
        )
        seen = outside.run(["/usr/bin/python3", "-c", probe, outside.host_address, str(port), "5432"])
        assert seen.stdout.split() == [str(port), "False", "5432", "False"], seen.stdout + seen.stderr
        # the probe does see a port that listens on every address
        with socket.socket() as listening:
            listening.bind(("0.0.0.0", 0))  # noqa: S104  (the control: reachable from outside)
            listening.listen()
            open_port = str(listening.getsockname()[1])
            seen = outside.run(["/usr/bin/python3", "-c", probe, outside.host_address, open_port])
        assert seen.stdout.split() == [open_port, "True"], seen.stdout + seen.stderr
    finally:
        outside.stop()
    stack.paas("databases", "expose", DB, "--no-expose")
    out = subprocess.run(["docker", "port", PG], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert stack.get_app(APP, "/items").status_code == 200  # the app reconnects after the restart


def test_the_password_appears_nowhere_but_the_containers(
    stack: Stack, db: dict[str, Any], shop: dict[str, Any]
) -> None:
    container = docker.from_env().containers.get(PG)
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    password = env["POSTGRES_PASSWORD"]
    assert len(password) >= 24
    texts = [
        stack.api("GET", "/databases").text,
        stack.api("GET", f"/databases/{DB}").text,
        stack.api("GET", f"/apps/{APP}/env").text,
        stack.api("GET", f"/apps/{APP}/releases").text,
        stack.release_log(APP, 1),
        stack.release_log(APP, 2),
        stack.paas("databases", "info", DB).stdout,
        stack.paas("env", "list", APP).stdout,
    ]
    assert not [t for t in texts if password in t]
    with sqlite3.connect(stack.root / "data" / "db" / "paas.db") as conn:
        rows = conn.execute("select * from event").fetchall() + conn.execute("select * from job").fetchall()
    assert password not in json.dumps(rows, default=str)
    searched, hits = canary_hits([stack.root, stack.nginx.root], {"password": password})
    assert searched > 10 and hits == []
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert password not in ps


def test_backup_dumps_every_database_and_checks_each_dump(
    stack: Stack, db: dict[str, Any], shop: dict[str, Any], tmp_path: Path
) -> None:
    archive = tmp_path / "with-databases.tar.gz"
    made = stack.paas("backup", "--output", str(archive), token=False)
    assert "2 database(s) dumped and checked" in made.stdout, made.stdout
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("paas-backup/manifest.json").read())  # type: ignore[union-attr]
    assert {f"paas-backup/databases/{DB}/globals.sql", f"paas-backup/databases/{CACHE}/dump.rdb"} <= names
    (pg,) = [d for d in manifest["databases"] if d["name"] == DB]
    dumped = {f["database"]: f["file"] for f in pg["files"]}
    assert dumped[DB] in {"db-1.dump", "db-2.dump"} and f"paas-backup/databases/{DB}/{dumped[DB]}" in names
    assert not [n for n in names if "/pgdata" in n or n.endswith("PG_VERSION")]  # never the live directory
    info = _json(stack.paas("databases", "info", DB, "--json"))
    assert info["last_backup_at"] and info["last_backup_error"] == ""
    doctor = stack.paas("doctor", "--json", token=False, check=False)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert (
        checks[f"database {DB}"]["status"] == "ok"
        and " of 100 connections" in checks[f"database {DB}"]["detail"]
    )
    assert f"database {DB} backup" not in checks  # backed up just now: nothing to say


def test_the_console_opens_the_database_without_a_password(stack: Stack, shop: dict[str, Any]) -> None:
    out = stack.paas("databases", "console", DB, token=False, stdin="SELECT count(*) FROM item;\n").stdout
    assert str(len(_ids(stack))) in out.split()
    out = stack.paas("databases", "console", CACHE, token=False, stdin="PING\n").stdout
    assert "PONG" in out


def test_a_dump_that_cannot_be_read_fails_the_backup_loudly(
    stack: Stack, db: dict[str, Any], tmp_path: Path
) -> None:
    receiver = JsonReceiver()
    container = docker.from_env().containers.get(PG)
    real = "/usr/lib/postgresql/15/bin/pg_dump"
    try:
        stack.paas("notify", "add", f"json://{LOOPBACK}:{receiver.port}/ops", "--events", "backup.failed")
        # pg_dump that "succeeds" and writes garbage: only reading the dump back finds it
        container.exec_run(["mv", real, f"{real}.real"])
        fake = f'#!/bin/sh\ncase "$1" in -V|--version) exec {real}.real "$@";; esac\necho not-a-dump\n'
        container.put_archive(str(Path(real).parent), _tar_of(Path(real).name, fake))
        archive = tmp_path / "broken.tar.gz"
        failed = stack.paas("backup", "--output", str(archive), token=False, check=False)
        assert failed.returncode != 0
        assert f"the dump of database {DB} failed" in failed.stderr and "pg_restore --list" in failed.stderr
        assert not archive.exists()
        wait_until(
            lambda: any("backup" in t and "failed" in t for t in receiver.titles()), "backup.failed", 60
        )
        info = _json(stack.paas("databases", "info", DB, "--json"))
        assert "not readable" in info["last_backup_error"]
    finally:
        container.exec_run(["mv", f"{real}.real", real])
        receiver.stop()


class Reader:
    """Reads the app's rows through nginx without pause; records each failure and when."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.ok, self.failed = stack, 0, []  # type: list[float]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                good = self.stack.get_app(APP, "/items").status_code == 200
            except httpx.HTTPError:
                good = False
            if good:
                self.ok += 1
            else:
                self.failed.append(time.monotonic())

    def window(self) -> float:
        return self.failed[-1] - self.failed[0] if self.failed else 0.0


def test_one_database_backed_up_and_restored_into_a_new_one(
    stack: Stack, shop: dict[str, Any], tmp_path: Path
) -> None:
    archive = tmp_path / "one.tar.gz"
    made = stack.paas("databases", "backup", DB, "--output", str(archive), token=False)
    assert "read back and good" in made.stdout
    copy = f"copy{TAG}"
    stack.paas("databases", "create", copy, "--engine", "postgres", "--version", "15")
    out = stack.paas("databases", "restore", copy, "--from", str(archive), token=False).stdout
    assert "restored" in out
    count = stack.paas("databases", "console", copy, token=False, stdin="SELECT count(*) FROM item;\n").stdout
    assert str(len(_ids(stack))) in count.split()
    # the copy keeps its own password: an app bound to it would connect
    info = _json(stack.paas("databases", "info", copy, "--json"))
    assert info["state"] == "ready" and info["stats"]["connections"] >= 0
    again = stack.paas("databases", "restore", copy, "--from", str(archive), token=False, check=False)
    assert again.returncode != 0 and "is not empty" in again.stderr
    stack.paas("databases", "destroy", copy, "--yes", "--purge")


def test_a_minor_upgrade_is_in_place_and_an_older_version_is_refused(
    stack: Stack, shop: dict[str, Any]
) -> None:
    before = _ids(stack)
    docker.from_env().images.get(PG_IMAGE).tag("postgres", "15.18-bookworm")  # the same bits, an exact tag
    out = stack.paas("databases", "upgrade", DB, "--version", "15.18").stdout
    assert "in place" in out, out
    info = _json(stack.paas("databases", "info", DB, "--json"))
    assert (info["version"], info["image"], info["hostname"]) == ("15.18", "postgres:15.18-bookworm", PG)
    wait_until(lambda: stack.get_app(APP, "/items").status_code == 200, "the app after the minor upgrade", 60)
    assert _ids(stack) == before
    older = stack.paas("databases", "upgrade", DB, "--version", "15", check=False)
    assert older.returncode != 0 and "older version" in older.stderr


def test_a_major_upgrade_moves_every_row_to_a_new_instance_while_reads_go_on(
    stack: Stack, shop: dict[str, Any]
) -> None:
    before = _ids(stack)
    with Reader(stack) as reader:
        time.sleep(1)
        started = time.monotonic()
        out = stack.paas("databases", "upgrade", DB, "--version", "17").stdout
        took = time.monotonic() - started
        wait_until(lambda: _ids(stack) == before, "the app on the new instance", 120)
        time.sleep(1)
    print(
        f"\nmajor upgrade 15 -> 17: {took:.1f}s; reads {reader.ok} ok, {len(reader.failed)} failed "
        f"over {reader.window():.2f}s"
    )
    assert "the same on both" in out, out
    info = _json(stack.paas("databases", "info", DB, "--json"))
    assert (info["version"], info["hostname"], info["upgraded_from"]) == ("17", f"paasdb-{DB}-pg17", "15.18")
    assert info["server_version"].startswith("17.")
    old = docker.from_env().containers.get(PG)
    assert old.status == "exited"  # kept, stopped
    env = dict(
        e.split("=", 1)
        for e in docker.from_env().containers.get(f"paas-{APP}-web-v4-1").attrs["Config"]["Env"]
    )
    assert env["POSTGRES_SERVER"] == f"paasdb-{DB}-pg17"
    assert reader.ok > 50
    # writes go to the new instance
    r = _app_post(stack, APP, "/items", {"text": "after the upgrade"})
    assert r.status_code == 200 and r.json()["id"] in _ids(stack)


def _tar_of(name: str, text: str) -> bytes:
    buffer = io.BytesIO()
    data = text.encode()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_detach_stages_removing_the_binding(stack: Stack) -> None:
    out = stack.paas("databases", "detach", CACHE, COUNTER, "--no-restart").stdout
    assert "staged" in out
    assert _json(stack.paas("env", "list", COUNTER, "--json")) == []
    assert _json(stack.paas("databases", "info", CACHE, "--json"))["attached"] == []


def test_destroy_is_refused_while_attached_and_deleting_the_app_detaches_it(
    stack: Stack, db: dict[str, Any], shop: dict[str, Any]
) -> None:
    refused = stack.paas("databases", "destroy", DB, "--yes", check=False)
    assert refused.returncode != 0 and APP in refused.stderr
    stack.paas("apps", "delete", APP, "--yes")
    wait_until(lambda: stack.api("GET", f"/apps/{APP}").status_code == 404, "the app deleted", 120)
    stack.paas("databases", "destroy", DB, "--yes")
    client = docker.from_env()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(PG)
    client.volumes.get(f"{PG}-data")  # kept without --purge
    with pytest.raises(docker.errors.NotFound):
        client.networks.get(f"paasdb-{DB}")
    assert stack.paas("databases", "info", DB, check=False).returncode != 0
