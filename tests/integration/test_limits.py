"""Boxed app containers, for real (issue 14): a fork bomb in one app's
container stops at its PID limit and a memory hog is killed at its memory
limit, while another app, web and the agent keep serving (a load client on
the other app sees no failure); the killed container is reported as such."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from testkit.harness import LOOPBACK, GitRemote, LoadClient, Nginx, Stack

pytestmark = pytest.mark.integration

TAG = os.getpid() % 100000
CALM, ROUGH = f"calm{TAG}", f"rough{TAG}"
PIDS, MEMORY = 64, "96m"

SERVER = """\
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def bomb():
    forked = 0
    for _ in range(5000):
        try:
            if os.fork() == 0:
                time.sleep(20)
                os._exit(0)
        except OSError:
            break
        forked += 1
    return forked


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        answer = {"forked": bomb()} if self.path == "/bomb" else {"app": os.environ.get("APP", "")}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""

DOCKERFILE = 'FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nCMD ["python3", "-u", "server.py"]\n'
HOG = 'data = b"x" * (1024 * 1024 * 1024)  # 1 GiB written, far past the limit\n'


@pytest.fixture(scope="module")
def boxed(tmp_path_factory: pytest.TempPathFactory, nginx: Nginx) -> Iterator[Stack]:
    paas = Stack(
        tmp_path_factory.mktemp("paas-boxed"), nginx, PAAS_APP_MEMORY=MEMORY, PAAS_APP_PIDS=str(PIDS)
    )
    paas.start()
    yield paas
    paas.stop()
    paas.remove_everything()


def _deploy(
    stack: Stack, name: str, files: dict[str, str], root: Path
) -> tuple[GitRemote, str, dict[str, Any]]:
    repo = GitRemote(root)
    r = stack.api("POST", "/apps", json={"name": name, "repo_url": str(repo.bare), "health_interval": 0.3})
    assert r.status_code == 201, r.text
    secret = str(r.json()["webhook_secret"])
    assert stack.webhook(name, secret, repo.commit(files, "first")).status_code == 202
    return repo, secret, stack.wait_release(name, 1)


def test_a_fork_bomb_and_a_memory_hog_stay_in_their_box(boxed: Stack) -> None:
    root = Path(tempfile.mkdtemp(prefix="paas-limits-", dir=boxed.root))
    (root / "calm").mkdir()
    (root / "rough").mkdir()
    app_files = {"Dockerfile": DOCKERFILE, "server.py": SERVER}
    _, _, calm = _deploy(boxed, CALM, app_files, root / "calm")
    assert calm["status"] == "succeeded", boxed.release_log(CALM, 1)
    repo, secret, rough = _deploy(boxed, ROUGH, app_files, root / "rough")
    assert rough["status"] == "succeeded", boxed.release_log(ROUGH, 1)

    # the engine holds the box: memory (no swap beyond it), CPUs, PIDs, no new privileges, fewer caps
    host = docker.from_env().containers.get(f"paas-{ROUGH}-web-v1-1").attrs["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["PidsLimit"]) == (96 << 20, 96 << 20, PIDS)
    assert host["NanoCpus"] == 1_000_000_000
    assert "no-new-privileges:true" in host["SecurityOpt"] and "NET_RAW" in host["CapDrop"]

    with LoadClient(boxed.nginx.port, f"{CALM}.{boxed.domain}") as load:
        time.sleep(1)
        bombed = httpx.get(
            f"http://{LOOPBACK}:{boxed.nginx.port}/bomb",
            headers={"Host": f"{ROUGH}.{boxed.domain}"},
            timeout=60,
        )
        assert bombed.status_code == 200, bombed.text
        assert 0 < bombed.json()["forked"] < PIDS  # the PID limit stopped it, not the loop's 5000
        # while the bomb's processes live, ps says the container is at its limit (less the
        # request's own thread, gone by now)
        [web] = boxed.api("GET", f"/apps/{ROUGH}/ps").json()
        assert web["health"].startswith("limited: near its process limit"), web["health"]
        assert web["process_limit"] == PIDS and web["processes"] >= PIDS - 2, web
        # web and the agent answer while the bomb's processes are alive
        assert httpx.get(f"http://{LOOPBACK}:{boxed.web_port}/readyz", timeout=5).status_code == 200

        # a release command that takes more memory than its box is killed, and the deploy says why
        hog = {**app_files, "Procfile": "web: python3 -u server.py\nrelease: python3 hog.py\n", "hog.py": HOG}
        assert boxed.webhook(ROUGH, secret, repo.commit(hog, "a hungry worker")).status_code == 202
        failed = boxed.wait_release(ROUGH, 2)
        time.sleep(1)
    assert failed["status"] == "failed"
    assert "killed: out of memory" in failed["error"], failed["error"]
    assert "PAAS_APP_MEMORY=96m" in boxed.release_log(ROUGH, 2)
    assert load.report.total > 20 and load.report.failures == [], load.report.failures[:5]
    # the live release of the rough app still serves
    served = httpx.get(f"http://{LOOPBACK}:{boxed.nginx.port}/", headers={"Host": f"{ROUGH}.{boxed.domain}"})
    assert served.status_code == 200


def test_a_build_cannot_read_another_apps_image(boxed: Stack) -> None:
    """The real engine resolves every name and id; each way of naming the
    calm app's image from another app's Dockerfile fails that build, saying why."""
    calm = docker.from_env().images.get(f"paas/{CALM}:v1")
    root = Path(tempfile.mkdtemp(prefix="paas-thief-", dir=boxed.root))
    repo = GitRemote(root)
    thief = f"thief{TAG}"
    r = boxed.api("POST", "/apps", json={"name": thief, "repo_url": str(repo.bare)})
    assert r.status_code == 201, r.text
    secret = str(r.json()["webhook_secret"])
    ways = [
        f"FROM paas/{CALM}:v1\n",
        f"FROM {calm.id}\n",
        f"FROM {calm.id.removeprefix('sha256:')[:12]}\n",
        f"FROM python:3.11-slim\nCOPY --from=paas/{CALM}:v1 /app /stolen\n",
        f"ARG BASE=paas/{CALM}:v1\nFROM $BASE\n",
    ]
    for version, dockerfile in enumerate(ways, start=1):
        assert (
            boxed.webhook(
                thief, secret, repo.commit({"Dockerfile": dockerfile}, f"try {version}")
            ).status_code
            == 202
        )
        release = boxed.wait_release(thief, version)
        assert release["status"] == "failed" and "an image of another app" in release["error"], (
            dockerfile,
            release["error"],
        )
    assert docker.from_env().images.list(filters={"label": f"paas.app={thief}"}) == []
