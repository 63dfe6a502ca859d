"""agent/buildkit.py and agent/commands.stream: how paas asks Docker's CLI
for a BuildKit build (pure), what reaches the CLI's environment, the caps
written into a cgroup tree (a copy of its files under tmp_path), and a
streamed command stopped by SIGINT, then SIGKILL, with real processes. The
builds themselves are in tests/integration/test_buildkit.py."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from agent import buildkit
from agent.buildkit import BuildKitBuild, build_args, build_env, cap_build_steps
from agent.commands import stream
from paas.errors import InvalidInput

BUILD = BuildKitBuild(
    cli="/usr/bin/docker",
    context=Path("/var/lib/paas/builds/shop-v3"),
    dockerfile_text="FROM python:3.12-slim\n",
    tag="paas/shop:v3",
    iidfile=Path("/tmp/x/iid"),
    labels={"paas.app": "shop", "paas.version": "3"},
    buildargs={"PIP_INDEX_URL": "https://user:pw@pypi.example/simple", "VERSION": "3"},
)


def test_the_cli_is_asked_for_the_build_and_no_build_args_value_is_in_its_arguments() -> None:
    assert build_args(BUILD) == [
        "/usr/bin/docker", "build", "--progress=plain", "--iidfile", "/tmp/x/iid", "--tag", "paas/shop:v3",
        "--file", "-", "--label", "paas.app=shop", "--label", "paas.version=3",
        "--build-arg", "PIP_INDEX_URL", "--build-arg", "VERSION", "/var/lib/paas/builds/shop-v3",
    ]  # fmt: skip
    assert "pw@" not in " ".join(build_args(BUILD))
    targeted = BuildKitBuild(**{**BUILD.__dict__, "network": "none", "target": "prod"})
    assert build_args(targeted)[-5:] == ["--network", "none", "--target", "prod", str(BUILD.context)]


def test_the_clis_environment_is_its_own_and_the_build_args() -> None:
    agent = {"HOME": "/root", "DOCKER_HOST": "unix:///run/docker.sock", "PAAS_DATA_DIR": "/var/lib/paas",
             "LD_LIBRARY_PATH": "/opt"}  # fmt: skip
    assert build_env(BUILD, agent) == {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "DOCKER_BUILDKIT": "1",
        "BUILDX_GIT_INFO": "0",
        "BUILDX_GIT_LABELS": "0",
        "DOCKER_HOST": "unix:///run/docker.sock",
        "PIP_INDEX_URL": "https://user:pw@pypi.example/simple",
        "VERSION": "3",
    }


@pytest.mark.parametrize(
    "name", ["LD_PRELOAD", "ld_library_path", "DOCKER_HOST", "DOCKER_CONFIG", "BUILDKIT_PROGRESS", "GODEBUG",
             "PATH", "HOME", "GCONV_PATH", "MALLOC_ARENA_MAX", "SSL_CERT_FILE", "TMPDIR", "LC_ALL",
             "EXPERIMENTAL_BUILDKIT_SOURCE_POLICY", "GIT_TRACE", "GIT_CONFIG_COUNT",
             "OTEL_EXPORTER_OTLP_ENDPOINT", "SSH_AUTH_SOCK", "ZONEINFO"],
)  # fmt: skip
def test_a_build_arg_the_cli_itself_would_read_is_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match=f"the build arg {name} is read by the docker command line"):
        build_env(BuildKitBuild(**{**BUILD.__dict__, "buildargs": {name: "/tmp/evil.so"}}), {})
    build_env(BuildKitBuild(**{**BUILD.__dict__, "buildargs": {"GOPROXY": "x", "HTTP_PROXY": "y"}}), {})


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_the_steps_are_capped_in_a_unified_tree(tmp_path: Path) -> None:
    box = "docker/buildkit"
    _tree(tmp_path, {"cgroup.controllers": "cpu memory pids", "cgroup.subtree_control": "cpu",
                     "docker/cgroup.subtree_control": "", f"{box}/memory.max": "max",
                     f"{box}/memory.swap.max": "max", f"{box}/pids.max": "max"})  # fmt: skip
    assert cap_build_steps(256 << 20, 128, root=tmp_path) == str(tmp_path / box)
    assert (tmp_path / box / "memory.max").read_text() == str(256 << 20)
    assert (tmp_path / box / "memory.swap.max").read_text() == "0"
    assert (tmp_path / box / "pids.max").read_text() == "128"
    # each level hands the controllers down (the kernel adds them to what is there)
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (tmp_path / "docker/cgroup.subtree_control").read_text() == "+memory +pids"


def test_the_steps_are_capped_in_a_tree_per_controller(tmp_path: Path) -> None:
    mem = "memory/docker/buildkit"
    _tree(tmp_path, {f"{mem}/memory.limit_in_bytes": "9223372036854771712",
                     f"{mem}/memory.memsw.limit_in_bytes": "9223372036854771712",
                     "pids/docker/buildkit/pids.max": "max"})  # fmt: skip
    cap_build_steps(256 << 20, 128, root=tmp_path)
    assert (tmp_path / mem / "memory.limit_in_bytes").read_text() == str(256 << 20)
    assert (tmp_path / mem / "memory.memsw.limit_in_bytes").read_text() == str(256 << 20)
    assert (tmp_path / "pids/docker/buildkit/pids.max").read_text() == "128"


def test_a_cgroup_parent_of_the_operators_own_refuses_buildkit(tmp_path: Path) -> None:
    """BuildKit's steps would go under it, not under the cgroup paas caps."""
    config = tmp_path / "daemon.json"
    buildkit.check_cgroup_parent(config)  # no daemon.json: the default parent
    config.write_text('{"log-driver": "json-file"}')
    buildkit.check_cgroup_parent(config)
    config.write_text('{"cgroup-parent": "mine.slice"}')
    with pytest.raises(buildkit.BuildKitError, match="sets cgroup-parent"):
        buildkit.check_cgroup_parent(config)
    config.write_text("{not json")
    with pytest.raises(buildkit.BuildKitError, match="cannot read"):
        buildkit.check_cgroup_parent(config)


def test_a_tree_paas_cannot_write_is_said(tmp_path: Path) -> None:
    (tmp_path / "memory").write_text("not a directory")
    with pytest.raises(buildkit.BuildKitError, match="could not cap BuildKit's build steps"):
        cap_build_steps(1 << 30, 64, root=tmp_path)


def test_a_failed_build_is_told_in_buildkits_own_words() -> None:
    tail = ("#5 0.527 Killed", "#5 ERROR: executor failed running [/bin/sh -c x]: exit code: 137",
            " > [2/2] RUN x:", "executor failed running [/bin/sh -c x]: exit code: 137")  # fmt: skip
    assert buildkit._why(tail, 1) == "executor failed running [/bin/sh -c x]: exit code: 137"
    assert buildkit._why(("something else",), 1) == "something else"
    assert buildkit._why((), 2) == "docker build exited with status 2"


SLOW = """
import signal, sys, time
print("started", flush=True)
print(sys.stdin.read().upper(), flush=True)
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
try:
    time.sleep(60)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


@pytest.mark.parametrize("how", ["polite", "stubborn"])
def test_a_streamed_command_hands_over_its_lines_and_a_stop_interrupts_then_kills_it(how: str) -> None:
    lines: list[str] = []
    started = time.monotonic()
    ran = stream(
        [sys.executable, "-c", SLOW, how],
        environ={"PATH": "/usr/bin:/bin"},
        input="stdin reached it",
        on_line=lines.append,
        should_stop=lambda: time.monotonic() - started > 1,
        timeout=30,
        grace=1,
    )
    assert time.monotonic() - started < 10
    assert ran.stopped == "cancelled"
    assert lines[:2] == ["started", "STDIN REACHED IT"]
    if how == "polite":
        assert lines[2:] == ["interrupted"] and ran.returncode == 130
    else:
        assert lines[2:] == [] and ran.returncode == -9


def test_a_streamed_command_that_runs_too_long_is_stopped() -> None:
    ran = stream(
        [sys.executable, "-c", SLOW, "polite"],
        environ={},
        input="",
        on_line=lambda _line: None,
        should_stop=lambda: False,
        timeout=0.5,
        grace=5,
    )
    assert ran.stopped == "timed out after 0.5s" and ran.tail[-1] == "interrupted"


# a stand-in for the CLI, run as a real process: says how it was given each build secret
FAKE_CLI = """#!{python}
import os, stat, sys
args = sys.argv[1:]
iid = args[args.index("--iidfile") + 1]
for i, a in enumerate(args):
    if a == "--secret":
        src = dict(p.split("=", 1) for p in args[i + 1].split(","))["src"]
        mode = stat.S_IMODE(os.stat(src).st_mode)
        folder = stat.S_IMODE(os.stat(os.path.dirname(src)).st_mode)
        print(f"secret {{oct(mode)}} in {{oct(folder)}} holds {{len(open(src).read())}} chars", flush=True)
        print(src, flush=True)
        print("a tool printed: " + open(src).read(), flush=True)
open(iid, "w").write("sha256:" + "0" * 64)
print(sys.stdin.read(), flush=True)
"""


def test_a_build_secret_reaches_the_cli_as_a_file_only_root_reads_and_is_gone_after(tmp_path: Path) -> None:
    cli = tmp_path / "docker"
    cli.write_text(FAKE_CLI.format(python=sys.executable))
    cli.chmod(0o755)
    value = "https://user:s3cr3t-token@pypi.example/simple"
    secret_id = "paas/shop/PIP_INDEX_URL-0123456789abcdef01234567"
    b = BuildKitBuild(
        **{
            **BUILD.__dict__,
            "cli": str(cli),
            "iidfile": buildkit.scratch_iidfile(tmp_path / "builds"),
            "secrets": {secret_id: value},
        }
    )
    args = build_args(b)
    assert args[args.index("--secret") + 1] == f"id={secret_id},src={b.iidfile.parent}/secret-0"
    assert b.iidfile.parent.parent == tmp_path / "builds"
    assert value not in " ".join(args) and value not in build_env(b).values() and value not in repr(b)
    lines: list[str] = []
    try:
        image = buildkit.build(b, on_line=lines.append, should_stop=lambda: False, timeout=30)
        assert image == "sha256:" + "0" * 64
        assert lines[0] == f"secret 0o600 in 0o700 holds {len(value)} chars"
        assert not Path(lines[1]).exists()  # removed as soon as the CLI ended
        assert lines[2] == "a tool printed: ****"  # masked on its way to the release log
        assert all(value not in line for line in lines)
    finally:
        import shutil

        shutil.rmtree(b.iidfile.parent)


def test_a_build_secrets_id_is_the_apps_own_and_changes_with_its_value(tmp_path: Path) -> None:
    """BuildKit keys its shared cache by a secret mount's id, never by the
    value: the id is the app's own, keyed with a key only the agent reads,
    so no other app can name it and a new value is a new id."""
    ids = buildkit.secret_ids(tmp_path, "shop", {"TOKEN": "a-value", "PIP_INDEX_URL": "https://u:p@x/simple"})
    assert ids["TOKEN"].startswith("paas/shop/TOKEN-") and len(ids["TOKEN"]) == len("paas/shop/TOKEN-") + 24
    key = tmp_path / buildkit.ID_KEY_FILE
    assert oct(key.stat().st_mode & 0o777) == "0o600" and len(key.read_bytes()) == 32
    assert buildkit.secret_ids(tmp_path, "shop", {"TOKEN": "a-value"}) == {"TOKEN": ids["TOKEN"]}  # stable
    assert buildkit.secret_ids(tmp_path, "shop", {"TOKEN": "b-value"})["TOKEN"] != ids["TOKEN"]
    assert buildkit.secret_ids(tmp_path, "blog", {"TOKEN": "a-value"})["TOKEN"].startswith("paas/blog/TOKEN-")
    other = tmp_path / "elsewhere"
    assert buildkit.secret_ids(other, "shop", {"TOKEN": "a-value"})["TOKEN"] != ids["TOKEN"]  # keyed
    assert "a-value" not in " ".join(ids.values()) and buildkit.secret_ids(tmp_path, "shop", {}) == {}


def test_a_secret_a_build_prints_is_masked_in_its_log() -> None:
    value = "https://user:tok/en@pypi.example/simple"
    said = f"Looking in indexes: {value} and {quote(value, safe='')} and {quote(value)}"
    assert buildkit.masked(said, [value]) == "Looking in indexes: **** and **** and ****"
    assert buildkit.masked("a 1 b", ["1"]) == "a 1 b"  # too short to be told apart from the rest
    # longest first: no part of one value beside another's mask; each line of a value of several
    assert buildkit.masked("xxabcdyy and abcd", ["abcd", "xxabcdyy"]) == "**** and ****"
    pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----"
    assert buildkit.masked("#7 0.1 MIIEvQIBADANBgkqhkiG9w0B", [pem]) == "#7 0.1 ****"


def test_the_key_of_secret_ids_is_made_once_even_by_builds_at_once(tmp_path: Path) -> None:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        made = set(pool.map(lambda _n: buildkit._secret_key(tmp_path), range(32)))
    assert len(made) == 1 and len(made.pop()) == 32
    assert [p.name for p in tmp_path.iterdir()] == [buildkit.ID_KEY_FILE]  # no scratch file left
    (tmp_path / buildkit.ID_KEY_FILE).write_bytes(b"")
    with pytest.raises(buildkit.BuildKitError, match="not a key paas made"):
        buildkit.secret_ids(tmp_path, "shop", {"TOKEN": "v"})
