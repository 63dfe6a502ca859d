"""POST /hooks/github/{app}: every answer, and nothing enqueued when rejected."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from paas.github import sign
from paas.models import Event, Job, WebhookDelivery
from testkit.harness import push_payload

SHA = "b" * 40


@pytest.fixture
def secret(client: TestClient, auth: dict[str, str]) -> str:
    r = client.post(
        "/api/v1/apps", json={"name": "shop", "repo_url": "https://github.com/o/shop.git"}, headers=auth
    )
    assert r.status_code == 201, r.text
    return str(r.json()["webhook_secret"])


def deliver(
    client: TestClient,
    secret: str,
    payload: Any,
    *,
    event: str = "push",
    delivery: str = "d-1",
    signature: str | None = None,
    raw: bytes | None = None,
    app: str = "shop",
) -> Any:
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature if signature is not None else sign(secret, body),
    }
    return client.post(f"/hooks/github/{app}", content=body, headers=headers)


def jobs(engine: Engine) -> list[Job]:
    with Session(engine) as s:
        return list(s.exec(select(Job)).all())


def main_push(after: str = SHA) -> dict[str, Any]:
    return push_payload(repo_url="/r", ref="refs/heads/main", before="0" * 40, after=after, message="go")


def test_push_to_the_branch_enqueues_a_deploy(client: TestClient, secret: str, engine: Engine) -> None:
    r = deliver(client, secret, main_push())
    assert r.status_code == 202
    assert r.json()["queued"] is True and r.json()["commit"] == SHA
    [job] = jobs(engine)
    assert (job.kind, job.app_name, job.state) == ("deploy", "shop", "queued")
    assert job.payload["commit"] == SHA and job.payload["trigger"] == "push"


def test_ping_is_answered(client: TestClient, secret: str, engine: Engine) -> None:
    r = deliver(client, secret, {"zen": "Design for failure.", "hook_id": 1}, event="ping")
    assert (r.status_code, r.json()["detail"]) == (200, "pong")
    assert jobs(engine) == []


@pytest.mark.parametrize(
    ("ref", "after", "why"),
    [
        ("refs/heads/dev", SHA, "branch 'dev'"),
        ("refs/tags/v1", SHA, "is a tag"),
        ("refs/heads/main", "0" * 40, "was deleted"),
    ],
)
def test_other_refs_get_a_2xx_that_says_why(
    client: TestClient, secret: str, engine: Engine, ref: str, after: str, why: str
) -> None:
    payload = push_payload(repo_url="/r", ref=ref, before=SHA, after=after, message="m")
    r = deliver(client, secret, payload)
    assert r.status_code == 200 and why in r.json()["detail"] and r.json()["queued"] is False
    assert jobs(engine) == []


def test_other_events_are_ignored(client: TestClient, secret: str, engine: Engine) -> None:
    r = deliver(client, secret, {"action": "opened"}, event="issues")
    assert r.status_code == 200 and "ignored" in r.json()["detail"]
    assert jobs(engine) == []


def test_a_redelivery_is_deduplicated(client: TestClient, secret: str, engine: Engine) -> None:
    first = deliver(client, secret, main_push(), delivery="same")
    again = deliver(client, secret, main_push(), delivery="same")
    assert first.status_code == 202
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["job_id"] == first.json()["job_id"]
    assert len(jobs(engine)) == 1


@pytest.mark.parametrize(
    ("signature", "status"),
    [("", 401), ("sha256=" + "0" * 64, 401), ("sha1=abc", 401)],
)
def test_bad_signatures_are_rejected(
    client: TestClient, secret: str, engine: Engine, signature: str, status: int
) -> None:
    r = deliver(client, secret, main_push(), signature=signature)
    assert r.status_code == status
    assert jobs(engine) == []


def test_a_signature_made_with_another_secret_is_rejected(
    client: TestClient, secret: str, engine: Engine
) -> None:
    body = json.dumps(main_push()).encode()
    r = deliver(client, secret, None, raw=body, signature=sign("not-the-secret", body))
    assert r.status_code == 401
    assert jobs(engine) == []


def test_missing_signature_header_is_rejected(client: TestClient, secret: str, engine: Engine) -> None:
    body = json.dumps(main_push()).encode()
    r = client.post("/hooks/github/shop", content=body, headers={"X-GitHub-Event": "push"})
    assert r.status_code == 401
    assert jobs(engine) == []


def test_malformed_json_is_400(client: TestClient, secret: str, engine: Engine) -> None:
    r = deliver(client, secret, None, raw=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
    r = deliver(client, secret, {"ref": "refs/heads/main"})  # valid JSON, not a push payload
    assert r.status_code == 400
    assert jobs(engine) == []


def test_unknown_app_is_404(client: TestClient, secret: str, engine: Engine) -> None:
    r = deliver(client, secret, main_push(), app="nope")
    assert r.status_code == 404
    assert jobs(engine) == []


def test_bodies_over_the_limit_are_413(client: TestClient, secret: str, engine: Engine) -> None:
    big = main_push()
    big["padding"] = "x" * (70 * 1024)  # the test settings allow 64 KiB
    r = deliver(client, secret, big)
    assert r.status_code == 413
    # chunked, without a Content-Length, is counted as it streams
    body = json.dumps(big).encode()
    r = client.post(
        "/hooks/github/shop",
        content=iter([body[:40000], body[40000:]]),
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(secret, body)},
    )
    assert r.status_code == 413
    assert jobs(engine) == []
    with Session(engine) as s:
        assert s.exec(select(WebhookDelivery)).all() == []


def test_no_secret_in_the_answer(client: TestClient, secret: str) -> None:
    for r in (
        deliver(client, secret, main_push(), delivery="x1"),
        deliver(client, secret, main_push(), signature="sha256=00", delivery="x2"),
    ):
        assert secret not in r.text


def test_a_push_to_an_app_being_deleted_is_409(
    client: TestClient, secret: str, engine: Engine, auth: dict[str, str]
) -> None:
    assert client.delete("/api/v1/apps/shop", headers=auth).status_code == 202
    r = deliver(client, secret, main_push(), delivery="late")
    assert r.status_code == 409 and "being deleted" in r.json()["detail"]
    assert [j.kind for j in jobs(engine)] == ["delete"]
    with Session(engine) as s:
        assert s.exec(select(WebhookDelivery)).all() == []


def _push(after: str, pushed_at: int) -> dict[str, Any]:
    return push_payload(
        repo_url="/r", ref="refs/heads/main", before="0" * 40, after=after, message="go", pushed_at=pushed_at
    )


def test_replayed_and_out_of_order_pushes_deploy_nothing_and_say_why(
    client: TestClient, secret: str, engine: Engine
) -> None:
    """The signature covers the body only: a captured push resent under a
    fresh delivery id, or GitHub's late delivery of an older push, is
    recorded in the app's activity and not deployed; a force-push back to an
    older commit is a new push and deploys."""
    old, new = "1" * 40, "2" * 40
    assert deliver(client, secret, _push(old, 1_700_000_000), delivery="a").status_code == 202
    assert deliver(client, secret, _push(new, 1_700_000_100), delivery="b").status_code == 202
    before = len(jobs(engine))

    replay = deliver(client, secret, _push(new, 1_700_000_100), delivery="fresh-id")
    late = deliver(client, secret, _push(old, 1_700_000_000), delivery="c")
    assert replay.status_code == 200 and "accepted already (a replay" in replay.json()["detail"]
    assert late.status_code == 200 and "older than the newest accepted one" in late.json()["detail"]
    assert len(jobs(engine)) == before
    with Session(engine) as s:
        ignored = [e.detail for e in s.exec(select(Event).where(Event.action == "push.ignored")).all()]
    assert len(ignored) == 2 and "replay" in ignored[0] and "out-of-order" in ignored[1]

    same_second = deliver(client, secret, _push("3" * 40, 1_700_000_100), delivery="d")
    forced_back = deliver(client, secret, _push(old, 1_700_000_200), delivery="e")
    assert (same_second.status_code, forced_back.status_code) == (202, 202)
    assert [j.payload["commit"] for j in jobs(engine)[-2:]] == ["3" * 40, old]


def test_a_delivery_without_its_id_is_refused(client: TestClient, secret: str, engine: Engine) -> None:
    r = deliver(client, secret, main_push(), delivery="")
    assert r.status_code == 400 and "X-GitHub-Delivery" in r.json()["detail"]
    assert jobs(engine) == []


def test_a_rotated_secret_refuses_the_old_one_at_once(
    client: TestClient, auth: dict[str, str], secret: str, env: dict[str, str], engine: Engine
) -> None:
    from tests.unit.cli_support import run

    assert deliver(client, secret, {"zen": "x"}, event="ping", delivery="p-1").status_code == 200
    code, out = run("apps", "rotate-secret", "shop", "--json", env=env)
    assert code == 0, out
    rotated = json.loads(out)
    new = rotated["webhook_secret"]
    assert new != secret and len(new) == 64 and rotated["webhook_url"].endswith("/hooks/github/shop")
    assert deliver(client, secret, {"zen": "x"}, event="ping", delivery="p-2").status_code == 401
    assert deliver(client, new, {"zen": "x"}, event="ping", delivery="p-3").status_code == 200
    shown = (
        client.get("/api/v1/apps/shop", headers=auth).text + client.get("/api/v1/events", headers=auth).text
    )
    assert new not in shown and secret not in shown  # shown that once only
