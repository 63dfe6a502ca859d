"""``paas build-plan``: what a deploy of a ref would build (the app's own
Dockerfile, or the one generated for it), served over the agent's socket.
It fetches and checks the commit out, never builds."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import select

from agent.build_context import choose_dockerfile, read_procfile, where
from agent.source import SourceCache
from paas.buildpack import context_file
from paas.db import session_scope
from paas.env_snapshots import build_secret_keys, rows_of
from paas.errors import InvalidInput
from paas.models import App
from paas.settings import Settings
from paas.trust import check_app

__all__ = ["BuildPlanner"]


class BuildPlanner:
    def __init__(self, settings: Settings, db: Engine, source: SourceCache) -> None:
        self.settings = settings
        self.db = db
        self.source = source

    def __call__(self, app_name: str, *, ref: str = "", commit: str = "") -> dict[str, object]:
        """What a deploy of ``ref`` (default: the app's branch) would build."""
        with session_scope(self.db) as session:
            app = session.exec(select(App).where(App.name == app_name)).first()
            if app is None:
                raise InvalidInput(f"no app named {app_name!r}")
            check_app(app)
            secrets = build_secret_keys(rows_of(session, app))
            session.expunge(app)
        info = self.source.fetch(
            app=app.name, url=app.repo_url, ref=ref or app.branch, commit=commit, on_line=lambda _l: None
        )
        self.settings.builds_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"plan-{app.name}-", dir=self.settings.builds_dir) as tmp:
            root = Path(tmp) / "src"
            self.source.export(app=app.name, commit=info.sha, dest=root)
            context = root / app.source_dir if app.source_dir else root
            procfile = read_procfile(context)
            generated = choose_dockerfile(
                self.settings, app, context, procfile, where(app, info.sha), secrets=secrets
            )
            if generated is None:
                found = context_file(context, app.dockerfile)
                assert found is not None  # choose_dockerfile saw it
                text = found.read_text(encoding="utf-8", errors="replace")
        if generated is None:
            summary, notes = f"the repository's {app.dockerfile}", []
        else:
            text, notes = generated.dockerfile, list(generated.plan.notes)
            summary = f"generated for a Python app from {generated.plan.installer_label}"
        return {
            "commit": info.sha,
            "generated": generated is not None,
            "summary": summary,
            "notes": notes,
            "dockerfile": text,
            "procfile": procfile,
        }
