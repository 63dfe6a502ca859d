"""Detection and the generated Dockerfile for apps without a Dockerfile."""

from __future__ import annotations

from pathlib import Path

import pytest

from paas.buildpack import (
    Entry,
    base_image_for,
    default_workers,
    detect,
    detect_entry,
    pinned_python,
    render_dockerfile,
    server_command,
)
from paas.dockerfile import Mounts, cache_namespace, images_read, namespace_mounts
from paas.errors import InvalidInput

FASTAPI_MAIN = "from fastapi import FastAPI\n\napp = FastAPI(title='x')\n"


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "installer"),
    [
        ({"requirements.txt": "fastapi\n"}, "requirements"),
        ({"pyproject.toml": "[project]\nname='a'\n"}, "pyproject"),
        ({"pyproject.toml": "[project]\nname='a'\n", "uv.lock": ""}, "uv"),
        ({"pyproject.toml": "[tool.poetry]\nname='a'\n", "poetry.lock": ""}, "poetry"),
        ({"Pipfile": "[packages]\n"}, "pipenv"),
        # a lock file says how the project is meant to be installed
        ({"requirements.txt": "x\n", "pyproject.toml": "[project]\nname='a'\n", "uv.lock": ""}, "uv"),
        ({"requirements.txt": "x\n", "pyproject.toml": "[project]\nname='a'\n"}, "requirements"),
    ],
)
def test_the_installer_follows_the_dependency_files(
    tmp_path: Path, files: dict[str, str], installer: str
) -> None:
    plan = detect(tree(tmp_path, {**files, "main.py": FASTAPI_MAIN}))
    assert plan.installer == installer


def test_nothing_to_build_says_what_was_looked_for(tmp_path: Path) -> None:
    tree(tmp_path, {"index.js": "console.log(1)\n", "package.json": "{}"})
    with pytest.raises(InvalidInput) as err:
        detect(tmp_path)
    message = str(err.value)
    assert "requirements.txt" in message and "pyproject.toml" in message and "Pipfile" in message
    assert "add a Dockerfile" in message


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"main.py": FASTAPI_MAIN}, Entry("asgi", "main:app", "main.py")),
        (
            {"app/main.py": "import fastapi\napi = fastapi.FastAPI()\n"},
            Entry("asgi", "app.main:api", "app/main.py"),
        ),
        ({"app.py": "from flask import Flask\napp = Flask(__name__)\n"}, Entry("wsgi", "app:app", "app.py")),
        (
            {
                "manage.py": "",
                "site1/wsgi.py": "application = get_wsgi_application()\n",
                "site1/asgi.py": "x",
            },
            Entry("wsgi", "site1.wsgi:application", "site1/wsgi.py"),
        ),
        (
            {"manage.py": "", "proj/asgi.py": "application = get_asgi_application()\n"},
            Entry("asgi", "proj.asgi:application", "proj/asgi.py"),
        ),
        ({"main.py": "app: FastAPI = FastAPI()\n"}, Entry("asgi", "main:app", "main.py")),
        ({"main.py": "print('a script, no app')\n"}, None),
    ],
)
def test_entry_detection(tmp_path: Path, files: dict[str, str], expected: Entry | None) -> None:
    assert detect_entry(tree(tmp_path, files)) == expected


def test_no_web_command_anywhere_fails_clearly(tmp_path: Path) -> None:
    tree(tmp_path, {"requirements.txt": "requests\n", "job.py": "print(1)\n"})
    with pytest.raises(InvalidInput, match="no web command: set the app's run command, add a `web:` line"):
        detect(tmp_path)
    # a Procfile web line or the app's run command is enough: nothing is baked in
    assert detect(tmp_path, procfile_web="python job.py").command is None
    assert detect(tmp_path, run_command="python job.py").entry is None


def test_server_command_and_packages(tmp_path: Path) -> None:
    plan = detect(tree(tmp_path, {"requirements.txt": "fastapi\n", "main.py": FASTAPI_MAIN}), workers=3)
    assert plan.command == (
        "exec gunicorn -k uvicorn.workers.UvicornWorker --bind 0.0.0.0:${PORT:-8000} "
        "--workers ${WEB_CONCURRENCY:-3} --access-logfile - "
        '--forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" main:app'
    )
    assert plan.server_packages == ("gunicorn>=22,<24", "uvicorn>=0.30,<1")
    (tmp_path / "requirements.txt").write_text("fastapi\nuvicorn[standard]==0.30\ngunicorn\n")
    assert detect(tmp_path).server_packages == ()
    wsgi = server_command(Entry("wsgi", "site1.wsgi:application", "x"), 2)
    assert "-k" not in wsgi and wsgi.endswith("site1.wsgi:application")


@pytest.mark.parametrize(
    ("files", "version"),
    [
        ({".python-version": "3.12\n"}, "3.12"),
        ({".python-version": "# pinned\n3.12.4\n"}, "3.12"),
        ({"runtime.txt": "python-3.10.13"}, "3.10"),
        ({}, None),
    ],
)
def test_pinned_python(tmp_path: Path, files: dict[str, str], version: str | None) -> None:
    assert pinned_python(tree(tmp_path, files)) == version


def test_a_bad_pin_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"runtime.txt: expected a Python version"):
        pinned_python(tree(tmp_path, {"runtime.txt": "pypy-7\n"}))


def test_base_image_choice() -> None:
    assert base_image_for(app_base="", default_base="python:3.11-slim", version=None) == (
        "python:3.11-slim",
        None,
    )
    assert (
        base_image_for(app_base="", default_base="python:3.11-slim", version="3.12")[0] == "python:3.12-slim"
    )
    assert base_image_for(app_base="", default_base="reg.local/python:3.11", version="3.13")[0] == (
        "reg.local/python:3.13"
    )
    image, note = base_image_for(app_base="", default_base="debian:12", version="3.12")
    assert image == "debian:12" and note is not None and "not a python:X.Y image" in note
    image, note = base_image_for(app_base="mine:1", default_base="python:3.11-slim", version="3.12")
    assert image == "mine:1" and note is not None


def test_workers_default_to_twice_the_cores_capped() -> None:
    assert [default_workers(n) for n in (None, 1, 2, 8)] == [2, 2, 4, 4]


def test_the_generated_dockerfile_layers_dependencies_before_the_source(tmp_path: Path) -> None:
    plan = detect(tree(tmp_path, {"requirements.txt": "fastapi\n", "main.py": FASTAPI_MAIN}))
    text = render_dockerfile(plan, app="shop", port=8000, data_path="/data")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    order = [
        lines.index("COPY requirements.txt ./"),
        lines.index("RUN pip install -r requirements.txt"),
        lines.index('RUN pip install "gunicorn>=22,<24" "uvicorn>=0.30,<1"'),
        lines.index("COPY . ."),
        lines.index("RUN mkdir -p /data && chown app:app /data"),
        lines.index("USER app"),
    ]
    assert order == sorted(order)
    assert "PYTHONUNBUFFERED=1" in text and "useradd" in text
    assert lines[-1].startswith('CMD ["/bin/sh", "-c", "exec gunicorn -k uvicorn.workers.UvicornWorker')
    assert "paas build-plan shop > Dockerfile" in text


def test_pyproject_installs_declared_dependencies_first_and_the_project_only_if_buildable(
    tmp_path: Path,
) -> None:
    tree(
        tmp_path,
        {"pyproject.toml": "[project]\nname='a'\ndependencies=['fastapi']\n", "main.py": FASTAPI_MAIN},
    )
    plan = detect(tmp_path)
    text = render_dockerfile(plan, app="a", port=8000, data_path=None)
    assert "COPY pyproject.toml ./" in text and "tomllib" in text and "pip install --no-deps ." not in text
    (tmp_path / "pyproject.toml").write_text(
        "[build-system]\nrequires=['hatchling']\nbuild-backend='hatchling.build'\n[project]\nname='a'\n"
    )
    assert "RUN pip install --no-deps ." in render_dockerfile(
        detect(tmp_path), app="a", port=8000, data_path=None
    )


@pytest.mark.parametrize(
    ("files", "expect"),
    [
        ({"pyproject.toml": "[project]\nname='a'\n", "uv.lock": ""}, "uv export --frozen"),
        ({"pyproject.toml": "[tool.poetry]\n", "poetry.lock": ""}, "poetry install --no-root"),
        ({"Pipfile": "", "Pipfile.lock": "{}"}, "pipenv install --system --deploy"),
        ({"Pipfile": ""}, "pipenv install --system --skip-lock"),
    ],
)
def test_lock_files_are_honoured(tmp_path: Path, files: dict[str, str], expect: str) -> None:
    plan = detect(tree(tmp_path, {**files, "main.py": FASTAPI_MAIN}))
    assert expect in render_dockerfile(plan, app="a", port=8000, data_path=None)


def test_a_procfile_web_line_means_no_baked_in_command(tmp_path: Path) -> None:
    plan = detect(tree(tmp_path, {"requirements.txt": "x\n"}), procfile_web="python -m web")
    text = render_dockerfile(plan, app="a", port=5000, data_path=None)
    assert "CMD" not in text and "EXPOSE 5000" in text and "gunicorn" not in text


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_bytes(b"\xff\xfe")
    (tmp_path / "main.py").write_text(FASTAPI_MAIN)
    with pytest.raises(InvalidInput, match="requirements.txt is not UTF-8"):
        detect(tmp_path)
    (tmp_path / "requirements.txt").unlink()
    (tmp_path / "pyproject.toml").write_text("[project\n")
    with pytest.raises(InvalidInput, match="pyproject.toml is not valid TOML"):
        detect(tmp_path)


@pytest.mark.parametrize(
    "files",
    [
        {"requirements.txt": "fastapi\n"},
        {"pyproject.toml": "[project]\nname='a'\n", "uv.lock": ""},
        {"pyproject.toml": "[tool.poetry]\n", "poetry.lock": ""},
        {"Pipfile": "", "Pipfile.lock": "{}"},
        {"pyproject.toml": "[build-system]\nrequires=['hatchling']\n[project]\nname='a'\n"},
    ],
)
def test_with_buildkit_every_pip_install_keeps_its_downloads_in_the_apps_cache(
    tmp_path: Path, files: dict[str, str]
) -> None:
    """Issue 31: a changed requirement downloads only what changed. The cache
    is a mount (in no layer), so pip's own cache is no longer turned off; the
    build step moves it into the app's namespace like any cache mount."""
    plan = detect(tree(tmp_path, {**files, "main.py": FASTAPI_MAIN}))
    text = render_dockerfile(plan, app="shop", port=8000, data_path=None, pip_cache=True)
    instructions = text.replace("\\\n", " ").splitlines()
    runs = [line for line in instructions if line.startswith("RUN") and "pip install" in line]
    assert runs and all(r.startswith("RUN --mount=type=cache,target=/root/.cache/pip ") for r in runs), runs
    assert "PIP_NO_CACHE_DIR" not in text
    rewritten = namespace_mounts(text, cache_namespace("shop"))
    images_read(rewritten, mounts=Mounts(namespace=cache_namespace("shop")))
    assert rewritten.count("id=paas/shop//root/.cache/pip") == len(runs)
    # the classic builder has no mounts: its Dockerfile is as it was
    classic = render_dockerfile(plan, app="shop", port=8000, data_path=None)
    assert "--mount" not in classic and "PIP_NO_CACHE_DIR=1" in classic


def test_a_private_index_given_as_build_secrets_is_read_by_every_pip_install_for_its_step(
    tmp_path: Path,
) -> None:
    """Issue 31: PIP_INDEX_URL as a build secret reaches pip through
    /run/secrets for each install step only: never ENV or ARG, which the
    image's history keeps. A build without that secret is refused the mount."""
    plan = detect(tree(tmp_path, {"requirements.txt": "fastapi\n", "main.py": FASTAPI_MAIN}))
    secrets = ["PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL"]
    text = render_dockerfile(plan, app="shop", port=8000, data_path=None, pip_cache=True, pip_secrets=secrets)
    runs = [r for r in text.replace("\\\n", " ").splitlines() if r.startswith("RUN") and "pip install" in r]
    for run in runs:
        assert "--mount=type=secret,id=PIP_INDEX_URL --mount=type=secret,id=PIP_EXTRA_INDEX_URL" not in run
        assert "--mount=type=secret,id=PIP_EXTRA_INDEX_URL --mount=type=secret,id=PIP_INDEX_URL " in run
        assert 'PIP_INDEX_URL="$(cat /run/secrets/PIP_INDEX_URL)" && export PIP_INDEX_URL && ' in run
    assert "ARG" not in text and "ENV PIP_INDEX_URL" not in text
    ids = {name: f"paas/shop/{name}-0a1b" for name in secrets}
    rewritten = namespace_mounts(text, cache_namespace("shop"), secrets=ids)
    mount = "--mount=type=secret,target=/run/secrets/PIP_INDEX_URL,id=paas/shop/PIP_INDEX_URL-0a1b"
    assert mount in rewritten
    images_read(rewritten, mounts=Mounts(namespace=cache_namespace("shop"), secrets=frozenset(ids.values())))
    with pytest.raises(InvalidInput, match="PIP_INDEX_URL"):  # a build without that secret
        images_read(
            rewritten, mounts=Mounts(namespace=cache_namespace("shop"), secrets=frozenset([ids[secrets[0]]]))
        )
