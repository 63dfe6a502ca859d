"""Queue semantics on a fresh, migrated database per test."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select

from paas import queue
from paas.db import on_job_queued, session_scope
from paas.models import App, Job, JobState, utcnow


def _app(engine: Engine, name: str) -> App:
    with session_scope(engine) as s:
        app = App(name=name, repo_url="/r", webhook_secret="x")
        s.add(app)
        s.flush()
        s.expunge(app)
        return app


def _deploy(engine: Engine, app: App, commit: str) -> int:
    with session_scope(engine) as s:
        job = queue.enqueue(s, kind=queue.DEPLOY, app=app, payload={"commit": commit})
        assert job.id is not None
        return job.id


def _claim(engine: Engine, owner: str = "a1", lease: float = 30) -> Job | None:
    with session_scope(engine) as s:
        job = queue.claim(s, owner=owner, lease_seconds=lease)
        if job is not None:
            s.expunge(job)
        return job


def _states(engine: Engine) -> dict[str, str]:
    with Session(engine) as s:
        return {j.payload.get("commit", j.kind): j.state for j in s.exec(select(Job)).all()}


def test_a_burst_of_pushes_deploys_only_the_newest(engine: Engine) -> None:
    app = _app(engine, "shop")
    first = _deploy(engine, app, "c1")
    running = _claim(engine)
    assert running is not None and running.id == first
    for commit in ("c2", "c3", "c4"):
        _deploy(engine, app, commit)
    assert _states(engine) == {"c1": "running", "c2": "superseded", "c3": "superseded", "c4": "queued"}
    assert _claim(engine) is None  # one job per app: c4 waits for c1
    with session_scope(engine) as s:
        assert queue.finish(s, job_id=first, owner="a1", state=JobState.done)
    nxt = _claim(engine)
    assert nxt is not None and nxt.payload["commit"] == "c4"
    with Session(engine) as s:
        c2 = s.exec(select(Job).where(Job.id == first + 1)).one()
        assert c2.superseded_by == first + 2 and "superseded" in c2.error


def test_different_apps_run_in_parallel(engine: Engine) -> None:
    a, b = _app(engine, "a"), _app(engine, "b")
    _deploy(engine, a, "a1")
    _deploy(engine, a, "a2")  # supersedes a1 while still queued
    _deploy(engine, b, "b1")
    first, second = _claim(engine), _claim(engine)
    assert first is not None and second is not None
    assert {first.payload["commit"], second.payload["commit"]} == {"a2", "b1"}
    assert _claim(engine) is None


def test_concurrent_claimers_never_take_two_jobs_of_one_app(engine: Engine) -> None:
    apps = [_app(engine, f"app{i}") for i in range(5)]
    for app in apps:
        _deploy(engine, app, f"{app.name}-x")
    # a delete job queued behind each deploy: same app, must wait
    with session_scope(engine) as s:
        for app in apps:
            queue.enqueue(s, kind=queue.DELETE, app=app)
    won: list[Job] = []
    lock = threading.Lock()

    def worker(owner: str) -> None:
        for _ in range(10):
            job = _claim(engine, owner=owner)
            if job is not None:
                with lock:
                    won.append(job)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(j.app_name for j in won) == sorted(a.name for a in apps)
    assert all(j.kind == queue.DEPLOY for j in won)


def test_heartbeat_extends_only_the_owners_leases(engine: Engine) -> None:
    app = _app(engine, "shop")
    job_id = _deploy(engine, app, "c1")
    job = _claim(engine, owner="a1", lease=5)
    assert job is not None and job.lease_expires_at is not None
    with session_scope(engine) as s:
        assert queue.heartbeat(s, owner="other", job_ids=[job_id], lease_seconds=60) == 0
        assert queue.heartbeat(s, owner="a1", job_ids=[job_id], lease_seconds=60) == 1
    with Session(engine) as s:
        renewed = s.get(Job, job_id)
        assert renewed is not None and renewed.lease_expires_at is not None
        assert renewed.lease_expires_at > job.lease_expires_at


def test_an_expired_lease_fails_the_job_and_frees_the_app(engine: Engine) -> None:
    app = _app(engine, "shop")
    job_id = _deploy(engine, app, "c1")
    assert _claim(engine, owner="dead-agent", lease=5) is not None
    with session_scope(engine) as s:
        assert queue.recover_expired(s) == []  # still leased
        expired = queue.recover_expired(s, now=utcnow() + timedelta(seconds=6))
        assert [j.id for j in expired] == [job_id]
    with Session(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.state == JobState.failed and "lease expired" in job.error
    # the dead owner cannot finish it any more, and the app can run a new job
    with session_scope(engine) as s:
        assert not queue.finish(s, job_id=job_id, owner="dead-agent", state=JobState.done)
    _deploy(engine, app, "c2")
    assert _claim(engine, owner="new-agent") is not None


def test_whoever_registered_hears_of_a_job_once_it_is_committed(engine: Engine) -> None:
    heard: list[str] = []
    on_job_queued(engine, lambda: heard.append("job"))
    app = _app(engine, "shop")
    assert heard == []  # a commit that queued nothing
    with Session(engine) as s:
        queue.enqueue(s, kind=queue.DEPLOY, app=app, payload={"commit": "a"})
        assert heard == []  # not before the commit: the agent would find nothing
        s.rollback()
    with session_scope(engine) as s:
        s.add(App(name="other", repo_url="/r", webhook_secret="x"))
    assert heard == []  # the rolled-back job's mark went with it
    _deploy(engine, app, "b")
    assert heard == ["job"]
