"""Rollback, pinning, restart and cancel through the REST API (the agent is
not running: the tests check the rows and jobs it would act on)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from paas.db import session_scope
from paas.env_snapshots import snapshot_env
from paas.github import sign
from paas.models import App, Deployment, EnvVar, Job
from testkit.harness import push_payload

REPO = "https://github.com/octo/shop.git"


@pytest.fixture
def shop(client: TestClient, auth: dict[str, str]) -> dict[str, Any]:
    r = client.post("/api/v1/apps", json={"name": "shop", "repo_url": REPO}, headers=auth)
    assert r.status_code == 201
    return dict(r.json())


def release(engine: Engine, version: int, *, status: str = "succeeded", live: bool = True, **kw: Any) -> None:
    """Record release vN with the app's env at this moment, as the agent does."""
    with session_scope(engine) as s:
        app = s.exec(select(App)).one()
        dep = Deployment(
            app_id=app.id,  # type: ignore[arg-type]
            version=version,
            status=status,
            image=f"paas/shop:v{version}",
            commit=(str(version) * 40)[:40],
            env=snapshot_env(s, app),
            env_version=app.env_version,
            **kw,
        )
        s.add(dep)
        s.flush()
        if live:
            app.current_deployment_id = dep.id
            s.add(app)


def set_env(client: TestClient, auth: dict[str, str], **values: str) -> None:
    body = {"set": [{"key": k, "value": v} for k, v in values.items()], "restart": False}
    assert client.patch("/api/v1/apps/shop/env", json=body, headers=auth).status_code == 200


def jobs(engine: Engine) -> list[Job]:
    with Session(engine) as s:
        return list(s.exec(select(Job).order_by(Job.id)).all())  # type: ignore[arg-type]


def test_rollback_queues_the_previous_release_restores_its_env_and_pins(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    set_env(client, auth, GREETING="one", ONLY_V1="x")
    release(engine, 1)
    set_env(client, auth, GREETING="two")
    client.delete("/api/v1/apps/shop/env/ONLY_V1?restart=false", headers=auth)
    release(engine, 2)
    r = client.post("/api/v1/apps/shop/rollback", json={}, headers=auth)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["target_version"] == 1 and body["job"]["kind"] == "rollback"
    assert any("migrations are not undone" in w for w in body["warnings"])
    job = jobs(engine)[-1]
    assert job.payload["source_version"] == 1 and job.payload["trigger"] == "rollback of v1"
    assert job.payload["run_release"] is False
    env = {v["key"]: v["value"] for v in client.get("/api/v1/apps/shop/env", headers=auth).json()}
    assert env == {"GREETING": "one", "ONLY_V1": "x"}  # the app's env is v1's again
    info = client.get("/api/v1/apps/shop", headers=auth).json()
    assert info["pinned"] is True


def test_rollback_to_a_given_version_and_its_refusals(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    def rollback(**body: Any) -> Any:
        return client.post("/api/v1/apps/shop/rollback", json=body, headers=auth)

    assert rollback().status_code == 409  # nothing live
    release(engine, 1)
    r = rollback()
    assert r.status_code == 409 and "no successful release before v1" in r.json()["detail"]
    release(engine, 2, status="failed", live=False)
    release(engine, 3, image_pruned=False)
    release(engine, 4)
    assert "v2 of shop never went live" in rollback(to=2).json()["detail"]
    assert "v4 is already live" in rollback(to=4).json()["detail"]
    assert rollback(to=9).status_code == 404
    assert rollback(to=0).status_code == 422
    assert rollback(to=1, run_release=True).json()["target_version"] == 1
    assert jobs(engine)[-1].payload["run_release"] is True
    with session_scope(engine) as s:
        dep = s.exec(select(Deployment).where(Deployment.version == 3)).one()
        dep.image_pruned = True
        s.add(dep)
    r = rollback(to=3)
    assert r.status_code == 409 and "paas deploy shop --commit 333333333333" in r.json()["detail"]


def test_a_pinned_app_records_pushes_and_unpin_or_deploy_resumes(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    release(engine, 1)
    release(engine, 2)
    client.post("/api/v1/apps/shop/rollback", json={}, headers=auth)
    queued = len(jobs(engine))
    for n in range(2):
        payload = push_payload(
            repo_url=REPO, ref="refs/heads/main", before="0" * 40, after=f"{n + 1:040x}", message="m"
        )
        body = json.dumps(payload).encode()
        r = client.post(
            "/hooks/github/shop",
            content=body,
            headers={
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": f"pinned-{n}",
                "X-Hub-Signature-256": sign(shop["webhook_secret"], body),
            },
        )
        assert r.status_code == 200 and r.json()["pinned"] is True
        assert f"({n + 1} waiting)" in r.json()["detail"] and "paas unpin shop" in r.json()["detail"]
    assert len(jobs(engine)) == queued  # nothing deployed
    info = client.get("/api/v1/apps/shop", headers=auth).json()
    assert (info["pinned"], info["pending_pushes"], info["pending_commit"]) == (True, 2, f"{2:040x}")
    r = client.post("/api/v1/apps/shop/unpin", headers=auth)
    assert r.status_code == 200 and r.json()["pinned"] is False and r.json()["pending_pushes"] == 0
    assert client.post("/api/v1/apps/shop/unpin", headers=auth).status_code == 409
    client.post("/api/v1/apps/shop/rollback", json={"to": 1}, headers=auth)
    client.post("/api/v1/apps/shop/deploy", json={}, headers=auth)  # a deploy by hand unpins
    assert client.get("/api/v1/apps/shop", headers=auth).json()["pinned"] is False


def test_deploy_a_commit(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    r = client.post("/api/v1/apps/shop/deploy", json={"commit": "abc1234"}, headers=auth)
    assert r.status_code == 202 and jobs(engine)[-1].payload["commit"] == "abc1234"
    for bad in ("-x", "xyz1234", "abc"):
        assert client.post("/api/v1/apps/shop/deploy", json={"commit": bad}, headers=auth).status_code == 422


def test_restart_reuses_the_live_release(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    assert client.post("/api/v1/apps/shop/restart", headers=auth).status_code == 409
    release(engine, 1)
    r = client.post("/api/v1/apps/shop/restart", headers=auth)
    assert r.status_code == 202 and r.json()["kind"] == "release"
    job = jobs(engine)[-1]
    assert job.payload == {
        "trigger": "restart",
        "actor": "token:tests",
        "source_version": 1,
        "run_release": False,
    }


def test_cancel_a_queued_or_running_job(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    r = client.post("/api/v1/apps/shop/cancel", headers=auth)
    assert r.status_code == 409 and "shop has no deploy running or queued" in r.json()["detail"]
    queued = client.post("/api/v1/apps/shop/deploy", json={}, headers=auth).json()
    r = client.post("/api/v1/apps/shop/cancel", headers=auth)
    assert r.status_code == 202 and r.json()["id"] == queued["id"] and r.json()["state"] == "cancelled"
    running = client.post("/api/v1/apps/shop/deploy", json={}, headers=auth).json()
    with session_scope(engine) as s:
        row = s.get(Job, running["id"])
        assert row is not None
        row.state = "running"
        s.add(row)
    r = client.post("/api/v1/apps/shop/cancel", headers=auth)
    assert r.json()["state"] == "running" and r.json()["cancel_requested"] is True
    with Session(engine) as s:
        assert s.get(Job, running["id"]).cancel_requested is True  # type: ignore[union-attr]
        assert s.exec(select(EnvVar)).all() == []
