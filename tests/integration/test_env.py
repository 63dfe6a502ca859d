"""Env vars for real: values reach a deployed app, a change rolls out as a new
release of the same image with zero failed requests, keys rotate while
everything runs, and a canary search finds no value anywhere paas writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest

from paas.crypto import PRIVATE_FILE, DecryptError, Keyring, load_keys
from testkit.harness import GitRemote, LoadClient, Stack, canary_hits

pytestmark = pytest.mark.integration

APP = f"envy{os.getpid() % 100000}"
RUN_ID = uuid.uuid4().hex[:10]
GENERAL = {f"CANARY_G{i}": f"canary-general-{i}-{RUN_ID}" for i in range(10)}
SECRETS = {f"CANARY_S{i}": f"canary-secret-{i}-{RUN_ID}" for i in range(10)}
BUILD_LABEL = f"build-label-{RUN_ID}"  # build scope: visible in image history, by design (and warned)

DOCKERFILE = """\
FROM python:3.11-slim
ARG BUILD_LABEL=unset
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
RUN echo "$BUILD_LABEL" > /build-label
COPY . .
CMD ["sh", "-c", "exec uvicorn main:app --host 0.0.0.0 --port $PORT"]
"""

MAIN = """\
import hashlib
import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root():
    secret = os.environ.get("CANARY_S0", "")
    return {
        "version": os.environ.get("GREETING", ""),
        "secret_sha256": hashlib.sha256(secret.encode()).hexdigest(),
        "build_label": open("/build-label").read().strip(),
        "keys": sorted(k for k in os.environ if k.startswith("CANARY_")),
    }


@app.get("/healthz")
def healthz():
    return {"ok": True}
"""


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(scope="module")
def deployed(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An app with 20 canaries set before its first deploy, deployed by a push."""
    repo = GitRemote(tmp_path_factory.mktemp("git-env"))
    created = json.loads(
        stack.paas(
            "apps", "create", APP, "--repo", str(repo.bare), "--health-path", "/healthz", "--json"
        ).stdout
    )
    general = [f"{k}={v}" for k, v in GENERAL.items()] + ["GREETING=hello-v1"]
    out = stack.paas("env", "set", APP, *general).stdout
    assert "applies at the first deploy" in out
    stack.paas("env", "set", APP, *[f"{k}={v}" for k, v in SECRETS.items()], "--secret")
    warned = stack.paas("env", "set", APP, f"BUILD_LABEL={BUILD_LABEL}", "--scope", "build")
    assert "visible" in warned.stderr and "docker history" in warned.stderr
    payload = repo.commit(
        {
            "Dockerfile": DOCKERFILE,
            "requirements.txt": "fastapi>=0.110,<1\nuvicorn>=0.29,<1\n",
            "main.py": MAIN,
        },
        "env app",
    )
    assert stack.webhook(APP, created["webhook_secret"], payload).status_code == 202
    release = stack.wait_release(APP, 1)
    assert release["status"] == "succeeded", stack.release_log(APP, 1)
    return {"repo": repo, "secret": created["webhook_secret"], "created": created}


def test_a_deployed_app_sees_its_values(stack: Stack, deployed: dict[str, Any]) -> None:
    body = stack.get_app(APP).json()
    assert body["version"] == "hello-v1"
    assert body["secret_sha256"] == sha(SECRETS["CANARY_S0"])
    assert body["build_label"] == BUILD_LABEL  # the build arg reached the build
    assert body["keys"] == sorted([*GENERAL, *SECRETS])  # BUILD_LABEL is build scope only
    log = stack.release_log(APP, 1)
    assert "CANARY_S0 (secret)" in log and "build args: BUILD_LABEL" in log


def test_canary_search_finds_no_value_outside_the_container(stack: Stack, deployed: dict[str, Any]) -> None:
    canaries = {**GENERAL, **SECRETS}
    responses: dict[str, str] = {}  # what paas answered, by request

    def answer(method: str, path: str, **kwargs: Any) -> str:
        r = stack.api(method, path, **kwargs)
        assert r.status_code < 400, (path, r.text)
        responses[f"{method} {path}"] = r.text
        return r.text

    answer("GET", "/apps")
    answer("GET", f"/apps/{APP}")
    answer("GET", f"/apps/{APP}/releases")
    answer("GET", f"/apps/{APP}/releases/1/log")
    env_list = answer("GET", f"/apps/{APP}/env")
    export = answer("GET", f"/apps/{APP}/env/export")
    for release in json.loads(responses[f"GET /apps/{APP}/releases"]):
        answer("GET", f"/jobs/{_job_of(stack, release['version'])}")
    for args in (("env", "list", APP), ("env", "export", APP), ("apps", "info", APP), ("releases", APP)):
        proc = stack.paas(*args)
        responses["paas " + " ".join(args)] = proc.stdout + proc.stderr

    # secret values: in no response at all; general ones only where they are meant to be shown
    shows_general = {
        f"GET /apps/{APP}/env",
        f"GET /apps/{APP}/env/export",
        f"paas env list {APP}",
        f"paas env export {APP}",
    }
    hits = [
        (name, where)
        for where, text in responses.items()
        for name, value in canaries.items()
        if value in text and not (name in GENERAL and where in shows_general)
    ]
    assert hits == []
    assert all(v in env_list and v in export for v in GENERAL.values())  # the search can see values

    # every file paas wrote: database (and its WAL), deploy logs, the daemons' log, the git
    # cache, build dirs, keys, the CLI's config, and nginx's access and error logs
    searched, hits = canary_hits([stack.root, stack.nginx.root], canaries)
    assert searched > 10 and hits == []

    # the audit trail, row by row
    with sqlite3.connect(stack.root / "data" / "db" / "paas.db") as db:
        events = db.execute("select actor, action, detail from event where app_name = ?", (APP,)).fetchall()
    assert any(a == "env.change" and "CANARY_S3 (secret, run)" in d for _, a, d in events)
    assert not [e for e in events for v in canaries.values() if v in " ".join(e)]

    # image history and config of every image this installation made
    client = docker.from_env()
    instance = (stack.root / "data" / "instance-id").read_text().strip()
    images = client.images.list(filters={"label": f"paas.instance={instance}"})
    assert images
    for image in images:
        text = json.dumps(image.history()) + json.dumps(image.attrs)
        assert [n for n, v in canaries.items() if v in text] == []
        assert BUILD_LABEL in json.dumps(image.history())  # a build arg shows: why the warning exists

    # the one place the values are: the running container's environment
    container = client.containers.get(f"paas-{APP}-web-v1-1")
    container_env = "\n".join(container.attrs["Config"]["Env"])
    assert all(f"{k}={v}" in container_env for k, v in canaries.items())


def test_the_web_side_alone_cannot_open_a_secret(
    stack: Stack, deployed: dict[str, Any], tmp_path: Path
) -> None:
    keys = stack.root / "keys"
    assert (keys / PRIVATE_FILE).stat().st_mode & 0o777 == 0o600
    web_only = tmp_path / "web-keys"
    shutil.copytree(keys, web_only)
    (web_only / PRIVATE_FILE).unlink()  # what the web user can read on a server
    web = Keyring(web_only, private=False)
    with sqlite3.connect(stack.root / "data" / "db" / "paas.db") as db:
        rows = dict(db.execute("select key, value from envvar").fetchall())
    for key in SECRETS:
        with pytest.raises(DecryptError):
            web.decrypt(rows[key])
    assert web.decrypt(rows["CANARY_G0"]) == GENERAL["CANARY_G0"]


def test_env_set_rolls_out_the_same_image_with_zero_failed_requests(
    stack: Stack, deployed: dict[str, Any]
) -> None:
    with LoadClient(stack.nginx.port, f"{APP}.{stack.domain}") as load:
        time.sleep(0.5)
        started = time.monotonic()
        out = stack.paas("env", "set", APP, "GREETING=hello-v2", "CANARY_G9=changed", "--wait").stdout
        took = time.monotonic() - started
        assert f"{APP} v2 is live" in out
        time.sleep(0.5)
    assert load.report.failures == [], load.report.failures[:5]
    assert load.report.versions.get("hello-v1", 0) > 0 and load.report.versions.get("hello-v2", 0) > 0
    releases = {r["version"]: r for r in stack.api("GET", f"/apps/{APP}/releases").json()}
    v1, v2 = releases[1], releases[2]
    assert v2["trigger"] == "env" and v2["image"] == v1["image"] and v2["commit"] == v1["commit"]
    assert "build" not in v2["timings"] and "fetch" not in v2["timings"]  # no rebuild
    assert "reusing image" in stack.release_log(APP, 2)
    # each release keeps the env it ran with, encrypted: what a rollback will restore
    agent = Keyring(stack.root / "keys", private=True)
    for version, greeting in ((1, "hello-v1"), (2, "hello-v2")):
        snapshot = {i["key"]: i for i in json.loads(_release_column(stack, version, "env"))}
        assert snapshot["GREETING"]["value"].startswith("f1:")
        assert agent.decrypt(snapshot["GREETING"]["value"]) == greeting
        assert snapshot["CANARY_S1"]["secret"] and snapshot["CANARY_S1"]["value"].startswith("s2:")
    _report(
        f"env set → live (one change of 2 vars, CLI --wait): {took:.1f}s; "
        f"steps {v2['timings']}; {load.report.total} requests, 0 failed"
    )


def test_no_restart_stages_the_change_for_the_next_deploy(stack: Stack, deployed: dict[str, Any]) -> None:
    out = stack.paas("env", "set", APP, "GREETING=hello-staged", "--no-restart").stdout
    assert "staged" in out
    time.sleep(1)
    assert stack.get_app(APP).json()["version"] == "hello-v2"
    assert stack.api("GET", f"/apps/{APP}").json()["env_staged"] is True
    latest = stack.api("GET", f"/apps/{APP}/releases").json()[0]["version"]
    stack.paas("deploy", APP, "--wait")
    assert stack.wait_release(APP, latest + 1)["status"] == "succeeded"
    assert stack.get_app(APP).json()["version"] == "hello-staged"
    assert stack.api("GET", f"/apps/{APP}").json()["env_staged"] is False


def test_keys_rotate_while_serving(stack: Stack, deployed: dict[str, Any]) -> None:
    keys = stack.root / "keys"
    old = load_keys(keys, private=True)
    with LoadClient(stack.nginx.port, f"{APP}.{stack.domain}") as load:
        out = stack.paas("keys", "rotate").stdout
        assert "old keys removed" in out
        # web re-read the keys: it lists and takes new values; the agent opens them
        assert stack.paas("env", "list", APP, "--json").returncode == 0
        out = stack.paas("env", "set", APP, "CANARY_S0=rotated-secret", "--secret", "--wait").stdout
        assert "is live" in out
        time.sleep(0.5)
    assert load.report.failures == [], load.report.failures[:5]
    assert stack.get_app(APP).json()["secret_sha256"] == sha("rotated-secret")
    stale = Keyring.from_material(old)
    with sqlite3.connect(stack.root / "data" / "db" / "paas.db") as db:
        values = [v for (v,) in db.execute("select value from envvar")]
        hooks = [v for (v,) in db.execute("select webhook_secret from app")]
    for value in values + hooks:
        with pytest.raises(DecryptError):
            stale.decrypt(value)
    # a push still verifies against the re-encrypted webhook secret
    latest = stack.api("GET", f"/apps/{APP}/releases").json()[0]["version"]
    payload = deployed["repo"].commit({"NOTE.txt": "after rotation\n"}, "after rotation")
    assert stack.webhook(APP, deployed["secret"], payload).status_code == 202
    assert stack.wait_release(APP, latest + 1)["status"] == "succeeded"


def _release_column(stack: Stack, version: int, column: str) -> Any:
    assert column in ("job_id", "env")
    with sqlite3.connect(stack.root / "data" / "db" / "paas.db") as db:
        row = db.execute(
            f"select d.{column} from deployment d join app a on a.id = d.app_id"  # noqa: S608
            " where a.name = ? and d.version = ?",
            (APP, version),
        ).fetchone()
    return row[0]


def _job_of(stack: Stack, version: int) -> int:
    return int(_release_column(stack, version, "job_id"))


def _report(line: str) -> None:
    path = Path("test-reports") / "env.txt"
    path.parent.mkdir(exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
