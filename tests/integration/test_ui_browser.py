"""The web UI in a real browser: Playwright drives Debian's Chromium
(headless) against `paas up` behind nginx, with the real Docker engine.

One walk through what a user does: sign in, create an app, see the webhook
page turn green at GitHub's ping, deploy from the Activity tab and watch the
build log stream in, open the live app, add an encrypted env var and see it
masked, read runtime logs with pause and resume, and roll back from the
Activity tab to see the old version served. Screenshots of each main page go
to docs/screenshots/ (the README shows them).

Chromium resolves *.apps.test to 127.0.0.1 (--host-resolver-rules): every
request stays on loopback.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from testkit.harness import GitRemote, Stack
from testkit.sample_app import REQUIREMENTS
from tests.integration.test_rollback import MAIN

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
APP = f"ui{os.getpid() % 100000}"
PASSWORD = "a long browser password"
WAIT = 300_000  # ms: a cold build installs FastAPI


def dockerfile() -> str:
    # a step that is never cached and takes a few seconds, so the log is seen streaming
    return f"""\
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
RUN for i in 1 2 3 4 5 6; do echo "slow step $i of 6 ({uuid.uuid4().hex[:8]})"; sleep 1; done
COPY . .
CMD ["sh", "-c", "exec uvicorn main:app --host 0.0.0.0 --port $PORT"]
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no {CHROMIUM}; run scripts/test.sh, which installs Debian's chromium")
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", f"--host-resolver-rules=MAP *.{Stack.domain} 127.0.0.1"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_user_deploys_configures_and_rolls_back_in_the_browser(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    stack.paas("admin", "create-user", "admin", token=False, stdin=PASSWORD + "\n")
    control = f"http://paas.{Stack.domain}:{stack.nginx.port}"
    live_url = f"http://{APP}.{Stack.domain}:{stack.nginx.port}/"
    (tmp_path / "git").mkdir()
    repo = GitRemote(tmp_path / "git")
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

    # sign in (every page sends a visitor without a session here)
    page.goto(control + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    shot(page, "login")
    page.fill("#username", "admin")
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    expect(page.locator("h1")).to_contain_text("Apps")

    # create the app; the webhook page turns green at GitHub's first delivery
    page.click("text=+ Create app")
    page.fill("#name", APP)
    page.fill("#repo_url", str(repo.bare))
    page.click("button:has-text('Create app')")
    expect(page.locator("h1")).to_contain_text(f"Connect {APP} to GitHub")
    secret = page.inner_text("#webhook-secret").strip()
    assert page.inner_text("#webhook-url").endswith(f"/hooks/github/{APP}")
    shot(page, "webhook")
    ping = stack.webhook(APP, secret, {"zen": "Keep it logically awesome.", "hook_id": 1}, event="ping")
    assert ping.status_code == 200, ping.text
    expect(page.locator("#hook-status")).to_contain_text("GitHub reached paas (ping event)", timeout=15_000)

    # deploy from the Activity tab and watch the build log stream in
    repo.commit(
        {"Dockerfile": dockerfile(), "requirements.txt": REQUIREMENTS, "main.py": MAIN.format(code="c1")},
        "first version",
    )
    page.goto(f"{control}/apps/{APP}/activity")
    page.click("button:has-text('Deploy main')")
    expect(page.locator(".flash")).to_contain_text("Deploying the head of main")
    page.locator("#activity a", has_text="v1").click(timeout=60_000)  # htmx refreshes the table
    log = page.locator("pre#log")
    if page.locator("pre[data-stream]").count():  # still running: the log streams in
        expect(log).to_contain_text("slow step", timeout=WAIT)
        streamed = log.inner_text()
        assert "succeeded" not in page.locator("h2").inner_text()
        shot(page, "release-streaming")
        assert "==>" in streamed
    else:
        pytest.fail("v1 finished before its page opened: the slow build step should prevent that")
    expect(page.locator("h2 .badge")).to_have_text("succeeded", timeout=WAIT)  # reloaded at the end
    expect(log).to_contain_text("slow step 6 of 6")
    shot(page, "release")

    # the overview, then the live app from its link
    page.click("nav.tabs >> text=Overview")
    expect(page.locator("#app-status")).to_have_text("live")
    expect(page.locator("table").first).to_contain_text("web")
    shot(page, "overview")
    link = page.locator("h1 small a")
    assert (link.get_attribute("href") or "").rstrip("/") + "/" == live_url
    link.click()
    expect(page.locator("body")).to_contain_text('"version":"c1/"')

    # an encrypted env var: masked after save, and the new release serves it
    page.goto(f"{control}/apps/{APP}/settings")
    page.fill("#add-key", "GREETING")
    page.fill("#add-value", "top-secret-1")
    page.check("#add-encrypt")
    page.click("#env-add button:has-text('Save')")
    expect(page.locator(".flash")).to_contain_text("A new release with these values is rolling out")
    expect(page.locator("#env-GREETING")).to_contain_text("encrypted")
    assert "top-secret-1" not in page.content()
    shot(page, "settings")
    assert stack.wait_release(APP, 2)["status"] == "succeeded", stack.release_log(APP, 2)
    assert stack.get_app(APP).json()["version"] == "c1/top-secret-1"

    # a second version, deployed from the browser
    repo.commit({"main.py": MAIN.format(code="c2")}, "second version")
    page.goto(f"{control}/apps/{APP}/activity")
    page.click("button:has-text('Redeploy main')")
    assert stack.wait_release(APP, 3)["status"] == "succeeded", stack.release_log(APP, 3)
    assert stack.get_app(APP).json()["version"] == "c2/top-secret-1"

    # runtime logs: lines arrive live; paused, they wait; resumed, they show
    page.goto(f"{control}/apps/{APP}/logs")
    runtime = page.locator("pre#runtime-log")
    stack.get_app(APP, "/?mark=before-pause")
    expect(runtime).to_contain_text("mark=before-pause", timeout=30_000)
    page.click("#pause")
    expect(page.locator("#log-state")).to_have_text("paused")
    stack.get_app(APP, "/?mark=while-paused")
    page.wait_for_timeout(2000)
    assert "mark=while-paused" not in runtime.inner_text()
    shot(page, "logs")
    page.click("#pause")
    expect(runtime).to_contain_text("mark=while-paused")

    # roll back from Activity, with the confirmation, and see v2's code served again
    page.goto(f"{control}/apps/{APP}/activity")
    shot(page, "activity")
    page.click("text=Roll back to v2")
    expect(page.locator("h2")).to_contain_text(f"Roll back {APP} to v2?")
    shot(page, "rollback")
    page.click("button:has-text('Roll back to v2')")
    expect(page.locator(".flash")).to_contain_text("Rolling back to v2")
    row = stack.wait_release(APP, 4)
    assert row["status"] == "succeeded" and row["rollback_of"] == 2, stack.release_log(APP, 4)
    assert stack.get_app(APP).json()["version"] == "c1/top-secret-1"
    page.reload()
    expect(page.locator("#app-status")).to_have_text("pinned")

    # the apps list, with the app live
    page.goto(control + "/")
    expect(page.locator("table")).to_contain_text(APP)
    shot(page, "apps")

    # on a phone: the pages fit the screen's width (wide tables scroll inside their card)
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/", f"/apps/{APP}", f"/apps/{APP}/activity", f"/apps/{APP}/settings"):
        page.goto(control + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
    page.goto(f"{control}/apps/{APP}")
    shot(page, "overview-phone")
    assert not [p for p in problems if "Content Security Policy" in p], problems
    assert json.dumps(problems).count("Refused") == 0, problems
