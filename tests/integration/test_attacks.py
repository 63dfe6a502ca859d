"""The web process taken over (issue 14): every attack below runs as the
user web runs as (``nobody`` here, as ``paas up`` picks when started as root
without PAAS_WEB_USER) against a real ``paas up`` with dockerd, nginx and
git. Each is refused or harmless, and the marker file each would create as
root never appears.

One table, ATTACKS: a new attack is one line (its name and a function that
tries it and says what it saw).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import GitRemote, Nginx, Stack

pytestmark = pytest.mark.integration

VICTIM = "victim"
SERVER = (
    "import os\nfrom http.server import HTTPServer, SimpleHTTPRequestHandler\n"
    "HTTPServer(('0.0.0.0', int(os.environ['PORT'])), SimpleHTTPRequestHandler).serve_forever()\n"
)
FILES = {
    "Dockerfile": 'FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nCMD ["python3", "server.py"]\n',
    "server.py": SERVER,
}


@dataclass
class Scene:
    stack: Stack
    repo: GitRemote
    secret: str
    marker: Path

    @property
    def data(self) -> Path:
        return self.stack.root / "data"

    def as_web(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a command as the web user, with web's environment."""
        return subprocess.run(
            ["runuser", "-u", "nobody", "--", *args],
            env=self.stack.env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )

    def as_web_python(self, code: str) -> subprocess.CompletedProcess[str]:
        return self.as_web(sys.executable, "-c", code)

    def poison_job(self, kind: str, app_name: str, payload: dict[str, Any]) -> int:
        """Insert a job row straight into the database, as web could."""
        code = f"""
from paas.db import make_engine, session_scope
from paas.models import App, Job
from paas.settings import load_settings
from sqlmodel import select
engine = make_engine(load_settings())
with session_scope(engine) as session:
    app = session.exec(select(App).where(App.name == {VICTIM!r})).one()
    job = Job(kind={kind!r}, app_id=app.id, app_name={app_name!r}, payload={payload!r})
    session.add(job)
    session.flush()
    print(job.id)
"""
        done = self.as_web_python(code)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip().splitlines()[-1])

    def wait_job(self, job_id: int, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.stack.api("GET", f"/jobs/{job_id}").json()
            if job["state"] not in ("queued", "running"):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not finish")


def _denied(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, f"the web user could: {done.stdout}{done.stderr}"
    return "denied"


# each attack: (name, what it does); it returns what it saw, and fails the test if it got through


def write_into_repos(s: Scene) -> str:
    return _denied(s.as_web("sh", "-c", f"touch {s.data}/repos/planted"))


def plant_a_hook(s: Scene) -> str:
    hook = s.data / "repos" / f"{VICTIM}.git" / "hooks" / "reference-transaction"
    return _denied(s.as_web("sh", "-c", f"printf '#!/bin/sh\\ntouch {s.marker}\\n' > {hook}"))


def swap_the_repos_directory(s: Scene) -> str:
    return _denied(s.as_web("mv", str(s.data / "repos"), str(s.data / "db" / "repos")))


def plant_a_log_symlink(s: Scene) -> str:
    return _denied(s.as_web("ln", "-s", "/etc/passwd", str(s.data / "logs" / VICTIM / "v99.log")))


def replace_the_databases_wal_with_a_link(s: Scene) -> str:
    wal = s.data / "db" / "paas.db-wal"
    return _denied(s.as_web("sh", "-c", f"rm -f {wal} && ln -s {s.marker} {wal}"))


def read_the_agents_private_key(s: Scene) -> str:
    return _denied(s.as_web("cat", str(s.stack.root / "keys" / "secrets.key")))


def reach_the_docker_socket(s: Scene) -> str:
    code = "import socket; c = socket.socket(socket.AF_UNIX); c.connect('/var/run/docker.sock')"
    return _denied(s.as_web_python(code))


def job_with_an_upload_pack_commit(s: Scene) -> str:
    job = s.wait_job(s.poison_job("deploy", VICTIM, {"commit": f"--upload-pack=touch {s.marker}"}))
    assert job["state"] == "failed" and "payload.commit" in job["error"], job
    return job["error"]


def job_for_a_newline_name(s: Scene) -> str:
    job = s.wait_job(s.poison_job("delete", f"{VICTIM}\n", {}))
    assert job["state"] == "failed" and "refusing" in job["error"], job
    return job["error"]


def job_for_a_path_name(s: Scene) -> str:
    job = s.wait_job(s.poison_job("delete", "../../../tmp", {}))
    assert job["state"] == "failed" and "refusing" in job["error"], job
    assert (s.data / "repos" / f"{VICTIM}.git").is_dir()
    return job["error"]


def job_with_a_path_ref(s: Scene) -> str:
    job = s.wait_job(s.poison_job("deploy", VICTIM, {"ref": f"refs/heads/../../{s.marker}"}))
    assert job["state"] == "failed" and "payload.ref" in job["error"], job
    return job["error"]


def app_named_after_the_control_host(s: Scene) -> str:
    r = s.stack.api("POST", "/apps", json={"name": "paas", "repo_url": str(s.repo.bare)})
    assert r.status_code == 409, r.text
    return str(r.json()["detail"])


def dockerfile_from_another_apps_image(s: Scene) -> str:
    thief = GitRemote(Path(tempfile.mkdtemp(dir=s.stack.root)))
    r = s.stack.api("POST", "/apps", json={"name": "thief", "repo_url": str(thief.bare)})
    assert r.status_code == 201, r.text
    live = s.stack.api("GET", f"/apps/{VICTIM}").json()["current_version"]  # earlier ones may be pruned
    payload = thief.commit({"Dockerfile": f"FROM paas/{VICTIM}:v{live}\nRUN touch {s.marker}\n"}, "steal")
    assert s.stack.webhook("thief", r.json()["webhook_secret"], payload).status_code == 202
    release = s.stack.wait_release("thief", 1)
    assert release["status"] == "failed" and "an image of another app" in release["error"], release
    return str(release["error"])


ATTACKS: list[tuple[str, Callable[[Scene], str]]] = [
    ("write into the git caches", write_into_repos),
    ("plant a git hook in a clone", plant_a_hook),
    ("swap the git caches for its own", swap_the_repos_directory),
    ("plant a symlink as a release log", plant_a_log_symlink),
    ("replace the database's WAL with a link", replace_the_databases_wal_with_a_link),
    ("read the agent's private key", read_the_agents_private_key),
    ("reach the Docker socket", reach_the_docker_socket),
    ("a job whose commit is --upload-pack=...", job_with_an_upload_pack_commit),
    ("a job for an app name with a newline", job_for_a_newline_name),
    ("a job for an app name that is a path", job_for_a_path_name),
    ("a job whose ref climbs out of refs/", job_with_a_path_ref),
    ("an app named after the control host", app_named_after_the_control_host),
    ("a Dockerfile FROM another app's image", dockerfile_from_another_apps_image),
]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory, nginx: Nginx) -> Iterator[Scene]:
    stack = Stack(tmp_path_factory.mktemp("paas-attacked"), nginx)
    stack.start()
    try:
        repo = GitRemote(Path(tempfile.mkdtemp(dir=stack.root)))
        r = stack.api("POST", "/apps", json={"name": VICTIM, "repo_url": str(repo.bare)})
        assert r.status_code == 201, r.text
        secret = str(r.json()["webhook_secret"])
        assert stack.webhook(VICTIM, secret, repo.commit(FILES, "first")).status_code == 202
        assert stack.wait_release(VICTIM, 1)["status"] == "succeeded", stack.release_log(VICTIM, 1)
        yield Scene(stack, repo, secret, stack.root / "marker")
    finally:
        stack.stop()
        stack.remove_everything()


@pytest.mark.parametrize(("name", "attack"), ATTACKS, ids=[name for name, _ in ATTACKS])
def test_the_web_user_cannot_become_root(scene: Scene, name: str, attack: Callable[[Scene], str]) -> None:
    assert attack(scene)
    assert not scene.marker.exists(), f"{name}: the marker appeared"


def test_after_every_attack_a_deploy_as_root_runs_none_of_it(scene: Scene) -> None:
    """Runs last (file order): whatever the attacks left behind, the next
    deploy fetches, builds and switches as before, and no marker appears."""
    pushed = scene.stack.webhook(VICTIM, scene.secret, scene.repo.commit({"after.txt": "x"}, "after"))
    assert pushed.status_code == 202, pushed.text
    job = scene.wait_job(int(pushed.json()["job_id"]))
    assert job["state"] == "done", job
    assert not scene.marker.exists()
    assert scene.stack.get_app(VICTIM, "/after.txt").text == "x"
