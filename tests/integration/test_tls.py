"""Domains and HTTPS for real: Pebble (Let's Encrypt's test CA) with
pebble-challtestsrv as DNS, certbot in webroot mode, our nginx on loopback
ports. Certificates are issued, served (verified against Pebble's root),
renewed and checked; a domain whose DNS points elsewhere is refused by the
preflight with no request to the CA. Nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from testkit.harness import (
    LOOPBACK,
    GitRemote,
    JsonReceiver,
    Nginx,
    Pebble,
    Stack,
    free_port,
    wait_until,
)
from testkit.sample_app import DOCKERFILE, REQUIREMENTS

pytestmark = pytest.mark.integration

APP = f"tls{os.getpid() % 100000}"
CUSTOM = f"www.{APP}.example"
ELSEWHERE = f"elsewhere.{APP}.example"

MAIN = """\
from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/")
def root():
    return {"version": "t1"}


@app.get("/whoami")
def whoami(request: Request):
    forwarded = {k: v for k, v in request.headers.items() if k.startswith("x-forwarded-") or k == "forwarded"}
    return {"scheme": request.url.scheme, "client": request.client.host, "headers": forwarded}


@app.get("/items/")
def items():
    return []


@app.get("/healthz")
def healthz():
    return {"ok": True}
"""


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory, nginx: Nginx, pebble: Pebble) -> Iterator[Stack]:
    paas = Stack(
        tmp_path_factory.mktemp("paas-tls"),
        nginx,
        PAAS_ACME="on",
        PAAS_ACME_EMAIL="ops@paas.test",
        PAAS_ACME_DIRECTORY=pebble.directory,
        PAAS_ACME_CA_BUNDLE=str(pebble.ca_bundle),
        PAAS_DNS_RESOLVER=pebble.dns,
        PAAS_PUBLIC_IPS=LOOPBACK,
        PAAS_HTTPS_PORT=str(free_port()),
        PAAS_CERT_CHECK_SECONDS="1",
    )
    paas.start()
    yield paas
    paas.stop()
    paas.remove_everything()


@pytest.fixture(scope="module")
def inbox(tls_stack: Stack) -> Iterator[JsonReceiver]:
    """The operator's notifications of certificates, from before the first is asked for."""
    receiver = JsonReceiver()
    tls_stack.paas("notify", "add", f"json://{LOOPBACK}:{receiver.port}/ops", "--events", "cert.issued")
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def live_app(
    tls_stack: Stack, tmp_path_factory: pytest.TempPathFactory, inbox: JsonReceiver
) -> dict[str, Any]:
    repo = GitRemote(tmp_path_factory.mktemp("git-tls"))
    created = json.loads(
        tls_stack.paas(
            "apps", "create", APP, "--repo", str(repo.bare), "--health-path", "/healthz", "--json"
        ).stdout
    )
    payload = repo.commit({"Dockerfile": DOCKERFILE, "requirements.txt": REQUIREMENTS, "main.py": MAIN}, "v1")
    assert tls_stack.webhook(APP, created["webhook_secret"], payload).status_code == 202
    assert tls_stack.wait_release(APP, 1)["status"] == "succeeded"
    return created


def domains(stack: Stack) -> dict[str, dict[str, Any]]:
    return {d["hostname"]: d for d in json.loads(stack.paas("domains", "list", APP, "--json").stdout)}


def wait_domain(stack: Stack, hostname: str, state: str, *, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = domains(stack).get(hostname, {})
        if seen.get("cert_state") == state:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{hostname} never became {state}: {seen}\n{stack.log_path.read_text()[-3000:]}")


def wait_log(stack: Stack, text: str, *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in stack.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"never logged: {text}"
        time.sleep(0.2)


def https_get(port: int, hostname: str, root_pem: str, path: str = "/") -> tuple[int, bytes, bytes]:
    """GET over TLS to our nginx with SNI ``hostname``, verified against Pebble's
    root; returns status, body and the served certificate (DER)."""
    context = ssl.create_default_context(cadata=root_pem)
    with (
        socket.create_connection((LOOPBACK, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True) or b""
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
        response.begin()
        return response.status, response.read(), der


def https_request(
    port: int, hostname: str, root_pem: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """GET over verified TLS with extra ``headers``: status, response headers, body."""
    context = ssl.create_default_context(cadata=root_pem)
    with (
        socket.create_connection((LOOPBACK, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\n{extra}Connection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def http_get(stack: Stack, hostname: str, path: str = "/some/path?x=1") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(LOOPBACK, stack.nginx.port, timeout=10)
    conn.request("GET", path, headers={"Host": hostname})
    return conn.getresponse()


def requests_for(stack: Stack, hostname: str) -> int:
    return stack.log_path.read_text(errors="replace").count(f"a certificate for {hostname} from")


def test_default_and_custom_domains_get_certificates_and_http_redirects(
    tls_stack: Stack, pebble: Pebble, live_app: dict[str, Any], inbox: JsonReceiver
) -> None:
    default = f"{APP}.{tls_stack.domain}"
    issued = wait_domain(tls_stack, default, "issued")
    assert issued["https"] and issued["cert_expires_at"]
    out = tls_stack.paas("domains", "add", APP, CUSTOM).stdout
    assert f"will be served at {CUSTOM}" in out
    wait_domain(tls_stack, CUSTOM, "issued")
    https_port = int(tls_stack.env["PAAS_HTTPS_PORT"])
    root = pebble.root_pem()
    for hostname in (default, CUSTOM):
        # the agent switches HTTPS on and checks what nginx serves after recording the certificate
        wait_log(tls_stack, f"nginx serves the new certificate for {hostname}")
        status, body, _der = https_get(https_port, hostname, root)
        assert status == 200 and json.loads(body) == {"version": "t1"}
        redirect = http_get(tls_stack, hostname)
        deadline = time.monotonic() + 5  # an old nginx worker may still take a connection or two
        while redirect.status != 301 and time.monotonic() < deadline:
            time.sleep(0.1)
            redirect = http_get(tls_stack, hostname)
        assert redirect.status == 301
        assert redirect.getheader("Location") == f"https://{hostname}:{https_port}/some/path?x=1"

    # the control plane too: its API over HTTPS, webhooks still accepted over HTTP
    control = f"paas.{tls_stack.domain}"
    wait_log(tls_stack, f"nginx serves the new certificate for {control}")
    status, body, _der = https_get(https_port, control, root, "/readyz")
    assert status == 200
    # plain HTTP reaches web, which lets loopback clients through (test_https_default.py: others)
    assert http_get(tls_stack, control, "/api/v1/apps").status == 401
    unsigned = tls_stack.webhook(APP, "not-the-secret", {"zen": "x"})
    assert unsigned.status_code == 401  # reached web over HTTP (and was refused: bad signature)
    every = json.loads(tls_stack.paas("domains", "list", "--json").stdout)
    assert {d["hostname"]: d["cert_state"] for d in every}[control] == "issued"
    # each certificate was a notification, with its expiry
    for hostname in (default, CUSTOM):
        title = f"{APP}: a certificate for {hostname} was issued"
        post = wait_until(lambda title=title: [p for p in inbox.posts if p["title"] == title], title)[0]
        assert post["message"].startswith("valid until 20") and post["type"] == "success"


def test_the_app_sees_the_request_as_the_client_made_it_over_https(
    tls_stack: Stack, pebble: Pebble, live_app: dict[str, Any]
) -> None:
    """uvicorn in the container trusts X-Forwarded-* from nginx's address only
    (FORWARDED_ALLOW_IPS, set by paas), and nginx sets them, never appends."""
    default = f"{APP}.{tls_stack.domain}"
    wait_domain(tls_stack, default, "issued")
    wait_log(tls_stack, f"nginx serves the new certificate for {default}")
    https_port, root = int(tls_stack.env["PAAS_HTTPS_PORT"]), pebble.root_pem()
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9", "Forwarded": "for=203.0.113.9"}
    status, _headers, body = https_request(https_port, default, root, "/whoami", forged)
    assert status == 200, body
    seen = json.loads(body)
    assert seen["scheme"] == "https" and seen["client"] == LOOPBACK, seen  # not http, not the Docker gateway
    assert seen["headers"] == {
        "x-forwarded-for": LOOPBACK,
        "x-forwarded-proto": "https",
        "x-forwarded-host": default,
        "x-forwarded-port": str(https_port),
    }, seen
    # the framework's own redirects point to https://
    status, headers, _body = https_request(https_port, default, root, "/items", {})
    assert status == 307 and headers["location"].startswith(f"https://{default}"), (status, headers)
    # nothing but nginx is trusted: another container on the same bridge, forging them, is not
    engine = docker.from_env()
    try:
        served = engine.containers.get(f"paas-{APP}-web-v1-1")
        env = dict(e.split("=", 1) for e in served.attrs["Config"]["Env"])
        address = served.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        url = f"http://{address}:{env['PORT']}/whoami"
        forging = "{'X-Forwarded-For': '203.0.113.9', 'X-Forwarded-Proto': 'https'}"
        fetch = (
            f"import urllib.request as u; r = u.Request({url!r}, headers={forging}); "
            "print(u.urlopen(r, timeout=10).read().decode())"
        )
        out = engine.containers.run(f"paas/{APP}:v1", ["python", "-c", fetch], remove=True, network="bridge")
    finally:
        engine.close()
    neighbour = json.loads(out)
    assert neighbour["scheme"] == "http" and neighbour["client"] not in ("203.0.113.9", LOOPBACK), neighbour
    assert env["FORWARDED_ALLOW_IPS"] != "*", env
    print(
        f"\nover HTTPS the app saw scheme={seen['scheme']} client={seen['client']} (forged 203.0.113.9 "
        f"dropped); FORWARDED_ALLOW_IPS={env['FORWARDED_ALLOW_IPS']}; a neighbour container forging the "
        f"headers was seen as {neighbour['client']} over {neighbour['scheme']}"
    )


def test_a_domain_whose_dns_points_elsewhere_is_refused_without_asking_the_ca(
    tls_stack: Stack, pebble: Pebble, live_app: dict[str, Any]
) -> None:
    pebble.point(ELSEWHERE, "127.0.0.2")
    tls_stack.paas("domains", "add", APP, ELSEWHERE)
    refused = wait_domain(tls_stack, ELSEWHERE, "dns_mismatch")
    assert "DNS points elsewhere (127.0.0.2), not to this server (127.0.0.1)" in refused["cert_error"]
    time.sleep(3)  # several more checks
    assert requests_for(tls_stack, ELSEWHERE) == 0 and domains(tls_stack)[ELSEWHERE]["https"] is False
    # the app is still served over plain HTTP at that name meanwhile, and the others are untouched
    assert http_get(tls_stack, ELSEWHERE, "/").status == 200
    status, _body, _der = https_get(int(tls_stack.env["PAAS_HTTPS_PORT"]), CUSTOM, pebble.root_pem())
    assert status == 200
    listed = tls_stack.paas("domains", "list", APP).stdout  # a table, folded to the terminal's width
    assert "elsewhere." in listed and "dns_" in listed


def test_renewal_serves_the_new_certificate_and_restarts_request_nothing(
    tls_stack: Stack, pebble: Pebble, live_app: dict[str, Any]
) -> None:
    https_port = int(tls_stack.env["PAAS_HTTPS_PORT"])
    root = pebble.root_pem()
    before = hashlib.sha256(https_get(https_port, CUSTOM, root)[2]).hexdigest()
    requested = requests_for(tls_stack, CUSTOM)
    every_request = tls_stack.log_path.read_text().count("requesting a certificate for ")

    # restarts with nothing due: no request at all, for any hostname
    for _ in range(RESTARTS):
        tls_stack.stop()
        tls_stack.start()
    time.sleep(2)  # the certificate check runs at start, then every second
    assert tls_stack.log_path.read_text().count("requesting a certificate for ") == every_request

    # a renewal window longer than the certificate's life forces a renewal at the next start
    tls_stack.stop()
    tls_stack.env["PAAS_CERT_RENEW_DAYS"] = "3650"
    tls_stack.env["PAAS_CERT_CHECK_SECONDS"] = "3600"  # one check, at start
    tls_stack.start()
    deadline = time.monotonic() + 120
    after = before
    while after == before and time.monotonic() < deadline:
        time.sleep(0.5)
        after = hashlib.sha256(https_get(https_port, CUSTOM, root)[2]).hexdigest()
    assert after != before, "the renewed certificate is not served"
    assert requests_for(tls_stack, CUSTOM) == requested + 1
    assert f"renewing a certificate for {CUSTOM}" in tls_stack.log_path.read_text()
    assert "nginx serves the new certificate for " + CUSTOM in tls_stack.log_path.read_text()
    _report([f"{RESTARTS} restarts of paas up with nothing due: 0 certificate requests"])


RESTARTS = int(os.environ.get("PAAS_TEST_TLS_RESTARTS", "50"))


def _report(lines: list[str]) -> None:
    path = Path("test-reports") / "tls.txt"
    path.parent.mkdir(exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
