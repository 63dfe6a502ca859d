"""The notification sender runs Apprise on URLs a taken-over web may have
chosen, and the agent and ``paas up`` start Pythons as root: the services
and options web accepts and the sender accepts again, how the sender is
started (unprivileged, in ``/``, ``-I``, a small environment), how many test
sends run at once, and that a module planted in the working directory is
imported neither by the sender nor by the supervisor ``paas up`` execs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from agent.tell import notify_send, sender
from agent.tell.teller import Teller
from paas.crypto import Keyring
from paas.notify_rules import check_notify_url
from paas.settings import Settings
from testkit.harness import JsonReceiver, traversable_dir

ROOT = Path(__file__).resolve().parents[2]
SHADOW = "discord://1234567890/abcdefTOKEN?template=/etc/shadow"
AS_ROOT = os.geteuid() == 0


def _teller(settings: Settings, engine: Engine, **kwargs: Any) -> Teller:
    return Teller(settings, engine, Keyring(settings.keys_dir, private=True), **kwargs)


# what is accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (SHADOW, "template="),
        ("discord://1234567890/abcdefTOKEN?TE%6DPLATE=/etc/shadow", "template="),  # as Apprise decodes it
        ("slack://T000/B000/XXXX?x=1;template=/root/t.json", "template="),  # Apprise splits at ; too
        ("tgram://123456:ABCDEF/42?%20template%20=/etc/passwd", "template="),
        ("workflows://host:443/wf/sig?template=/etc/shadow", "template="),
        ("mailtos://u:p@smtp.example.com?pgppub=/root/.gnupg/k.asc", "pgppub="),
        ("mailtos://u:p@smtp.example.com?pgp=yes&pgpprv=/etc/ssh/ssh_host_rsa_key", "pgpprv="),
        ("ntfys://ntfy.sh/topic?attach=file:///etc/shadow", "attach="),
        ("json://127.0.0.1/x?keyfile=/etc/paas/keys/secrets.key", "keyfile="),
        ("json://127.0.0.1/x?subfile=/etc/shadow", "subfile="),
        ("vapid://user@example.com/endpoint?keyfile=/etc/shadow", "vapid://"),
        ("fcm://project@apikey/device?keyfile=/etc/shadow", "fcm://"),
        ("syslog://", "Apprise URL"),  # no host: not even a URL
        ("syslog://localhost", "syslog://"),
        ("dbus://localhost", "dbus://"),
        ("https://hooks.slack.com/services/T000/B000/XXXX", "https://"),
        ("file:///etc/shadow", "file://"),
    ],
)
def test_only_known_services_and_no_option_that_reads_a_file_are_accepted(
    client: TestClient, auth: dict[str, str], url: str, says: str
) -> None:
    refused = client.post("/api/v1/notifications", json={"url": url}, headers=auth)
    assert refused.status_code == 422 and says in refused.text, refused.text
    with pytest.raises(ValueError, match="not allowed|not a service|Apprise URL"):
        check_notify_url(url)


def test_the_common_services_with_their_usual_options_are_accepted(
    client: TestClient, auth: dict[str, str]
) -> None:
    for url in (
        "slack://T000/B000/XXXXcanaryXXXX/#deploys",
        "discord://1234567890/abcdefTOKEN?avatar=no",
        "tgram://123456:ABCDEF/42",
        "mailtos://paas:pw@smtp.example.com:587?from=paas@example.com&to=you@example.com&mode=starttls",
        "ntfys://ntfy.sh/my-deploys-topic?priority=high",
        "gotifys://gotify.example.com/token",
        "jsons://hooks.example.com/paas?+X-Token=abc&:extra=1",
        "forms://hooks.example.com/paas",
        "workflows://host:443/wf/sig",
        "pover://user@token",
        "matrixs://user:pw@matrix.example.com/#room",
        "mmosts://mattermost.example.com/hookid",
    ):
        r = client.post("/api/v1/notifications", json={"url": url}, headers=auth)
        assert r.status_code == 201, (url, r.text)


def test_the_sender_refuses_them_again_and_never_opens_the_file(tmp_path: Path) -> None:
    """A row web wrote itself was never checked by web: the sender checks it,
    before Apprise could read the file and say whether it holds JSON."""
    secret = tmp_path / "root-only.json"
    secret.write_text("not json: root's secret\n")
    for url in (
        f"discord://1234567890/abcdefTOKEN?template={secret}",
        f"mailtos://u:p@127.0.0.1:9?pgp=yes&pgppub={secret}",
        f"syslog://localhost?template={secret}",
    ):
        said = notify_send.send({"url": url, "title": "t", "body": "b"})
        assert said["ok"] is False and said["error"].startswith("not sent:"), said
        assert "JSON" not in said["error"] and "secret" not in said["error"]


def test_the_agent_checks_the_opened_url_before_it_starts_a_sender(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_process(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a sender was started for a URL the agent refuses")

    monkeypatch.setattr("agent.commands.subprocess.run", no_process)
    said = _teller(settings, engine).sender.send(SHADOW, "t", "b", "info")
    assert said.startswith("not sent:") and "template=" in said


# how the sender is started -------------------------------------------------------------------------


def test_the_sender_starts_isolated_in_the_root_directory_as_an_unprivileged_user(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.update(kwargs, argv=argv)
        return subprocess.CompletedProcess(argv, 0, '{"ok": true, "error": ""}\n', "")

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("PYTHONPATH", "/var/lib/paas/db")  # -I ignores it, and it is not passed on
    monkeypatch.setattr("agent.commands.subprocess.run", run)
    url = "json://127.0.0.1:9/hooks/canarySECRET"
    assert _teller(settings, engine).sender.send(url, "t", "b", "info") == ""
    assert seen["argv"] == [sys.executable, "-I", "-m", "agent.tell.notify_send"]
    assert seen["cwd"] == "/"
    kept = {"PATH", "LANG", "HOME", *sender.PASSED_ENV}  # and proxies, CA bundles, TZ
    assert "HTTPS_PROXY" in seen["env"] and set(seen["env"]) <= kept
    assert url in seen["input"] and not any("canarySECRET" in str(v) for v in seen["env"].values())
    nobody = pwd.getpwnam("nobody")
    if AS_ROOT:  # root switches; any other user (development) cannot, and runs it as itself
        assert (seen["user"], seen["group"], seen["extra_groups"]) == (nobody.pw_uid, nobody.pw_gid, [])
    else:
        assert (seen["user"], seen["group"], seen["extra_groups"]) == (None, None, None)


def test_the_plan_names_the_notify_user_and_refuses_root_or_web_s(settings: Settings) -> None:
    from agent.tell.sender import Launch, SenderError, launch

    nobody = pwd.getpwnam("nobody")
    plan = launch(settings, python="/venv/bin/python", environ={"TZ": "UTC", "SECRET": "x"}, root=True)
    assert plan == Launch(
        argv=("/venv/bin/python", "-I", "-m", "agent.tell.notify_send"),
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent", "TZ": "UTC"},
        cwd="/",
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=(),
        # the default, nobody, is also web's default: said once when the agent starts
        warning=plan.warning,
    )
    assert "PAAS_NOTIFY_USER" in plan.warning
    assert launch(settings, python="p", environ={}, root=False).user is None
    for user, says in (
        ("root", "is root"),
        ("no-such-user-here", "no user named"),
        ("nobody", "shares its user or group with web"),  # given on purpose: refused, not warned
    ):
        with pytest.raises(SenderError, match=f"PAAS_NOTIFY_USER: .*{says}"):
            launch(settings.model_copy(update={"notify_user": user}), python="p", environ={}, root=True)
    apart = settings.model_copy(update={"web_user": "daemon"})
    assert launch(apart, python="p", environ={}, root=True).warning == ""


# planted modules -----------------------------------------------------------------------------------


@pytest.fixture
def planted() -> Iterator[tuple[Path, Path]]:
    """A directory anyone can write (as web's user can write where `paas up`
    may be started), holding modules that would leave a marker behind in a
    directory any user can write too: (the directory, the marker)."""
    where, marks = traversable_dir("paas-planted-"), traversable_dir("paas-marks-")
    where.chmod(0o777)
    marks.chmod(0o777)
    marker = marks / "imported"
    plant = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    (where / "apprise.py").write_text(plant)
    for package in ("paas", "agent"):
        (where / package).mkdir()
        (where / package / "__init__.py").write_text(plant)
    yield where, marker
    shutil.rmtree(where, ignore_errors=True)
    shutil.rmtree(marks, ignore_errors=True)


def test_a_module_planted_in_the_working_directory_is_not_imported_by_the_sender(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch, planted: tuple[Path, Path]
) -> None:
    where, marker = planted
    receiver = JsonReceiver()
    try:
        monkeypatch.chdir(where)
        said = _teller(settings, engine).sender.send(
            f"json://127.0.0.1:{receiver.port}/hooks/x", "planted", "body", "info"
        )
        assert not marker.exists(), f"a planted module was imported: {marker.read_text()}"
        assert said == "" and receiver.titles() == ["planted"]
    finally:
        receiver.stop()


SUPERVISE = """
import os, sys, time
from paas import supervisor

def serve():
    time.sleep(60)

children = {"web": supervisor.start_child("t-web", serve)}
print(children["web"], flush=True)
os.chdir(sys.argv[1])  # where `paas up` was started: a directory web's user can write
supervisor.exec_supervisor(children, grace=1)
"""


def test_a_paas_planted_where_paas_up_was_started_is_not_what_the_supervisor_imports(
    planted: tuple[Path, Path],
) -> None:
    where, marker = planted
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SUPERVISE), str(where)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    try:
        deadline = time.monotonic() + 10
        while b"paas.supervisor" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the parent never became the supervisor"
            time.sleep(0.01)
        time.sleep(0.5)  # its imports are done, or it has died of the planted ones
        assert proc.poll() is None, proc.communicate()[1]
        assert not marker.exists(), f"a planted module was imported: {marker.read_text()}"
        assert Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[1] == b"-I"
        assert os.readlink(f"/proc/{proc.pid}/cwd") == "/"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
        if proc.returncode is None:
            proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    assert proc.returncode == 0


# how many at once ----------------------------------------------------------------------------------


def test_two_test_sends_run_at_once_and_a_third_is_refused_at_once(
    settings: Settings, engine: Engine, client: TestClient, auth: dict[str, str]
) -> None:
    target = client.post("/api/v1/notifications", json={"url": "ntfys://ntfy.sh/topic"}, headers=auth)
    assert target.status_code == 201, target.text
    release, entered = threading.Event(), threading.Semaphore(0)
    calls: list[str] = []

    def slow(url: str, _title: str, _body: str, _kind: str) -> str:
        calls.append(url)
        entered.release()
        release.wait(10)
        return ""

    teller = _teller(settings, engine, send_notification=slow)
    answers: list[str] = []
    first = [
        threading.Thread(target=lambda: answers.append(teller.test_target(target.json()["id"])))
        for _ in range(2)
    ]
    for thread in first:
        thread.start()
    for _ in first:
        assert entered.acquire(timeout=10)
    third: list[str] = []
    late = threading.Thread(target=lambda: third.append(teller.test_target(target.json()["id"])))
    late.start()
    late.join(timeout=2)
    refused_at_once = not late.is_alive()
    release.set()
    for thread in [*first, late]:
        thread.join(timeout=10)
    assert refused_at_once and len(calls) == 2, calls
    assert third == ["2 test notifications are being sent already: try again when they are done"]
    assert answers == ["", ""]
    # and once they are done, the next one goes
    assert teller.test_target(target.json()["id"]) == "" and len(calls) == 3
