"""What a BuildKit build may mount (issue 31): caches only in the app's own
namespace, secrets only the app's, never an SSH agent, no option whose
meaning BuildKit decides at build time; and the rewrite that moves the app's
own cache ids into its namespace, read back by Docker's own parser."""

from __future__ import annotations

import pytest

from paas.dockerfile import (
    Command,
    Mounts,
    cache_namespace,
    images_read,
    namespace_mounts,
    parse_here,
    remembering,
)
from paas.errors import InvalidInput

SHOP = Mounts(namespace=cache_namespace("shop"), secrets=frozenset({"PIP_INDEX_URL"}))


def _cache_ids(text: str) -> list[str]:
    ids = []
    for command in parse_here(text):
        for flag in command.flags:
            if flag.startswith("--mount=") and "type=cache" in flag:
                ids += [o.partition("=")[2] for o in flag.split(",") if o.startswith("id=")]
    return ids


def test_the_apps_own_caches_move_into_its_namespace_and_nothing_else_changes() -> None:
    text = (
        "FROM python:3.12-slim\n"
        "RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt\n"
        "RUN --mount=type=cache,id=uv,target=/root/.cache/uv \\\n"
        "    --mount=type=bind,source=uv.lock,target=uv.lock uv sync --frozen\n"
        "RUN --mount=type=cache,target=/a --mount=type=cache,target=/ab echo /a /ab\n"
        "RUN --mount=type=tmpfs,target=/tmp echo hi\n"
    )
    rewritten = namespace_mounts(text, cache_namespace("shop"))
    assert _cache_ids(rewritten) == [
        "paas/shop//root/.cache/pip",
        "paas/shop/uv",
        "paas/shop//a",
        "paas/shop//ab",
    ]
    assert rewritten.splitlines()[3] == "    --mount=type=bind,source=uv.lock,target=uv.lock uv sync --frozen"
    assert rewritten.splitlines()[4].endswith(" echo /a /ab")
    assert len(rewritten.splitlines()) == len(text.splitlines())
    assert namespace_mounts(rewritten, cache_namespace("shop")) == rewritten  # once is enough
    assert images_read(rewritten, mounts=SHOP) == [images_read(text)[0]]


def test_an_id_naming_another_apps_cache_stays_inside_this_apps_namespace() -> None:
    text = "FROM python:3.12-slim\nRUN --mount=type=cache,id=paas/blog//root/.cache/pip,target=/c ls /c\n"
    assert _cache_ids(namespace_mounts(text, cache_namespace("shop"))) == [
        "paas/shop/paas/blog//root/.cache/pip"
    ]
    assert _cache_ids(namespace_mounts(text, cache_namespace("blog"))) == ["paas/blog//root/.cache/pip"]
    assert not cache_namespace("shop-2").startswith(cache_namespace("shop"))


def test_an_onbuild_cache_of_the_dockerfile_is_rewritten_and_a_base_images_is_refused() -> None:
    text = (
        "FROM python:3.12-slim AS base\n"
        "ONBUILD RUN --mount=type=cache,target=/root/.cache/pip pip install x\n"
        "FROM base\n"
    )
    rewritten = namespace_mounts(text, cache_namespace("shop"))
    assert "id=paas/shop//root/.cache/pip" in rewritten.splitlines()[1]
    images_read(rewritten, mounts=SHOP)
    with pytest.raises(InvalidInput, match="not in this app's namespace"):
        images_read(text, mounts=SHOP)

    def poisoned_base(_read: object) -> list[str]:  # a public image another app's owner published
        return ["RUN --mount=type=cache,id=paas/blog//root/.cache/pip,target=/c touch /c/marker"]

    with pytest.raises(
        InvalidInput, match=r"cache 'paas/blog//root/.cache/pip' is not in this app's namespace"
    ):
        images_read("FROM someone/base:1\n", onbuild=poisoned_base, mounts=SHOP)


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("RUN --mount=type=ssh ssh git@example.com", "SSH agent"),
        ("RUN --mount=type=secret,id=AWS_KEY cat /run/secrets/AWS_KEY", "'AWS_KEY' is not one of the app's"),
        ("RUN --mount=type=secret,target=/run/secrets/TOKEN cat /run/secrets/TOKEN", "'TOKEN' is not one"),
        ("RUN --mount=type=cache,target=$HOME/.cache ls", "holds a variable"),
        ("RUN --mount=type=${T},target=/x ls", "holds a variable"),
        ("RUN --mount=type=volume,target=/x ls", "not one BuildKit has"),
        ('RUN --mount="type=cache,target=/x" ls', "not in this app's namespace"),
        ("RUN --network=host curl example.com", "sandbox"),
        ("RUN --security=insecure mount -t proc none /x", "sandbox"),
        # BuildKit takes source= over id=: each name given must be the app's
        ("RUN --mount=type=secret,source=OTHER,target=/run/secrets/PIP_INDEX_URL true", "'OTHER' is not one"),
        ("RUN --mount=type=secret,src=OTHER,id=PIP_INDEX_URL true", "'OTHER' is not one"),
        # cloned by the engine with root's SSH keys
        ("ADD git@github.com:victim/blog.git#main /src", "server's own git credentials"),
        ("ADD ssh://git@example.com/blog.git /src", "server's own git credentials"),
        ("ADD https://github.com/victim/blog.git#main /src", "server's own git credentials"),
        ('ADD ["git://example.com/blog", "/src"]', "server's own git credentials"),
        ("ADD github.com/victim/blog /src", "server's own git credentials"),
        # a flag paas does not read, of this frontend or a later one
        ("RUN --device=/dev/kvm true", "RUN --device is not a flag paas reads"),
        ("ADD --keep-git-dir=true https://example.com/a.tgz /a", "ADD --keep-git-dir is not a flag"),
        ("COPY --whatever=1 a /a", "COPY --whatever is not a flag"),
        # read one way by paas and another by BuildKit, to reach another app's cache (attacker's review)
        (
            "RUN --mount=type=cache,target=paas/shop/x,dst=paas/blog/pip true",
            "option dst .or its alias. is given twice",
        ),
        (
            "RUN --mount=type=cache,id=paas/shop/x,id=paas/blog/pip,target=/c true",
            "option id .or its alias. is given twice",
        ),
        ("RUN --mount=type=cache,target=paas/shop/../blog/pip true", "climbs with '..'"),
        (
            "RUN --mount=type=cache,id=paas/shop/x,\u0130d=paas/blog//root/.cache/pip,target=/c true",
            "other than printable ASCII",
        ),
        ("RUN --mount=type=secret,id=PIP_INDEX_URL,src=PIP_INDEX_URL,source=X true", "given twice"),
    ],
)
def test_what_a_build_may_not_mount_is_refused_naming_the_line(line: str, said: str) -> None:
    with pytest.raises(InvalidInput, match=said) as refused:
        images_read(f"FROM python:3.12-slim\n{line}\n", mounts=SHOP)
    assert "line 2" in str(refused.value)


def test_an_archive_or_file_from_a_plain_url_may_still_be_added() -> None:
    text = "FROM python:3.12-slim\nADD --chmod=0644 https://example.com/a.tgz /a\nADD --link . /src\n"
    assert [read.ref for read in images_read(text, mounts=SHOP)] == ["python:3.12-slim"]


def test_what_a_build_may_mount() -> None:
    text = (
        "FROM python:3.12-slim AS build\n"
        "RUN echo built > /x\n"
        "FROM python:3.12-slim\n"
        "RUN --mount=type=secret,id=PIP_INDEX_URL,required=true pip download x\n"
        "RUN --mount=type=secret,target=/run/secrets/PIP_INDEX_URL true\n"
        "RUN --mount=type=bind,from=build,source=/x,target=/y --mount=type=tmpfs,target=/t true\n"
        "RUN --network=none --mount=type=cache,id=paas/shop/pip,target=/c,sharing=locked true\n"
    )
    assert [read.ref for read in images_read(text, mounts=SHOP)] == ["python:3.12-slim"]


def test_a_cache_mount_written_across_lines_is_refused_rather_than_left_shared() -> None:
    text = "FROM python:3.12-slim\nRUN --mount=type=cache,\\\ntarget=/root/.cache/pip pip install x\n"
    with pytest.raises(InvalidInput, match="line 2: write its cache --mount on one line"):
        namespace_mounts(text, cache_namespace("shop"))
    quoted = 'FROM python:3.12-slim\nRUN --mount="type=cache,target=/x" ls\n'
    with pytest.raises(InvalidInput, match="line 2: write its cache --mount on one line"):
        namespace_mounts(quoted, cache_namespace("shop"))


def test_the_rewrite_and_the_check_of_one_build_parse_each_text_once() -> None:
    """The agent's parser is a process per text (about 20 ms each)."""
    seen: list[str] = []

    def counting(text: str) -> tuple[Command, ...]:
        seen.append(text)
        return parse_here(text)

    parse = remembering(counting)
    assert remembering(parse) is parse
    text = "FROM python:3.12-slim\nRUN pip install x\n"  # no cache mount: the rewrite changes nothing
    images_read(namespace_mounts(text, cache_namespace("shop"), parse=parse), mounts=SHOP, parse=parse)
    assert seen == [text]


@pytest.mark.parametrize(
    ("mount", "rewritten"),
    [
        ("--mount=type=secret,id=TOKEN",
         "--mount=type=secret,target=/run/secrets/TOKEN,id=paas/shop/TOKEN-ab"),
        ("--mount=type=secret,source=TOKEN,target=/t", "--mount=type=secret,target=/t,id=paas/shop/TOKEN-ab"),
        ("--mount=type=secret,src=TOKEN,mode=0400", "--mount=type=secret,mode=0400,target=/run/secrets/TOKEN,"
         "id=paas/shop/TOKEN-ab"),
        ("--mount=type=secret,target=/run/secrets/TOKEN,required=true",
         "--mount=type=secret,target=/run/secrets/TOKEN,required=true,id=paas/shop/TOKEN-ab"),
    ],
)  # fmt: skip
def test_the_apps_secret_mounts_take_its_ids_and_stay_where_the_dockerfile_reads_them(
    mount: str, rewritten: str
) -> None:
    """BuildKit keys its shared cache by the secret mount's id, not its value:
    each of the app's own secret mounts gets the id paas made for it (the
    app's, changing with the value), at the path the Dockerfile reads."""
    ids = {"TOKEN": "paas/shop/TOKEN-ab"}
    text = f"FROM python:3.11-slim\nRUN {mount} cat /run/secrets/TOKEN\n"
    done = namespace_mounts(text, cache_namespace("shop"), secrets=ids)
    assert done == f"FROM python:3.11-slim\nRUN {rewritten} cat /run/secrets/TOKEN\n"
    assert namespace_mounts(done, cache_namespace("shop"), secrets=ids) == done  # once is enough
    images_read(done, mounts=Mounts(namespace=cache_namespace("shop"), secrets=frozenset(ids.values())))
    # the name alone, or another app's id, is not one of this build's secrets
    for other in (text, done.replace("paas/shop/TOKEN-ab", "paas/blog/TOKEN-ab")):
        with pytest.raises(InvalidInput, match="is not one of the app's build secrets"):
            images_read(
                other, mounts=Mounts(namespace=cache_namespace("shop"), secrets=frozenset(ids.values()))
            )
