"""Telling people, piece by piece: the API that stores a GitHub token and
notification URLs sealed and never shows them, the outbox's order and
retries (against the loopback GitHub stand-in, and a recording sender for
notifications), crash classification from Docker's events, and the masks.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from agent.tell.crashes import CrashWatch
from agent.tell.notify_send import scrub
from agent.tell.outbox import Outbox
from agent.tell.say import Ended
from agent.tell.teller import Teller
from paas.crypto import DecryptError, Keyring, github_token_purpose, notify_url_purpose
from paas.db import session_scope
from paas.models import App, Deployment, Job, JobState, Notice, NotifyTarget, utcnow
from paas.notify_rules import github_repo_from_url, mask_url
from paas.settings import Settings
from tests.integration.github_standin import PUSH, GitHubStandIn, sequence
from tests.unit.telling import TOKEN, Sent

COMMIT = "a" * 40
URL = "slack://T000/B000/XXXXcanarytokenXXXX"


@pytest.fixture
def shop(client: TestClient, auth: dict[str, str]) -> str:
    r = client.post(
        "/api/v1/apps", json={"name": "shop", "repo_url": "https://github.com/octo/shop.git"}, headers=auth
    )
    assert r.status_code == 201
    return "shop"


# the API -------------------------------------------------------------------------------------


def test_the_github_token_is_stored_sealed_and_never_shown(
    client: TestClient, auth: dict[str, str], shop: str, engine: Engine, settings: Settings
) -> None:
    r = client.put(f"/api/v1/apps/{shop}/github", json={"token": TOKEN}, headers=auth)
    assert r.status_code == 200, r.text
    shown = r.json()
    assert (
        shown["token_set"] is True and shown["repo"] == "octo/shop" and shown["environment"] == "production"
    )
    assert TOKEN not in r.text and TOKEN not in client.get(f"/api/v1/apps/{shop}", headers=auth).text
    with Session(engine) as s:
        stored = s.exec(select(App.github_token)).one()
    assert stored.startswith("s2:")
    with pytest.raises(DecryptError):  # what web can read: the public key only
        Keyring(settings.keys_dir, private=False).decrypt(stored)
    agent = Keyring(settings.keys_dir, private=True)
    assert agent.decrypt(stored, purpose=github_token_purpose(shop)) == TOKEN
    # removed with "", repository and environment set on their own
    r = client.put(
        f"/api/v1/apps/{shop}/github", json={"repo": "octo/other", "environment": "staging"}, headers=auth
    )
    assert r.json()["token_set"] is True and r.json()["repo"] == "octo/other"
    assert (
        client.put(f"/api/v1/apps/{shop}/github", json={"token": ""}, headers=auth).json()["token_set"]
        is False
    )


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"token": "short"}, "is not a GitHub token"),
        ({"repo": "not a repo"}, "owner/name"),
        ({"environment": "prod; rm -rf"}, "letters, digits"),
        ({}, "nothing to change"),
        ({"token": TOKEN, "extra": 1}, "extra"),
    ],
)
def test_bad_github_settings_are_refused_and_change_nothing(
    client: TestClient, auth: dict[str, str], shop: str, engine: Engine, body: dict[str, Any], says: str
) -> None:
    r = client.put(f"/api/v1/apps/{shop}/github", json=body, headers=auth)
    assert r.status_code in (400, 422) and says in r.text, r.text
    assert TOKEN not in r.text
    with Session(engine) as s:
        app = s.exec(select(App)).one()
    assert (app.github_token, app.github_repo, app.github_environment) == ("", "", "production")


def test_a_token_for_a_repository_that_is_not_on_github_needs_the_repository_named(
    client: TestClient, auth: dict[str, str]
) -> None:
    client.post(
        "/api/v1/apps",
        json={"name": "local", "repo_url": "https://gitlab.example.com/group/sub/b.git"},
        headers=auth,
    )
    r = client.put("/api/v1/apps/local/github", json={"token": TOKEN}, headers=auth)
    assert r.status_code == 422 and "--github-repo" in r.text
    ok = client.put("/api/v1/apps/local/github", json={"token": TOKEN, "repo": "a/b"}, headers=auth)
    assert ok.status_code == 200 and ok.json()["repo"] == "a/b"


def test_notification_targets_are_sealed_listed_masked_and_removable(
    client: TestClient, auth: dict[str, str], shop: str, engine: Engine
) -> None:
    r = client.post("/api/v1/notifications", json={"url": URL, "events": ["deploy.failed"]}, headers=auth)
    assert r.status_code == 201, r.text
    assert r.json()["url"] == "slack://****XXXX" and r.json()["app"] is None
    mine = client.post("/api/v1/notifications", json={"url": URL + "2", "app": shop}, headers=auth).json()
    assert mine["app"] == shop and mine["events"] == []
    listed = client.get("/api/v1/notifications", headers=auth)
    assert [t["id"] for t in listed.json()] == [
        r.json()["id"],
        mine["id"],
    ] and "canarytoken" not in listed.text
    with Session(engine) as s:
        assert all(t.url.startswith("s2:") for t in s.exec(select(NotifyTarget)).all())
    for bad, says in (
        ({"url": "hello"}, "Apprise URL"),
        ({"url": URL, "events": ["deploy.exploded"]}, "unknown event"),
        ({"url": URL, "app": "nope"}, "no app"),
    ):
        refused = client.post("/api/v1/notifications", json=bad, headers=auth)
        assert refused.status_code in (404, 422) and says in refused.text, refused.text
    assert len(client.get("/api/v1/notifications", headers=auth).json()) == 2
    assert client.delete(f"/api/v1/notifications/{mine['id']}", headers=auth).status_code == 204
    assert client.delete(f"/api/v1/notifications/{mine['id']}", headers=auth).status_code == 404
    assert client.post("/api/v1/notifications/99/test", headers=auth).status_code == 404


def test_masks_and_repository_names() -> None:
    assert mask_url("discord://1234567890/abcdefTOKEN") == "discord://****OKEN"
    assert mask_url("ntfy://topic") == "ntfy://****"  # too short to show any of it
    assert github_repo_from_url("https://github.com/octo/shop.git") == "octo/shop"
    assert github_repo_from_url("git@github.com:octo/shop.git") == "octo/shop"
    assert github_repo_from_url("/srv/git/shop.git") == ""
    assert scrub("failed for https://u:hunter2pass@host/x", "json://u:hunter2pass@host/x") == (
        "failed for https://u:****@host/x"
    )


# the outbox ----------------------------------------------------------------------------------


def _app_with_token(engine: Engine, settings: Settings) -> App:
    keyring = Keyring(settings.keys_dir, private=False)
    with session_scope(engine) as s:
        app = App(
            name="shop",
            repo_url="https://github.com/octo/shop.git",
            webhook_secret="x",
            github_token=keyring.encrypt(TOKEN, secret=True, purpose=github_token_purpose("shop")),
        )
        s.add(app)
        s.flush()
        target = NotifyTarget(app_id=app.id, url="", masked="m", events=[])
        s.add(target)
        s.flush()
        target.url = keyring.encrypt(URL, secret=True, purpose=notify_url_purpose(target.id, "shop"))
        return app


def _job(engine: Engine, app: App, *, commit: str = COMMIT, state: str = JobState.queued) -> Job:
    with session_scope(engine) as s:
        job = Job(
            kind="deploy",
            app_id=app.id,
            app_name=app.name,
            payload={"commit": commit, "trigger": "push"},
            state=state,
        )
        s.add(job)
        return job


def _release(engine: Engine, app: App, job: Job, version: int) -> Deployment:
    with session_scope(engine) as s:
        dep = Deployment(app_id=app.id or 0, version=version, commit=COMMIT, trigger="push", job_id=job.id)
        s.add(dep)
        return dep


def _drain(teller: Teller) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        teller.send_due("github")
        teller.send_due("notify")
        with Session(teller.db) as s:
            if not s.exec(select(Notice).where(Notice.state == "pending")).first():
                return
        time.sleep(0.05)
    raise AssertionError("the outbox did not empty")


def test_a_deploy_is_reported_in_order_and_a_failing_report_holds_back_the_rest(
    teller: tuple[Teller, Sent], github: GitHubStandIn, engine: Engine, settings: Settings
) -> None:
    tell, sent = teller
    app = _app_with_token(engine, settings)
    job = _job(engine, app)
    tell.scan()
    tell.scan()  # once only
    github.trouble = ["500"]
    tell.send_due("github")
    assert github.answered() == [] and github.refused == 1
    with Session(engine) as s:
        notice = s.exec(select(Notice)).one()
    assert notice.state == "pending" and "GitHub answered 500" in notice.last_error
    assert notice.next_at > utcnow()  # backing off
    dep = _release(engine, app, job, 1)
    tell.started(job, dep.id or 0)
    tell.send_due("github")  # the queued report waits: nothing of the started one goes first
    assert github.answered() == []
    with session_scope(engine) as s:
        s.exec(select(Notice)).all()[0].next_at = utcnow()
    tell.finished(job, dep.id, Ended(JobState.done))
    _drain(tell)
    assert sequence(github.answered()) == PUSH
    assert [title for _url, title in sent.messages] == ["shop: deploy (push) v1", "shop: v1 is live"]
    assert github.violations == []


def test_rate_limits_set_the_next_try_and_a_bad_token_is_not_retried(
    teller: tuple[Teller, Sent], github: GitHubStandIn, engine: Engine, settings: Settings
) -> None:
    tell, _sent = teller
    app = _app_with_token(engine, settings)
    _job(engine, app)
    tell.scan()
    github.trouble = [("403", 120)]
    before = utcnow()
    tell.send_due("github")
    with Session(engine) as s:
        notice = s.exec(select(Notice)).one()
    assert "rate limited" in notice.last_error
    assert (
        timedelta(seconds=115)
        < notice.next_at.replace(tzinfo=before.tzinfo) - before
        < timedelta(seconds=125)
    )
    github.trouble = [("reset", 600)]
    with session_scope(engine) as s:
        s.exec(select(Notice)).one().next_at = utcnow()
    tell.send_due("github")
    with Session(engine) as s:
        notice = s.exec(select(Notice)).one()
    assert notice.next_at.replace(tzinfo=before.tzinfo) - before > timedelta(seconds=590)
    # a 401 is the token's fault: said, not retried, and the next report still goes
    github.trouble = ["401", "401", "401"]
    with session_scope(engine) as s:
        s.exec(select(Notice)).one().next_at = utcnow()
    tell.send_due("github")
    with Session(engine) as s:
        notice = s.exec(select(Notice)).one()
    assert notice.state == "failed" and "token is wrong, expired or revoked" in notice.last_error
    assert TOKEN not in notice.last_error


def test_a_notification_that_keeps_failing_is_given_up_and_shown_on_its_target(
    teller: tuple[Teller, Sent], engine: Engine, settings: Settings
) -> None:
    tell, sent = teller
    app = _app_with_token(engine, settings)
    sent.failing = True
    tell.event("app.crashed", app_name=app.name, title="shop: crashed", body="exit 1")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        tell.send_due("notify")
        with Session(engine) as s:
            notice = s.exec(select(Notice)).one()
        if notice.state != "pending":
            break
        time.sleep(0.02)
    assert notice.state == "failed" and notice.attempts == settings.notify_attempts
    with Session(engine) as s:
        target = s.exec(select(NotifyTarget)).one()
    assert "not delivered after 4 tries: connection refused" in target.last_error
    sent.failing = False
    assert tell.test_target(target.id or 0) == ""
    with Session(engine) as s:
        target = s.exec(select(NotifyTarget)).one()
    assert target.last_error == "" and target.last_sent_at is not None


def test_a_target_hears_only_its_events_and_old_notices_are_forgotten(
    teller: tuple[Teller, Sent], engine: Engine, settings: Settings
) -> None:
    tell, sent = teller
    _app_with_token(engine, settings)
    with session_scope(engine) as s:
        for target in s.exec(select(NotifyTarget)).all():
            target.events = ["disk.low"]
            target.app_id = None  # the server's own events go to targets of every app
            # (sealed for a target of every app: its URL is bound to whose events it hears)
            purpose = notify_url_purpose(target.id, None)
            target.url = Keyring(settings.keys_dir, private=False).encrypt(URL, secret=True, purpose=purpose)
    tell.event("app.crashed", app_name="shop", title="crashed", body="")
    tell.event("disk.low", title="disk", body="")
    _drain(tell)
    assert [title for _url, title in sent.messages] == ["disk"]
    with session_scope(engine) as s:
        for notice in s.exec(select(Notice)).all():
            notice.created_at = utcnow() - timedelta(days=31)
    assert tell.prune() == 1


def test_the_outbox_sends_in_order_per_key_and_keeps_its_back_off_on_the_row(engine: Engine) -> None:
    """The outbox both channels share (agent/tell/outbox.py): the first
    pending notice of each key only; a failed try waits the channel's
    back-off, written on the row; ``tries`` gives it up; one whose sending
    broke waits a minute."""
    tried: list[int] = []

    def send(notice_id: int) -> None:
        tried.append(notice_id)
        if notice_id == broken:
            raise KeyError("a row nobody expected")

    outbox = Outbox(engine, "notify", key=lambda n: n.target_id, send=send, first=30, factor=4, tries=3)
    with session_scope(engine) as s:
        targets = [NotifyTarget(url="", masked="m", events=[]) for _ in range(3)]
        s.add_all(targets)
        s.flush()
        rows = [Notice(channel="notify", target_id=t.id, event="disk.low") for t in (targets[0], *targets)]
        s.add_all(rows)
        s.flush()
        first, second, other, broken = (n.id or 0 for n in rows)
    assert outbox.due() == [first, other, broken]  # ``second`` waits behind ``first``
    before = utcnow()
    assert outbox.retry(first, error="refused") == ""
    with Session(engine) as s:
        row = s.get(Notice, first)
        assert row is not None and row.attempts == 1 and row.last_error == "refused"
        assert (
            timedelta(seconds=29) < row.next_at.replace(tzinfo=before.tzinfo) - before < timedelta(seconds=31)
        )
    assert outbox.due() == [other, broken]  # and it still holds ``second`` back
    assert outbox.retry(first, error="refused") == ""  # 120 s
    assert outbox.retry(first, error="refused") == "not delivered after 3 tries: refused"
    with Session(engine) as s:
        row = s.get(Notice, first)
        assert row is not None and (row.state, row.attempts) == ("failed", 3) and row.sent_at is not None
    outbox.end(other, state="sent")
    assert outbox.send_due() == 2 and tried == [second, broken]
    with Session(engine) as s:
        row = s.get(Notice, broken)
        assert row is not None and row.state == "pending" and row.last_error == "KeyError (see paas's log)"
        assert row.next_at.replace(tzinfo=before.tzinfo) - before > timedelta(seconds=55)


# crashes -------------------------------------------------------------------------------------


def _event(action: str, cid: str = "c1", **attributes: str) -> dict[str, Any]:
    labels = {"paas.app": "shop", "paas.process": "web", "name": "paas-shop-web-v1-1", **attributes}
    return {"Action": action, "Actor": {"ID": cid, "Attributes": labels}}


def test_crashes_and_oom_kills_are_told_and_stops_are_not() -> None:
    told: list[tuple[str, str]] = []
    watch = CrashWatch(
        None,  # type: ignore[arg-type]  (seen() is what is tested: no engine needed)
        "instance",
        lambda event, **kw: told.append((event, kw["title"])),
        quiet=0,
    )
    watch.seen(_event("kill", signal="15"))
    watch.seen(_event("die", exitCode="143"))  # stopped: paas retiring it, or a docker stop
    watch.seen(_event("die", "c2", exitCode="1"))
    watch.seen(_event("oom", "c3"))
    watch.seen(_event("die", "c3", exitCode="137"))
    watch.seen(_event("die", "c4", exitCode="1", **{"paas.process": "release"}))  # fails its deploy instead
    assert told == [
        ("app.crashed", "shop: a container exited with code 1"),
        ("app.oom", "shop: a container was killed by its memory limit"),
    ]
    quiet = CrashWatch(None, "i", lambda event, **kw: told.append((event, "")), quiet=300)  # type: ignore[arg-type]
    for n in range(5):
        quiet.seen(_event("die", f"loop{n}", exitCode="1"))
    assert len(told) == 3  # a crash loop is one message
    starting = CrashWatch(
        None,  # type: ignore[arg-type]
        "i",
        lambda event, **kw: told.append((event, "")),
        is_live=lambda app, name, deployment: deployment == "7",
    )
    starting.seen(_event("die", "new", exitCode="1", **{"paas.deployment": "8"}))  # its deploy fails instead
    assert len(told) == 3
    starting.seen(_event("die", "old", exitCode="1", **{"paas.deployment": "7"}))
    assert len(told) == 4


def test_key_rotation_reseals_the_github_token_and_notification_urls(
    client: TestClient, auth: dict[str, str], shop: str, engine: Engine, settings: Settings
) -> None:
    from paas.key_rotation import rotate_keys

    client.put(f"/api/v1/apps/{shop}/github", json={"token": TOKEN}, headers=auth)
    client.post("/api/v1/notifications", json={"url": URL}, headers=auth)
    with Session(engine) as s:
        before = (s.exec(select(App.github_token)).one(), s.exec(select(NotifyTarget.url)).one())
    rotate_keys(engine, settings.keys_dir)
    with Session(engine) as s:
        after = (s.exec(select(App.github_token)).one(), s.exec(select(NotifyTarget.url)).one())
    assert all(a != b and a.startswith("s2:") for a, b in zip(after, before, strict=True))
    fresh = Keyring(settings.keys_dir, private=True)
    with Session(engine) as s:
        target_id = s.exec(select(NotifyTarget.id)).one()
    token_for, url_for = github_token_purpose(shop), notify_url_purpose(target_id, None)
    assert fresh.decrypt(after[0], purpose=token_for) == TOKEN
    assert fresh.decrypt(after[1], purpose=url_for) == URL
    for sealed, wrong in ((after[0], url_for), (after[1], token_for)):  # each still bound to its own field
        with pytest.raises(DecryptError, match="refusing"):
            fresh.decrypt(sealed, purpose=wrong)


def test_a_token_or_url_copied_into_another_field_is_not_opened(
    teller: tuple[Teller, Sent], engine: Engine, settings: Settings
) -> None:
    """A taken-over web can copy sealed values between rows (issue 27): the
    agent opens each only where it was sealed, and says so without it."""
    tell, sent = teller
    shop = _app_with_token(engine, settings)
    with session_scope(engine) as s:
        token = s.exec(select(App.github_token)).one()
        url = s.exec(select(NotifyTarget.url)).one()
        evil = App(name="evil", repo_url="https://github.com/octo/evil.git", webhook_secret="x")
        copied = NotifyTarget(app_id=None, url=url, masked="m", events=[])  # shop's URL, every app's events
        s.add_all([evil, copied])
    for sealed, was in ((token, "the GitHub token of app shop"), (url, "notification target")):
        evil.github_token = sealed
        with pytest.raises(DecryptError) as refused:
            tell.reports.client(evil)
        assert "the GitHub token of app evil" in str(refused.value) and was in str(refused.value)
    said = tell.test_target(copied.id or 0)
    assert said.startswith("cannot open the URL") and "(every app)" in said and "(app shop)" in said
    with session_scope(engine) as s:
        s.exec(select(NotifyTarget).where(NotifyTarget.app_id == shop.id)).one().url = token
    with Session(engine) as s:
        target_id = s.exec(select(NotifyTarget.id).where(NotifyTarget.app_id == shop.id)).one()
    assert "sealed for the GitHub token of app shop" in tell.test_target(target_id)
    assert sent.messages == [] and all(TOKEN not in m and URL not in m for m in (said,))
