"""`paas doctor` against a real installation: Docker, nginx, `paas up`, and
Pebble's challtestsrv as the DNS (every name -> 127.0.0.1, where our nginx
listens), so DNS and the ports "from outside" check out. Then what users
get wrong, one at a time: DNS pointing elsewhere, a data directory opened
to everyone, nginx down. Each is named with its fix, and the exit code
says something failed. Nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.harness import LOOPBACK, Nginx, Pebble, Stack, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def doctor_stack(tmp_path_factory: pytest.TempPathFactory, nginx: Nginx, pebble: Pebble) -> Iterator[Stack]:
    paas = Stack(
        tmp_path_factory.mktemp("paas-doctor"),
        nginx,
        PAAS_ACME="on",
        PAAS_ACME_DIRECTORY=pebble.directory,
        PAAS_ACME_CA_BUNDLE=str(pebble.ca_bundle),
        PAAS_DNS_RESOLVER=pebble.dns,
        PAAS_PUBLIC_IPS=LOOPBACK,
        PAAS_HTTPS_PORT=str(free_port()),
        PAAS_NGINX_CHECK_SECONDS="3600",  # the test stops nginx, and the agent must not start it meanwhile
    )
    paas.start()
    yield paas
    paas.stop()
    paas.remove_everything()


def doctor(stack: Stack) -> tuple[int, dict[str, dict[str, str]]]:
    done = stack.paas("doctor", "--json", check=False, token=False)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)}


def status(checks: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: c["status"] for name, c in checks.items()}


def test_doctor_finds_a_healthy_installation_healthy_then_names_each_fault_and_its_fix(
    doctor_stack: Stack, nginx: Nginx, pebble: Pebble
) -> None:
    if os.geteuid() != 0:
        pytest.fail("the layout and key checks are root's; scripts/test.sh runs as root")
    http, https = doctor_stack.env["PAAS_HTTP_PORT"], doctor_stack.env["PAAS_HTTPS_PORT"]
    code, checks = doctor(doctor_stack)
    healthy = {
        "docker engine": "ok",
        "builder": "ok",
        "nginx configuration": "ok",
        "nginx answers": "ok",
        "web": "ok",
        "agent": "ok",
        "DNS of the control plane": "ok",
        "DNS of *.apps.test": "ok",
        f"port {http} from outside": "ok",
        f"port {https} from outside": "ok",
        "data directory": "ok",
        "encryption keys": "ok",
        "clock": "ok",
        "backups": "warn",  # none scheduled
    }
    assert {k: v for k, v in status(checks).items() if k in healthy} == healthy, checks
    # the disk's figure depends on the machine; failures elsewhere would show in the exit code
    disk = [c for name, c in checks.items() if name.startswith("disk of")]
    assert disk and all("GiB free of" in c["detail"] for c in disk), disk
    assert "MiB (PAAS_BUILD_CACHE_MAX=2g)" in checks["build cache"]["detail"], checks["build cache"]
    assert code == (1 if any(c["status"] == "fail" for c in checks.values()) else 0)
    assert "certificate of paas.apps.test (the control plane)" in checks
    print("\n" + "\n".join(f"{c['status']:4}  {name}: {c['detail']}" for name, c in checks.items()))

    # DNS of the control plane pointing elsewhere
    pebble.point("paas.apps.test", "192.0.2.10")
    code, checks = doctor(doctor_stack)
    assert code == 1
    dns = checks["DNS of the control plane"]
    assert dns["status"] == "fail" and "192.0.2.10" in dns["detail"] and "PAAS_PUBLIC_IPS" in dns["detail"]
    assert "add DNS records pointing paas.apps.test and *.apps.test" in dns["fix"]
    assert checks["DNS of *.apps.test"]["status"] == "ok"
    pebble.point("paas.apps.test", LOOPBACK)

    # the data directory opened to everyone
    data = Path(doctor_stack.env["PAAS_DATA_DIR"])
    mode = data.stat().st_mode & 0o7777
    data.chmod(0o777)
    try:
        code, checks = doctor(doctor_stack)
    finally:
        data.chmod(mode)
    assert code == 1
    layout = checks["data directory"]
    assert layout["status"] == "fail" and f"{data} is 0777" in layout["detail"], layout
    assert "paas migrate" in layout["fix"]

    # a key readable by others
    key = Path(doctor_stack.env["PAAS_KEYS_DIR"]) / "secrets.key"
    key.chmod(0o644)
    try:
        code, checks = doctor(doctor_stack)
    finally:
        key.chmod(0o600)
    assert code == 1 and "secrets.key is 0644, must be 0600" in checks["encryption keys"]["detail"]

    # nginx down: every app is, and port 80 is closed from outside too
    nginx.stop()
    try:
        code, checks = doctor(doctor_stack)
    finally:
        nginx.start()
    assert code == 1
    assert checks["nginx answers"]["status"] == "fail" and "start nginx" in checks["nginx answers"]["fix"]
    assert checks[f"port {http} from outside"]["status"] == "fail"
    assert status(doctor(doctor_stack)[1])["nginx answers"] == "ok"
