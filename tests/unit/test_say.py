"""What paas says of a deploy (agent/tell/say.py), by equality: the GitHub
calls of each report and the notification of each ending, from plain
values. How they are written and sent is tests/unit/test_tell.py."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agent.tell import say
from agent.tell.say import Ended, JobFacts, Links, Message, ReleaseFacts
from paas.models import JobState
from paas.payloads import (
    DeploymentOp,
    DeploymentStatusOp,
    GitHubReport,
    InactivatePreviousOp,
    JobRef,
    StatusOp,
)

COMMIT = "c" * 40
BASE = "b" * 40
LINKS = Links(
    activity="https://paas.example/apps/shop/activity",
    release="https://paas.example/apps/shop/releases/3",
    app="https://shop.paas.example",
)
PUSH = JobFacts(id=7, kind="deploy", trigger="push", ref="refs/heads/main", commit=COMMIT)
V3 = ReleaseFacts(
    version=3,
    job_id=7,
    commit=COMMIT,
    message="Fix the cart\n\nIt dropped items.",
    trigger="push",
    by="ann",
    step="switch",
    seconds=12.34,
)


def failed(step: str, reason: str) -> ReleaseFacts:
    return ReleaseFacts(
        version=3, job_id=7, commit=COMMIT, trigger="push", step=step, error=f"{step}: {reason}"
    )


# words ---------------------------------------------------------------------------------------


def test_what_a_job_does_and_which_release() -> None:
    assert say.what(PUSH) == "deploy (push)"
    assert say.what(JobFacts(id=1, kind="deploy")) == "deploy"
    assert say.what(JobFacts(id=1, kind="release", trigger="env")) == "release (env)"
    assert say.what(JobFacts(id=1, kind="release")) == "release"
    assert say.what(JobFacts(id=1, kind="rollback", trigger="rollback")) == "rollback"
    assert say.describe(V3) == "cccccccccccc 'Fix the cart' (push by ann)"
    assert say.describe(ReleaseFacts(version=1)) == "the branch head (deploy)"


def test_the_failed_step_is_the_rows_and_the_reason_is_the_rest_of_its_error() -> None:
    assert say.failure(failed("build", "exit 3"), Ended(JobState.failed)) == ("build", "exit 3")
    # a step that failed for a later one: the row names the later one
    row = ReleaseFacts(version=3, step="start", error="start: too many containers: 99")
    assert say.failure(row, Ended(JobState.failed, "start: too many containers: 99")) == (
        "start",
        "too many containers: 99",
    )
    # no release (the job failed before it made one): the job's error says both
    assert say.failure(None, Ended(JobState.failed, "fetch: no such branch")) == ("fetch", "no such branch")
    assert say.failure(None, Ended(JobState.failed, "it broke")) == ("", "it broke")
    # a row without a step (written before steps were recorded at the end)
    assert say.failure(ReleaseFacts(version=1, error="health: down"), Ended(JobState.failed)) == (
        "health",
        "down",
    )
    # a release without an error: the job's
    assert say.failure(ReleaseFacts(version=1, step="build"), Ended(JobState.failed, "lease lost")) == (
        "",
        "lease lost",
    )


# GitHub reports ------------------------------------------------------------------------------


def test_a_queued_deploy_gets_a_pending_status_a_deployment_and_its_first_status() -> None:
    assert say.queued_report(PUSH, LINKS, branch="main") == GitHubReport(
        ops=[
            StatusOp(sha=COMMIT, state="pending", description="queued", target_url=LINKS.activity),
            DeploymentOp(ref=COMMIT, description="paas: deploy (push)", payload=JobRef(paas_job=7)),
            DeploymentStatusOp(state="queued", description="queued", log_url=LINKS.activity),
        ]
    )


def test_a_queued_deploy_of_the_branch_head_is_a_deployment_of_the_branch() -> None:
    head = JobFacts(id=8, kind="deploy", trigger="manual")
    assert say.queued_report(head, LINKS, branch="main").ops == [
        DeploymentOp(ref="main", description="paas: deploy (manual)", payload=JobRef(paas_job=8)),
        DeploymentStatusOp(state="queued", description="queued", log_url=LINKS.activity),
    ]
    pushed = JobFacts(id=8, kind="deploy", ref="refs/heads/feature/x")
    assert say.queued_report(pushed, LINKS, branch="main").ops[0] == DeploymentOp(
        ref="feature/x", description="paas: deploy", payload=JobRef(paas_job=8)
    )


def test_a_queued_rollback_is_a_deployment_of_the_commit_it_brings_back_without_a_status() -> None:
    back = JobFacts(id=9, kind="rollback", trigger="rollback")
    assert say.queued_report(back, LINKS, branch="main", base_commit=BASE).ops == [
        DeploymentOp(ref=BASE, description="paas: rollback", payload=JobRef(paas_job=9)),
        DeploymentStatusOp(state="queued", description="queued", log_url=LINKS.activity),
    ]


def test_a_started_release_is_in_progress() -> None:
    assert say.started_report(PUSH, V3, LINKS) == GitHubReport(
        ops=[
            StatusOp(sha=COMMIT, state="pending", description="v3: deploying", target_url=LINKS.release),
            DeploymentStatusOp(state="in_progress", description="v3: deploy (push)", log_url=LINKS.release),
        ]
    )


def test_a_release_that_went_live_marks_the_one_before_inactive() -> None:
    assert say.ended_report(PUSH, Ended(JobState.done), V3, LINKS) == GitHubReport(
        ops=[
            StatusOp(sha=COMMIT, state="success", description="v3 is live", target_url=LINKS.release),
            DeploymentStatusOp(
                state="success", description="v3 is live", log_url=LINKS.release, environment_url=LINKS.app
            ),
            InactivatePreviousOp(),
        ],
        live=True,
    )


def test_a_job_that_had_nothing_to_release_makes_its_deployment_inactive() -> None:
    env = JobFacts(id=10, kind="release", trigger="env")
    already = ReleaseFacts(version=3, job_id=7, commit=COMMIT)  # the live release, not this job's
    note = "v3 already runs with this env"
    assert say.ended_report(env, Ended(JobState.done, note, note), already, LINKS) == GitHubReport(
        ops=[DeploymentStatusOp(state="inactive", description=note, log_url=LINKS.release)], live=True
    )
    assert say.ended_report(env, Ended(JobState.done), None, LINKS).ops == [
        DeploymentStatusOp(state="inactive", description="nothing to release", log_url=LINKS.activity)
    ]


def test_a_superseded_deploy_is_an_error_status_and_an_inactive_deployment() -> None:
    why = "not deployed: a newer push superseded it"
    assert say.ended_report(PUSH, Ended(JobState.superseded), None, LINKS) == GitHubReport(
        ops=[
            StatusOp(sha=COMMIT, state="error", description=why, target_url=LINKS.activity),
            DeploymentStatusOp(state="inactive", description=why, log_url=LINKS.activity),
        ]
    )


@pytest.mark.parametrize(
    ("release", "ended", "state", "text"),
    [
        (failed("build", "exit 3"), Ended(JobState.failed), "failure", "v3 failed at build: exit 3"),
        (failed("health", "no answer"), Ended(JobState.failed), "failure", "v3 failed at health: no answer"),
        (failed("switch", "nginx -t"), Ended(JobState.failed), "error", "v3 failed at switch: nginx -t"),
        (failed("build", "cancelled on request"), Ended(JobState.cancelled), "error", "v3 cancelled"),
        (None, Ended(JobState.failed, "fetch: gone"), "error", "not deployed failed at fetch: gone"),
        (None, Ended(JobState.failed, "lease expired"), "error", "not deployed failed: lease expired"),
    ],
)
def test_a_failure_of_the_app_is_a_failure_and_anything_else_an_error(
    release: ReleaseFacts | None, ended: Ended, state: Any, text: str
) -> None:
    url = LINKS.release if release is not None else LINKS.activity
    assert say.ended_report(PUSH, ended, release, LINKS).ops == [
        StatusOp(sha=COMMIT, state=state, description=text, target_url=url),
        DeploymentStatusOp(state=state, description=text, log_url=url),
    ]


def test_a_value_a_report_cannot_carry_raises_for_the_teller_to_write_it_failed() -> None:
    with pytest.raises(ValidationError, match="description"):
        say.ended_report(PUSH, Ended(JobState.failed), failed("build", "a\0b"), LINKS)


# notifications -------------------------------------------------------------------------------


def test_a_started_release_is_told_with_its_commit_and_log() -> None:
    assert say.started_message("shop", PUSH, V3, LINKS) == Message(
        event="deploy.started",
        title="shop: deploy (push) v3",
        body=f"cccccccccccc 'Fix the cart' (push by ann)\n{LINKS.release}",
        kind="info",
    )


def test_a_live_release_and_a_rollback_are_told_with_how_long_they_took() -> None:
    assert say.ended_message("shop", PUSH, Ended(JobState.done), V3, LINKS) == Message(
        event="deploy.succeeded",
        title="shop: v3 is live",
        body=f"cccccccccccc 'Fix the cart' (push by ann) in 12.3 s\n{LINKS.app}\n{LINKS.release}",
        kind="success",
    )
    back = JobFacts(id=7, kind="rollback", trigger="rollback")
    v4 = ReleaseFacts(version=4, job_id=7, commit=COMMIT, trigger="rollback", rollback_of=2)
    assert say.ended_message("shop", back, Ended(JobState.done), v4, LINKS) == Message(
        event="rollback",
        title="shop: rolled back to v2 (now v4)",
        body=f"cccccccccccc (rollback)\n{LINKS.app}\n{LINKS.release}",
        kind="success",
    )


def test_a_failure_is_told_with_its_step_its_reason_and_the_logs_last_lines() -> None:
    assert say.ended_message(
        "shop", PUSH, Ended(JobState.failed), failed("build", "exit 3"), LINKS, log_tail="step 4/9\nexit 3"
    ) == Message(
        event="deploy.failed",
        title="shop: v3 failed at build",
        body=f"exit 3\ncccccccccccc (push)\n{LINKS.release}\n\nstep 4/9\nexit 3",
        kind="failure",
    )
    cancelled = say.ended_message(
        "shop", PUSH, Ended(JobState.cancelled), failed("release", "cancelled on request"), LINKS
    )
    assert cancelled == Message(
        event="deploy.failed",
        title="shop: v3 was cancelled at release",
        body=f"cancelled on request\ncccccccccccc (push)\n{LINKS.release}",
        kind="failure",
    )


def test_no_notification_without_a_release_of_the_job_or_for_a_superseded_one() -> None:
    assert say.ended_message("shop", PUSH, Ended(JobState.failed, "fetch: gone"), None, LINKS) is None
    theirs = ReleaseFacts(version=3, job_id=6)
    assert say.ended_message("shop", PUSH, Ended(JobState.done), theirs, LINKS) is None
    assert say.ended_message("shop", PUSH, Ended(JobState.superseded), V3, LINKS) is None


def test_the_test_notification() -> None:
    assert say.notify_test_message("paas.example") == Message(
        event="",
        title="paas: a test notification",
        body="This is a test from paas on paas.example: notifications reach you here.",
        kind="info",
    )
