"""Apps without a Dockerfile and every Procfile process type, for real: paas
detects the Python app, generates its Dockerfile, builds it with the Docker
engine, runs web and worker containers, scales web behind one nginx upstream
and rotates all of them with zero failed requests.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from testkit.harness import GitRemote, LoadClient, Stack

pytestmark = pytest.mark.integration

TAG = os.getpid() % 100000

FASTAPI_MAIN = """\
import os
import socket

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root():
    return {{"version": "{version}", "container": socket.gethostname(), "uid": os.getuid()}}


@app.get("/healthz")
def healthz():
    return {{"ok": True}}
"""

PYPROJECT = """\
[project]
name = "procs"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["fastapi>=0.110,<1", "uvicorn>=0.29,<1"]
"""

PROCS_MAIN = """\
import pathlib
import socket

from fastapi import FastAPI

app = FastAPI()
DATA = pathlib.Path("/data")


def read(name):
    path = DATA / name
    return path.read_text() if path.exists() else ""


@app.get("/")
def root():
    return {{
        "version": "{version}",
        "container": socket.gethostname(),
        "releases": read("releases.log").splitlines(),
        "heartbeat": read("heartbeat").strip(),
    }}


@app.get("/healthz")
def healthz():
    return {{"ok": True}}
"""

WORKER = """\
import pathlib
import socket
import time

beat = pathlib.Path("/data/heartbeat")
while True:
    beat.write_text(f"{socket.gethostname()} {time.time()}\\n")
    time.sleep(0.5)
"""

RELEASE = """\
import pathlib
import socket

with pathlib.Path("/data/releases.log").open("a") as log:
    log.write("{version} " + socket.gethostname() + "\\n")
print("release phase ran for {version}")
"""

PROCFILE = (
    "# processes of the procs app\r\n"
    "web: uvicorn main:app --host 0.0.0.0 --port $PORT\r\n"
    "\r\n"
    "worker: python worker.py\r\n"
    "release: python release.py\r\n"
)

DJANGO_SETTINGS = """\
SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
"""

DJANGO_URLS = """\
from django.http import JsonResponse
from django.urls import path


def index(request):
    return JsonResponse({"version": "dj1", "server": request.META.get("SERVER_SOFTWARE", "")})


urlpatterns = [path("", index)]
"""

DJANGO_WSGI = """\
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()
"""

DJANGO_MANAGE = """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""


def deploy(
    stack: Stack, app: str, secret: str, repo: GitRemote, files: dict[str, str], message: str
) -> dict[str, Any]:
    releases = stack.api("GET", f"/apps/{app}/releases").json()
    version = (releases[0]["version"] if releases else 0) + 1
    payload = repo.commit(files, message)
    assert stack.webhook(app, secret, payload).status_code == 202
    release = stack.wait_release(app, version)
    assert release["commit"] == payload["after"]
    assert release["status"] == "succeeded", stack.release_log(app, version)
    return release


def create(stack: Stack, app: str, repo: GitRemote, *args: str) -> str:
    out = stack.paas("apps", "create", app, "--repo", str(repo.bare), *args, "--json").stdout
    return str(json.loads(out)["webhook_secret"])


def served_containers(stack: Stack, app: str, version: str, *, requests: int = 60) -> set[str]:
    seen = set()
    for _ in range(requests):
        body = stack.get_app(app).json()
        assert body["version"] == version
        seen.add(body["container"])
    return seen


def test_a_requirements_app_without_dockerfile_is_detected_built_and_served(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app = f"plain{TAG}"
    repo = GitRemote(tmp_path_factory.mktemp("plain"))
    secret = create(stack, app, repo, "--health-path", "/healthz")
    files = {"requirements.txt": "fastapi>=0.110,<1\n", "main.py": FASTAPI_MAIN.format(version="p1")}
    first = deploy(stack, app, secret, repo, files, "no Dockerfile, no Procfile")
    body = stack.get_app(app).json()
    assert body["version"] == "p1" and body["uid"] == 10001  # the generated image's non-root user
    log = stack.release_log(app, 1)
    assert "no Dockerfile in the repository root" in log and "from requirements.txt" in log
    assert "web: ASGI app main:app (found in main.py) served by gunicorn" in log
    assert "  | FROM python:3.11-slim" in log and "  | USER app" in log
    container = docker.from_env().containers.get(f"paas-{app}-web-v1-1")
    assert "gunicorn -k uvicorn.workers.UvicornWorker" in " ".join(container.attrs["Config"]["Cmd"])

    # a change to the source only: the dependency layer comes from the cache
    second = deploy(stack, app, secret, repo, {"main.py": FASTAPI_MAIN.format(version="p2")}, "source only")
    assert stack.get_app(app).json()["version"] == "p2"
    log2 = stack.release_log(app, 2)
    # BuildKit's plain progress: "#7 [4/9] RUN --mount=... pip install -r requirements.txt", then "#7 CACHED"
    step = re.search(r" #(\d+) \[[^\]]*\] RUN [^\n]*pip install -r requirements.txt\n", log2)
    assert step is not None and f" #{step.group(1)} CACHED\n" in log2, log2

    plan = stack.paas("build-plan", app)
    assert plan.stdout.startswith("# Generated by paas for") and "FROM python:3.11-slim" in plan.stdout
    assert "generated for a Python app from requirements.txt" in plan.stderr
    cold, cached = first["timings"]["build"], second["timings"]["build"]
    _report(
        [
            f"requirements.txt FastAPI app, no Dockerfile: cold build {cold:.2f}s, "
            f"source-only rebuild with the dependency layer cached {cached:.2f}s"
        ]
    )


def test_procfile_types_release_once_worker_and_scaled_web_rotated_with_zero_failures(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app = f"procs{TAG}"
    repo = GitRemote(tmp_path_factory.mktemp("procs"))
    secret = create(stack, app, repo, "--health-path", "/healthz", "--data-path", "/data")
    files = {
        "pyproject.toml": PYPROJECT,
        "Procfile": PROCFILE,
        "main.py": PROCS_MAIN.format(version="w1"),
        "worker.py": WORKER,
        "release.py": RELEASE.format(version="w1"),
    }
    deploy(stack, app, secret, repo, files, "web, worker and release")
    assert "release phase ran for w1" in stack.release_log(app, 1)
    deadline = time.monotonic() + 30
    while not stack.get_app(app).json()["heartbeat"]:  # the worker writes it, web serves it
        assert time.monotonic() < deadline, "the worker never wrote its heartbeat"
        time.sleep(0.3)
    body = stack.get_app(app).json()
    assert [line.split()[0] for line in body["releases"]] == ["w1"]
    assert body["heartbeat"].split()[0] != body["container"]  # written by another container

    out = stack.paas("scale", app, "web=3").stdout
    assert "is live" in out
    assert json.loads(stack.paas("scale", app, "--json").stdout) == {"web": 3, "worker": 1}
    assert len(served_containers(stack, app, "w1")) == 3
    rows = [r for r in json.loads(stack.paas("ps", app, "--json").stdout) if r["live"]]
    assert sorted(r["process"] for r in rows) == ["web", "web", "web", "worker"]
    assert [line.split()[0] for line in stack.get_app(app).json()["releases"]] == ["w1"]  # scale: no release

    # a deploy rotates all three web containers and the worker, under continuous requests
    with LoadClient(stack.nginx.port, f"{app}.{stack.domain}") as load:
        release = deploy(
            stack,
            app,
            secret,
            repo,
            {"main.py": PROCS_MAIN.format(version="w2"), "release.py": RELEASE.format(version="w2")},
            "second version",
        )
        time.sleep(0.5)
    assert load.report.failures == [], load.report.failures[:5]
    assert load.report.versions.get("w2", 0) > 0
    assert len(served_containers(stack, app, "w2")) == 3
    body = stack.get_app(app).json()
    assert [line.split()[0] for line in body["releases"]] == ["w1", "w2"]  # once per deploy
    logged = stack.release_log(app, release["version"])
    assert logged.count("release phase ran for w2") == 1
    client = docker.from_env()
    stack.wait_drained(app)
    live = client.containers.list(ignore_removed=True, filters={"label": f"paas.app={app}"})
    assert sorted(c.labels["paas.process"] for c in live) == ["web", "web", "web", "worker"]
    assert {c.labels["paas.version"] for c in live} == {str(release["version"])}

    # a type removed from the Procfile stops at the next deploy
    deploy(
        stack,
        app,
        secret,
        repo,
        {"Procfile": "web: uvicorn main:app --host 0.0.0.0 --port $PORT\n"},
        "no worker",
    )
    stack.wait_drained(app)
    live = client.containers.list(ignore_removed=True, filters={"label": f"paas.app={app}"})
    assert sorted(c.labels["paas.process"] for c in live) == ["web", "web", "web"]
    _report([f"3 web containers + a worker rotated by a deploy: {load.report.total} requests, 0 failed"])


def test_a_django_project_without_procfile_is_served_by_gunicorn(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app = f"dj{TAG}"
    repo = GitRemote(tmp_path_factory.mktemp("django"))
    secret = create(stack, app, repo)
    files = {
        "requirements.txt": "django>=4.2,<6\n",
        "manage.py": DJANGO_MANAGE,
        "mysite/__init__.py": "",
        "mysite/settings.py": DJANGO_SETTINGS,
        "mysite/urls.py": DJANGO_URLS,
        "mysite/wsgi.py": DJANGO_WSGI,
    }
    deploy(stack, app, secret, repo, files, "a Django project")
    body = stack.get_app(app).json()
    assert body["version"] == "dj1" and re.match(r"^gunicorn/\d+", body["server"]), body
    assert "web: WSGI app mysite.wsgi:application (found in mysite/wsgi.py)" in stack.release_log(app, 1)


def test_an_app_paas_cannot_build_fails_with_what_it_looked_for(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app = f"node{TAG}"
    repo = GitRemote(tmp_path_factory.mktemp("node"))
    secret = create(stack, app, repo)
    payload = repo.commit({"package.json": "{}\n", "index.js": "console.log('hi')\n"}, "not Python")
    assert stack.webhook(app, secret, payload).status_code == 202
    release = stack.wait_release(app, 1)
    assert release["status"] == "failed" and release["step"] == "build"
    assert "looked for a Dockerfile, requirements.txt" in release["error"]
    plan = stack.paas("build-plan", app, check=False)
    assert plan.returncode == 1 and "add a Dockerfile" in plan.stderr and "Traceback" not in plan.stderr


def _report(lines: list[str]) -> None:
    path = Path("test-reports") / "buildpacks.txt"
    path.parent.mkdir(exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
