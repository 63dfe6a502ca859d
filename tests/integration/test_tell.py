"""Telling people how a deploy went, with real receivers on loopback: a
GitHub API stand-in that checks every request against the schema githubkit
carries (tests/integration/github_standin.py), an SMTP server (aiosmtpd)
receiving Apprise's email, and an HTTP server receiving Apprise's json://
posts. A push, a failing build, a rollback and an env release each produce
their sequence of statuses, deployments and messages, in order and with the
right URLs; GitHub failing in every way it does delays nothing; and no token
or notification URL is anywhere paas writes or answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import statistics
import time
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from testkit.harness import (
    LOOPBACK,
    GitRemote,
    JsonReceiver,
    Nginx,
    Stack,
    canary_hits,
    free_port,
    wait_until,
)
from testkit.sample_app import DOCKERFILE, REQUIREMENTS
from tests.integration.github_standin import PUSH, RELEASE, Call, GitHubStandIn, sequence

pytestmark = pytest.mark.integration

APP = f"tell{os.getpid() % 100000}"
REPO = "octo-org/shop"
TOKEN = "github_pat_" + secrets.token_hex(20)
HOOK_SECRET = "hook" + secrets.token_hex(8)  # in the json:// target's path
MAIL_PASSWORD = "mail" + secrets.token_hex(8)
MAIN = """\
import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root():
    return {{"version": "{version}"}}


@app.get("/crash")
def crash():
    os._exit(3)


@app.get("/oom")
def oom():
    hog = [bytearray(16 * 2**20) for _ in range(64)]  # 1 GiB, in pieces the kernel must back
    return {{"survived": len(hog)}}
"""


def files(version: str, *, broken: bool = False) -> dict[str, str]:
    dockerfile = DOCKERFILE.replace("COPY . .", "COPY . .\nRUN echo the build breaks here && exit 3")
    return {
        "Dockerfile": dockerfile if broken else DOCKERFILE,
        "requirements.txt": REQUIREMENTS,
        "main.py": MAIN.format(version=version),
    }


# receivers -----------------------------------------------------------------------------------


class MailBox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def _authenticate(_server: Any, _session: Any, _envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.password == MAIL_PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


# the installation ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, nginx: Nginx) -> Iterator[dict[str, Any]]:
    github = GitHubStandIn(token=TOKEN, repo=REPO).start()
    receiver = JsonReceiver()
    mailbox = MailBox()
    smtp = Controller(
        mailbox,
        hostname=LOOPBACK,
        port=free_port(),
        authenticator=_authenticate,
        auth_require_tls=False,
        auth_exclude_mechanism=["CRAM-MD5"],
    )
    smtp.start()
    stack = Stack(
        tmp_path_factory.mktemp("tell"),
        nginx,
        PAAS_GITHUB_API_URL=github.url,
        PAAS_GITHUB_TIMEOUT="1",
        PAAS_GITHUB_RETRY_MAX_SECONDS="2",
        PAAS_NOTIFY_RETRY_SECONDS="0.5",
    )
    stack.start()
    repo = GitRemote(tmp_path_factory.mktemp("git-tell"))
    created = json.loads(stack.paas("apps", "create", APP, "--repo", str(repo.bare), "--json").stdout)
    said = stack.paas("apps", "set", APP, "--github-token", "--github-repo", REPO, stdin=TOKEN + "\n").stdout
    assert f"reports to GitHub {REPO} (production)" in said
    json_url = f"json://{LOOPBACK}:{receiver.port}/hooks/{HOOK_SECRET}"
    mail_url = (
        f"mailto://paas:{MAIL_PASSWORD}@{LOOPBACK}:{smtp.port}"
        "?mode=insecure&from=paas@apps.test&to=dev@apps.test"
    )
    added = json.loads(stack.paas("notify", "add", json_url, "--app", APP, "--json").stdout)
    mailed = json.loads(
        stack.paas(
            "notify", "add", "-", "--events", "deploy.failed,rollback", "--json", stdin=mail_url
        ).stdout
    )
    world = {
        "stack": stack,
        "github": github,
        "receiver": receiver,
        "mailbox": mailbox,
        "repo": repo,
        "secret": created["webhook_secret"],
        "json_target": added,
        "mail_target": mailed,
        "urls": {"json": json_url, "mail": mail_url},
        "commits": [],
    }
    yield world
    stack.stop()
    stack.remove_everything()
    smtp.stop()
    github.stop()
    receiver.stop()


def push(world: dict[str, Any], version: str, *, broken: bool = False) -> float:
    """Push a commit, deliver its webhook; the time the delivery was made."""
    payload = world["repo"].commit(files(version, broken=broken), f"release {version}")
    world["commits"].append(payload["after"])
    started = time.monotonic()
    r = world["stack"].webhook(APP, world["secret"], payload)
    assert r.status_code == 202, r.text
    return started


def to_live(world: dict[str, Any], version: str) -> float:
    """Webhook to the new version served through nginx, in seconds."""
    started = push(world, version)
    wait_until(lambda: _serves(world["stack"], version), f"{version} served", timeout=300)
    took = time.monotonic() - started

    def retired() -> bool:  # the next deploy must not wait for this one's retire step
        return world["stack"].api("GET", f"/apps/{APP}/releases").json()[0]["finished_at"] is not None

    wait_until(retired, f"{version} retired")
    return took


def settled(world: dict[str, Any], count: int, timeout: float = 60) -> list[Call]:
    """Wait until GitHub has answered ``count`` more calls and the outbox is empty."""
    github, stack = world["github"], world["stack"]
    wait_until(lambda: len(github.answered()) >= count, f"{count} GitHub calls", timeout)
    db = stack.root / "data" / "db" / "paas.db"

    def empty() -> bool:
        with sqlite3.connect(db) as conn:
            return conn.execute("select count(*) from notice where state = 'pending'").fetchone()[0] == 0

    wait_until(empty, "the outbox to empty", timeout)
    return github.answered()


# the tests -----------------------------------------------------------------------------------


def test_a_test_notification_reaches_each_target(world: dict[str, Any]) -> None:
    stack, receiver, mailbox = world["stack"], world["receiver"], world["mailbox"]
    json_id, mail_id = world["json_target"]["id"], world["mail_target"]["id"]
    assert stack.paas("notify", "test", str(json_id)).stdout.startswith(
        f"sent a test notification to target {json_id}"
    )
    assert receiver.titles()[-1] == "paas: a test notification"
    assert receiver.paths[-1] == f"/hooks/{HOOK_SECRET}"
    stack.paas("notify", "test", str(mail_id))
    message = wait_until(lambda: mailbox.messages, "the test email")[-1]
    assert message["Subject"] == "paas: a test notification" and message["To"] == "dev@apps.test"
    listed = json.loads(stack.paas("notify", "list", "--json").stdout)
    assert [t["url"] for t in listed] == [world["json_target"]["url"], world["mail_target"]["url"]]
    assert all(t["url"].endswith("****" + t["url"][-4:]) or "****" in t["url"] for t in listed)
    assert all(t["last_sent_at"] and not t["last_error"] for t in listed)
    # a target that cannot be reached says so, and nothing is kept of the URL in the error
    bad = json.loads(
        stack.paas("notify", "add", f"json://{LOOPBACK}:{free_port()}/x/{HOOK_SECRET}", "--json").stdout
    )
    failed = stack.paas("notify", "test", str(bad["id"]), check=False)
    assert failed.returncode == 1 and "not delivered" in failed.stderr and HOOK_SECRET not in failed.stderr
    stack.paas("notify", "remove", str(bad["id"]), "--yes")
    refused = stack.paas("notify", "add", "not a url", check=False)
    assert refused.returncode == 1 and "Apprise URL" in refused.stderr


def test_a_push_reports_each_step_to_github_and_notifies(world: dict[str, Any]) -> None:
    stack, github, receiver = world["stack"], world["github"], world["receiver"]
    before = len(github.answered())
    push(world, "one")
    assert stack.wait_release(APP, 1)["status"] == "succeeded", stack.release_log(APP, 1)
    calls = settled(world, before + 7)[before:]
    assert sequence(calls) == PUSH
    assert github.violations == []
    commit = world["repo"].head
    release_url = f"{stack.env['PAAS_PUBLIC_URL']}/apps/{APP}/releases/1"
    status, deployment, success = calls[0], calls[1], calls[6]
    assert status.path == f"/repos/{REPO}/statuses/{commit}" and status.body["context"] == f"paas/{APP}"
    assert calls[5].body["target_url"] == release_url and calls[5].body["description"] == "v1 is live"
    assert deployment.body["ref"] == commit and deployment.body["environment"] == "production"
    assert deployment.body["required_contexts"] == [] and deployment.body["auto_merge"] is False
    assert success.body["log_url"] == release_url
    assert success.body["environment_url"] == f"http://{APP}.{stack.domain}:{stack.nginx.port}"
    assert {c.deployment_id for c in calls[2:] if c.kind == "deployment_status"} == {deployment.deployment_id}
    wait_until(lambda: f"{APP}: v1 is live" in receiver.titles(), "the success notification")
    titles = receiver.titles()
    assert titles.index(f"{APP}: deploy (push) v1") < titles.index(f"{APP}: v1 is live")  # in order
    live = receiver.posts[titles.index(f"{APP}: v1 is live")]
    assert live["type"] == "success" and release_url in live["message"]
    log = stack.release_log(APP, 1)
    assert f"github: commit status success on {commit[:12]} sent" in log
    assert TOKEN not in log
    shown = stack.api("GET", f"/apps/{APP}/github").json()
    assert shown["token_set"] is True and shown["repo"] == REPO and "told GitHub" in shown["last_outcome"]
    world["live_deployment"] = deployment.deployment_id


def test_a_failing_build_reports_failure_and_mails_the_log(world: dict[str, Any]) -> None:
    stack, github, receiver, mailbox = world["stack"], world["github"], world["receiver"], world["mailbox"]
    before, mails = len(github.answered()), len(mailbox.messages)
    push(world, "two", broken=True)
    assert stack.wait_release(APP, 2)["status"] == "failed"
    calls = settled(world, before + 7)[before:]
    assert sequence(calls)[-2:] == [("status", "failure"), ("deployment_status", "failure")]
    assert calls[-2].body["description"].startswith("v2 failed at build")
    assert calls[-1].body["log_url"].endswith(f"/apps/{APP}/releases/2")
    failed = wait_until(
        lambda: [p for p in receiver.posts if p.get("title") == f"{APP}: v2 failed at build"],
        "the failure post",
    )[0]
    assert "the build breaks here" in failed["message"]  # the log's last lines
    mail = wait_until(lambda: mailbox.messages[mails:], "the failure email")[0]
    assert mail["Subject"] == f"{APP}: v2 failed at build"
    assert stack.get_app(APP).json()["version"] == "one"  # the failure changed nothing served


def test_a_rollback_and_an_env_release_are_deployments_and_the_previous_goes_inactive(
    world: dict[str, Any],
) -> None:
    stack, github, receiver, mailbox = world["stack"], world["github"], world["receiver"], world["mailbox"]
    push(world, "three")
    assert stack.wait_release(APP, 3)["status"] == "succeeded"
    before = len(github.answered())
    calls = settled(world, before)
    three = [c for c in calls if c.kind == "deployment"][-1].deployment_id
    # v3 went live: v1's GitHub deployment became inactive
    assert [c.deployment_id for c in calls if c.body.get("state") == "inactive"] == [world["live_deployment"]]

    before, mails = len(github.answered()), len(mailbox.messages)
    stack.paas("rollback", APP, "--to", "v1")
    assert stack.wait_release(APP, 4)["status"] == "succeeded"
    calls = settled(world, before + 5)[before:]
    assert sequence(calls) == RELEASE  # no commit status: v1's commit already has its own
    assert calls[0].body["ref"] == world["commits"][0]
    assert calls[4].deployment_id == three
    four = calls[0].deployment_id
    wait_until(lambda: f"{APP}: rolled back to v1 (now v4)" in receiver.titles(), "the rollback post")
    assert wait_until(lambda: mailbox.messages[mails:], "the rollback email")[0]["Subject"].startswith(
        f"{APP}: rolled back"
    )

    before = len(github.answered())
    stack.paas("env", "set", APP, "GREETING=hi", "--wait")
    calls = settled(world, before + 5)[before:]
    assert sequence(calls) == RELEASE
    assert calls[0].body["description"] == "paas: release (env)" and calls[4].deployment_id == four
    wait_until(lambda: f"{APP}: v5 is live" in receiver.titles(), "the env release's post")
    assert f"{APP}: release (env) v5" in receiver.titles()
    assert github.violations == []
    stack.paas("unpin", APP)  # pushes deploy again (the rollback pinned the app)


def test_github_down_delays_no_deploy_and_hears_later(world: dict[str, Any]) -> None:
    stack, github = world["stack"], world["github"]
    up = [to_live(world, f"up{n}") for n in range(3)]
    settled(world, len(github.answered()))
    before = len(github.answered())
    # 500s, a secondary rate limit (Retry-After), a primary one (X-RateLimit-Reset), then no answer
    github.trouble = ["500", "500", ("403", 1), ("reset", 1), ("hang", 1.5), ("hang", 1.5)] * 3
    down = [to_live(world, f"down{n}") for n in range(3)]
    # every call GitHub got while they deployed failed: troubles were still left at the end
    assert github.refused >= 3 and github.trouble, github.refused
    each = {name: ", ".join(f"{t:.2f}" for t in times) for name, times in (("up", up), ("down", down))}
    report = (
        f"webhook to live, GitHub up: {statistics.median(up):.2f} s (of {each['up']}); "
        f"GitHub failing: {statistics.median(down):.2f} s (of {each['down']})"
    )
    _report(report)
    print(report)
    # the figure that matters is printed; the bound only catches a deploy waiting on GitHub
    # (one timeout is 1 s and each deploy met six failures)
    assert statistics.median(down) < statistics.median(up) + 1.0, report
    calls = settled(world, before + 3 * 7, timeout=180)[before:]
    assert github.refused == 18 and github.trouble == []
    finals = [c for c in calls if c.kind == "status" and c.body["state"] == "success"]
    assert len(finals) == 3  # every deploy's success arrived, once GitHub answered
    for n in range(3):  # and each deploy's reports in their order
        deployment = [c for c in calls if c.kind == "deployment"][n].deployment_id
        states = [
            c.body["state"] for c in calls if c.kind == "deployment_status" and c.deployment_id == deployment
        ]
        assert states[:3] == ["queued", "in_progress", "success"], states
    assert github.violations == []
    log = stack.release_log(APP, 9)
    assert "github: " in log and "retrying in" in log or "GitHub answered 500" in log


def test_a_crash_and_an_out_of_memory_kill_are_notified_once_each(world: dict[str, Any]) -> None:
    stack, receiver = world["stack"], world["receiver"]
    stack.paas("apps", "set", APP, "--memory", "128m")
    to_live(world, "fragile")
    for path, title in (
        ("/crash", f"{APP}: a container exited with code 3"),
        ("/oom", f"{APP}: a container was killed by its memory limit"),
    ):
        with contextlib.suppress(httpx.HTTPError):
            stack.get_app(APP, path)
        wait_until(lambda title=title: title in receiver.titles(), title, timeout=60)  # type: ignore[misc]
        wait_until(lambda: _serves(stack, "fragile"), "the app restarted by Docker", timeout=60)
    with contextlib.suppress(httpx.HTTPError):
        stack.get_app(APP, "/crash")  # again, within 5 minutes: no second message
    wait_until(lambda: _serves(stack, "fragile"), "the app restarted by Docker", timeout=60)
    time.sleep(1)
    assert receiver.titles().count(f"{APP}: a container exited with code 3") == 1


def _serves(stack: Stack, version: str) -> bool:
    try:
        return stack.get_app(APP).json().get("version") == version
    except (httpx.HTTPError, ValueError):
        return False


def test_no_token_or_notification_url_is_anywhere_paas_writes_or_answers(world: dict[str, Any]) -> None:
    stack = world["stack"]
    canaries = {"token": TOKEN, "hook": HOOK_SECRET, "mail": MAIL_PASSWORD, **world["urls"]}
    responses = [
        stack.api("GET", path).text
        for path in (
            f"/apps/{APP}",
            f"/apps/{APP}/github",
            "/notifications",
            f"/apps/{APP}/releases",
            *(f"/apps/{APP}/releases/{v}/log" for v in range(1, 6)),
        )
    ]
    browser = stack.browser()
    for page in (f"/apps/{APP}/settings", f"/apps/{APP}/activity"):
        r = browser.get(page)
        assert r.status_code == 200, (page, r.status_code)
        responses.append(r.text)
    browser.close()
    assert "Notifications" in responses[-2] and "GitHub" in responses[-2]
    assert world["json_target"]["url"] in responses[-2]  # the masked form is what the page shows
    assert "GitHub: told" in responses[-1]  # Activity says, per release, whether GitHub was told
    for args in (("notify", "list"), ("apps", "info", APP), ("notify", "list", "--json")):
        proc = stack.paas(*args)
        responses.append(proc.stdout + proc.stderr)
    hits = [
        (name, i) for i, text in enumerate(responses) for name, value in canaries.items() if value in text
    ]
    assert hits == []
    # the data dir, keys, release logs and database, the daemons' own log, nginx's logs
    searched, file_hits = canary_hits([stack.root, stack.log_path.parent, stack.nginx.root], canaries)
    assert searched > 10 and file_hits == []
    with sqlite3.connect(stack.root / "data" / "db" / "paas.db") as db:
        stored = db.execute("select github_token from app where name = ?", (APP,)).fetchone()[0]
    assert stored.startswith("s2:")  # sealed to the agent's key pair: what the search can only find


def _report(line: str) -> None:
    path = Path("test-reports") / "tell.txt"
    path.parent.mkdir(exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
