from __future__ import annotations

import hashlib
import hmac

import pytest

from paas.github import decide_push, sign, verify_signature
from testkit.harness import push_payload

SHA = "a" * 40


def test_sign_matches_githubs_documented_example() -> None:
    # The example from GitHub's "Validating webhook deliveries" documentation.
    assert sign("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_verify_accepts_the_right_signature_only() -> None:
    body = b'{"ref": "refs/heads/main"}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert verify_signature("s3cret", body, good)
    assert not verify_signature("other", body, good)
    assert not verify_signature("s3cret", body + b" ", good)
    assert not verify_signature("s3cret", body, None)
    assert not verify_signature("s3cret", body, "")
    assert not verify_signature("s3cret", body, good.replace("sha256=", "sha1="))
    assert not verify_signature("s3cret", body, "sha256=" + "0" * 64)


def test_push_to_the_tracked_branch_deploys_its_commit() -> None:
    payload = push_payload(
        repo_url="/r", ref="refs/heads/main", before="0" * 40, after=SHA, message="Fix the thing\n\nlong text"
    )
    decision = decide_push(payload, branch="main")
    assert decision.deploy
    assert (decision.commit, decision.ref, decision.pusher) == (SHA, "refs/heads/main", "ada")
    assert decision.message.startswith("Fix the thing")


@pytest.mark.parametrize(
    ("ref", "after", "deleted", "reason"),
    [
        ("refs/heads/dev", SHA, False, "push to branch 'dev', app deploys 'main'"),
        ("refs/tags/v1.0", SHA, False, "refs/tags/v1.0 is a tag"),
        ("refs/heads/main", "0" * 40, True, "branch 'main' was deleted"),
        ("refs/pull/1/head", SHA, False, "is not a branch"),
    ],
)
def test_other_pushes_are_ignored_with_a_reason(ref: str, after: str, deleted: bool, reason: str) -> None:
    payload = push_payload(repo_url="/r", ref=ref, before=SHA, after=after, message="m")
    payload["deleted"] = deleted
    decision = decide_push(payload, branch="main")
    assert not decision.deploy
    assert reason in decision.reason


@pytest.mark.parametrize(
    "payload",
    [
        [],
        "push",
        {},
        {"ref": "refs/heads/main"},
        {"ref": 3, "after": SHA},
        {"ref": "refs/heads/main", "after": "not-a-sha"},
    ],
)
def test_malformed_push_payloads_raise(payload: object) -> None:
    with pytest.raises(ValueError):
        decide_push(payload, branch="main")
