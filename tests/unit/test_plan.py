from __future__ import annotations

import sys

import pytest

from agent import commands
from agent.docker_engine import Limits, container_kwargs, serving_kwargs
from agent.plan import (
    ProcessSpec,
    ReleasePlan,
    container_port,
    make_plan,
    process_command,
    release_command,
)
from paas.models import App, Deployment
from paas.procfile import formation


def _app(**kw: object) -> App:
    return App(id=1, name="shop", repo_url="/r", webhook_secret="s", **kw)


def test_plan_for_a_dockerfile_app_with_prestart() -> None:
    plan = make_plan(
        app=_app(),
        deployment=Deployment(id=7, app_id=1, version=3),
        instance="inst",
        procfile={},
        exposed={"5000/tcp": {}},
        prestart_path="/app/prestart.sh",
    )
    labels = {"paas.instance": "inst", "paas.app": "shop", "paas.deployment": "7", "paas.version": "3"}
    assert plan == ReleasePlan(
        app="shop",
        version=3,
        image="paas/shop:v3",
        release_container_name="paas-shop-release-v3",
        labels=labels,
        release_command=["sh", "/app/prestart.sh"],
        container_port=5000,
        host_ip="127.0.0.1",
        processes=(ProcessSpec("web", 1, "paas-shop-web-v3-1", None, {**labels, "paas.process": "web"}),),
        env={"PORT": "5000"},
        volumes={},
    )
    assert plan.upstreams == ("127.0.0.1:0",)  # the port is chosen when the container starts


def test_procfile_web_and_release_win_and_data_path_mounts_a_volume() -> None:
    plan = make_plan(
        app=_app(port=8080, data_path="/data"),
        deployment=Deployment(id=1, app_id=1, version=1),
        instance="i",
        procfile={"web": "uvicorn m:app --port $PORT", "release": "alembic upgrade head"},
        exposed=None,
        prestart_path=None,
    )
    assert [p.command for p in plan.processes] == [["/bin/sh", "-c", "uvicorn m:app --port $PORT"]]
    assert plan.release_command == ["/bin/sh", "-c", "alembic upgrade head"]
    assert plan.env == {"PORT": "8080"}
    assert plan.volumes == {"paas-shop-data": {"bind": "/data", "mode": "rw"}}


def test_every_procfile_type_runs_as_scaled_and_the_run_command_wins_for_web() -> None:
    procfile = {"web": "gunicorn x", "worker": "python -m worker", "beat": "python -m beat", "release": "m"}
    plan = make_plan(
        app=_app(scale={"web": 3, "beat": 0, "gone": 2}, run_command="python serve.py"),
        deployment=Deployment(id=4, app_id=1, version=9),
        instance="i",
        procfile=procfile,
        exposed=None,
        prestart_path=None,
    )
    assert [(p.process, p.index, p.name) for p in plan.processes] == [
        ("web", 1, "paas-shop-web-v9-1"),
        ("web", 2, "paas-shop-web-v9-2"),
        ("web", 3, "paas-shop-web-v9-3"),
        ("worker", 1, "paas-shop-worker-v9-1"),
    ]
    assert plan.processes[0].command == ["/bin/sh", "-c", "python serve.py"]
    assert plan.processes[3].command == ["/bin/sh", "-c", "python -m worker"]
    assert plan.processes[3].labels["paas.process"] == "worker" and len(plan.web) == 3


def test_formation() -> None:
    assert formation({}, {}) == {"web": 1}
    assert formation({"worker": "w", "release": "r"}, {"web": 0}) == {"web": 1, "worker": 1}
    assert formation({"worker": "w", "web": "x"}, {"worker": 4, "web": 2}) == {"web": 2, "worker": 4}
    assert process_command("web", {}, "") is None  # the image's CMD


def test_container_port_order() -> None:
    assert container_port(9000, {"5000/tcp": {}}) == 9000
    assert container_port(None, {"7000/tcp": {}, "5000/tcp": {}, "53/udp": {}}) == 5000
    assert container_port(None, None) == 8000


def test_release_command_prefers_procfile() -> None:
    assert release_command({"release": "x"}, "/app/prestart.sh") == ["/bin/sh", "-c", "x"]
    assert release_command({}, None) is None


def test_the_release_command_setting_wins_over_the_repository() -> None:
    said = "sh scripts/prestart.sh"
    assert release_command({"release": "x"}, "/app/prestart.sh", said) == ["/bin/sh", "-c", said]
    assert release_command({}, None, said) == ["/bin/sh", "-c", said]
    assert release_command({}, "/app/prestart.sh", "") == ["sh", "/app/prestart.sh"]


def test_every_app_container_is_made_alike_and_a_serving_one_adds_its_port_restarts_and_log() -> None:
    limits = Limits(memory=256 << 20, nano_cpus=500_000_000, pids=128)
    made = container_kwargs(
        command=["/bin/sh", "-c", "migrate"],
        name="paas-shop-release-v3",
        env={"A": "1"},
        labels={"paas.app": "shop"},
        volumes={"paas-shop-data": {"bind": "/data", "mode": "rw"}},
        limits=limits,
    )
    assert made == {
        "command": ["/bin/sh", "-c", "migrate"],
        "name": "paas-shop-release-v3",
        "environment": {"A": "1"},
        "labels": {"paas.app": "shop"},
        "detach": True,
        "volumes": {"paas-shop-data": {"bind": "/data", "mode": "rw"}},
        **limits.create_kwargs(),  # spelled out in test_settings.py
    }
    bare = container_kwargs(command=None, name="w", env={}, labels={}, volumes={}, limits=None)
    assert bare == {
        "command": None,
        "name": "w",
        "environment": {},
        "labels": {},
        "detach": True,
        "volumes": None,
    }
    log = {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    assert serving_kwargs(container_port=8000, host_ip="127.0.0.1", host_port=20001) == {
        "ports": {"8000/tcp": ("127.0.0.1", 20001)},
        "restart_policy": {"Name": "unless-stopped"},
        "init": True,
        "log_config": log,
    }
    assert serving_kwargs(container_port=8000, host_ip="127.0.0.1", host_port=None)["ports"] is None


def test_nginx_commands_are_argument_lists() -> None:
    assert commands.nginx_test_args("nginx", None) == ["nginx", "-t", "-q"]
    assert commands.nginx_reload_args("/usr/sbin/nginx", __import__("pathlib").Path("/t/n.conf")) == [
        "/usr/sbin/nginx",
        "-c",
        "/t/n.conf",
        "-s",
        "reload",
    ]


def test_run_reports_missing_binaries_and_refuses_strings() -> None:
    result = commands.run(["/nonexistent/binary", "-v"])
    assert (result.ok, result.returncode) == (False, 127)
    with pytest.raises(TypeError):
        commands.run("nginx -t")  # type: ignore[arg-type]


def test_capture_keeps_stdout_apart_and_gives_the_child_its_input_and_whole_environment() -> None:
    code = "import os, sys; print(sys.stdin.read().upper()); print(sorted(os.environ), file=sys.stderr)"
    done = commands.capture([sys.executable, "-I", "-c", code], input="in", environ={"ONLY": "1"}, timeout=30)
    assert (done.returncode, done.stdout) == (0, "IN\n")
    assert "'ONLY'" in done.stderr and "'PATH'" not in done.stderr


def test_capture_raises_for_a_missing_binary_and_a_timeout() -> None:
    with pytest.raises(FileNotFoundError):
        commands.capture(["/nonexistent/binary"], timeout=30)
    with pytest.raises(commands.TimedOut, match="timed out after 0.2s"):
        commands.capture([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.2)
    with pytest.raises(TypeError):
        commands.capture("pg_dump --version", timeout=30)  # type: ignore[arg-type]


def test_run_answers_a_timeout_with_exit_124_in_the_words_capture_raises() -> None:
    slow = [sys.executable, "-c", "import time; time.sleep(30)"]
    with pytest.raises(commands.TimedOut) as caught:
        commands.capture(slow, timeout=0.2)
    assert commands.run(slow, timeout=0.2) == commands.CommandResult(tuple(slow), 124, str(caught.value))
    assert str(caught.value) == f"{sys.executable}: timed out after 0.2s"


def test_every_container_trusts_forwarded_headers_from_nginx_only_and_the_apps_own_setting_wins() -> None:
    def env(own: dict[str, str]) -> dict[str, str]:
        return make_plan(
            app=_app(),
            deployment=Deployment(id=1, app_id=1, version=1),
            instance="i",
            procfile={},
            exposed=None,
            prestart_path=None,
            env=own,
            proxy="172.17.0.1",
        ).env

    assert env({}) == {"FORWARDED_ALLOW_IPS": "172.17.0.1", "PORT": "8000"}
    assert env({"FORWARDED_ALLOW_IPS": "10.0.0.5", "PORT": "1"}) == {
        "FORWARDED_ALLOW_IPS": "10.0.0.5",
        "PORT": "8000",
    }
