"""Builds through BuildKit (issue 31, the default builder), for real:
a Dockerfile with a cache mount, a bind mount of a lock file, COPY --from an
image and --chmod, multi-stage and a build secret builds and serves, and the
secret is in no layer, history or log; a memory hog and a fork bomb in RUN
stop at the build's limits while another app serves; a cancel stops a RUN
that would sleep for minutes."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from testkit.harness import LOOPBACK, GitRemote, LoadClient, Nginx, Stack

pytestmark = pytest.mark.integration

TAG = os.getpid() % 100000
SERVER = """\
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = open("/app/said.txt", "rb").read() if os.path.exists("/app/said.txt") else b'{"version": "1"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""
MODERN = """\
FROM python:3.11-slim AS tools
RUN --mount=type=cache,target=/root/.cache/pip echo cached > /root/.cache/pip/seen && ls /root/.cache/pip
RUN echo "from the tools stage" > /made-here

FROM python:3.11-slim
WORKDIR /app
COPY --from=tools /made-here /app/from-stage
COPY --from=python:3.11-slim --chmod=0755 /usr/bin/python3 /app/python-copy
RUN --mount=type=bind,source=requirements.lock,target=/tmp/requirements.lock \
    --mount=type=cache,target=/root/.cache/pip \
    cat /tmp/requirements.lock > /app/said.txt && cat /app/from-stage >> /app/said.txt
RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && test -x /app/python-copy
RUN --mount=type=secret,id=BUILD_TOKEN sha256sum /run/secrets/BUILD_TOKEN | cut -c1-64 >> /app/said.txt
COPY server.py .
CMD ["python3", "-u", "server.py"]
"""
HOG = (
    "FROM python:3.11-slim\n"
    'RUN python3 -c "data = bytearray(1024 * 1024 * 1024); data[::4096] = bytes(len(data[::4096]))"\n'
)
BOMB_PY = """\
import os, time
n = 0
try:
    while n < 5000:
        if os.fork() == 0:
            time.sleep(10)
            os._exit(0)
        n += 1
except OSError as exc:
    print("forked", n, "then", exc, flush=True)
    raise SystemExit(3)
"""
BUILD_PIDS = 128


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, nginx: Nginx) -> Iterator[Stack]:
    paas = Stack(
        tmp_path_factory.mktemp("paas-buildkit"),
        nginx,
        PAAS_BUILDER="buildkit",
        PAAS_BUILD_MEMORY="256m",
        PAAS_BUILD_PIDS=str(BUILD_PIDS),
    )
    paas.start()
    yield paas
    paas.stop()
    paas.remove_everything()
    _lift_caps()


def _lift_caps(root: Path = Path("/sys/fs/cgroup")) -> None:
    """The caps this module's builds left on the engine's BuildKit cgroup:
    other BuildKit builds on this machine run in it too."""
    v1 = "memory/docker/buildkit/memory"  # memory and swap first: it may never be below memory
    knobs = ["docker/buildkit/memory.max", "docker/buildkit/pids.max", "pids/docker/buildkit/pids.max",
             f"{v1}.memsw.limit_in_bytes", f"{v1}.limit_in_bytes"]  # fmt: skip
    for knob in knobs:
        path = root / knob
        if path.exists():
            path.write_text("-1" if knob.endswith("_in_bytes") else "max")


def _app(stack: Stack, name: str) -> tuple[GitRemote, str]:
    repo = GitRemote(Path(tempfile.mkdtemp(prefix=f"paas-{name}-", dir=stack.root)))
    r = stack.api("POST", "/apps", json={"name": name, "repo_url": str(repo.bare), "health_interval": 0.3})
    assert r.status_code == 201, r.text
    return repo, str(r.json()["webhook_secret"])


def _push(
    stack: Stack, name: str, secret: str, repo: GitRemote, files: dict[str, str], version: int
) -> dict[str, Any]:
    assert stack.webhook(name, secret, repo.commit(files, f"v{version}")).status_code == 202
    return stack.wait_release(name, version)


def _served(stack: Stack, name: str) -> str:
    r = httpx.get(
        f"http://{LOOPBACK}:{stack.nginx.port}/", headers={"Host": f"{name}.{stack.domain}"}, timeout=10
    )
    assert r.status_code == 200, r.text
    return r.text


def _set_token(stack: Stack, name: str, value: str) -> dict[str, Any]:
    change = {"set": [{"key": "BUILD_TOKEN", "value": value, "secret": True, "scope": "build"}]}
    r = stack.api("PATCH", f"/apps/{name}/env", json=change)
    assert r.status_code == 200 and value not in r.text, r.text
    return dict(r.json())


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _image_holds(ref: str, needle: bytes) -> bool:
    """Whether ``needle`` is anywhere in ``docker save`` of the image (its
    config, history and every layer: 20.10 saves layers uncompressed)."""
    tail = b""
    for chunk in docker.from_env().images.get(ref).save(chunk_size=1 << 20):
        if needle in tail + chunk:
            return True
        tail = chunk[-len(needle) :]
    return False


def test_a_modern_dockerfile_builds_and_serves(kit: Stack) -> None:
    """Done means of issue 31: a cache mount, a bind mount of a lock file,
    COPY --from an image and a build secret, built through paas; the app
    serves. The secret is in no layer, no history and no release log, and a
    change of it builds the live commit again."""
    name = f"modern{TAG}"
    repo, secret = _app(kit, name)
    token = f"tok-{uuid.uuid4().hex}-private-index"
    assert _set_token(kit, name, token)["staged"] is True  # nothing live yet
    files = {"Dockerfile": MODERN, "server.py": SERVER, "requirements.lock": "fastapi==0.115.0\n"}
    release = _push(kit, name, secret, repo, files, 1)
    log = kit.release_log(name, 1)
    assert release["status"] == "succeeded", log
    assert _served(kit, name) == f"fastapi==0.115.0\nfrom the tools stage\n{_sha(token)}\n"
    assert "build secrets: BUILD_TOKEN" in log and token not in log, log
    assert "requires BuildKit" not in log and "[internal] load build definition" in log, log
    # the cache mount was given the app's own id, and the release log does not carry step digests
    assert f"id=paas/{name}//root/.cache/pip" in log, log
    assert "sha256:" not in "\n".join(line for line in log.splitlines() if line.startswith("#")), log
    labels = docker.from_env().images.get(f"paas/{name}:v1").labels
    assert labels["paas.app"] == name and labels["paas.version"] == "1", labels

    # a change of the lock file only: the tools stage is cached, the app's step runs again
    release = _push(kit, name, secret, repo, {**files, "requirements.lock": "fastapi==0.115.1\n"}, 2)
    log = kit.release_log(name, 2)
    assert release["status"] == "succeeded", log
    assert "CACHED" in log, log
    assert _served(kit, name).startswith("fastapi==0.115.1\n")

    # a new value: the live commit is built again (a release of the old image would keep the old one)
    token2 = token.replace("tok-", "tok2-")
    job = _set_token(kit, name, token2)["job"]
    assert job["kind"] == "deploy", job
    release = kit.wait_release(name, 3)
    log = kit.release_log(name, 3)
    assert release["status"] == "succeeded" and release["commit"] == kit.wait_release(name, 2)["commit"], log
    assert _served(kit, name).endswith(f"{_sha(token2)}\n")
    client = docker.from_env()
    for version in (1, 2, 3):
        tag = f"paas/{name}:v{version}"
        assert not any(t in kit.release_log(name, version) for t in (token, token2))
        history = subprocess.run(
            ["/usr/bin/docker", "history", "--no-trunc", tag], capture_output=True, text=True, check=True
        ).stdout
        assert "BUILD_TOKEN" in history or "secret" in history, history  # the step is there...
        assert token not in history and token2 not in history  # ...its value is not
        assert client.images.get(tag).attrs["Config"]["Env"] is not None
        for value in (token, token2):
            assert not _image_holds(tag, value.encode()), (tag, "holds the build secret")
    builds = Path(kit.env["PAAS_DATA_DIR"]) / "builds"
    assert not list(builds.glob("paas-build-*/secret-*"))  # the CLI's files are gone
    # the app's own id, a new one for the new value: BuildKit keys the step's cache by it
    ids = [
        set(re.findall(rf"id=(paas/{name}/BUILD_TOKEN-[0-9a-f]+)", kit.release_log(name, v))) for v in (1, 3)
    ]
    assert len(ids[0]) == len(ids[1]) == 1 and ids[0] != ids[1], ids
    # the check itself can fail: the served hash is in the image, as the Dockerfile wrote it
    assert _image_holds(f"paas/{name}:v3", _sha(token2).encode())


TARGETED = """\
FROM python:3.11-slim AS api
WORKDIR /app
COPY server.py .
CMD ["python3", "-u", "server.py"]

FROM api AS broken
CMD ["false"]
"""


def test_an_app_builds_the_stage_it_names(kit: Stack) -> None:
    """--build-target per app: the stage named, not the Dockerfile's last (which would not serve)."""
    name = f"staged{TAG}"
    repo = GitRemote(Path(tempfile.mkdtemp(prefix=f"paas-{name}-", dir=kit.root)))
    body = {"name": name, "repo_url": str(repo.bare), "health_interval": 0.3, "build_target": "api"}
    r = kit.api("POST", "/apps", json=body)
    assert r.status_code == 201 and r.json()["build_target"] == "api", r.text
    release = _push(
        kit, name, str(r.json()["webhook_secret"]), repo, {"Dockerfile": TARGETED, "server.py": SERVER}, 1
    )
    assert release["status"] == "succeeded", kit.release_log(name, 1)
    assert _served(kit, name) == '{"version": "1"}'
    assert "[broken" not in kit.release_log(name, 1)  # BuildKit never built the last stage
    bad = kit.api("PATCH", f"/apps/{name}", json={"build_target": "no such/stage"})
    assert bad.status_code == 422 and "build_target" in bad.text, bad.text


def test_a_hog_and_a_fork_bomb_in_run_stop_at_the_builds_limits(kit: Stack) -> None:
    calm = f"calmbk{TAG}"
    repo_c, secret_c = _app(kit, calm)
    assert (
        _push(
            kit,
            calm,
            secret_c,
            repo_c,
            {
                "Dockerfile": "FROM python:3.11-slim\nCOPY server.py /\nCMD python3 -u /server.py\n",
                "server.py": SERVER,
            },
            1,
        )["status"]
        == "succeeded"
    )
    rough = f"roughbk{TAG}"
    repo, secret = _app(kit, rough)
    with LoadClient(kit.nginx.port, f"{calm}.{kit.domain}") as load:
        hogged = _push(kit, rough, secret, repo, {"Dockerfile": HOG}, 1)
        bombed = _push(
            kit,
            rough,
            secret,
            repo,
            {
                "Dockerfile": "FROM python:3.11-slim\nCOPY bomb.py /\nRUN python3 /bomb.py\n",
                "bomb.py": BOMB_PY,
            },
            2,
        )
        assert httpx.get(f"http://{LOOPBACK}:{kit.web_port}/readyz", timeout=5).status_code == 200
        time.sleep(1)
    assert hogged["status"] == "failed" and hogged["step"] == "build", hogged
    assert "exit code: 137" in hogged["error"], hogged["error"]  # the kernel's OOM kill
    assert bombed["status"] == "failed" and bombed["step"] == "build", bombed
    forked = [line for line in kit.release_log(rough, 2).splitlines() if "forked" in line]
    assert forked, kit.release_log(rough, 2)
    count = int(forked[0].split("forked", 1)[1].split()[0])
    assert 0 < count < BUILD_PIDS, forked  # the PID cap stopped it, not the loop's 5000
    assert load.report.total > 20 and load.report.failures == [], load.report.failures[:5]


def test_a_cancel_stops_a_build_step_at_once(kit: Stack) -> None:
    name = f"sleepy{TAG}"
    repo, secret = _app(kit, name)
    sleeper = f"sleep 31{TAG % 10}7"
    files = {"Dockerfile": f"FROM python:3.11-slim\nRUN echo start-{TAG} && {sleeper}\n"}
    assert kit.webhook(name, secret, repo.commit(files, "slow")).status_code == 202
    deadline = time.monotonic() + 60
    while f"start-{TAG}" not in (kit.release_log(name, 1) or ""):
        assert time.monotonic() < deadline, kit.release_log(name, 1)
        time.sleep(0.2)
    started = time.monotonic()
    kit.paas("cancel", name)
    release = kit.wait_release(name, 1)
    assert release["status"] == "cancelled", release
    assert time.monotonic() - started < 15
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", sleeper], capture_output=True, text=True).stdout.split()
    assert left == [], f"the build's step still runs: {left}"


FASTAPI_MAIN = """\
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root():
    return {"version": "generated"}
"""


def test_a_generated_dockerfile_installs_with_the_apps_pip_cache(kit: Stack) -> None:
    """An app without a Dockerfile: every pip install of its build mounts the
    app's own pip cache. (That a second build then downloads only what changed
    is pip's part: the local python:3.11-slim these machines build has Debian's
    pip, which keeps no cache, so it is not asserted here; the cache mount
    itself keeping files between an app's builds is, above.)"""
    name = f"gen{TAG}"
    repo, secret = _app(kit, name)
    files = {"requirements.txt": "fastapi>=0.110,<1\n", "main.py": FASTAPI_MAIN}
    first = _push(kit, name, secret, repo, files, 1)
    assert first["status"] == "succeeded", kit.release_log(name, 1)
    second = _push(kit, name, secret, repo, {**files, "requirements.txt": "fastapi>=0.110,<1\nsix\n"}, 2)
    log = kit.release_log(name, 2)
    assert second["status"] == "succeeded", log
    steps = [line for line in log.splitlines() if "] RUN " in line and "pip install" in line]
    assert len(steps) == 2, log  # the requirements and the server packages
    assert all(
        f"--mount=type=cache,target=/root/.cache/pip,id=paas/{name}//root/.cache/pip" in s for s in steps
    )
    assert "Successfully installed" in log and "six" in log
    assert '"generated"' in _served(kit, name)


def test_buildkits_cache_is_measured_and_trimmed_to_its_bound(kit: Stack) -> None:
    """What the hourly clean-up does with PAAS_BUILD_CACHE_MAX, and `paas doctor` shows."""
    from agent.docker_engine import DockerEngine

    engine = DockerEngine()
    before = engine.build_cache_bytes()
    assert before > 0  # the builds above left layers and caches
    freed = engine.prune_build_cache(keep=1 << 20)
    after = engine.build_cache_bytes()
    assert freed > 0 and after < before, (before, freed, after)
