"""The pipeline's runner without dockerd: fakes stand at the door modules
(the engine, nginx, git and the health check) and the database is real.

Every job kind walks its steps in order; a failure at each step undoes what
the attempt made, newest first, and leaves the live release serving; a
cancel at each step stops there; after the switch a failure is only logged.
The retention decision is checked by equality. (What the real engine and
nginx do is tests/integration.)"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from agent.docker_engine import ContainerInfo, EngineError, OneOffResult
from agent.health import Unhealthy
from agent.nginx import NginxError, SiteSpec
from agent.pipeline import DeployResult, Pipeline
from agent.retention import Kept, images_to_remove, logs_to_remove, prune_release_logs
from agent.source import CommitInfo, SourceError
from agent.steps import STEPS, steps_for
from paas import queue, services
from paas.crypto import Keyring
from paas.db import session_scope
from paas.errors import StepFailed
from paas.models import App, Deployment, DeploymentStatus, Job, JobState
from paas.schemas import AppCreate
from paas.settings import Settings

FILES = {"Dockerfile": "FROM python:3.11-slim\n", "Procfile": "web: serve\nworker: work\nrelease: migrate\n"}
ALL = tuple(STEPS)


class FakeSource:
    def __init__(self, world: World) -> None:
        self.world = world

    def fetch(
        self, *, app: str, url: str, ref: str, commit: str, on_line: Callable[[str], None]
    ) -> CommitInfo:
        self.world.at("fetch", SourceError("no such branch"))
        return CommitInfo("a" * 40, "a commit")

    def export(self, *, app: str, commit: str, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for name, text in FILES.items():
            (dest / name).write_text(text)

    def forget(self, app: str) -> None:
        pass


class FakeEngine:
    """The Docker engine's door, in memory: what exists, and every call made."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.calls: list[str] = []
        self.store: dict[str, dict[str, str]] = {}  # image tag -> labels
        self.running: dict[str, ContainerInfo] = {}
        self.port = 20000

    def buildkit_problem(self) -> str | None:
        return None

    def build(self, *, tag: str, labels: dict[str, str], should_stop: Callable[[], bool], **_kw: Any) -> None:
        self.calls.append(f"build {tag}")
        self.store[tag] = labels
        self.world.at("build", EngineError("the build failed"))
        if should_stop():
            raise EngineError("build cancelled")

    def image_names_and_labels(self, ref: str) -> tuple[list[str], dict[str, str]] | None:
        return [ref], self.store.get(ref, {})  # a base image: a public one the engine has

    def pull(self, ref: str, *, timeout: float) -> str | None:
        return None  # never asked: the engine has every base image

    def image_id(self, ref: str) -> str | None:
        return f"sha256:{ref}" if ref in self.store else None

    def image_config(self, ref: str) -> dict[str, Any]:
        return {"ExposedPorts": {"8000/tcp": {}}, "WorkingDir": "/app"}

    def image_has_file(self, ref: str, path: str) -> bool:
        return False

    def run_once(self, *, name: str, should_stop: Callable[[], bool], **_kw: Any) -> OneOffResult:
        self.calls.append(f"run_once {name}")
        self.world.at("release", None)
        if should_stop():
            return OneOffResult(exit_code=None, timed_out=False, cancelled=True)
        return OneOffResult(exit_code=1 if self.world.fail_at == "release" else 0, timed_out=False)

    def published_ports(self) -> set[int]:
        return set()

    def bridge_gateway(self) -> str:
        return "172.17.0.1"

    def start(
        self, *, name: str, labels: dict[str, str], host_ip: str, host_port: int | None, **_kw: Any
    ) -> str:
        self.world.at("start", EngineError("no such image"))
        self.calls.append(f"start {name}")
        published = (f"{host_ip}:{host_port}",) if host_port else ()
        self.running[name] = ContainerInfo(name, "running", dict(labels), published=published)
        return name

    def container(self, name: str) -> ContainerInfo | None:
        return self.running.get(name)

    def containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        return [c for c in self.running.values() if labels.items() <= c.labels.items()]

    def logs_tail(self, name: str, lines: int = 30) -> list[str]:
        return ["a line it printed"]

    def stop_and_remove(self, name: str, *, timeout: int) -> None:
        if self.world.fail_at == "retire" and timeout > 0:
            raise EngineError("the engine is busy")
        self.calls.append(f"remove {name}")
        self.running.pop(name, None)

    def images(self, labels: dict[str, str]) -> list[tuple[str, list[str], dict[str, str]]]:
        return [(f"sha256:{t}", [t], lab) for t, lab in self.store.items() if labels.items() <= lab.items()]

    def remove_image(self, ref: str) -> bool:
        self.calls.append(f"remove image {ref}")
        return self.store.pop(ref, None) is not None


class FakeNginx:
    def __init__(self, world: World) -> None:
        self.world = world
        self.sites: dict[str, str] = {}
        self.served: dict[str, str] = {}  # what "nginx" serves: the release marker per app

    def current(self, app: str) -> str | None:
        return self.sites.get(app)

    def apply(self, app: str, content: str | None) -> None:
        if content is None:
            self.sites.pop(app, None)
        else:
            self.sites[app] = content

    def verify(self, spec: SiteSpec, *, span: float = 0) -> None:
        self.world.at("switch", NginxError("nginx does not serve it"))
        self.served[spec.app] = f"v{spec.version}"


class World:
    """Where the fakes fail or `paas cancel` arrives, and the job the runner works on."""

    def __init__(self, engine: Engine) -> None:
        self.db = engine
        self.fail_at = ""
        self.cancel_inside = ""
        self.job_id = 0

    def at(self, step: str, error: Exception | None) -> None:
        """Called by each fake as its step runs."""
        if self.cancel_inside == step:
            self.request_cancel()
        if self.fail_at == step and error is not None:
            raise error

    def request_cancel(self) -> None:
        with session_scope(self.db) as session:
            job = session.get(Job, self.job_id)
            assert job is not None
            job.cancel_requested = True
            session.add(job)


class Rig:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings.model_copy(update={"drain_seconds": 0.0, "keep_releases": 2})
        self.db = engine
        self.world = World(engine)
        self.docker = FakeEngine(self.world)
        self.nginx = FakeNginx(self.world)
        self.pipeline = Pipeline(  # mypy checks each fake against its door's Protocol (agent/doors.py)
            settings=self.settings,
            db=engine,
            docker=self.docker,
            nginx=self.nginx,
            source=FakeSource(self.world),
            instance="test",
            keyring=Keyring(settings.keys_dir, private=True),
            cancel_poll_seconds=0,
        )
        self.pipeline.doors.wait_healthy = self.wait_healthy
        with session_scope(engine) as session:
            services.create_app(
                session,
                spec=AppCreate(name="shop", repo_url="https://github.com/o/shop.git"),
                actor="tests",
                keyring=Keyring(settings.keys_dir, private=False),
                settings=self.settings,
            )

    def wait_healthy(
        self, check: Any, *, alive: Callable[[], str | None], on_line: Callable[[str], None]
    ) -> None:
        self.world.at("health", None)
        dead = alive()  # raises Cancelled once `paas cancel` arrived
        self.world.at("health", Unhealthy("not healthy after 3 attempts"))
        if dead:
            raise Unhealthy(dead)
        on_line("healthy")

    def run(self, kind: str = queue.DEPLOY, *, drained: bool = True, **payload: Any) -> DeployResult:
        """Queue a job, claim and run it, and finish it, as the agent does."""
        with session_scope(self.db) as session:
            app = session.exec(select(App).where(App.name == "shop")).one()
            queue.enqueue(session, kind=kind, app=app, payload={"trigger": "test", **payload})
        with session_scope(self.db) as session:
            job = queue.claim(session, owner="tests", lease_seconds=60)
            assert job is not None and job.kind == kind
            self.world.job_id = int(job.id or 0)
            session.expunge(job)
        result = self.pipeline.run(job)
        if drained and self.world.fail_at != "retire":
            assert self.pipeline.doors.drainer.wait_idle(10)  # the old release's containers, stopped apart
        with session_scope(self.db) as session:
            state = JobState.done if result.ok else JobState.failed
            queue.finish(session, job_id=self.world.job_id, owner="tests", state=state, error=result.error)
        return result

    def release_row(self, result: DeployResult) -> Deployment:
        with session_scope(self.db) as session:
            dep = session.get(Deployment, result.deployment_id)
            assert dep is not None
            session.expunge(dep)
            return dep

    def log(self, result: DeployResult) -> str:
        assert result.version is not None, result
        return self.settings.release_log("shop", result.version).read_text()

    def walked(self, result: DeployResult) -> list[str]:
        return re.findall(r"==> (\w+)", self.log(result))


@pytest.fixture
def rig(settings: Settings, engine: Engine) -> Iterator[Rig]:
    yield Rig(settings, engine)


# kinds of job × the steps they walk ----------------------------------------------------------

KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "deploy": (queue.DEPLOY, {}),
    "env release": (queue.RELEASE, {}),
    "restart": (queue.RELEASE, {"source_version": 1, "run_release": False}),
    "scale": (queue.RELEASE, {"trigger": "scale", "source_version": 1, "run_release": False}),
    "rollback": (queue.ROLLBACK, {"source_version": 1, "run_release": False}),
}


def live(rig: Rig) -> DeployResult:
    """A first release, live: what the later jobs start from."""
    first = rig.run()
    assert first.ok, rig.log(first)
    rig.docker.calls.clear()
    return first


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_of_job_walks_its_steps_in_order(rig: Rig, kind: str) -> None:
    first = live(rig)
    job_kind, payload = KINDS[kind]
    result = rig.run(job_kind, **payload)
    assert result.ok, rig.log(result)
    assert rig.walked(result) == list(steps_for(job_kind))
    assert set(rig.release_row(result).timings) == set(steps_for(job_kind))
    assert rig.nginx.served["shop"] == f"v{result.version}"
    old = [f"remove paas-shop-web-v{first.version}-1", f"remove paas-shop-worker-v{first.version}-1"]
    assert [c for c in rig.docker.calls if c.startswith("remove paas")] == old  # retire
    ran_release = any(c.startswith("run_once") for c in rig.docker.calls)
    assert ran_release == (kind in ("deploy", "env release"))
    assert any(c.startswith("build") for c in rig.docker.calls) == (kind == "deploy")


FAILING = {
    "fetch": "fetch: no such branch",
    "build": "build: the build failed",
    "release": "release: release command exited with status 1",
    "start": "start: no such image",
    "health": "health: not healthy after 3 attempts",
    "switch": "switch: nginx does not serve it",
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("step", list(FAILING))
def test_a_failure_at_each_step_undoes_newest_first_and_keeps_the_live_release(
    rig: Rig, kind: str, step: str
) -> None:
    job_kind, payload = KINDS[kind]
    walks = steps_for(job_kind)
    first = live(rig)
    site_before = rig.nginx.sites["shop"]
    rig.world.fail_at = step
    result = rig.run(job_kind, **payload)
    if step not in walks or (step == "release" and not payload.get("run_release", True)):
        assert result.ok, rig.log(result)  # that kind never meets this failure
        return
    assert not result.ok and result.error == FAILING[step]
    assert rig.walked(result) == list(walks[: walks.index(step) + 1])
    row = rig.release_row(result)
    assert row.status == DeploymentStatus.failed and row.error == FAILING[step] and row.step == step
    assert set(row.timings) == set(walks[: walks.index(step) + 1])
    # undo: this attempt's containers, newest first, then its image; nothing of v1
    v = result.version
    started = step in ("health", "switch")  # a failed start made nothing (the fake fails the first)
    made = [f"remove paas-shop-worker-v{v}-1", f"remove paas-shop-web-v{v}-1"] if started else []
    built = job_kind == queue.DEPLOY and step != "fetch"
    undone = [c for c in rig.docker.calls if c.startswith("remove")]
    assert undone == made + ([f"remove image paas/shop:v{v}"] if built else [])
    assert set(rig.docker.running) == {
        f"paas-shop-web-v{first.version}-1",
        f"paas-shop-worker-v{first.version}-1",
    }
    assert rig.nginx.sites["shop"] == site_before and rig.nginx.served["shop"] == f"v{first.version}"
    assert f"v{v} failed; the previous release keeps serving" in rig.log(result)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("step", [s for s in ALL if s not in ("fetch", "retire")])
def test_a_cancel_before_each_step_stops_there(
    rig: Rig, kind: str, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_kind, payload = KINDS[kind]
    walks = steps_for(job_kind)
    first = live(rig)
    if step not in walks[1:]:
        return  # the cancel would arrive before this kind's first step, or not at all
    before = walks[walks.index(step) - 1]
    step_before = STEPS[before]

    def then_cancel(doors: Any, attempt: Any) -> None:  # `paas cancel` arrives as that step ends
        step_before(doors, attempt)
        rig.world.request_cancel()

    monkeypatch.setitem(STEPS, before, then_cancel)
    result = rig.run(job_kind, **payload)
    assert result.cancelled and not result.ok, rig.log(result)
    assert rig.walked(result) == list(walks[: walks.index(step)])
    assert rig.release_row(result).status == DeploymentStatus.cancelled
    assert set(rig.docker.running) == {
        f"paas-shop-web-v{first.version}-1",
        f"paas-shop-worker-v{first.version}-1",
    }
    assert f"v{first.version}" == rig.nginx.served["shop"]
    assert f"paas/shop:v{result.version}" not in rig.docker.store


@pytest.mark.parametrize("step", ["build", "release", "health"])
def test_a_cancel_inside_a_step_stops_it(rig: Rig, step: str) -> None:
    first = live(rig)
    rig.world.cancel_inside = step
    result = rig.run()
    assert result.cancelled, rig.log(result)
    assert f"!!! cancelled during {step}" in rig.log(result)
    row = rig.release_row(result)
    assert row.error == f"{step}: cancelled on request" and row.step == step
    assert set(rig.docker.running) == {
        f"paas-shop-web-v{first.version}-1",
        f"paas-shop-worker-v{first.version}-1",
    }
    assert f"paas/shop:v{result.version}" not in rig.docker.store


def draining_for(rig: Rig, seconds: float) -> None:
    rig.pipeline.doors.drainer.settings = rig.settings.model_copy(update={"drain_seconds": seconds})


def test_a_rollback_to_the_release_being_drained_takes_its_containers_back(rig: Rig) -> None:
    draining_for(rig, 60)
    live(rig)
    assert rig.run(drained=False).ok  # v2: v1's containers drain
    rig.docker.calls.clear()
    back = rig.run(queue.ROLLBACK, drained=False, source_version=1, run_release=False)
    assert back.ok, rig.log(back)
    v1 = ["paas-shop-web-v1-1", "paas-shop-worker-v1-1"]
    assert not [c for c in rig.docker.calls if c.startswith("start")], rig.docker.calls
    assert sorted(rig.release_row(back).containers) == v1
    assert rig.nginx.served["shop"] == f"v{back.version}"
    assert f"took back {', '.join(v1)} from the drain" in rig.log(back)
    assert set(rig.pipeline.doors.drainer.draining("shop")) == {"paas-shop-web-v2-1", "paas-shop-worker-v2-1"}
    assert set(rig.docker.running) == {*v1, "paas-shop-web-v2-1", "paas-shop-worker-v2-1"}


def test_a_rollback_takes_back_only_containers_that_run_the_image_it_rolls_back_to(rig: Rig) -> None:
    draining_for(rig, 60)
    live(rig)
    assert rig.run(drained=False).ok  # v2
    assert rig.run(drained=False).ok  # v3: v1's and v2's containers drain
    with session_scope(rig.db) as session:  # a row rewritten (by a taken-over web): v2 "ran" v1's containers
        v2 = session.exec(select(Deployment).where(Deployment.version == 2)).one()
        v2.containers = ["paas-shop-web-v1-1", "paas-shop-worker-v1-1"]
        session.add(v2)
    rig.docker.calls.clear()
    back = rig.run(queue.ROLLBACK, drained=False, source_version=2, run_release=False)
    assert back.ok, rig.log(back)
    assert "took back" not in rig.log(back)
    assert f"start paas-shop-web-v{back.version}-1" in rig.docker.calls


def test_a_rollback_once_the_drain_is_over_starts_new_containers(rig: Rig) -> None:
    live(rig)
    assert rig.run().ok  # drain 0: v1's containers are gone
    back = rig.run(queue.ROLLBACK, source_version=1, run_release=False)
    assert back.ok, rig.log(back)
    assert f"start paas-shop-web-v{back.version}-1" in rig.docker.calls
    assert "took back" not in rig.log(back)


def test_a_take_back_that_fails_its_health_check_goes_back_to_the_drain(rig: Rig) -> None:
    draining_for(rig, 60)
    live(rig)
    assert rig.run(drained=False).ok
    rig.world.fail_at = "health"
    back = rig.run(queue.ROLLBACK, drained=False, source_version=1, run_release=False)
    assert not back.ok
    assert "handed paas-shop-web-v1-1, paas-shop-worker-v1-1 back to the drain" in rig.log(back)
    assert set(rig.pipeline.doors.drainer.draining("shop")) == {"paas-shop-web-v1-1", "paas-shop-worker-v1-1"}
    assert rig.nginx.served["shop"] == "v2"


def test_after_the_switch_a_failure_is_logged_not_a_failed_deploy(rig: Rig) -> None:
    live(rig)
    rig.world.fail_at = "retire"
    result = rig.run()
    assert result.ok
    assert rig.release_row(result).status == DeploymentStatus.succeeded
    said = "could not stop paas-shop-web-v1-1: the engine is busy; trying again in 30s"
    deadline = time.monotonic() + 10
    # the drainer stops the old release's containers apart from the job, in no set order
    while said not in rig.log(result) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert said in rig.log(result)
    assert rig.pipeline.doors.drainer.draining("shop")  # kept for the next try


def test_a_failure_a_step_raises_for_a_later_step_names_that_step_on_the_row(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build plans the containers and may refuse them as the start
    step's failure: the row's step is the step the error names (what the
    teller says a deploy failed at), not the one that was running."""
    live(rig)

    def too_many(*_args: Any) -> None:
        raise StepFailed("start", "the Procfile and scale ask for 99 containers")

    monkeypatch.setitem(STEPS, "build", too_many)
    result = rig.run()
    row = rig.release_row(result)
    assert (row.status, row.step, row.error) == (
        DeploymentStatus.failed,
        "start",
        "start: the Procfile and scale ask for 99 containers",
    )


def test_a_bug_in_a_step_fails_as_an_internal_error(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    live(rig)

    def broken(*_args: Any) -> None:
        raise KeyError("oops")

    monkeypatch.setitem(STEPS, "health", broken)
    result = rig.run()
    assert not result.ok and result.error == "health: internal error: KeyError('oops')"
    assert f"remove image paas/shop:v{result.version}" in rig.docker.calls


# retention ------------------------------------------------------------------------------------


def test_images_to_remove_keeps_what_a_kept_release_names() -> None:
    kept = Kept(deployments=frozenset({"7", "9"}), tags=frozenset({"paas/shop:v3"}))
    images = [
        ("sha256:a", ["paas/shop:v7"], {"paas.deployment": "7"}),  # a kept release's own
        ("sha256:b", ["paas/shop:v3"], {"paas.deployment": "3"}),  # named by a kept release (reused)
        ("sha256:c", ["paas/shop:v2"], {"paas.deployment": "2"}),
        ("sha256:d", [], {"paas.deployment": "1"}),  # untagged: removed by id
    ]
    assert images_to_remove(kept, images) == [["paas/shop:v2"], ["sha256:d"]]
    assert images_to_remove(Kept(frozenset(), frozenset()), []) == []


def test_release_logs_beyond_the_newest_go_but_the_live_ones_stays(tmp_path: Path) -> None:
    assert logs_to_remove([1, 2, 3, 4, 5], keep=2, live=5) == [1, 2, 3]
    assert logs_to_remove([1, 2, 3, 4, 5], keep=2, live=1) == [2, 3]  # rolled back to v1
    assert logs_to_remove([3, 1], keep=5, live=None) == []
    logs = tmp_path / "shop"
    logs.mkdir()
    for name in ("v1.log", "v2.log", "v3.log", "v10.log", "notes.txt", "v01.log"):
        (logs / name).write_text("x")
    assert prune_release_logs(tmp_path, "shop", keep=2, live=2) == [1]
    assert sorted(p.name for p in logs.iterdir()) == ["notes.txt", "v01.log", "v10.log", "v2.log", "v3.log"]
    assert prune_release_logs(tmp_path, "gone", keep=2, live=None) == []


def test_an_env_release_queued_behind_a_deploy_runs_only_if_it_has_work(rig: Rig) -> None:
    """An env change during a first deploy queues a release after it
    (paas/envvars.py): if that deploy failed, or already took the env, the
    release has nothing to do and makes no release."""
    nothing = rig.run(queue.RELEASE, trigger="env")
    assert nothing.ok and nothing.deployment_id is None and "nothing is live" in nothing.note
    first = live(rig)
    same = rig.run(queue.RELEASE, trigger="env")
    assert same.ok and (same.deployment_id, same.version) == (first.deployment_id, first.version)
    assert same.note == f"v{first.version} already runs with this env" and rig.docker.calls == []
    with session_scope(rig.db) as session:
        app = session.exec(select(App).where(App.name == "shop")).one()
        app.env_version += 1  # changed since the deploy took it
        session.add(app)
    newer = rig.run(queue.RELEASE, trigger="env")
    assert newer.ok and newer.version == (first.version or 0) + 1, rig.log(newer)
    assert rig.release_row(newer).env_version == rig.release_row(first).env_version + 1


@pytest.mark.parametrize(
    ("status", "code", "restarts", "said"),
    [
        ("exited", 3, 0, "exited with status 3"),
        ("restarting", None, 2, "exited (restarted 2 times)"),  # between two runs: no status to tell
        ("running", 0, 1, "exited with status 0 (restarted 1 times)"),
        ("running", None, 0, None),
    ],
)
def test_why_a_container_is_not_running_well_never_says_none(
    status: str, code: int | None, restarts: int, said: str | None
) -> None:
    from types import SimpleNamespace

    from agent.steps import trouble

    info = ContainerInfo("paas-shop-web-v1-1", status, {}, exit_code=code, restarts=restarts)
    doors = SimpleNamespace(docker=SimpleNamespace(container=lambda _name: info))
    assert trouble(doors, None, info.name) == said  # type: ignore[arg-type]
