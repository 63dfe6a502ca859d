"""Schemathesis against the live control plane: every operation in the
OpenAPI schema, fed generated valid and invalid input with a real token,
never answers 5xx, refuses input the schema calls invalid, and answers
with the status codes, content types and bodies the schema documents.

The stack is a real `paas up` (web + agent on the Docker engine); git may
use local repositories only, so generated repository URLs reach nothing.
Operations run twice: with generated path parameters (mostly unknown apps),
and with an app that exists, so that the code behind the 404 runs too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import positive_data_acceptance

from testkit.harness import LOOPBACK, GitRemote, Nginx, Stack

pytestmark = pytest.mark.integration

EXAMPLES = 30
# streams that never end on their own for a live app, and the app's removal
SKIP_FOR_EXISTING = {
    "GET /apps/{name}/logs",
    "GET /apps/{name}/releases/{version}/log",
    "DELETE /apps/{name}",
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, nginx: Nginx) -> Iterator[Stack]:
    paas = Stack(tmp_path_factory.mktemp("paas-schema"), nginx, GIT_ALLOW_PROTOCOL="file")
    paas.start()
    yield paas
    paas.stop()
    paas.remove_everything()


def _exercise(schema: Any, token: str, *, mode: Any, path_parameters: dict[str, str] | None) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        params = path_parameters if path_parameters and "{name}" in operation.path else None
        if path_parameters and (params is None or operation.label in SKIP_FOR_EXISTING):
            continue
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=params)

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(case: Any) -> None:
            # Our validators are stricter than a schema can say (git branch rules,
            # repository URLs), so valid-looking input may be refused with a 422;
            # every other check runs, the first of them: no 5xx.
            case.call_and_validate(headers=headers, timeout=30, excluded_checks=[positive_data_acceptance])

        try:
            run()
        except Unsatisfiable:
            assert mode.value == "negative", operation.label  # no input, so no invalid input either
        except Exception as exc:  # noqa: BLE001  (collect every operation's failure)
            failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:1500]}")
    return failures


def test_no_operation_answers_5xx_or_breaks_its_schema(live: Stack, tmp_path: Path) -> None:
    base = f"http://{LOOPBACK}:{live.web_port}"
    raw = httpx.get(f"{base}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(raw)
    schema.config.base_url = base
    assert len(list(schema.get_all_operations())) >= 20

    repo = GitRemote(tmp_path)
    repo.commit({"Dockerfile": "FROM python:3.11-slim\n"}, "an app that exists")
    created = json.loads(live.paas("apps", "create", "fuzzed", "--repo", str(repo.bare), "--json").stdout)
    assert created["name"] == "fuzzed"

    failures: list[str] = []
    for mode in schemathesis.GenerationMode:
        failures += _exercise(schema, live.token, mode=mode, path_parameters=None)
    failures += _exercise(
        schema, live.token, mode=schemathesis.GenerationMode.POSITIVE, path_parameters={"name": "fuzzed"}
    )
    assert failures == [], "\n\n".join(failures)
    assert "Traceback" not in live.log_path.read_text(errors="replace")
