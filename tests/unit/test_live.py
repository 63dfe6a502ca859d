"""Live data: the web routes when the agent is down, and the agent's own
live app with a fake Docker engine at the boundary (the real one is in
tests/integration/test_rollback.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from agent.docker_engine import ContainerInfo
from agent.socket_api import LiveServer, create_live_app, describe
from paas import queue
from paas.db import session_scope
from paas.models import App, Deployment
from paas.settings import Settings
from web.agent_client import agent_waker
from web.app import create_web_app

STARTED = (datetime.now(UTC) - timedelta(seconds=90)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def container(
    name: str, dep: int, *, status: str = "running", process: str = "web", **kw: Any
) -> ContainerInfo:
    labels = {"paas.deployment": str(dep), "paas.version": str(dep), "paas.process": process}
    return ContainerInfo(name=name, status=status, labels=labels, started_at=STARTED, **kw)


def test_describe_marks_the_live_release_and_its_uptime() -> None:
    rows = describe(
        [container("b-web-v2", 2, restarts=1), container("a-web-v1", 1, status="exited", exit_code=0)], 2
    )
    assert [r["name"] for r in rows] == ["a-web-v1", "b-web-v2"]
    old, live = rows
    assert (old["live"], old["health"], old["uptime_seconds"]) == (False, "stopped", None)
    assert (live["live"], live["health"], live["restarts"], live["version"]) == (True, "serving", 1, 2)
    assert 85 <= live["uptime_seconds"] < 3600  # (this machine's wall clock jumps: no tight bound)
    drained = describe([container("h-web-v1", 1), container("i-web-v2", 2)], 2, draining={"h-web-v1": 3.4})
    assert [(r["live"], r["health"]) for r in drained] == [
        (False, "draining: stopped in 3s"),
        (True, "serving"),
    ]
    docker_health = describe([container("c", 2, health="unhealthy")], 2)[0]
    assert docker_health["health"] == "unhealthy"
    killed = describe([container("d", 2, status="restarting", restarts=3, oom_killed=True)], 2)[0]
    assert (killed["oom_killed"], killed["health"]) == (True, "killed: out of memory")
    boxed = describe(
        [container("e", 2), container("f", 2), container("g", 2)],
        2,
        {"e": (64, 64), "f": (58, 64), "g": (57, 64)},
    )
    assert [(r["health"], r["processes"], r["process_limit"]) for r in boxed] == [
        ("limited: near its process limit (64/64)", 64, 64),
        ("limited: near its process limit (58/64)", 58, 64),
        ("serving", 57, 64),
    ]


class FakeDocker:
    """Stands in for agent.docker_engine.DockerEngine at the boundary."""

    def __init__(self, containers: list[ContainerInfo]) -> None:
        self._containers = containers
        self.asked: list[tuple[str, int, bool]] = []

    def containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        return [c for c in self._containers if all(c.labels.get(k, v) == v for k, v in labels.items())]

    def processes(self, name: str) -> tuple[int, int] | None:
        return (2, 512)

    def log_stream(self, name: str, *, tail: int, follow: bool) -> Iterator[bytes]:
        self.asked.append((name, tail, follow))
        yield b"2026-11-23T01:00:00Z line one\n"
        yield b"2026-11-23T01:00:01Z line two\n"


def test_the_agent_live_app_answers_ps_and_logs(engine: Engine) -> None:
    with session_scope(engine) as s:
        app = App(name="shop", repo_url="/r", webhook_secret="x")
        s.add(app)
        s.flush()
        dep = Deployment(app_id=app.id, version=1, status="succeeded")  # type: ignore[arg-type]
        s.add(dep)
        s.flush()
        app.current_deployment_id = dep.id
        dep_id = dep.id
    assert dep_id is not None
    fake = FakeDocker(
        [container("paas-shop-web-v1", dep_id), container("paas-shop-web-v0", 99, status="exited")]
    )
    client = TestClient(create_live_app(fake, engine, "inst"))  # type: ignore[arg-type]
    rows = client.get("/apps/shop/ps").json()
    assert [(r["name"], r["live"]) for r in rows] == [("paas-shop-web-v0", False), ("paas-shop-web-v1", True)]
    r = client.get("/apps/shop/logs", params={"tail": 5, "follow": "true"})
    assert r.status_code == 200 and r.text.endswith("line two\n")
    assert fake.asked == [("paas-shop-web-v1", 5, True)]  # only the live release's running container
    assert client.get("/apps/shop/logs", params={"process": "worker"}).status_code == 404
    assert client.get("/apps/nope/ps").status_code == 404
    assert client.get("/apps/BAD/ps").status_code == 404


def test_web_says_when_the_agent_is_down(client: TestClient, auth: dict[str, str]) -> None:
    client.post(
        "/api/v1/apps", json={"name": "shop", "repo_url": "https://github.com/o/shop.git"}, headers=auth
    )
    for path in ("/api/v1/apps/shop/ps", "/api/v1/apps/shop/logs"):
        r = client.get(path, headers=auth)
        assert r.status_code == 503 and "the agent does not answer" in r.json()["detail"]
    assert client.get("/api/v1/apps/nope/ps", headers=auth).status_code == 404


def test_release_log_follow_ends_when_the_release_has_finished(
    client: TestClient, auth: dict[str, str], engine: Engine, settings: Any
) -> None:
    client.post(
        "/api/v1/apps", json={"name": "shop", "repo_url": "https://github.com/o/shop.git"}, headers=auth
    )
    with session_scope(engine) as s:
        app = s.exec(select(App)).one()
        s.add(Deployment(app_id=app.id, version=1, status="succeeded", finished_at=datetime.now(UTC)))  # type: ignore[arg-type]
    path = settings.logs_dir / "shop" / "v1.log"
    path.parent.mkdir(parents=True)
    path.write_text("==> fetch\n==> build\nv1 is live\n")
    r = client.get("/api/v1/apps/shop/releases/1/log", params={"follow": "true"}, headers=auth)
    assert r.status_code == 200 and r.text.endswith("v1 is live\n")
    assert (
        client.get("/api/v1/apps/shop/releases/2/log", params={"follow": "true"}, headers=auth).status_code
        == 404
    )


def test_logs_of_several_containers_are_merged_line_by_line_and_labelled() -> None:
    from agent.socket_api import merge_lines

    def chunks(*parts: bytes) -> Iterator[bytes]:
        yield from parts

    merged = b"".join(
        merge_lines(
            [
                (b"web.1 ", chunks(b"a1\na", b"2\n", b"a3")),  # lines split across chunks, no final newline
                (b"web.2 ", chunks(b"b1\nb2\n")),
            ]
        )
    ).splitlines()
    assert sorted(merged) == [b"web.1 a1", b"web.1 a2", b"web.1 a3", b"web.2 b1", b"web.2 b2"]
    assert [line for line in merged if line.startswith(b"web.1")] == [b"web.1 a1", b"web.1 a2", b"web.1 a3"]


def test_a_job_queued_through_web_wakes_the_agent_over_its_socket(settings: Settings, engine: Engine) -> None:
    """web registers a waker on its engine (create_web_app); a commit that
    queued a job POSTs /wake to the agent's real socket server, whose
    callback ends the agent's wait for its next poll."""
    woken = threading.Event()
    live = LiveServer(
        create_live_app(FakeDocker([]), engine, "inst", on_wake=woken.set),  # type: ignore[arg-type]
        settings.agent_socket,
    )
    live.start()
    try:
        create_web_app(settings, engine=engine)
        with session_scope(engine) as s:
            app = App(name="shop", repo_url="/r", webhook_secret="x")
            s.add(app)
        assert not woken.wait(0.5)  # no job, no wake
        with session_scope(engine) as s:
            queue.enqueue(s, kind=queue.DEPLOY, app=s.exec(select(App)).one())
        assert woken.wait(10)
    finally:
        live.stop()


def test_waking_an_agent_that_is_down_changes_nothing(settings: Settings) -> None:
    agent_waker(settings)()  # no socket: no error, the agent polls when it is back
