"""deploy/install.sh run for real, under a scratch prefix: its environment
(every path redirected, the tests' own nginx on a loopback port), the run
itself, and what it leaves running (`paas up`'s processes)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from testkit.harness import LOOPBACK, Nginx, free_port

REPO = Path(__file__).resolve().parents[2]

# A FastAPI app with no Dockerfile: the installed agent detects it, generates
# its Dockerfile, builds, health-checks and switches nginx to it.
DEMO_MAIN = """\
import sys

from fastapi import FastAPI

app = FastAPI()
VERSION = "{version}"


@app.get("/")
def root():
    return {{"hello": "from the installed paas", "python": sys.version.split()[0], "version": VERSION}}


@app.get("/healthz")
def healthz():
    return {{"ok": True}}
"""


# The release before in-place upgrades (paas 0.1.0, issue 17's end): its venv is a
# directory of its own, where later ones are venvs/<source> with venv pointing to one.
PREVIOUS_RELEASE = "d0654f5b3f697585441821f4d12bda8bbef58cad"

UPGRADED = re.compile(
    r"upgraded paas (?P<old>\S+) -> (?P<new>\S+): the control plane was unavailable for (?P<down>[\d.]+) s"
)


def checkout(commit: str, into: Path) -> Path:
    """The files of ``commit`` (git archive), as a user's older checkout."""
    into.mkdir()
    archive = into.parent / f"{commit}.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", f"--output={archive}", commit], check=True)
    subprocess.run(["tar", "-x", "-f", str(archive), "-C", str(into)], check=True)
    archive.unlink()
    return into


def demo_app(version: str = "1") -> dict[str, str]:
    return {"requirements.txt": "fastapi>=0.110,<1\n", "main.py": DEMO_MAIN.format(version=version)}


def install_env(root: Path, nginx: Nginx) -> dict[str, str]:
    """install.sh's environment: everything under ``root``, nginx the tests'."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "PAAS_PREFIX": str(root / "opt"),
        "PAAS_ETC_DIR": str(root / "etc"),
        "PAAS_RUN_DIR": str(root / "run"),
        "PAAS_LOG_FILE": str(root / "paas.log"),
        "PAAS_LOGROTATE_CONF": str(root / "logrotate.conf"),
        "PAAS_BIN_LINK": str(root / "bin" / "paas"),
        "PAAS_DATA_DIR": str(root / "data"),
        "PAAS_ACME_WEBROOT_DIR": str(root / "acme"),
        "PAAS_DOMAIN": "apps.test",
        "PAAS_WEB_PORT": str(free_port()),
        "PAAS_HTTP_PORT": str(nginx.port),
        "PAAS_HTTPS_PORT": str(free_port()),
        "PAAS_LISTEN_ADDRESS": LOOPBACK,
        "PAAS_NGINX_CONF_DIR": str(nginx.conf_dir),
        "PAAS_NGINX_MAIN_CONF": str(nginx.main_conf),
        "PAAS_PUBLIC_URL": f"http://paas.apps.test:{nginx.port}",
        "PAAS_ALLOW_LOCAL_REPOS": "true",  # the new user's repository is a local one
    }


def run_install(env: dict[str, str], *, source: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``source``/deploy/install.sh, as root; paas's log is added to a failure."""
    result = subprocess.run(
        ["bash", str(source / "deploy" / "install.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    log = Path(env["PAAS_LOG_FILE"])
    if result.returncode != 0 and log.exists():
        result.stderr += "\n--- paas.log ---\n" + log.read_text(errors="replace")[-5000:]
    return result


def printed_token(stdout: str) -> str:
    tokens = [line for line in stdout.splitlines() if line.startswith("paas_")]
    assert len(tokens) == 1, stdout
    return tokens[0]


def stop_paas_up(pidfile: Path) -> None:
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.2)
    except ProcessLookupError:
        pass


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def workers(pid: int) -> dict[str, int]:
    """`paas up`'s children (of supervisor ``pid``) by process name: paas-web,
    paas-agent. A child that exits meanwhile is left out."""
    named = {}
    for child in children(pid):
        try:
            named[Path(f"/proc/{child}/comm").read_text().strip()] = child
        except FileNotFoundError:
            continue
    return named


def uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid for {pid}")


def started_at(pid: int) -> float:
    """When the process started, in seconds since boot (as /proc/uptime counts)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])
