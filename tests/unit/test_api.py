"""The REST API with a real app factory and a fresh database per test."""

from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from paas.models import ApiToken, Event, Job, JobState

REPO = "https://github.com/octo/shop.git"


def test_every_api_route_needs_a_token(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path, methods in schema["paths"].items():
        if not path.startswith("/api/"):
            continue
        concrete = path.replace("{name}", "shop").replace("{version}", "1").replace("{job_id}", "1")
        for method in methods:
            for headers in ({}, {"Authorization": "Bearer paas_wrong"}, {"Authorization": "Basic x"}):
                r = client.request(method.upper(), concrete, headers=headers, json={})
                assert r.status_code == 401, (method, path, headers, r.status_code)


def test_health_and_readiness_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_tokens_are_stored_hashed(engine: Engine, token: str) -> None:
    with Session(engine) as s:
        row = s.exec(select(ApiToken)).one()
    assert token not in (row.token_hash, row.prefix) and len(row.token_hash) == 64


def test_create_list_info(client: TestClient, auth: dict[str, str]) -> None:
    r = client.post("/api/v1/apps", json={"name": "shop", "repo_url": REPO}, headers=auth)
    assert r.status_code == 201
    created = r.json()
    assert created["webhook_url"] == "http://paas.apps.test/hooks/github/shop"
    assert len(created["webhook_secret"]) == 64
    assert created["url"] == "http://shop.apps.test"
    info = client.get("/api/v1/apps/shop", headers=auth).json()
    assert "webhook_secret" not in info and info["branch"] == "main"
    assert [a["name"] for a in client.get("/api/v1/apps", headers=auth).json()] == ["shop"]
    assert created["webhook_secret"] not in client.get("/api/v1/apps", headers=auth).text
    assert info["build_target"] == ""
    r = client.patch("/api/v1/apps/shop", json={"build_target": "prod.v2"}, headers=auth)
    assert r.status_code == 200 and r.json()["build_target"] == "prod.v2", r.text


def test_bad_input_is_422_naming_the_field_and_changes_nothing(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    cases = [
        ({"name": "Shop", "repo_url": REPO}, "name"),
        ({"name": "a--b", "repo_url": REPO}, "name"),
        ({"name": "shop", "repo_url": "--upload-pack=evil"}, "repo_url"),
        ({"name": "shop", "repo_url": "ext::sh -c evil"}, "repo_url"),
        ({"name": "shop", "repo_url": "https://bot:ghp_secret@github.com/o/r.git"}, "repo_url"),
        ({"name": "shop", "repo_url": "https://ghp_secret@github.com/o/r.git"}, "repo_url"),
        ({"name": "shop", "repo_url": "ssh://deploy:pw@example.com/r.git"}, "repo_url"),
        ({"name": "shop", "repo_url": REPO, "branch": "-x"}, "branch"),
        ({"name": "shop", "repo_url": REPO, "source_dir": "../etc"}, "source_dir"),
        ({"name": "shop", "repo_url": REPO, "dockerfile": "/etc/passwd"}, "dockerfile"),
        ({"name": "shop", "repo_url": REPO, "health_path": "healthz"}, "health_path"),
        ({"name": "shop", "repo_url": REPO, "data_path": "relative"}, "data_path"),
        ({"name": "shop", "repo_url": REPO, "port": 0}, "port"),
        ({"name": "shop", "repo_url": REPO, "build_target": "--target=x"}, "build_target"),
        ({"name": "shop", "repo_url": REPO, "build_target": "a b"}, "build_target"),
        ({"name": "shop", "repo_url": REPO, "surprise": 1}, "surprise"),
    ]
    for body, field in cases:
        r = client.post("/api/v1/apps", json=body, headers=auth)
        assert r.status_code == 422, body
        assert field in str(r.json()["detail"]), (body, r.json())
    assert client.get("/api/v1/apps", headers=auth).json() == []


def test_duplicate_name_is_409(client: TestClient, auth: dict[str, str]) -> None:
    body = {"name": "shop", "repo_url": REPO}
    assert client.post("/api/v1/apps", json=body, headers=auth).status_code == 201
    r = client.post("/api/v1/apps", json=body, headers=auth)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


def test_unknown_app_is_404(client: TestClient, auth: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/api/v1/apps/nope"),
        ("DELETE", "/api/v1/apps/nope"),
        ("POST", "/api/v1/apps/nope/deploy"),
        ("GET", "/api/v1/apps/nope/releases"),
        ("PATCH", "/api/v1/apps/nope"),
        ("GET", "/api/v1/jobs/999"),
    ]:
        r = client.request(method, path, headers=auth, json={})
        assert r.status_code == 404, (method, path)


def test_deploy_update_and_delete_enqueue_jobs_and_audit(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    client.post("/api/v1/apps", json={"name": "shop", "repo_url": REPO}, headers=auth)
    job = client.post("/api/v1/apps/shop/deploy", json={}, headers=auth)
    assert job.status_code == 202 and job.json()["state"] == "queued"
    assert client.get(f"/api/v1/jobs/{job.json()['id']}", headers=auth).json()["kind"] == "deploy"
    r = client.patch("/api/v1/apps/shop", json={"health_path": "/up", "branch": "prod"}, headers=auth)
    assert r.status_code == 200 and (r.json()["health_path"], r.json()["branch"]) == ("/up", "prod")
    assert client.patch("/api/v1/apps/shop", json={"branch": "a..b"}, headers=auth).status_code == 422
    nulled = client.patch("/api/v1/apps/shop", json={"repo_url": None, "port": None}, headers=auth)
    assert nulled.status_code == 422 and nulled.json()["detail"][0]["loc"] == ["body", "repo_url"]
    assert "cannot be null" in nulled.text
    assert client.get("/api/v1/apps/shop", headers=auth).json()["repo_url"] == REPO
    assert client.get("/api/v1/jobs/99999999999999999999", headers=auth).status_code == 422
    assert client.get("/api/v1/apps/shop/releases", headers=auth).json() == []
    gone = client.delete("/api/v1/apps/shop", headers=auth)
    assert gone.status_code == 202 and gone.json()["kind"] == "delete"
    assert client.delete("/api/v1/apps/shop", headers=auth).status_code == 409
    assert client.post("/api/v1/apps/shop/deploy", json={}, headers=auth).status_code == 409
    with Session(engine) as s:
        kinds = [j.kind for j in s.exec(select(Job).order_by(Job.id)).all()]
        actions = [e.action for e in s.exec(select(Event).order_by(Event.id)).all()]
    assert kinds == ["deploy", "delete"]
    assert actions == ["token.create", "app.create", "deploy.request", "app.update", "app.delete"]


def test_openapi_documents_errors(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "401" in paths["/api/v1/apps"]["get"]["responses"]
    assert {"401", "404", "413", "400", "202"} <= set(paths["/hooks/github/{app_name}"]["post"]["responses"])


def test_a_repository_on_this_server_needs_the_servers_consent(
    client: TestClient, auth: dict[str, str]
) -> None:
    for url in ("/srv/git/shop.git", "file:///srv/git/shop.git"):
        r = client.post("/api/v1/apps", json={"name": "shop", "repo_url": url}, headers=auth)
        assert r.status_code == 422 and "PAAS_ALLOW_LOCAL_REPOS=true" in r.json()["detail"], r.text
    assert client.get("/api/v1/apps", headers=auth).json() == []
    assert (
        client.post("/api/v1/apps", json={"name": "shop", "repo_url": REPO}, headers=auth).status_code == 201
    )
    r = client.patch("/api/v1/apps/shop", json={"repo_url": "/srv/git/shop.git"}, headers=auth)
    assert r.status_code == 422 and client.get("/api/v1/apps/shop", headers=auth).json()["repo_url"] == REPO
    for url in ("ssh://git@example.com/shop.git", "ssh://deploy@example.com/shop.git", "git@example.com:o/s"):
        assert client.patch("/api/v1/apps/shop", json={"repo_url": url}, headers=auth).status_code == 200


def test_a_job_is_followed_with_one_request_per_change(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    """``wait`` holds the answer until the job's state differs from ``seen``
    (the CLI's --wait follows a job this way), or until ``wait`` seconds."""
    client.post("/api/v1/apps", json={"name": "shop", "repo_url": REPO}, headers=auth)
    job_id = client.post("/api/v1/apps/shop/deploy", json={}, headers=auth).json()["id"]
    url = f"/api/v1/jobs/{job_id}"

    started = time.monotonic()
    unchanged = client.get(url, params={"wait": 0.4, "seen": "queued"}, headers=auth)
    assert unchanged.json()["state"] == "queued" and time.monotonic() - started >= 0.4
    started = time.monotonic()
    other = client.get(url, params={"wait": 5, "seen": "running"}, headers=auth)  # already moved on
    assert other.json()["state"] == "queued" and time.monotonic() - started < 1

    def claim_soon() -> None:
        time.sleep(0.3)
        with Session(engine) as s:
            job = s.get(Job, job_id)
            assert job is not None
            job.state = JobState.running
            s.add(job)
            s.commit()

    claimer = threading.Thread(target=claim_soon)
    claimer.start()
    started = time.monotonic()
    moved = client.get(url, params={"wait": 10, "seen": "queued"}, headers=auth)
    took = time.monotonic() - started
    claimer.join()
    assert moved.json()["state"] == "running" and 0.3 <= took < 5, took

    assert client.get(url, params={"wait": 31}, headers=auth).status_code == 422
    assert client.get("/api/v1/jobs/999", params={"wait": 1}, headers=auth).status_code == 404


def test_nothing_more_is_done_to_an_app_being_deleted(client: TestClient, auth: dict[str, str]) -> None:
    assert (
        client.post("/api/v1/apps", json={"name": "shop", "repo_url": REPO}, headers=auth).status_code == 201
    )
    assert client.delete("/api/v1/apps/shop", headers=auth).status_code == 202
    for method, path, body in (
        ("POST", "/api/v1/apps/shop/deploy", {}),
        ("POST", "/api/v1/apps/shop/restart", None),
        ("PUT", "/api/v1/apps/shop/scale", {"processes": {"web": 2}}),
        ("PATCH", "/api/v1/apps/shop/env", {"set": [{"key": "A", "value": "1"}]}),
        ("POST", "/api/v1/apps/shop/domains", {"hostname": "shop.example.com"}),
    ):
        r = client.request(method, path, json=body, headers=auth)
        assert (r.status_code, r.json()["detail"]) == (409, "app 'shop' is being deleted"), (path, r.text)
