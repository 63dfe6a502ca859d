"""HTTPS by default, seen from another machine (issue 15).

A fresh `paas up` with no email and no HTTPS setting gets its certificate
from Pebble (Let's Encrypt's test CA); the client is in a network namespace
of the test's own, joined to this machine by a veth pair, so its address is
not loopback while every packet stays on this machine. From there: a token
sent over plain HTTP is refused and the refusal logged, the CLI refuses to
send one and its login upgrades to https://, webhooks still arrive over
plain HTTP, and unknown hostnames get no answer at all.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import NetworkNamespace, Nginx, Pebble, Stack, free_port

pytestmark = pytest.mark.integration

APP = f"sec{os.getpid() % 100000}"
CONTROL = f"paas.{Stack.domain}"

# run inside the namespace: plain-HTTP requests as any client would send them
PROBE = """
import json, sys, httpx
base, token = sys.argv[1], sys.argv[2]
out = {}
def status(name, method, path, **kw):
    r = httpx.request(method, base + path, timeout=10, follow_redirects=False, **kw)
    out[name] = [r.status_code, r.headers.get("location", "")]
status("api", "GET", "/api/v1/apps", headers={"Authorization": "Bearer " + token})
status("login", "POST", "/login", data={"username": "admin", "password": "guess"})
status("page", "GET", "/login")
status("healthz", "GET", "/healthz")
status("hook", "POST", "/hooks/github/" + sys.argv[3], content=b"{}",
       headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d1", "X-Hub-Signature-256": "sha256=00"})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def netns() -> Iterator[NetworkNamespace]:
    ns = NetworkNamespace()
    ns.start({CONTROL: ns.host_address, f"{APP}.{Stack.domain}": ns.host_address})
    yield ns
    ns.stop()


@pytest.fixture(scope="module")
def pebble(
    tmp_path_factory: pytest.TempPathFactory, nginx: Nginx, netns: NetworkNamespace
) -> Iterator[Pebble]:
    ca = Pebble(tmp_path_factory.mktemp("pebble"), http_port=nginx.port, address=netns.host_address)
    ca.start()
    yield ca
    ca.stop()


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory, nginx: Nginx, pebble: Pebble, netns: NetworkNamespace
) -> Iterator[Stack]:
    """paas up as install.sh sets it up, but for the CA: certificates on (the
    default), no email; nginx serves paas's sites on the veth address."""
    paas = Stack(
        tmp_path_factory.mktemp("paas-https"),
        nginx,
        PAAS_ACME="on",
        PAAS_ACME_DIRECTORY=pebble.directory,
        PAAS_ACME_CA_BUNDLE=str(pebble.ca_bundle),
        PAAS_DNS_RESOLVER=pebble.dns,
        PAAS_PUBLIC_IPS=netns.host_address,
        PAAS_LISTEN_ADDRESS=netns.host_address,
        PAAS_HTTPS_PORT=str(free_port()),
        PAAS_CERT_CHECK_SECONDS="1",
    )
    assert "PAAS_ACME_EMAIL" not in paas.env
    paas.start()
    yield paas
    paas.stop()
    paas.remove_everything()


@pytest.fixture(scope="module")
def issued(secured: Stack, pebble: Pebble, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wait for the control plane's certificate; Pebble's root, as a file."""
    deadline = time.monotonic() + 120
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        rows = json.loads(secured.paas("domains", "list", "--json").stdout)
        state = {d["hostname"]: d for d in rows}.get(CONTROL, {})
        log = secured.log_path.read_text(errors="replace")
        if state.get("cert_state") == "issued" and f"nginx serves the new certificate for {CONTROL}" in log:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no certificate for {CONTROL}: {state}\n{secured.log_path.read_text()[-3000:]}")
    root = tmp_path_factory.mktemp("trust") / "pebble-root.pem"
    root.write_text(pebble.root_pem(), encoding="utf-8")
    return root


def https_port(stack: Stack) -> int:
    return int(stack.env["PAAS_HTTPS_PORT"])


def https_get(stack: Stack, hostname: str, root: Path, path: str) -> http.client.HTTPResponse:
    """GET over TLS to nginx on the veth address, verified against Pebble's root."""
    context = ssl.create_default_context(cafile=str(root))
    raw = socket.create_connection((stack.address, https_port(stack)), timeout=10)
    tls = context.wrap_socket(raw, server_hostname=hostname)
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode())
    response = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
    response.begin()
    return response


def test_a_fresh_paas_up_without_an_email_gets_its_certificate(secured: Stack, issued: Path) -> None:
    answer = https_get(secured, CONTROL, issued, "/readyz")
    assert answer.status == 200
    assert answer.getheader("Strict-Transport-Security") == "max-age=31536000"
    # certbot registered the ACME account without any contact address
    accounts = list((secured.root / "data" / "letsencrypt" / "accounts").rglob("regr.json"))
    assert accounts and all("mailto" not in a.read_text() for a in accounts)


def test_the_webhook_url_shown_is_https(secured: Stack, issued: Path) -> None:
    created = json.loads(secured.paas("apps", "create", APP, "--repo", "/nonexistent/repo", "--json").stdout)
    wanted = f"https://{CONTROL}:{https_port(secured)}/hooks/github/{APP}"
    assert created["webhook_url"] == wanted
    assert json.loads(secured.paas("apps", "info", APP, "--json").stdout)["webhook_url"] == wanted


def test_credentials_over_plain_http_from_another_address_are_refused_and_logged(
    secured: Stack, issued: Path, netns: NetworkNamespace
) -> None:
    base = f"http://{CONTROL}:{secured.nginx.port}"
    probe = netns.run([sys.executable, "-c", PROBE, base, secured.token, APP])
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen["api"][0] == 403 and seen["login"][0] == 403
    https = f"https://{CONTROL}:{https_port(secured)}"
    assert seen["page"] == [301, f"{https}/login"]  # a GET without credentials is sent to HTTPS
    assert seen["healthz"][0] == 200
    assert seen["hook"][0] == 401  # webhooks still reach web over HTTP; this one's signature is wrong
    log = secured.log_path.read_text(errors="replace")
    assert f"refused plain-HTTP GET /api/v1/apps from {netns.address} with an API token: revoke it" in log
    assert f"refused plain-HTTP POST /login from {netns.address}" in log
    assert secured.token not in log
    assert secured.paas("apps", "list", "--json").returncode == 0  # loopback clients keep plain HTTP


def test_the_cli_sends_no_token_in_clear_and_its_login_upgrades_to_https(
    secured: Stack, issued: Path, netns: NetworkNamespace, tmp_path: Path
) -> None:
    plain = f"http://{CONTROL}:{secured.nginx.port}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "SSL_CERT_FILE": str(issued),  # this client trusts Pebble's root, as one trusts Let's Encrypt's
    }
    refusals = secured.log_path.read_text(errors="replace").count("refused plain-HTTP")

    def paas(*args: str, **extra: str) -> Any:
        return netns.run([sys.executable, "-m", "paas", *args], env={**env, **extra}, cwd=secured.root)

    refused = paas("apps", "list", PAAS_URL=plain, PAAS_TOKEN=secured.token)
    assert refused.returncode == 1
    assert (
        f"refusing to send your token in clear to {plain}" in refused.stderr
        and "--insecure" in refused.stderr
    )
    assert (
        secured.log_path.read_text(errors="replace").count("refused plain-HTTP") == refusals
    )  # nothing sent

    login = paas("login", plain, "--token", secured.token)
    assert login.returncode == 0, login.stdout + login.stderr
    https = f"https://{CONTROL}:{https_port(secured)}"
    assert f"{plain} answers over HTTPS: using {https}" in login.stdout
    saved = json.loads((tmp_path / "config" / "paas" / "config.json").read_text())
    assert saved["url"] == https and "insecure" not in saved
    listed = paas("apps", "list", "--json")
    assert listed.returncode == 0 and APP in listed.stdout
    assert secured.log_path.read_text(errors="replace").count("refused plain-HTTP") == refusals


def test_unknown_hostnames_get_no_answer(secured: Stack, issued: Path) -> None:
    def plain_answer(hostname: str) -> bytes:
        with socket.create_connection((secured.address, secured.nginx.port), timeout=10) as conn:
            conn.sendall(f"GET / HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode())
            return conn.recv(1024)

    assert plain_answer(CONTROL).startswith(b"HTTP/1.1 ")  # a known name is answered
    assert plain_answer("unknown.example") == b""  # 444: closed without a word
    assert plain_answer(secured.address) == b""  # nor for the bare address
    context = ssl.create_default_context(cafile=str(issued))
    for hostname in ("unknown.example", f"x.{CONTROL}"):
        with (
            socket.create_connection((secured.address, https_port(secured)), timeout=10) as raw,
            pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"),
        ):
            context.wrap_socket(raw, server_hostname=hostname)
    assert https_get(secured, CONTROL, issued, "/healthz").status == 200
