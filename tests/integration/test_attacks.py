"""The web process taken over (issue 14): every attack below runs as the
user web runs as (``nobody`` here, as ``paas up`` picks when started as root
without PAAS_WEB_USER) against a real ``paas up`` with dockerd, nginx and
git. Each is refused or harmless, and the marker file each would create as
root never appears.

One table, ATTACKS: a new attack is one line (its name and a function that
tries it and says what it saw).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from testkit.harness import (
    LOOPBACK,
    GitRemote,
    JsonReceiver,
    Nginx,
    Stack,
    traversable_dir,
    wait_until,
)

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


# Issue 27: Dockerfiles from which Docker builds with the victim's image while
# paas's old rules saw no reference to it. Each is the first release of an app
# of its own; @VICTIM@ is the victim's live image, @MARKER@ the marker.
ANOTHER_APP = "an image of another app"
REFUSED_DOCKERFILES = [
    ("a tab after FROM", "thief-tab", "FROM\t@VICTIM@\nRUN touch @MARKER@\n", ANOTHER_APP),
    ("a byte-order mark before FROM", "thief-bom", "\ufeffFROM @VICTIM@\nRUN touch @MARKER@\n", ANOTHER_APP),
    ("a byte-order mark before the image", "thief-bom-word", "FROM \ufeff@VICTIM@\n", ANOTHER_APP),
    (
        "escape=` (a backslash no longer continues)",
        "thief-escape",
        "# escape=`\nFROM python:3.11-slim\nRUN true \\\nFROM @VICTIM@ AS v\n"
        "FROM python:3.11-slim\nCOPY --from=v /app /stolen\nRUN touch @MARKER@\n",
        ANOTHER_APP,
    ),
    (
        "a backslash then a no-break space",
        "thief-nbsp",
        "FROM python:3.11-slim\nRUN true \\\u00a0\nFROM @VICTIM@\nRUN touch @MARKER@\n",
        ANOTHER_APP,
    ),
    (
        "a backslash then a unit separator",
        "thief-unit-separator",
        "FROM python:3.11-slim\nRUN true \\\x1f\nFROM @VICTIM@\nRUN touch @MARKER@\n",
        ANOTHER_APP,
    ),
    (
        "FROM $IMG reads the ARG before the first FROM",
        "thief-meta-arg",
        "ARG IMG=@VICTIM@\nFROM python:3.11-slim\nARG IMG=python:3.11-slim\nFROM $IMG\nRUN touch @MARKER@\n",
        ANOTHER_APP,
    ),
    (
        "an ARG without default unsets it",
        "thief-arg-unset",
        "ARG A=python:3.11-slim\nARG A\nFROM ${A:-@VICTIM@}\nRUN touch @MARKER@\n",
        ANOTHER_APP,
    ),
    (
        "a heredoc's lines are instructions to Docker 20.10",
        "thief-heredoc",
        "FROM python:3.11-slim\nRUN <<CMD\nFROM @VICTIM@ AS v\nCMD\n",
        ANOTHER_APP,
    ),
    (
        "an earlier stage's ONBUILD COPY --from",
        "thief-onbuild-stage",
        "FROM python:3.11-slim AS base\nONBUILD COPY --from=@VICTIM@ /app /stolen\nFROM base\n",
        ANOTHER_APP,
    ),
    (
        "RUN --mount from= another app's image",
        "thief-mount",
        "FROM python:3.11-slim\nRUN --mount=type=bind,from=@VICTIM@,target=/v cp -r /v/app /stolen\n",
        ANOTHER_APP,
    ),
    (
        "COPY --from=$VARIABLE",
        "thief-from-variable",
        "FROM python:3.11-slim\nARG X=@VICTIM@\nCOPY --from=$X /app /stolen\n",
        "holds a variable",
    ),
    ("a custom frontend", "thief-syntax", "# syntax=@VICTIM@\nFROM python:3.11-slim\n", "custom frontend"),
    # issue 31: what BuildKit reads besides FROM, each refused (the Dockerfiles build under BuildKit)
    (
        "COPY --from another app's image",
        "thief-copy-from",
        "FROM python:3.11-slim\nCOPY --from=@VICTIM@ /app /stolen\nRUN touch @MARKER@\n",
        ANOTHER_APP,
    ),
    (
        "COPY --from another app's image by its id",
        "thief-copy-id",
        "FROM python:3.11-slim\nCOPY --from=@VICTIM_ID@ /app /stolen\nRUN touch @MARKER@\n",
        ANOTHER_APP,
    ),
    (
        "RUN --mount from= another app's image by its id",
        "thief-mount-id",
        "FROM python:3.11-slim\nRUN --mount=type=bind,from=@VICTIM_ID@,target=/v cp -r /v/app /stolen\n",
        ANOTHER_APP,
    ),
    (
        "RUN --mount=type=ssh (the server's SSH agent)",
        "thief-ssh",
        "FROM python:3.11-slim\nRUN --mount=type=ssh ls -l $SSH_AUTH_SOCK && touch @MARKER@\n",
        "type=ssh would lend the build an SSH agent",
    ),
    (
        "a secret mount the app did not define",
        "thief-secret",
        "FROM python:3.11-slim\nRUN --mount=type=secret,id=GITHUB_TOKEN cat /run/secrets/GITHUB_TOKEN\n",
        "'GITHUB_TOKEN' is not one of the app's build secrets",
    ),
    (
        "a secret mount by its target's name",
        "thief-secret-target",
        "FROM python:3.11-slim\nRUN --mount=type=secret,target=/run/secrets/DEPLOY_KEY true\n",
        "'DEPLOY_KEY' is not one of the app's build secrets",
    ),
    (
        "an unresolvable name",
        "thief-unresolvable",
        "FROM registry.invalid/paas-attacks/nothing:1\nRUN touch @MARKER@\n",
        "an unresolvable name is not public",
    ),
    (
        "a paas name the server does not have",
        "thief-paas-name",
        f"FROM paas/{VICTIM}:v999\nRUN touch @MARKER@\n",
        "paas's own repository",
    ),
]


def _thief_release(s: Scene, app: str, dockerfile: str) -> dict[str, Any]:
    """Release v1 of a new app ``app`` whose repository holds ``dockerfile``."""
    repo = GitRemote(Path(tempfile.mkdtemp(dir=s.stack.root)))
    r = s.stack.api("POST", "/apps", json={"name": app, "repo_url": str(repo.bare)})
    assert r.status_code == 201, r.text
    live = s.stack.api("GET", f"/apps/{VICTIM}").json()["current_version"]
    image = f"paas/{VICTIM}:v{live}"
    text = dockerfile.replace("@VICTIM@", image).replace("@MARKER@", str(s.marker))
    if "@VICTIM_ID@" in text:
        text = text.replace("@VICTIM_ID@", docker.from_env().images.get(image).id)
    payload = repo.commit({"Dockerfile": text}, "steal")
    assert s.stack.webhook(app, r.json()["webhook_secret"], payload).status_code == 202
    return s.stack.wait_release(app, 1)


def _refused_build(app: str, dockerfile: str, because: str) -> Callable[[Scene], str]:
    def attack(s: Scene) -> str:
        release = _thief_release(s, app, dockerfile)
        assert release["status"] == "failed" and because in release["error"], release
        assert docker.from_env().images.list(filters={"label": f"paas.app={app}"}) == []
        return str(release["error"])

    return attack


def dockerfile_from_a_base_whose_onbuild_reads_another_app(s: Scene) -> str:
    """A base image built on the server (tagged, no app's label: allowed as
    public) whose ONBUILD trigger copies from the victim: it would run in
    the thief's build."""
    live = s.stack.api("GET", f"/apps/{VICTIM}").json()["current_version"]
    base, context = "paas-attacks/onbuild-base:1", Path(tempfile.mkdtemp(dir=s.stack.root))
    (context / "Dockerfile").write_text(
        f"FROM python:3.11-slim\nONBUILD COPY --from=paas/{VICTIM}:v{live} /app /stolen\n"
    )
    engine = docker.from_env()
    engine.images.build(path=str(context), tag=base, rm=True)
    try:
        error = _refused_build("thief-onbuild", f"FROM {base}\nRUN touch @MARKER@\n", ANOTHER_APP)(s)
        assert "an ONBUILD trigger of 'paas-attacks/onbuild-base:1'" in error, error
        return error
    finally:
        engine.images.remove(base, force=True)


CACHE_WRITER = (
    "FROM python:3.11-slim\nRUN --mount=type=cache,target=/root/.cache/pip touch /root/.cache/pip/{m}\n"
)
CACHE_READER = (
    "FROM python:3.11-slim\n"
    "RUN --mount=type=cache,{how}target=/root/.cache/pip ls -a /root/.cache/pip; "
    # prints FOUND-42, which the command line itself does not hold
    "test ! -e /root/.cache/pip/{m} || echo FOUND-$((40 + 2))\n"
)


def poison_another_apps_build_cache(s: Scene) -> str:
    """Issue 31: BuildKit shares a cache mount by id (by default its target)
    across every build on the engine: app A's build writes into the pip cache
    app B installs from. paas gives each app its own; B never sees A's file,
    by the default id or by naming A's."""
    writer_name = "cache-writer"
    marker = f"planted-{os.getpid()}"
    writer = GitRemote(Path(tempfile.mkdtemp(dir=s.stack.root)))
    r = s.stack.api("POST", "/apps", json={"name": writer_name, "repo_url": str(writer.bare)})
    assert r.status_code == 201, r.text
    hook = str(r.json()["webhook_secret"])
    for version, text in enumerate([CACHE_WRITER, CACHE_READER.replace("{how}", "")], start=1):
        payload = writer.commit({"Dockerfile": text.format(m=marker)}, f"cache {version}")
        assert s.stack.webhook(writer_name, hook, payload).status_code == 202
        s.stack.wait_release(writer_name, version)
    log = s.stack.release_log(writer_name, 1)
    assert f"touch /root/.cache/pip/{marker}" in log and f"id=paas/{writer_name}/" in log, log
    # the check can see a marker: the writer's own next build finds its file
    log = s.stack.release_log(writer_name, 2)
    assert "FOUND-42" in log and any(line.endswith(f" {marker}") for line in log.splitlines()), log
    seen = []
    for app, how in [
        ("cache-reader", ""),
        ("cache-reader-by-id", f"id=paas/{writer_name}//root/.cache/pip,"),
        ("cache-reader-by-path", "id=/root/.cache/pip,"),
    ]:
        _thief_release(s, app, CACHE_READER.format(m=marker, how=how))
        log = s.stack.release_log(app, 1)
        assert "ls -a /root/.cache/pip" in log and "FOUND-42" not in log, log
        assert not any(line.endswith(f" {marker}") for line in log.splitlines()), log  # ls did not list it
        seen.append(app)
    return f"{', '.join(seen)} never saw {writer_name}'s file"


SECRET_STEP = "FROM python:3.11-slim\nRUN --mount=type=secret,id=TOKEN sha256sum /run/secrets/TOKEN\n"


def take_a_layer_built_with_another_apps_secret(s: Scene) -> str:
    """Issue 31: BuildKit keys a step's cache by its secret mount's id, never
    by the value, across every build on the engine. App B writes app A's
    Dockerfile (a public repository, its token private) and a secret of the
    same name: with a shared id B's build would take A's layer, built with
    A's token. paas gives each app, and each value, an id of its own."""
    seen = {}
    for app, value in (("secret-owner", f"owner-{os.getpid()}"), ("secret-taker", f"taker-{os.getpid()}")):
        repo = GitRemote(Path(tempfile.mkdtemp(dir=s.stack.root)))
        r = s.stack.api("POST", "/apps", json={"name": app, "repo_url": str(repo.bare)})
        assert r.status_code == 201, r.text
        token = {"key": "TOKEN", "value": value, "secret": True, "scope": "build"}
        assert s.stack.api("PATCH", f"/apps/{app}/env", json={"set": [token]}).status_code == 200
        payload = repo.commit({"Dockerfile": SECRET_STEP}, "secret step")
        assert s.stack.webhook(app, r.json()["webhook_secret"], payload).status_code == 202
        s.stack.wait_release(app, 1)
        seen[app] = (s.stack.release_log(app, 1), hashlib.sha256(value.encode()).hexdigest())
    owner_log, owner_sha = seen["secret-owner"]
    taker_log, taker_sha = seen["secret-taker"]
    assert owner_sha in owner_log, owner_log  # the owner's step ran with its own token
    assert taker_sha in taker_log and owner_sha not in taker_log, taker_log  # ran again, with the taker's
    return "the taker's step ran with its own secret, not from the owner's layer"


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
    *[
        (f"a Dockerfile: {title}", _refused_build(app, text, because))
        for title, app, text, because in REFUSED_DOCKERFILES
    ],
    (
        "a Dockerfile FROM a base whose ONBUILD reads another app",
        dockerfile_from_a_base_whose_onbuild_reads_another_app,
    ),
    ("poison another app's build cache", poison_another_apps_build_cache),
    ("take a layer built with another app's build secret", take_a_layer_built_with_another_apps_secret),
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


# `paas up` started where web can write (issue 27) -----------------------------------------------

PLANTED = ("apprise.py", "paas/__init__.py", "agent/__init__.py")


def test_modules_planted_where_paas_up_was_started_never_run(
    tmp_path_factory: pytest.TempPathFactory, nginx: Nginx
) -> None:
    """`paas up` (the installed command, as install.sh runs it) started from
    a directory of web's user holding an apprise.py and a paas/ and agent/
    package that would leave a marker: the supervisor it execs and the
    notification sender import none of them, and a test notification still
    arrives, sent as an unprivileged user."""
    stack = Stack(tmp_path_factory.mktemp("paas-planted"), nginx)
    cwd = traversable_dir("paas-up-cwd-")
    shutil.chown(cwd, "nobody")
    marks = traversable_dir("paas-marks-")
    marks.chmod(0o777)  # whoever imports a planted module, as any user, leaves its marker here
    marker = marks / "imported"
    plant = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for name in PLANTED:  # written by web's user: its own directory
        done = subprocess.run(
            ["runuser", "-u", "nobody", "--", "sh", "-c", f'mkdir -p "$(dirname {name})" && cat > {name}'],
            input=plant,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
    receiver = JsonReceiver()
    log = stack.log_path.open("ab")

    def ready() -> bool:
        assert stack.proc is not None and stack.proc.poll() is None, stack.log_path.read_text()[-4000:]
        try:
            return httpx.get(f"http://{LOOPBACK}:{stack.web_port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        stack.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("paas")), "up"],
            env=stack.env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(ready, "paas up", timeout=60)
        stack.token = stack.paas("admin", "create-token", "planted", token=False).stdout.strip()
        supervisor = Path(f"/proc/{stack.proc.pid}")  # `paas up` became the supervisor: same pid
        wait_until(lambda: b"paas.supervisor" in (supervisor / "cmdline").read_bytes(), "the supervisor")
        assert (supervisor / "cmdline").read_bytes().split(b"\0")[1] == b"-I"
        assert os.readlink(supervisor / "cwd") == "/"
        target = json.loads(
            stack.paas("notify", "add", f"json://{LOOPBACK}:{receiver.port}/planted", "--json").stdout
        )
        said = stack.paas("notify", "test", str(target["id"])).stdout
        assert said.startswith(f"sent a test notification to target {target['id']}"), said
        assert receiver.titles() == ["paas: a test notification"]
        # a target web wants Apprise to read a file for is refused on input
        r = stack.api("POST", "/notifications", json={"url": "discord://1/abcdefTOKEN?template=/etc/shadow"})
        assert r.status_code == 422 and "template=" in r.text, r.text
    finally:
        receiver.stop()
        stack.stop()
        log.close()
        stack.remove_everything()
        shutil.rmtree(cwd, ignore_errors=True)
        ran = marker.read_text() if marker.exists() else ""  # up to the stop, sends included
        shutil.rmtree(marks, ignore_errors=True)
    assert not ran, f"a planted module ran: {ran}"
