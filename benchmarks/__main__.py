"""The benchmark suite (issue 17): ``scripts/bench.sh`` runs it.

Every figure is measured several times on this machine, beside its floor
measured in the same run:

- a cached redeploy (only the source changed): signed webhook → nginx serves
  the new version; floor: raw ``docker build`` (cached, BuildKit, as paas
  builds) + ``docker run`` + the first good answer;
- builds (issue 31): the same redeploy with ``PAAS_BUILDER=classic`` (the
  builder before BuildKit) beside its own floor, and one package added to
  ``requirements.txt`` of an app without a Dockerfile → live; floor: a plain
  ``docker build`` of the same generated Dockerfile, with the same pip cache
  mount (warmed as paas's is) + ``docker run`` + the first answer;
- the first line of the build log visible through the API after the webhook;
- a rollback: ``paas rollback`` → the old version served, and → the CLI
  returns; floor: ``docker start`` of a kept container + the first answer;
- the same rollback issued the moment a push is served (its predecessor
  still draining), and the second of two pushes one second apart (its
  webhook → served; floor: the cached redeploy's);
- the idle control plane's memory: PSS of every process ``paas up`` starts,
  after one app is deployed; floor: an empty FastAPI app under uvicorn;
- signed webhooks from 8 concurrent senders through nginx: deliveries per
  second and p50/p99 latency; floor: a minimal FastAPI endpoint that checks
  the same HMAC signature;
- databases: ``paas databases create`` → ready (floor: ``docker run`` of the
  same image until ``pg_isready``), ``attach`` → the app live with the URL
  (floor: a plain env change), and ``paas databases backup`` of a 1 GB
  database (floor: a bare ``pg_dump`` of it).

paas runs with its default timings (the tests' harness shortens some). The
results go to benchmarks/results/ (a dated file and latest.md) and between
the markers in docs/benchmarks.md. Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks.figures import Figure, Samples, percentile, process_tree, pss_kib, render
from testkit.harness import (
    LOOPBACK,
    GitRemote,
    Nginx,
    Stack,
    free_port,
    push_payload,
    traversable_dir,
)
from testkit.sample_app import DOCKERFILE, PRESTART, REQUIREMENTS

ROOT = Path(__file__).resolve().parent.parent
MAIN = """\
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root():
    return {{"version": "{version}"}}


@app.get("/healthz")
def healthz():
    return {{"ok": True}}
"""
APP = "bench"
POLL = 0.02  # how often the benchmarks look for what they wait for


def app_files(version: str) -> dict[str, str]:
    return {
        "Dockerfile": DOCKERFILE,
        "requirements.txt": REQUIREMENTS,
        "main.py": MAIN.format(version=version),
        "prestart.sh": PRESTART.format(version=version).replace("/data/mark", "/tmp/mark"),
    }


def wait_for(check: Callable[[], bool], *, timeout: float = 300, what: str) -> float:
    """Poll ``check`` every POLL seconds; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(POLL)
    raise SystemExit(f"benchmark: {what} did not happen in {timeout:.0f}s")


def version_at(url: str, host: str | None = None) -> str:
    try:
        answer = httpx.get(url, headers={"Host": host} if host else None, timeout=2)
        return str(answer.json().get("version", "")) if answer.status_code == 200 else ""
    except (httpx.HTTPError, ValueError):
        return ""


def shows(url: str, version: str, host: str | None = None) -> Callable[[], bool]:
    return lambda: version_at(url, host) == version


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


def raw_build(context: Path, tag: str, *, buildkit: bool = True) -> None:
    """``docker build -q`` as a user would type it on Debian 12: its own CLI
    (/usr/bin/docker), with BuildKit or the classic builder."""
    env = {**os.environ, "DOCKER_BUILDKIT": "1" if buildkit else "0"}
    subprocess.run(["/usr/bin/docker", "build", "-q", "-t", tag, str(context)], capture_output=True,
                   text=True, check=True, env=env)  # fmt: skip


def raw_deploy(
    context: Path, image: str, version: str, containers: list[str], *, buildkit: bool = True
) -> tuple[float, str, str]:
    """By hand: ``docker build`` + ``docker run`` + the first answer that
    shows ``version``. Its seconds, the container's name (added to
    ``containers`` before it runs, for the clean-up) and its URL."""
    port, name = free_port(), f"{image.replace(':', '-').replace('/', '-')}-run"
    containers.append(name)
    url = f"http://{LOOPBACK}:{port}/"
    started = time.monotonic()
    raw_build(context, image, buildkit=buildkit)
    docker("run", "-d", "--name", name, "-e", "PORT=8000", "-p", f"{LOOPBACK}:{port}:8000", image)
    wait_for(shows(url, version), what=f"{version} (floor)")
    return time.monotonic() - started, name, url


def remove_by_hand(containers: list[str], images: list[str]) -> None:
    for name in containers:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["docker", "image", "rm", "-f", *images], capture_output=True)


# deploys and their floor -----------------------------------------------------------------------


def first_deploy(stack: Stack, app: str = APP, files: dict[str, str] | None = None) -> tuple[GitRemote, str]:
    """Create the app and deploy it once (which fills Docker's cache)."""
    repo = GitRemote(Path(tempfile.mkdtemp(prefix=f"bench-{app}-", dir=stack.root)))
    created = json.loads(
        stack.paas(
            "apps", "create", app, "--repo", str(repo.bare), "--health-path", "/healthz", "--json"
        ).stdout
    )
    secret = created["webhook_secret"]
    payload = repo.commit(files or app_files("r0"), "first")
    assert stack.webhook(app, secret, payload).status_code == 202
    if stack.wait_release(app, 1)["status"] != "succeeded":
        raise SystemExit(f"benchmark: {app} v1 failed: {stack.release_log(app, 1)[-2000:]}")
    return repo, secret


def redeploys(
    stack: Stack, runs: int, repo: GitRemote, secret: str
) -> tuple[Samples, Samples, dict[str, Any]]:
    """Cached redeploys: webhook → new version served, and → first log line."""
    served, first_line = Samples(), Samples()
    timings: dict[str, Any] = {}
    for run in range(1, runs + 1):
        version = f"r{run}"
        payload = repo.commit(app_files(version), version)
        started = time.monotonic()
        assert stack.webhook(APP, secret, payload).status_code == 202
        release = run + 1
        seen_line = None
        while True:
            now = time.monotonic() - started
            if seen_line is None:
                log = stack.api("GET", f"/apps/{APP}/releases/{release}/log")
                if log.status_code == 200 and log.text.strip():
                    seen_line = time.monotonic() - started
            if stack.get_app(APP).json().get("version") == version:
                served.add(time.monotonic() - started)
                break
            if now > 300:
                raise SystemExit(f"benchmark: {version} was never served")
            time.sleep(POLL)
        first_line.add(seen_line if seen_line is not None else served.values[-1])
        timings[version] = stack.wait_release(APP, release)["timings"]  # retire done before the next
    return served, first_line, timings


def docker_floor(runs: int, work: Path, *, buildkit: bool = True) -> tuple[Samples, Samples]:
    """The same change by hand: docker build (cached) + docker run + first
    answer; then docker start of a kept, stopped container + first answer."""
    context = work / ("floor" if buildkit else "floor-classic")
    context.mkdir()
    deploy, start = Samples(), Samples()
    for name, text in app_files("f0").items():
        (context / name).write_text(text)
    raw_build(context, "paas-bench-floor:f0", buildkit=buildkit)  # fill the cache, as paas's first deploy
    containers: list[str] = []
    try:
        for run in range(1, runs + 1):
            version = f"f{run}"
            (context / "main.py").write_text(MAIN.format(version=version))
            image = f"paas-bench-floor:{version}"
            took, name, url = raw_deploy(context, image, version, containers, buildkit=buildkit)
            deploy.add(took)
            docker("stop", "-t", "1", name)
            started = time.monotonic()
            docker("start", name)
            wait_for(shows(url, version), what=f"{version} restarted (floor)")
            start.add(time.monotonic() - started)
            docker("stop", "-t", "1", name)
    finally:
        remove_by_hand(containers, [f"paas-bench-floor:f{i}" for i in range(runs + 1)])
    return deploy, start


def rollbacks(stack: Stack, runs: int) -> tuple[Samples, Samples]:
    """paas rollback --to an earlier release: → its version served, → the CLI returns."""
    served, returned = Samples(), Samples()
    for run in range(1, runs + 1):
        target = run + 1  # release vN serves r(N-1); v2.. are earlier releases with their images kept
        version = f"r{target - 1}"
        started = time.monotonic()
        cli = stack.spawn("rollback", APP, "--to", f"v{target}")
        app_url = f"http://{stack.address}:{stack.nginx.port}/"
        served.add(wait_for(shows(app_url, version, f"{APP}.{stack.domain}"), what="rollback"))
        cli.communicate(timeout=300)
        returned.add(time.monotonic() - started)
        if cli.returncode != 0:
            raise SystemExit(f"benchmark: paas rollback exited {cli.returncode}")
        wait_for(lambda: not _busy(stack), what="the rollback's retire")
    return served, returned


def steady(url: str, version: str, host: str, answers: int = 10) -> Callable[[], bool]:
    """``version`` served ``answers`` times in a row (while nginx reloads, an
    old worker may still take a new connection)."""
    return lambda: all(version_at(url, host) == version for _ in range(answers))


def rollback_right_after(
    stack: Stack, runs: int, repo: GitRemote, secret: str
) -> tuple[Samples, Samples, list[float]]:
    """As a user who sees errors: push, and `paas rollback` the moment the
    new version is served (its predecessor still draining). → the old
    version served, → the CLI returns; and each rollback's health time."""
    served, returned, health = Samples(), Samples(), []
    app_url, host = f"http://{stack.address}:{stack.nginx.port}/", f"{APP}.{stack.domain}"
    for run in range(1, runs + 1):
        stack.paas("unpin", APP)  # the rollback before pinned it
        before, bad = version_at(app_url, host), f"bad{run}"
        assert stack.webhook(APP, secret, repo.commit(app_files(bad), bad)).status_code == 202
        wait_for(steady(app_url, bad, host), what=f"{bad} served")
        started = time.monotonic()
        cli = stack.spawn("rollback", APP)
        wait_for(shows(app_url, before, host), what="the rollback right after a deploy")
        served.add(time.monotonic() - started)
        cli.communicate(timeout=300)
        returned.add(time.monotonic() - started)
        if cli.returncode != 0:
            raise SystemExit(f"benchmark: paas rollback exited {cli.returncode}")
        latest = stack.api("GET", f"/apps/{APP}/releases").json()[0]
        health.append(float(latest["timings"].get("health", 0)))
    stack.paas("unpin", APP)
    return served, returned, health


def pushes_a_second_apart(stack: Stack, runs: int, repo: GitRemote, secret: str) -> Samples:
    """Two pushes one second apart: the second's webhook → its version served."""
    served = Samples()
    app_url, host = f"http://{stack.address}:{stack.nginx.port}/", f"{APP}.{stack.domain}"
    for run in range(1, runs + 1):
        first, second = f"p{run}a", f"p{run}b"
        assert stack.webhook(APP, secret, repo.commit(app_files(first), first)).status_code == 202
        time.sleep(1)
        payload = repo.commit(app_files(second), second)
        started = time.monotonic()
        assert stack.webhook(APP, secret, payload).status_code == 202
        wait_for(shows(app_url, second, host), what=f"{second}, pushed a second after {first}")
        served.add(time.monotonic() - started)
        wait_for(lambda: not _busy(stack), what="both pushes' jobs")
    return served


def _busy(stack: Stack) -> bool:
    rows = stack.api("GET", f"/apps/{APP}/releases").json()
    return any(r["finished_at"] is None for r in rows)


# memory -----------------------------------------------------------------------------------------


def control_plane_memory(
    stack: Stack, samples: int = 5, settle: float = 10
) -> tuple[Samples, dict[str, float]]:
    """PSS (MiB) of every process of `paas up`, idle; the last sample per process."""
    assert stack.proc is not None
    total, per = Samples(), {}
    time.sleep(settle)  # idle: the deploys' work is done
    for _ in range(samples):
        tree = process_tree(stack.proc.pid)
        sizes = {pid: pss_kib(pid) / 1024 for pid in tree}
        total.add(sum(sizes.values()))
        per = {_short(pid, tree[pid]): size for pid, size in sizes.items()}
        time.sleep(2)
    return total, per


def _short(pid: int, cmdline: str) -> str:
    """What a process of `paas up` is: its children name themselves (paas/supervisor.py)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text(encoding="ascii").strip()
    except FileNotFoundError:
        comm = ""
    if comm in ("paas-web", "paas-agent"):
        return comm.removeprefix("paas-")
    return "supervisor (paas up)" if "paas up" in cmdline or "paas.supervisor" in cmdline else cmdline[:60]


def services_memory(stack: Stack, settle: float = 10) -> dict[str, float]:
    """PSS (MiB) of `paas agent` and `paas web` run apart, as the systemd units
    run them (paas up stopped first), idle, with the same installation."""
    stack.stop()
    log = (stack.root / "services.log").open("ab")
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "paas", name],
            env=stack.env,
            cwd=stack.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        for name in ("agent", "web")
    }
    try:
        ready = lambda: _answers(stack.web_port, "/readyz")  # noqa: E731
        wait_for(ready, timeout=60, what="paas web, run as its unit runs it")
        time.sleep(settle)
        return {
            f"paas {name}": sum(pss_kib(pid) for pid in process_tree(proc.pid)) / 1024
            for name, proc in procs.items()
        }
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=60)


EMPTY_APP = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@contextmanager
def bare_server(code: str, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", code, str(port), *args], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(port), timeout=30, what="the floor's server")
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(port: int, path: str = "/") -> bool:
    try:
        answer = httpx.get(f"http://{LOOPBACK}:{port}{path}", timeout=1)
        return path == "/" or answer.status_code == 200
    except httpx.HTTPError:
        return False


def empty_fastapi_memory(samples: int = 5) -> Samples:
    result = Samples()
    with bare_server(EMPTY_APP) as (proc, _port):
        time.sleep(2)
        for _ in range(samples):
            result.add(pss_kib(proc.pid) / 1024)
            time.sleep(1)
    return result


# webhooks ---------------------------------------------------------------------------------------

HMAC_APP = """
import hashlib, hmac, sys, uvicorn
from fastapi import FastAPI, Request, Response
app = FastAPI()
SECRET = sys.argv[2].encode()

@app.post("/hooks/github/{name}")
async def hook(name: str, request: Request) -> Response:
    body = await request.body()
    good = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    given = request.headers.get("x-hub-signature-256", "")
    return Response(status_code=202 if hmac.compare_digest(good, given) else 401)

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
SENDERS = 8


def webhook_load(url: str, secret: str, host: str, *, per_sender: int) -> tuple[float, list[float]]:
    """SENDERS threads each send ``per_sender`` signed pushes (to a branch no
    app deploys); deliveries per second and every latency in ms."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def sender(index: int) -> None:
        with httpx.Client(timeout=30) as client:
            for n in range(per_sender):
                payload = push_payload(repo_url="/bench", ref="refs/heads/bench-elsewhere", before="0" * 40,
                                       after=f"{index:02d}{n:038d}", message="bench")  # fmt: skip
                body = json.dumps(payload).encode()
                signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                headers = {
                    "Host": host, "Content-Type": "application/json", "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": os.urandom(16).hex(), "X-Hub-Signature-256": signature,
                }  # fmt: skip
                started = time.monotonic()
                answer = client.post(url, content=body, headers=headers)
                took = (time.monotonic() - started) * 1000
                with lock:
                    latencies.append(took)
                    if answer.status_code >= 300:
                        errors.append(f"HTTP {answer.status_code}")

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(SENDERS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    if errors:
        raise SystemExit(f"benchmark: {len(errors)} webhook deliveries failed, e.g. {errors[0]}")
    return len(latencies) / elapsed, latencies


def webhooks(stack: Stack, rounds: int, per_sender: int) -> dict[str, Samples]:
    secret = json.loads(stack.paas("apps", "rotate-secret", APP, "--json").stdout)["webhook_secret"]
    paas_url = f"http://{stack.address}:{stack.nginx.port}/hooks/github/{APP}"
    figures = {k: Samples() for k in ("rate", "p50", "p99", "floor rate", "floor p50", "floor p99")}
    with bare_server(HMAC_APP, secret) as (_proc, port):
        floor_url = f"http://{LOOPBACK}:{port}/hooks/github/{APP}"
        for _ in range(rounds):
            for prefix, url, host in (
                ("", paas_url, f"paas.{stack.domain}"),
                ("floor ", floor_url, LOOPBACK),
            ):
                rate, latencies = webhook_load(url, secret, host, per_sender=per_sender)
                figures[f"{prefix}rate"].add(rate)
                figures[f"{prefix}p50"].add(percentile(latencies, 0.5))
                figures[f"{prefix}p99"].add(percentile(latencies, 0.99))
    return figures


# the run ----------------------------------------------------------------------------------------


def machine() -> str:
    cpus = os.cpu_count()
    memory = ""
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{when}, commit {commit or '?'}, {cpus} CPUs, {memory} RAM, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )


PARTS = ("deploys", "memory", "webhooks", "databases", "builds")


# databases and their floors ---------------------------------------------------------------------

DB_IMAGE, DB_VERSION = "postgres:15-bookworm", "15"


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def _pg_ready(container: str) -> bool:
    done = subprocess.run(
        ["docker", "exec", container, "pg_isready", "-q", "-U", "postgres"], capture_output=True
    )
    return done.returncode == 0


def database_figures(stack: Stack, runs: int, extra: list[str]) -> list[Figure]:
    """create → ready beside a bare `docker run` of the same image until
    pg_isready; attach → the app live with the URL beside a plain env change;
    a backup of a 1 GB database beside a bare pg_dump of it."""
    created, floor_created = Samples(), Samples()
    for i in range(runs):
        name = f"bdb{i}"
        created.add(_timed(lambda n=name: stack.paas("databases", "create", n, "--engine", "postgres",
                                                     "--version", DB_VERSION)))  # fmt: skip
        bare = f"paas-bench-bare-pg-{os.getpid()}-{i}"
        started = time.monotonic()
        docker("run", "-d", "--name", bare, "-e", "POSTGRES_PASSWORD=bench", DB_IMAGE)
        try:
            wait_for(lambda b=bare: _pg_ready(b), what="a bare postgres")
            floor_created.add(time.monotonic() - started)
        finally:
            docker("rm", "-f", "-v", bare)
    attached, env_changed = Samples(), Samples()
    for i in range(runs):
        attached.add(_timed(lambda i=i: stack.paas("databases", "attach", f"bdb{i}", APP, "--as", f"DB_{i}")))
        env_changed.add(_timed(lambda i=i: stack.paas("env", "set", APP, f"PLAIN_{i}=x", "--wait")))
    for i in range(runs):
        stack.paas("databases", "detach", f"bdb{i}", APP, "--no-restart")
    # a 1 GB database: a million rows of a kilobyte each
    big = "bdb0"
    container = f"paasdb-{big}-pg{DB_VERSION}"
    statements = [  # each its own -c: VACUUM runs outside a transaction
        "CREATE TABLE filler (id bigint PRIMARY KEY, body text NOT NULL)",
        "INSERT INTO filler SELECT g, md5(g::text) || repeat(md5((g * 7)::text), 31) "
        "FROM generate_series(1, 1000000) g",
        "VACUUM ANALYZE filler",
    ]
    print("benchmark: filling a 1 GB database", flush=True)
    commands = [arg for sql in statements for arg in ("-c", sql)]
    docker("exec", "--user", "postgres", container, "psql", "-q", "-U", "postgres", "-d", big, *commands)
    size = docker("exec", "--user", "postgres", container, "psql", "-tA", "-U", "postgres", "-d", big, "-c",
                  "SELECT pg_database_size(current_database())")  # fmt: skip
    backed, bare_dump = Samples(), Samples()
    out = Path(tempfile.mkdtemp(prefix="bench-dumps-", dir=stack.root))
    for i in range(min(runs, 3)):
        target = out / f"paas-{i}.tar.gz"
        backed.add(
            _timed(lambda t=target: stack.paas("databases", "backup", big, "--output", str(t), token=False))
        )
        target.unlink()
        with open(out / "bare.dump", "wb") as fh:
            started = time.monotonic()
            subprocess.run(["docker", "exec", "--user", "postgres", container, "pg_dump", "-U", "postgres",
                            "--format=custom", "-d", big], stdout=fh, check=True)  # fmt: skip
            bare_dump.add(time.monotonic() - started)
        (out / "bare.dump").unlink()
    extra.append(
        f"The backed-up database: {int(size) / 2**30:.2f} GiB on disk (a million rows of 1 KiB). "
        "paas's backup is its pg_dump --format=custom streamed out of the container, pg_restore --list "
        "of it in a throwaway container, then the archive (gzip level 1)."
    )
    return [
        Figure("databases create → ready (postgres)", created, "s", "", floor_created,
               "docker run + pg_isready"),
        Figure("databases attach → app live with the URL", attached, "s", "", env_changed,
               "a plain env change (env set --wait)"),
        Figure("backup of a 1 GB database", backed, "s", "", bare_dump, "bare pg_dump of it", digits=1),
    ]  # fmt: skip


def deploy_figures(
    stack: Stack, root: Path, runs: int, repo: GitRemote, secret: str, extra: list[str]
) -> list[Figure]:
    print("benchmark: floor deploys (docker build + run)", flush=True)
    floor_deploy, floor_start = docker_floor(runs, root)
    print("benchmark: paas redeploys", flush=True)
    served, first_line, timings = redeploys(stack, runs, repo, secret)
    print("benchmark: rollbacks", flush=True)
    rb_served, rb_returned = rollbacks(stack, min(runs, 3))
    print("benchmark: rollbacks the moment a deploy is served", flush=True)
    now_served, now_returned, health = rollback_right_after(stack, min(runs, 3), repo, secret)
    print("benchmark: two pushes a second apart", flush=True)
    second = pushes_a_second_apart(stack, min(runs, 3), repo, secret)
    extra.append(
        "Health time of each rollback right after a deploy (s): "
        + ", ".join(f"{t:.2f}" for t in health)
        + f"; the drain is PAAS_DRAIN_SECONDS={stack.env['PAAS_DRAIN_SECONDS']}."
    )
    extra.append(
        "Step timings of the redeploys (s): "
        + "; ".join(
            f"{v}: " + " ".join(f"{k}={t:.2f}" for k, t in steps.items()) for v, steps in timings.items()
        )
    )
    return [
        Figure("cached redeploy: webhook → new version served", served, "s",
               "within 1.0 s of the floor", floor_deploy, "docker build + run + first answer"),
        Figure("first build-log line visible after the webhook", first_line, "s", "≤ 1 s",
               floor_name="none"),
        Figure("rollback: command → old version served", rb_served, "s", "its health time + 1 s",
               floor_start, "docker start + first answer"),
        Figure("rollback: command → the CLI returns", rb_returned, "s", "", floor_start,
               "docker start + first answer"),
        Figure("rollback the moment a deploy is served: → old version served", now_served, "s",
               "its health time + 1 s", floor_start, "docker start + first answer"),
        Figure("rollback the moment a deploy is served: → the CLI returns", now_returned, "s", "",
               floor_start, "docker start + first answer"),
        Figure("second of two pushes 1 s apart: its webhook → served", second, "s",
               "within 1.0 s of the floor", floor_deploy, "docker build + run + first answer"),
    ]  # fmt: skip


# builds (issue 31) ----------------------------------------------------------------------------

GEN = "benchgen"  # an app without a Dockerfile
GEN_BASE = "fastapi>=0.110,<1\n"
# one small package per run, none of them a dependency of the base or of the server packages
ADDED = ["six", "attrs", "pyparsing", "toml", "wrapt", "decorator", "itsdangerous", "iniconfig", "tomli"]


STAMP = f"# benchmark {os.getpid()}-{time.time_ns()}\n"  # no layer of an earlier run is ever reused


def gen_files(version: str, added: str = "") -> dict[str, str]:
    return {
        "requirements.txt": STAMP + GEN_BASE + (f"{added}\n" if added else ""),
        "main.py": MAIN.format(version=version),
    }


def one_package_added(stack: Stack, runs: int) -> tuple[Samples, str]:
    """An app without a Dockerfile, deployed once; then each run adds one
    package to requirements.txt: webhook → the new version served. Returns
    the samples and the generated Dockerfile (for the floor)."""
    repo, secret = first_deploy(stack, GEN, gen_files("g0"))
    dockerfile = stack.paas("build-plan", GEN).stdout
    served = Samples()
    for run in range(1, runs + 1):
        version = f"g{run}"
        payload = repo.commit(gen_files(version, ADDED[run - 1]), version)
        started = time.monotonic()
        assert stack.webhook(GEN, secret, payload).status_code == 202
        wait_for(_gen_shows(stack, version), what=f"{GEN} {version}")
        served.add(time.monotonic() - started)
        stack.wait_release(GEN, run + 1)
    return served, dockerfile


def _gen_shows(stack: Stack, version: str) -> Callable[[], bool]:
    return shows(f"http://{stack.address}:{stack.nginx.port}/", version, f"{GEN}.{stack.domain}")


def one_package_floor(runs: int, work: Path, dockerfile: str) -> Samples:
    """The same by hand: the generated Dockerfile, with its pip cache mount
    (warmed by a first build, as paas's first deploy warms the app's),
    built with BuildKit, run, and asked until it answers."""
    context = work / "floor-gen"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    for name, text in gen_files("h0").items():
        (context / name).write_text(text)
    raw_build(context, "paas-bench-gen:h0")
    samples, containers = Samples(), list[str]()
    try:
        for run in range(1, runs + 1):
            version = f"h{run}"
            for name, text in gen_files(version, ADDED[run - 1]).items():
                (context / name).write_text(text)
            took, name, _url = raw_deploy(context, f"paas-bench-gen:{version}", version, containers)
            samples.add(took)
            docker("stop", "-t", "1", name)
    finally:
        remove_by_hand(containers, [f"paas-bench-gen:h{i}" for i in range(runs + 1)])
    return samples


def build_figures(stack: Stack, root: Path, runs: int) -> list[Figure]:
    """Issue 31's figures. The classic builder's redeploy runs on a stack of
    its own (PAAS_BUILDER=classic), after ``stack`` is done with the bench app."""
    print("benchmark: one package added to an app without a Dockerfile", flush=True)
    added, dockerfile = one_package_added(stack, runs)
    print("benchmark: one package added, by hand (floor)", flush=True)
    added_floor = one_package_floor(runs, root, dockerfile)
    return [
        Figure("one package added to requirements.txt (no Dockerfile) → live", added, "s", "",
               added_floor, "docker build with the same pip cache mount + run + first answer"),
    ]  # fmt: skip


def classic_figures(nginx: Nginx, root: Path, runs: int, defaults: dict[str, str]) -> list[Figure]:
    """The cached redeploy with the builder paas had before BuildKit, on a
    stack of its own, beside the classic builder's own floor."""
    print("benchmark: cached redeploys with PAAS_BUILDER=classic", flush=True)
    (root / "classic").mkdir()
    stack = Stack(root / "classic", nginx, **defaults, PAAS_BUILDER="classic")
    try:
        stack.start()
        repo, secret = first_deploy(stack)
        served, _first, _timings = redeploys(stack, runs, repo, secret)
    finally:
        stack.stop()
        stack.remove_everything()
    floor, _start = docker_floor(runs, root, buildkit=False)
    return [
        Figure("cached redeploy, PAAS_BUILDER=classic (before issue 31): → served", served, "s", "",
               floor, "classic docker build + run + first answer"),
    ]  # fmt: skip


def webhook_figures(hooks: dict[str, Samples]) -> list[Figure]:
    return [
        Figure(f"signed webhooks, {SENDERS} concurrent senders: deliveries/s", hooks["rate"], "/s",
               "≥ 300/s", hooks["floor rate"], "a minimal FastAPI HMAC endpoint", digits=0),
        Figure("signed webhooks: p50 latency", hooks["p50"], "ms", "", hooks["floor p50"],
               "the same endpoint", digits=1),
        Figure("signed webhooks: p99 latency", hooks["p99"], "ms", "≤ 50 ms", hooks["floor p99"],
               "the same endpoint", digits=1),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each deploy figure (default 5)")
    parser.add_argument("--webhooks", type=int, default=100, help="deliveries per sender per round")
    parser.add_argument("--only", default="", help=f"comma-separated parts of {','.join(PARTS)} "
                        "(the default is all; a partial run only prints its table)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--readme", default=str(ROOT / "docs" / "benchmarks.md"), help="whose table to rewrite ('': none)"
    )
    options = parser.parse_args()

    parts = set(options.only.split(",")) if options.only else set(PARTS)
    if parts - set(PARTS):
        parser.error(
            f"--only: unknown part(s) {', '.join(sorted(parts - set(PARTS)))}; choose from {', '.join(PARTS)}"
        )
    figures: list[Figure] = []
    extra: list[str] = []
    root = traversable_dir("paas-bench-")
    nginx = Nginx(root / "nginx")
    nginx.start()
    defaults = {"PAAS_POLL_SECONDS": "0.5", "PAAS_DRAIN_SECONDS": "5", "PAAS_STOP_TIMEOUT": "10",
                "PAAS_JOB_LEASE_SECONDS": "30", "PAAS_LOG_LEVEL": "WARNING"}  # fmt: skip
    (root / "stack").mkdir()
    stack = Stack(root / "stack", nginx, **defaults)
    try:
        stack.start()
        if "memory" in parts:
            _, at_start = control_plane_memory(stack, samples=1, settle=5)
        repo, secret = first_deploy(stack)
        if "deploys" in parts:
            figures += deploy_figures(stack, root, options.runs, repo, secret, extra)
        if "memory" in parts:
            print("benchmark: memory", flush=True)
            memory, per_process = control_plane_memory(stack)
            floor_memory = empty_fastapi_memory()
            figures.append(
                Figure(
                    "idle control plane, PSS of every process of `paas up`",
                    memory,
                    "MiB",
                    "≤ 120 MiB",
                    floor_memory,
                    "an empty FastAPI app under uvicorn",
                    digits=0,
                )  # fmt: skip
            )
            extra[:0] = [
                "PSS per process, idle after one deploy (MiB): "
                + ", ".join(f"{name} {size:.0f}" for name, size in sorted(per_process.items()))
                + "; just started, before any deploy: "
                + ", ".join(f"{name} {size:.0f}" for name, size in sorted(at_start.items())),
                "",
            ]
        if "webhooks" in parts:
            print("benchmark: webhooks", flush=True)
            figures += webhook_figures(webhooks(stack, 3, options.webhooks))
        if "databases" in parts:
            print("benchmark: databases", flush=True)
            figures += database_figures(stack, min(options.runs, 3), extra)
        if "builds" in parts:
            figures += build_figures(stack, root, min(options.runs, len(ADDED)))
        if "memory" in parts:
            print("benchmark: memory of paas web and paas agent apart (the systemd units)", flush=True)
            apart = services_memory(stack)
            extra.insert(
                2,
                "Run apart as the systemd units run them (PSS, idle, MiB): "
                + ", ".join(f"{name} {size:.0f}" for name, size in apart.items())
                + f"; together {sum(apart.values()):.0f}.",
            )
            extra.insert(3, "")
    except BaseException:
        nginx.stop()
        raise
    finally:
        stack.stop()
        stack.remove_everything()
    try:
        if "builds" in parts:  # a stack of its own, with the bench app's name: after the first is gone
            figures += classic_figures(nginx, root, options.runs, defaults)
    finally:
        nginx.stop()

    table = render(
        figures, machine=machine(), extra=[textwrap.fill(line, 110) if line else "" for line in extra]
    )
    print(table)
    if parts != set(PARTS):
        return  # a partial run is for looking, not for the record
    options.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M")
    (options.out / f"{stamp}.md").write_text(table, encoding="utf-8")
    (options.out / "latest.md").write_text(table, encoding="utf-8")
    if options.readme:
        _into_readme(Path(options.readme), table)


START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def _into_readme(readme: Path, table: str) -> None:
    text = readme.read_text(encoding="utf-8")
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _old, tail = rest.split(END, 1)
        readme.write_text(f"{head}{START}\n{table}{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
