"""Real parts for the integration tests and the benchmarks: nginx on a
loopback port, `paas up` as a subprocess, a bare git repository standing in
for GitHub, GitHub's push payload shape, and a client that sends requests
through nginx without pause.

Every address used is on 127.0.0.0/8.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from paas.github import sign

LOOPBACK = "127.0.0.1"


def traversable_dir(prefix: str) -> Path:
    """A new directory under /var/tmp that an unprivileged user (web, as
    nobody or paas) can traverse: pytest's own temporary directories are 0700."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    root.chmod(0o755)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


# nginx ------------------------------------------------------------------------------


class Nginx:
    """An nginx of our own: its main config includes the paas conf dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf_dir = root / "conf.d"
        self.main_conf = root / "nginx.conf"
        self.port = free_port()

    def start(self) -> None:
        for sub in ("conf.d", "logs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "tmp", 0o777)
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.main_conf.write_text(
            f"""{user}worker_processes 1;
pid {self.root}/nginx.pid;
error_log {self.root}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {self.root}/logs/access.log;
    client_body_temp_path {self.root}/tmp/body;
    proxy_temp_path {self.root}/tmp/proxy;
    fastcgi_temp_path {self.root}/tmp/fastcgi;
    uwsgi_temp_path {self.root}/tmp/uwsgi;
    scgi_temp_path {self.root}/tmp/scgi;
    include {self.conf_dir}/*.conf;
    server {{
        # the default until paas writes its own default_server (no answer for unknown names)
        listen {LOOPBACK}:{self.port};
        return 404;
    }}
}}
""",
            encoding="utf-8",
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        subprocess.run([nginx, "-c", str(self.main_conf)], check=True, capture_output=True)
        _wait_for(lambda: _port_open(self.port), what=f"nginx on {self.port}", timeout=10)

    def stop(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        subprocess.run([nginx, "-c", str(self.main_conf), "-s", "quit"], capture_output=True)
        # and any other master of this configuration (an agent's watchdog may have started one
        # after a test stopped it, and the pid file names only the newest)
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("nginx: master process") and str(self.main_conf) in cmdline:
                with contextlib.suppress(OSError):
                    os.kill(int(proc.name), signal.SIGQUIT)

    def error_log(self) -> str:
        path = self.root / "logs" / "error.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


# paas up ----------------------------------------------------------------------------


class Stack:
    """`paas up` (web + agent) behind our nginx, driven like a user would."""

    domain = "apps.test"

    def __init__(self, root: Path, nginx: Nginx, **overrides: str) -> None:
        # As root, `paas up` runs web as nobody (PAAS_WEB_USER unset), which must reach the
        # data directory and keys: the installation lives in a traversable directory of its
        # own, named after ``root``.
        self.root = traversable_dir(f"paas-{root.name}-")
        self.nginx = nginx
        self.web_port = free_port()
        base = 30000 + (os.getpid() % 200) * 100
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PAAS_")},
            "PAAS_DATA_DIR": str(self.root / "data"),
            "PAAS_KEYS_DIR": str(self.root / "keys"),
            "PAAS_RUN_DIR": str(self.root / "run"),
            "PAAS_ALLOW_LOCAL_REPOS": "true",  # the stand-in for GitHub is a bare repository here
            "PAAS_DOMAIN": self.domain,
            "PAAS_PUBLIC_URL": f"http://paas.{self.domain}:{nginx.port}",
            "PAAS_WEB_PORT": str(self.web_port),
            "PAAS_HTTP_PORT": str(nginx.port),
            "PAAS_HTTPS_PORT": str(free_port()),
            "PAAS_ACME": "off",  # apps.test has no DNS: test_tls.py's stack asks Pebble
            "PAAS_LISTEN_ADDRESS": LOOPBACK,
            "PAAS_NGINX_CONF_DIR": str(nginx.conf_dir),
            "PAAS_NGINX_MAIN_CONF": str(nginx.main_conf),
            "PAAS_DRAIN_SECONDS": "1",
            "PAAS_STOP_TIMEOUT": "5",
            "PAAS_POLL_SECONDS": "0.2",
            "PAAS_JOB_LEASE_SECONDS": "15",
            "PAAS_PORT_RANGE_START": str(base),
            "PAAS_PORT_RANGE_END": str(base + 99),
            "PAAS_LOG_LEVEL": "INFO",
            # nothing leaves loopback: a GitHub token set by a test reaches a closed port, not GitHub
            "PAAS_GITHUB_API_URL": "http://127.0.0.1:9",
            **overrides,
        }
        self.address = self.env["PAAS_LISTEN_ADDRESS"]  # where nginx serves paas's sites
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.log_path = root / "paas-up.log"

    def _client_env(self, token: bool = True) -> dict[str, str]:
        env = dict(self.env)
        if token and self.token:
            env["PAAS_URL"] = f"http://{LOOPBACK}:{self.web_port}"
            env["PAAS_TOKEN"] = self.token
        env["HOME"] = str(self.root / "home")
        return env

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """Start a `paas` client command without waiting for it."""
        return subprocess.Popen(
            [sys.executable, "-m", "paas", *args],
            env=self._client_env(),
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def paas(
        self, *args: str, check: bool = True, token: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "paas", *args],
            env=self._client_env(token),
            cwd=self.root,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"paas {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "paas", "up"],
            env=self.env,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_for(
            self._control_plane_ready,
            what="paas up behind nginx",
            timeout=60,
            alive=lambda: self.proc is not None and self.proc.poll() is None,
            log=self.log_path,
        )
        if not self.token:
            self.token = self.paas("admin", "create-token", "e2e", token=False).stdout.strip()

    def _control_plane_ready(self) -> bool:
        try:
            r = httpx.get(
                f"http://{self.address}:{self.nginx.port}/readyz",
                headers={"Host": f"paas.{self.domain}"},
                timeout=2,
            )
            if r.status_code in (301, 308):  # HTTPS is on: nginx answers; is web ready behind it?
                r = httpx.get(f"http://{LOOPBACK}:{self.web_port}/readyz", timeout=2)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def remove_everything(self) -> None:
        """Remove every container, image and volume this installation made, and its files."""
        remove_installation(self.root / "data")
        shutil.rmtree(self.root, ignore_errors=True)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            f"http://{LOOPBACK}:{self.web_port}/api/v1{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            **kwargs,
        )

    def webhook(
        self,
        app: str,
        secret: str,
        payload: dict[str, Any],
        *,
        event: str = "push",
        delivery: str | None = None,
    ) -> httpx.Response:
        """Deliver a webhook the way GitHub does: through nginx, to the control host."""
        return deliver_webhook(
            f"http://{self.address}:{self.nginx.port}",
            f"paas.{self.domain}",
            app,
            secret,
            payload,
            event=event,
            delivery=delivery,
        )

    def get_app(self, app: str, path: str = "/") -> httpx.Response:
        return httpx.get(
            f"http://{self.address}:{self.nginx.port}{path}",
            headers={"Host": f"{app}.{self.domain}"},
            timeout=10,
        )

    def wait_release(self, app: str, version: int, *, timeout: float = 600) -> dict[str, Any]:
        """Wait until release vN has finished, retire included; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"paas up died; log:\n{self.log_path.read_text()[-4000:]}")
            rows = self.api("GET", f"/apps/{app}/releases").json()
            for row in rows:
                if row["version"] == version and row["finished_at"] is not None:
                    return dict(row)
            time.sleep(0.25)
        raise AssertionError(f"{app} v{version} did not finish in {timeout}s")

    def wait_drained(self, app: str, *, timeout: float = 60) -> None:
        """Wait until the app runs only its live release's containers: the
        agent's drainer stops the old ones PAAS_DRAIN_SECONDS after the switch,
        apart from the job (which has ended by then)."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self.api("GET", f"/apps/{app}/ps").json()
            if all(row["live"] for row in rows):
                return
            time.sleep(0.25)
        raise AssertionError(f"{app}: old containers still there after {timeout}s: {rows}")

    def release_log(self, app: str, version: int) -> str:
        return self.api("GET", f"/apps/{app}/releases/{version}/log").text

    def browser(self, password: str = "correct horse battery staple") -> httpx.Client:  # noqa: S107
        """A client signed in to the web UI as "admin" (created on first use)."""
        users = self.paas("admin", "users", "list", "--json", token=False).stdout
        if '"admin"' not in users:
            self.paas("admin", "create-user", "admin", token=False, stdin=password + "\n")
        client = httpx.Client(base_url=f"http://{LOOPBACK}:{self.web_port}", timeout=30)
        form = client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None, form
        signed = client.post(
            "/login", data={"username": "admin", "password": password, "csrf": csrf.group(1), "next": "/"}
        )
        assert signed.status_code == 303, signed.text
        return client


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """What ``check`` returns once it is truthy; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def canary_hits(roots: list[Path], canaries: dict[str, str]) -> tuple[int, list[tuple[str, str]]]:
    """Every regular file under ``roots`` searched for each canary value:
    (files searched, [(canary name, path)] where one was found)."""
    searched, hits = 0, []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                searched += 1
                hits += [(name, str(path)) for name, value in canaries.items() if value.encode() in data]
    return searched, hits


class JsonReceiver:
    """What Apprise's json:// posts: {"title", "message", "type", ...}."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append(json.loads(body))
                receiver.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def titles(self) -> list[str]:
        return [str(p.get("title", "")) for p in self.posts]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# git -----------------------------------------------------------------------------------


def remove_installation(data_dir: Path) -> None:
    """Remove every container, image, volume and network of the paas whose
    data directory this is (its instance id labels them all)."""
    import docker

    path = data_dir / "instance-id"
    if not path.exists():
        return
    label = f"paas.instance={path.read_text().strip()}"
    client = docker.from_env()
    for c in client.containers.list(ignore_removed=True, all=True, filters={"label": label}):
        c.remove(force=True)
    for image in client.images.list(filters={"label": label}):
        for tag in image.tags or [image.id]:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(tag, force=True)
    for volume in client.volumes.list(filters={"label": label}):
        volume.remove(force=True)
    for network in client.networks.list(filters={"label": label}):
        with contextlib.suppress(docker.errors.APIError):
            network.remove()


class GitRemote:
    """A bare repository (the "GitHub" side) and a work tree that pushes to it."""

    def __init__(self, root: Path, branch: str = "main") -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        self.branch = branch
        self._git("init", "--bare", "-b", branch, str(self.bare), cwd=root)
        self._git("init", "-b", branch, str(self.work), cwd=root)
        self._git("config", "user.name", "Ada Lovelace")
        self._git("config", "user.email", "ada@example.com")
        self._git("remote", "add", "origin", str(self.bare))
        self.head = "0" * 40

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=cwd or self.work, capture_output=True, text=True, check=True
        )
        return proc.stdout.strip()

    def commit(self, files: dict[str, str], message: str, *, branch: str | None = None) -> dict[str, Any]:
        """Commit ``files``, push, and return GitHub's push payload for it."""
        branch = branch or self.branch
        for rel, content in files.items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            if rel.endswith(".sh"):
                path.chmod(0o755)
        self._git("add", "-A")
        self._git("commit", "-q", "-m", message)
        sha = self._git("rev-parse", "HEAD")
        self._git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        before, self.head = self.head, sha
        return push_payload(
            repo_url=str(self.bare),
            ref=f"refs/heads/{branch}",
            before=before,
            after=sha,
            message=message,
            files=list(files),
        )


def deliver_webhook(
    base_url: str,
    host: str,
    app: str,
    secret: str,
    payload: dict[str, Any],
    *,
    event: str = "push",
    delivery: str | None = None,
) -> httpx.Response:
    """A signed delivery the way GitHub sends it, to ``base_url`` with Host ``host``."""
    body = json.dumps(payload).encode()
    return httpx.post(
        f"{base_url}/hooks/github/{app}",
        content=body,
        headers={
            "Host": host,
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/e2e",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or os.urandom(16).hex(),
            "X-GitHub-Hook-ID": "1",
            "X-Hub-Signature-256": sign(secret, body),
        },
        timeout=10,
    )


def push_payload(
    *,
    repo_url: str,
    ref: str,
    before: str,
    after: str,
    message: str,
    files: list[str] | None = None,
    pushed_at: int | None = None,
) -> dict[str, Any]:
    """A push event payload with the shape (and the fields) GitHub sends;
    ``pushed_at`` (when GitHub took the push) defaults to now."""
    owner = {
        "name": "octo",
        "email": "octo@example.com",
        "login": "octo",
        "id": 1,
        "node_id": "MDQ6VXNlcjE=",
        "type": "User",
        "site_admin": False,
    }
    author = {"name": "Ada Lovelace", "email": "ada@example.com", "username": "ada"}
    commit = {
        "id": after,
        "tree_id": "f" * 40,
        "distinct": True,
        "message": message,
        "timestamp": "2026-11-22T12:00:00+00:00",
        "url": f"https://github.com/octo/app/commit/{after}",
        "author": author,
        "committer": author,
        "added": [],
        "removed": [],
        "modified": files or [],
    }
    deleted = after == "0" * 40
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "created": before == "0" * 40,
        "deleted": deleted,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/octo/app/compare/{before[:12]}...{after[:12]}",
        "commits": [] if deleted else [commit],
        "head_commit": None if deleted else commit,
        "repository": {
            "id": 123,
            "node_id": "R_kgDO",
            "name": "app",
            "full_name": "octo/app",
            "private": True,
            "owner": owner,
            "html_url": "https://github.com/octo/app",
            "clone_url": repo_url,
            "ssh_url": "git@github.com:octo/app.git",
            "default_branch": "main",
            "master_branch": "main",
            "pushed_at": int(time.time()) if pushed_at is None else pushed_at,
        },
        "pusher": {"name": "ada", "email": "ada@example.com"},
        "sender": owner,
    }


# load -----------------------------------------------------------------------------------


# another address on this machine ---------------------------------------------------------


class NetworkNamespace:
    """A network namespace joined to this machine by a veth pair, so a client
    in it has an address that is not loopback while every packet stays on this
    machine. ``hosts`` become its /etc/hosts (``ip netns exec`` mounts
    /etc/netns/<name>/hosts there)."""

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        subnet = os.getpid() % 250 + 1
        self.name = f"paas-test-{tag}"
        self.host_link, self.link = f"pth{tag}", f"ptn{tag}"  # interface names: 15 characters at most
        self.host_address, self.address = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
        self.etc = Path("/etc/netns") / self.name

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def start(self, hosts: dict[str, str]) -> None:
        self.stop()  # what a killed run may have left
        self._ip("netns", "add", self.name)
        self._ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.link)
        self._ip("link", "set", self.link, "netns", self.name)
        self._ip("addr", "add", f"{self.host_address}/30", "dev", self.host_link)
        self._ip("link", "set", self.host_link, "up")
        inside = ("netns", "exec", self.name, "ip")
        self._ip(*inside, "addr", "add", f"{self.address}/30", "dev", self.link)
        self._ip(*inside, "link", "set", self.link, "up")
        self._ip(*inside, "link", "set", "lo", "up")
        self.etc.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", *(f"{address} {name}" for name, address in hosts.items())]
        (self.etc / "hosts").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def run(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *args], capture_output=True, text=True, timeout=120, **kwargs
        )

    def stop(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)  # takes its veth end along
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True)
        shutil.rmtree(self.etc, ignore_errors=True)


@dataclass
class LoadReport:
    total: int = 0
    failures: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)


class LoadClient:
    """Sends GET requests through nginx one after another, without pause, each
    on a fresh connection, and records every failure (connection error or
    non-2xx). Bounded: stops by itself after ``max_seconds``."""

    def __init__(self, port: int, host: str, *, max_seconds: float = 1800) -> None:
        self.port, self.host, self.max_seconds = port, host, max_seconds
        self.report = LoadReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="load")

    def __enter__(self) -> LoadClient:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.report.total += 1
            conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=10)
            try:
                conn.request("GET", "/", headers={"Host": self.host, "Connection": "close"})
                response = conn.getresponse()
                body = response.read()
                if not 200 <= response.status < 300:
                    self.report.failures.append(f"HTTP {response.status}: {body[:200]!r}")
                else:
                    version = json.loads(body).get("version", "?")
                    self.report.versions[version] = self.report.versions.get(version, 0) + 1
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.report.failures.append(f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()


# the Docker engine ------------------------------------------------------------------------


def restart_docker_engine(timeout: float = 90) -> float:
    """Restart dockerd the way it was started; returns the seconds it was away.

    With systemd, ``systemctl restart docker``; otherwise (these machines,
    where scripts/test.sh started it) SIGTERM the running dockerd, wait for it
    to exit and start it again with the same command line, detached from us.
    """
    started = time.monotonic()
    if Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "restart", "docker"], check=True, timeout=timeout)
    else:
        found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.split()
        pids = [pid for pid in found if not _exited(int(pid))]  # a dead one not ours to reap stays a zombie
        assert len(pids) == 1, f"expected one running dockerd, found {pids} (of {found})"
        pid = int(pids[0])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        os.kill(pid, 15)
        _wait_for(lambda: _exited(pid), what="dockerd to exit", timeout=timeout)
        with open("/var/log/paas-test-dockerd.log", "ab") as log:
            subprocess.Popen(
                [a.decode() for a in argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
    _wait_for(_engine_answers, what="dockerd after a restart", timeout=timeout)
    return time.monotonic() - started


def _exited(pid: int) -> bool:
    """True once ``pid`` is gone; reaps it when it is our child (scripts/test.sh
    execs pytest, so the dockerd it started is pytest's child)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


# certificates ----------------------------------------------------------------------------


def self_signed(directory: Path, hostname: str, *, days: int = 30) -> Path:
    """fullchain.pem and privkey.pem for ``hostname`` in ``directory``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return directory


def pebble_alive(proc: subprocess.Popen[bytes]) -> Any:
    """Whether ``proc`` still runs (for ``_wait_for``)."""
    return lambda: proc.poll() is None


class Pebble:
    """Let's Encrypt's test CA (Debian's pebble) with pebble-challtestsrv as its
    DNS, all on loopback ports. challtestsrv answers 127.0.0.1 for every name
    unless told otherwise (``point``); Pebble validates HTTP-01 on ``http_port``
    (our nginx). Pebble's own HTTPS listener uses a CA made here (``ca_bundle``)."""

    def __init__(self, root: Path, *, http_port: int, address: str = LOOPBACK) -> None:
        self.root = root
        self.http_port = http_port
        self.address = address  # what challtestsrv answers for every name not pointed elsewhere
        self.acme_port, self.admin_port = free_port(), free_port()
        self.dns_port, self.dns_admin_port = free_udp_tcp_port(), free_port()
        self.ca_bundle = root / "pebble-ca.pem"
        self.log_path = root / "pebble.log"
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def directory(self) -> str:
        return f"https://{LOOPBACK}:{self.acme_port}/dir"

    @property
    def dns(self) -> str:
        return f"{LOOPBACK}:{self.dns_port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cert, key = _pebble_listener_cert(self.root, self.ca_bundle)
        self._start_challtestsrv()
        for attempt in range(3):
            pebble = self._start_pebble(cert, key)
            try:
                _wait_for(
                    self._serves_directory,
                    what="pebble",
                    timeout=20,
                    alive=pebble_alive(pebble),
                    log=self.log_path,
                )
                return
            except AssertionError:
                # another process took a port between free_port() and Pebble's bind (its log says
                # "address already in use"): new ports, and again
                if pebble.poll() is None or attempt == 2:
                    raise
                self.acme_port, self.admin_port = free_port(), free_port()

    def _serves_directory(self) -> bool:
        """Pebble itself answers on its port: whatever else listens there would
        not hold a certificate of our CA."""
        try:
            return httpx.get(self.directory, verify=str(self.ca_bundle), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _start_pebble(self, cert: Path, key: Path) -> subprocess.Popen[bytes]:
        config = self.root / "pebble-config.json"
        config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"{LOOPBACK}:{self.acme_port}",
                        "managementListenAddress": f"{LOOPBACK}:{self.admin_port}",
                        "certificate": str(cert),
                        "privateKey": str(key),
                        "httpPort": self.http_port,
                        "tlsPort": free_port(),
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        pebble = subprocess.Popen(
            ["pebble", "-config", str(config), "-dnsserver", self.dns, "-strict", "false"],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self._procs.append(pebble)
        return pebble

    def _start_challtestsrv(self) -> None:
        log = self.log_path.open("ab")
        self._procs.append(
            subprocess.Popen(
                [
                    "pebble-challtestsrv",
                    "-dns01", f"{LOOPBACK}:{self.dns_port}",
                    "-http01", "",
                    "-https01", "",
                    "-tlsalpn01", "",
                    "-management", f"{LOOPBACK}:{self.dns_admin_port}",
                    "-defaultIPv4", self.address,
                    "-defaultIPv6", "",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )  # fmt: skip
        _wait_for(
            lambda: _port_open(self.dns_admin_port), what="pebble-challtestsrv", timeout=20, log=self.log_path
        )

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def point(self, hostname: str, address: str) -> None:
        """Make challtestsrv answer ``address`` for ``hostname``."""
        r = httpx.post(
            f"http://{LOOPBACK}:{self.dns_admin_port}/add-a",
            json={"host": hostname.rstrip(".") + ".", "addresses": [address]},
            timeout=5,
        )
        r.raise_for_status()

    def root_pem(self) -> str:
        """The root Pebble signs certificates with (made fresh at each start)."""
        trust = ssl.create_default_context(cafile=str(self.ca_bundle))
        r = httpx.get(f"https://{LOOPBACK}:{self.admin_port}/roots/0", verify=trust, timeout=5)
        r.raise_for_status()
        return r.text


def free_udp_tcp_port() -> int:
    """A port free for both TCP and UDP (a DNS server binds both)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((LOOPBACK, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free TCP+UDP port")


def _pebble_listener_cert(root: Path, ca_bundle: Path) -> tuple[Path, Path]:
    """A CA and a certificate for 127.0.0.1/localhost signed by it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paas tests: pebble listener CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_bundle.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert, key_path = root / "pebble-listener.pem", root / "pebble-listener.key"
    cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key_path


# helpers -----------------------------------------------------------------------------------


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_for(
    predicate: Any, *, what: str, timeout: float, alive: Any = None, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if alive is not None and not alive():
            tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            raise AssertionError(f"{what}: the process died\n{tail}")
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise AssertionError(f"{what}: not ready after {timeout}s\n{tail}")
