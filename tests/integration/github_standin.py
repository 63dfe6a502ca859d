"""A stand-in for GitHub's REST API, served on 127.0.0.1: commit statuses,
deployments and deployment statuses, as documented.

Each request is checked against GitHub's published schema as githubkit
carries it (the request body models of its generated client, with no field
they do not name) and against what GitHub itself requires (the token, the
API version header, a known deployment). Every answer is built and then
validated against the response model the client parses, so a stand-in that
drifts from the schema fails here, not in paas. Every call is recorded.

``trouble`` is a list the next requests take from, in order: ``"500"``,
``("403", seconds)`` (a secondary rate limit with ``Retry-After``),
``("reset", seconds)`` (a primary rate limit: ``X-RateLimit-Remaining: 0``
and ``X-RateLimit-Reset``), ``("hang", seconds)`` (answer only after that
long: the client's timeout), or ``"401"``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from githubkit.compat import type_validate_python
from githubkit_schemas.latest import models
from pydantic import BaseModel, ValidationError

__all__ = ["PUSH", "RELEASE", "Call", "GitHubStandIn", "sequence"]

# what GitHub hears, as README documents it: (call, state)
PUSH = [  # a deploy of a pushed commit that goes live
    ("status", "pending"),  # queued
    ("deployment", "create"),
    ("deployment_status", "queued"),
    ("status", "pending"),  # deploying vN
    ("deployment_status", "in_progress"),
    ("status", "success"),
    ("deployment_status", "success"),
]
RELEASE = [  # a rollback or an env release that goes live (no commit status: its deploy said)
    ("deployment", "create"),
    ("deployment_status", "queued"),
    ("deployment_status", "in_progress"),
    ("deployment_status", "success"),
    ("deployment_status", "inactive"),  # the deployment it replaced
]

_ROUTES: list[tuple[re.Pattern[str], str, type[BaseModel]]] = [
    (
        re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/statuses/(?P<sha>[0-9a-f]{40})"),
        "status",
        models.ReposOwnerRepoStatusesShaPostBody,
    ),
    (
        re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/deployments/(?P<id>[0-9]+)/statuses"),
        "deployment_status",
        models.ReposOwnerRepoDeploymentsDeploymentIdStatusesPostBody,
    ),
    (
        re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/deployments"),
        "deployment",
        models.ReposOwnerRepoDeploymentsPostBody,
    ),
]
STAMP = "2026-12-06T12:00:00Z"


def _user(base: str) -> dict[str, Any]:
    return {
        "login": "paas-bot",
        "id": 1,
        "node_id": "U_1",
        "avatar_url": f"{base}/avatars/1",
        "gravatar_id": "",
        "url": f"{base}/users/paas-bot",
        "html_url": f"{base}/paas-bot",
        "followers_url": f"{base}/users/paas-bot/followers",
        "following_url": f"{base}/users/paas-bot/following",
        "gists_url": f"{base}/users/paas-bot/gists",
        "starred_url": f"{base}/users/paas-bot/starred",
        "subscriptions_url": f"{base}/users/paas-bot/subscriptions",
        "organizations_url": f"{base}/users/paas-bot/orgs",
        "repos_url": f"{base}/users/paas-bot/repos",
        "events_url": f"{base}/users/paas-bot/events",
        "received_events_url": f"{base}/users/paas-bot/received_events",
        "type": "User",
        "site_admin": False,
    }


@dataclass
class Call:
    kind: str  # status | deployment | deployment_status
    path: str
    body: dict[str, Any]
    at: float
    deployment_id: int | None = None  # the one created, or the one a status is for
    answered: int = 0


def sequence(calls: list[Call]) -> list[tuple[str, str]]:
    return [(c.kind, c.body.get("state", "create")) for c in calls]


@dataclass
class GitHubStandIn:
    token: str
    repo: str  # owner/name it knows
    calls: list[Call] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    trouble: list[Any] = field(default_factory=list)
    refused: int = 0  # requests answered with trouble
    short_answers: bool = False  # accept calls but answer with less than GitHub's schema says

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._deployments: dict[int, dict[str, Any]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="github")

    def start(self) -> GitHubStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answered(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if 200 <= c.answered < 300]

    # serving -----------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                code, body, headers = standin._answer(self.path, dict(self.headers), raw)
                if code == 0:  # hung past the client's timeout: it has gone
                    return
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        return Handler

    def _violation(self, text: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.violations.append(text)
        return 422, {"message": "Validation Failed", "errors": [text]}, {}

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        lower = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            trouble = self.trouble.pop(0) if self.trouble else None
            if trouble is not None:
                self.refused += 1
        if trouble == "500":
            return 500, {"message": "Server Error"}, {}
        if trouble == "401":
            return 401, {"message": "Bad credentials"}, {}
        if isinstance(trouble, tuple) and trouble[0] == "403":
            return (
                403,
                {"message": "You have exceeded a secondary rate limit"},
                {"Retry-After": str(trouble[1])},
            )
        if isinstance(trouble, tuple) and trouble[0] == "reset":
            reset = int(time.time() + trouble[1])
            limit = {
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Reset": str(reset),
            }
            return 403, {"message": "API rate limit exceeded"}, limit
        if isinstance(trouble, tuple) and trouble[0] == "hang":
            time.sleep(trouble[1])
            return 0, None, {}
        if lower.get("authorization") not in (f"token {self.token}", f"Bearer {self.token}"):
            return 401, {"message": "Bad credentials"}, {}
        if not lower.get("x-github-api-version"):
            return self._violation("no X-GitHub-Api-Version header")
        routed = [(m, kind, model) for p, kind, model in _ROUTES if (m := p.fullmatch(path)) is not None]
        if not routed:
            return 404, {"message": "Not Found"}, {}
        match, kind, model = routed[0]
        if f"{match['owner']}/{match['repo']}" != self.repo:
            return 404, {"message": "Not Found"}, {}
        try:
            body = json.loads(raw)
            type_validate_python(model, body)
        except (ValueError, ValidationError) as exc:
            return self._violation(f"{kind}: {exc}")
        unknown = set(body) - set(model.model_fields)
        if unknown:
            return self._violation(f"{kind}: fields the schema does not name: {sorted(unknown)}")
        return self._record(kind, path, body, match.groupdict())

    def _record(
        self, kind: str, path: str, body: dict[str, Any], parts: dict[str, str]
    ) -> tuple[int, Any, dict]:
        base = self.url
        repo_url = f"{base}/repos/{self.repo}"
        now = time.monotonic()
        with self._lock:
            if kind == "status":
                answer = {
                    "url": f"{repo_url}/statuses/{parts['sha']}",
                    "avatar_url": None,
                    "id": len(self.calls) + 1,
                    "node_id": f"S_{len(self.calls) + 1}",
                    "state": body["state"],
                    "description": body.get("description"),
                    "target_url": body.get("target_url"),
                    "context": body.get("context", "default"),
                    "created_at": STAMP,
                    "updated_at": STAMP,
                    "creator": _user(base),
                }
                response_model: type[BaseModel] = models.Status
                dep_id = None
            elif kind == "deployment":
                dep_id = len(self._deployments) + 1001
                answer = {
                    "url": f"{repo_url}/deployments/{dep_id}",
                    "id": dep_id,
                    "node_id": f"D_{dep_id}",
                    "sha": body["ref"] if re.fullmatch(r"[0-9a-f]{40}", body["ref"]) else "0" * 40,
                    "ref": body["ref"],
                    "task": body.get("task", "deploy"),
                    "payload": body.get("payload", {}),
                    "environment": body.get("environment", "production"),
                    "description": body.get("description"),
                    "creator": _user(base),
                    "created_at": STAMP,
                    "updated_at": STAMP,
                    "statuses_url": f"{repo_url}/deployments/{dep_id}/statuses",
                    "repository_url": repo_url,
                    "transient_environment": body.get("transient_environment", False),
                    "production_environment": body.get("production_environment", False),
                }
                self._deployments[dep_id] = answer
                response_model = models.Deployment
            else:
                dep_id = int(parts["id"])
                if dep_id not in self._deployments:
                    return 404, {"message": "Not Found"}, {}
                answer = {
                    "url": f"{repo_url}/deployments/{dep_id}/statuses/{len(self.calls) + 1}",
                    "id": len(self.calls) + 1,
                    "node_id": f"DS_{len(self.calls) + 1}",
                    "state": body["state"],
                    "creator": _user(base),
                    "description": body.get("description", ""),
                    "environment": self._deployments[dep_id]["environment"],
                    "target_url": body.get("target_url", ""),
                    "created_at": STAMP,
                    "updated_at": STAMP,
                    "deployment_url": f"{repo_url}/deployments/{dep_id}",
                    "repository_url": repo_url,
                    "environment_url": body.get("environment_url", ""),
                    "log_url": body.get("log_url", ""),
                }
                response_model = models.DeploymentStatus
            type_validate_python(response_model, answer)  # the stand-in answers as GitHub documents
            self.calls.append(Call(kind, path, body, now, dep_id, 201))
            if self.short_answers:  # as some proxies and GitHub-alikes answer: the id, little else
                answer = {"id": answer["id"], "url": answer["url"]}
        return 201, answer, {}
