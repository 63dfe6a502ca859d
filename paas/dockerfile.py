"""Which images a Dockerfile reads (pure): every ``FROM`` and every
``COPY --from`` / ``ADD --from`` / ``RUN --mount=from=`` that names an image
rather than a stage, and the same in the ``ONBUILD`` triggers that run in
this build (of a base image, or of an earlier stage used as a base).

The file is read by Docker's own parser (the ``dockerfile`` package wraps
moby/buildkit's), once as it is and once without heredocs (Debian 12's
Docker 20.10 has none); the engines paas meets read ``FROM`` with the meta
ARGs (those before the first ``FROM``) and build args, the classic builder
and BuildKit each in their way: every image any of these readings names is
returned. ``--from`` and ``from=`` are not expanded by Docker; one holding a
variable is refused. So is whatever Docker versions read differently (see
:mod:`paas.dockerfile_lex`) or paas cannot resolve: it is refused, never
guessed at.

The agent resolves each reference through the engine before a build: one
app's Dockerfile must not read another app's images (their code and
build-time values), whatever name, tag or id it uses.

BuildKit reads more than images (``RUN --mount``), and ``Mounts`` says what a
build may mount: a cache only in the app's own namespace (BuildKit shares a
cache by its id across every build on one engine; ``namespace_mounts``
rewrites the app's own ids into it, and a base image's ONBUILD trigger that
mounts another cache is refused), a secret only of those the app defined
(by an id of the app's own, which ``namespace_mounts`` writes too),
never the host's SSH agent, and no option that holds a variable (BuildKit
expands it, paas reads it as written). ``RUN --network`` and ``--security``
other than the defaults are refused too.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from paas.dockerfile_lex import Env, Unknown, Unresolvable, builder_flags, expand, read_directives
from paas.errors import InvalidInput

__all__ = [
    "Command",
    "GoParseError",
    "ImageRead",
    "Mounts",
    "Parser",
    "cache_namespace",
    "command_of",
    "image_references",
    "images_read",
    "namespace_mounts",
    "parse_here",
    "remembering",
]


class Command(NamedTuple):
    """One instruction as Docker's parser reads it: the fields of the
    ``dockerfile`` package's Command that paas reads (``command_of``)."""

    cmd: str
    sub_cmd: str | None
    json: bool
    original: str
    start_line: int
    end_line: int
    flags: tuple[str, ...]
    value: tuple[str, ...]


class GoParseError(Exception):
    """Docker's parser refused the text; the argument is its words."""


Parser = Callable[[str], Sequence[Command]]  # raises GoParseError


def command_of(row: Sequence[Any]) -> Command:
    """A Command of the parser's row: a ``dockerfile.Command`` (heredocs and
    any later field left out) or the same fields as a JSON list."""
    cmd, sub_cmd, json, original, start_line, end_line, flags, value = row[: len(Command._fields)]
    return Command(
        str(cmd),
        None if sub_cmd is None else str(sub_cmd),
        bool(json),
        str(original),
        int(start_line),
        int(end_line),
        tuple(str(f) for f in flags),
        tuple(str(v) for v in value),
    )


SCRATCH = "scratch"
_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,511}")
_STAGE_INDEX = re.compile(r"[+-]?[0-9]+")
_ONBUILD = re.compile(r"^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*", re.IGNORECASE | re.ASCII)
_PLAIN_BRACES = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
# set by BuildKit for FROM, whatever the Dockerfile says
_PLATFORM_ARGS = (
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
)
# usable in FROM by the classic builder when given as build args
_PROXY_ARGS = tuple(
    name
    for base in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
    for name in (base, base.lower())
)


@dataclass(frozen=True)
class ImageRead:
    """An image the build reads, and where the Dockerfile names it."""

    ref: str
    where: str


Triggers = Callable[[ImageRead], Sequence[str]]


@dataclass(frozen=True)
class Mounts:
    """What ``RUN --mount`` may use in one app's build: caches whose id
    starts with ``namespace`` (None: caches are not checked, as when only
    the images are wanted) and the secrets named in ``secrets``."""

    namespace: str | None = None
    secrets: frozenset[str] = frozenset()


def cache_namespace(app: str) -> str:
    """The prefix of every cache id in ``app``'s builds. App names have no
    ``/``, so no app's prefix is the start of another's."""
    return f"paas/{app}/"


_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
# the flags paas reads (and so checks) on each instruction: any other, of any
# frontend version (RUN --device, ADD --keep-git-dir ...), is refused
_FLAGS = {
    "run": frozenset({"mount", "network", "security"}),
    "copy": frozenset({"from", "chown", "chmod", "link", "parents", "exclude"}),
    "add": frozenset({"from", "chown", "chmod", "link", "checksum", "exclude"}),
}
# what BuildKit's ADD takes for a git repository (dockerfile2llb isGitSource, with margin)
_GIT_SOURCE = re.compile(
    r"(git://|ssh://|git@|github\.com/|[a-z][a-z0-9+.-]*://[^#?\s]*\.git([#?/]|$))", re.IGNORECASE
)


def _no_triggers(read: ImageRead) -> Sequence[str]:
    return ()


def image_references(
    text: str, buildargs: Mapping[str, str] | None = None, *, onbuild: Triggers = _no_triggers
) -> list[str]:
    """Every image the Dockerfile ``text`` reads, in order, without duplicates."""
    return [read.ref for read in images_read(text, buildargs, onbuild=onbuild)]


def images_read(
    text: str,
    buildargs: Mapping[str, str] | None = None,
    *,
    onbuild: Triggers = _no_triggers,
    parse: Parser | None = None,
    mounts: Mounts | None = None,
) -> list[ImageRead]:
    """Every image the Dockerfile ``text`` reads with ``buildargs``.
    ``onbuild(read)`` gives the ONBUILD triggers of the base image read
    (called as each base is met, so it may check that image first).
    ``parse`` runs Docker's parser (default: ``parse_here``; the agent runs
    it in a process of its own). ``mounts`` is what ``RUN --mount`` may use.
    Raises InvalidInput, naming the line, for what paas refuses to build."""
    parse = remembering(parse or parse_here)
    args = dict(buildargs or {})
    for name in args:
        if name.upper().startswith("BUILDKIT_"):
            raise InvalidInput(
                f"the build arg {name} steers the builder (its frontend, attestations), not the Dockerfile"
            )
    _check_text(text)
    escape = read_directives(text)
    reads: dict[str, ImageRead] = {}
    for commands in _readings(text, parse):
        for meta in (_ClassicMeta(args, escape), _BuildKitMeta(args, escape)):
            _Walk(meta, escape, onbuild, reads, parse, mounts or Mounts()).run(commands)
    return list(reads.values())


def remembering(parse: Parser) -> Parser:
    """``parse``, reading each distinct text once however often it is asked
    (the agent's parser is a process per text: the rewrite and the check of
    one build share one)."""
    return parse if isinstance(parse, _Remembered) else _Remembered(parse)


def namespace_mounts(
    text: str, namespace: str, *, parse: Parser | None = None, secrets: Mapping[str, str] | None = None
) -> str:
    """``text`` with every cache mount of its own ``RUN`` and ``ONBUILD RUN``
    lines given an id in ``namespace``: ``id=X`` (or, without one, the
    target, BuildKit's default id) becomes ``id=<namespace>X``; and every
    secret mount of a name in ``secrets`` (its ``id``, ``source`` or target's
    name) given the id ``secrets[name]``, still at ``/run/secrets/<name>``.

    BuildKit keys its cache of a step by its mounts' ids, never by a secret's
    value, and shares that cache across every build on the engine: an id of
    the app's own that changes with the value (agent/buildkit.secret_ids)
    keeps another app, or a new value, from taking a step built with it.

    The mount is rewritten where it is written, so it must be on one line as
    its flag; ``images_read`` with ``Mounts(namespace, secrets=ids)`` then
    checks every reading."""
    parse = remembering(parse or parse_here)
    _check_text(text)
    read_directives(text)  # what images_read refuses first is said first
    lines = text.split("\n")
    for commands in _readings(text, parse):
        for command in commands:
            for flag in _run_flags(command, parse):
                name, _eq, value = flag.removeprefix("--").partition("=")
                if name.lower() != "mount":
                    continue
                kind, options = _mount_options(value, f"line {command.start_line}")
                if kind == "cache":
                    key = _cache_id(options)
                    if not key or key.startswith(namespace):
                        continue
                    kept = _without(value, "id")
                    rewritten = "--mount=" + ",".join([*kept, f"id={namespace}{key}"])
                elif kind == "secret" and secrets:
                    named = _secret_name(options)
                    if named not in secrets:
                        continue  # not the app's: the check refuses it
                    kept = _without(value, "id", "source", "src")
                    if not _target(options) and "env" not in options:
                        kept.append(f"target=/run/secrets/{named}")
                    rewritten = "--mount=" + ",".join([*kept, f"id={secrets[named]}"])
                else:
                    continue
                written = re.compile(rf"(?<!\S){re.escape(flag)}(?=\s|$)")
                span = range(command.start_line - 1, min(command.end_line, len(lines)))
                found = [n for n in span if written.search(lines[n])]
                if not found:
                    raise InvalidInput(
                        f"the Dockerfile, line {command.start_line}: write its {kind} --mount on one line, "
                        "as one word (paas gives each app's caches and secrets ids of their own)"
                    )
                for n in found:
                    lines[n] = written.sub(
                        rewritten.replace("\\", "\\\\"), lines[n]
                    )  # a template: its backslashes doubled
    return "\n".join(lines)


def _without(value: str, *names: str) -> list[str]:
    """A ``--mount`` value's options, but those named."""
    return [o for o in value.split(",") if o.partition("=")[0].strip().lower() not in names]


def _secret_name(options: Mapping[str, str]) -> str:
    """The secret a mount asks for, as BuildKit reads it: source= (or src=)
    over id=, else the target's last name."""
    for key in ("source", "id"):
        if options.get(key):
            return options[key]
    return _target(options).rstrip("/").rpartition("/")[2]


def _run_flags(command: Command, parse: Parser) -> tuple[str, ...]:
    """The flags of a RUN, or of the RUN an ONBUILD line holds."""
    kind = command.cmd.lower()
    if kind == "run":
        return command.flags
    if kind == "onbuild" and command.sub_cmd and command.sub_cmd.lower() == "run":
        trigger = _ONBUILD.sub("", command.original.split("\n", 1)[0], count=1)
        try:
            inner = parse(trigger)
        except GoParseError:
            return ()  # the walk refuses it, naming the line
        return inner[0].flags if len(inner) == 1 else ()
    return ()


# what BuildKit reads as one option (paas keeps the first name; given twice, the mount is refused)
_MOUNT_ALIASES = {"dst": "target", "destination": "target", "src": "source"}


def _target(options: Mapping[str, str]) -> str:
    return options.get("target", "")


def _cache_id(options: Mapping[str, str]) -> str:
    """A cache mount's id as BuildKit takes it: ``id=``, else its target."""
    return options.get("id") or _target(options)


def _mount_options(value: str, where: str) -> tuple[str, dict[str, str]]:
    """A ``--mount`` value's type and options (keys lowercased), as BuildKit
    reads them; refused when it holds what paas does not read as BuildKit does."""
    if '"' in value or "'" in value:
        raise InvalidInput(f"the Dockerfile, {where}: a quoted --mount option is not read by paas")
    if "$" in value:
        raise InvalidInput(
            f"the Dockerfile, {where}: the --mount option {value!r} holds a variable, which BuildKit "
            "expands and paas does not: write it out"
        )
    if not value.isascii() or not value.isprintable() or value != value.strip():
        # Go lowercases some non-ASCII letters into ASCII ones ("İd" is BuildKit's "id"), Python not
        raise InvalidInput(
            f"the Dockerfile, {where}: a --mount option holds a character other than printable ASCII"
        )
    options: dict[str, str] = {}
    for option in value.split(","):
        key, _eq, setting = option.partition("=")
        key = key.strip().lower()
        named = _MOUNT_ALIASES.get(key, key)
        if named in options:  # an alias is kept under the name it stands for
            # BuildKit takes the last of them, and paas would read another
            raise InvalidInput(
                f"the Dockerfile, {where}: the --mount option {key} (or its alias) is given twice"
            )
        options[named] = setting.strip()
    kind = options.get("type", "bind").lower()
    if kind not in _MOUNT_TYPES:
        raise InvalidInput(f"the Dockerfile, {where}: --mount type {kind!r} is not one BuildKit has")
    if kind == "cache" and ".." in _cache_id(options).split("/"):
        # BuildKit cleans the target it takes as the id: `paas/me/../other/x` is another's cache
        raise InvalidInput(f"the Dockerfile, {where}: a cache --mount's id or target climbs with '..'")
    return kind, options


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise InvalidInput("the Dockerfile holds a NUL character")
    lone = re.search(r"\r(?!\n)", text)
    if lone is not None:
        line = text.count("\n", 0, lone.start()) + 1
        raise InvalidInput(
            f"line {line} of the Dockerfile has a carriage return that does not end the line: "
            "Docker versions read it differently"
        )


def parse_here(text: str) -> tuple[Command, ...]:
    """Docker's own parser (the ``dockerfile`` package, a Go library) in this
    process, loaded at the first call: its Go runtime holds about 4 MiB and
    starts threads as it loads, which is why the agent runs it in a short-lived
    process of its own (agent/commands.py ``parse_dockerfile``)."""
    import dockerfile

    try:
        return tuple(command_of(c) for c in dockerfile.parse_string(text))
    except dockerfile.GoParseError as exc:
        raise GoParseError(str(exc)) from None


MOST_PARSES = 200  # distinct texts one Dockerfile may have parsed (itself, its readings, its triggers)


class _Remembered:
    """``parse`` once per distinct text: every ONBUILD trigger is read again
    at every stage built FROM its stage, in each way of reading meta ARGs,
    and each parse may be a process of its own; a Dockerfile that needs
    more than MOST_PARSES distinct ones is refused."""

    def __init__(self, parse: Parser) -> None:
        self.parse = parse
        self.seen: dict[str, Sequence[Command] | GoParseError] = {}

    def __call__(self, text: str) -> Sequence[Command]:
        if text not in self.seen:
            if len(self.seen) >= MOST_PARSES:
                raise InvalidInput(
                    f"the Dockerfile and its ONBUILD triggers have more than {MOST_PARSES} distinct "
                    "instructions to read: refused"
                )
            try:
                self.seen[text] = tuple(self.parse(text))
            except GoParseError as exc:
                self.seen[text] = exc
        said = self.seen[text]
        if isinstance(said, GoParseError):
            raise GoParseError(str(said))
        return said


def _parse(text: str, parse: Parser) -> Sequence[Command]:
    try:
        return parse(text)
    except GoParseError as exc:
        raise InvalidInput(f"the Dockerfile does not parse: {exc}") from None


def _readings(text: str, parse: Parser) -> Iterator[Sequence[Command]]:
    """The instructions as Docker's parser reads ``text``, then (when it has
    ``<<``) as a parser without heredocs would: the lines of a heredoc are
    then instructions. A reading that fails is one no engine builds."""
    commands = _parse(text, parse)
    if "<<" not in text:
        yield commands
        return
    for command in commands:
        if command.cmd.lower() in ("run", "copy", "add", "onbuild"):
            _check_heredoc_line(command)
    yield commands
    with contextlib.suppress(GoParseError):  # then Docker 20.10 would not build it
        yield parse(text.replace("<<", "<~"))


def _check_heredoc_line(command: Command) -> None:
    """Whether a line starts a heredoc depends on how the lexer splits its
    words, which changed between buildkit versions for `<< NAME` (a space)
    and for `${VAR:-...}`-style expansions: refuse those on a line with `<<`."""
    line = command.original.split("\n", 1)[0]
    if "<<" not in line:
        return
    if re.search(r"<<[\t\r ]", line) or "${" in _PLAIN_BRACES.sub("", line):
        raise InvalidInput(
            f"line {command.start_line} of the Dockerfile has `<<` with a space after it or a ${{...}} "
            "expansion: Docker versions disagree on whether it starts a heredoc (write `<<NAME`)"
        )


def _arguments(words: Sequence[str]) -> list[tuple[str, str | None]]:
    """``ARG`` words as Docker splits them: name, and default or None."""
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        name, eq, default = word.partition("=")
        pairs.append((name, default if eq else None))
    return pairs


class _ClassicMeta:
    """Meta ARGs as the classic builder reads them (moby's
    builder/dockerfile: processMetaArg, BuildArgs.getBuildArg): one ARG
    line is expanded at once, with what came before it; a build arg
    overrides a declared one; an ARG without default unsets it; the proxy
    variables come from build args alone."""

    def __init__(self, buildargs: Mapping[str, str], escape: str) -> None:
        self.buildargs = buildargs
        self.escape = escape
        self.declared: dict[str, str | Unknown | None] = {}

    def env(self) -> Env:
        found: dict[str, str | Unknown] = {}
        for name in [*self.declared, *_PROXY_ARGS]:
            value = self.buildargs.get(name, self.declared.get(name))
            if value is not None:
                found[name] = value
        return found

    def declare(self, pairs: list[tuple[str, str | None]]) -> None:
        env = self.env()
        for name, default in [(n, None if d is None else _lazily(d, env, self.escape)) for n, d in pairs]:
            self.declared[name] = default


class _BuildKitMeta:
    """Meta ARGs as BuildKit reads them (dockerfile2llb: defaultArgs,
    buildMetaArgs): one name after the other; the platform variables are set
    by the builder (paas does not know them); a build arg overrides."""

    def __init__(self, buildargs: Mapping[str, str], escape: str) -> None:
        self.buildargs = buildargs
        self.escape = escape
        self.values: dict[str, str | Unknown] = {
            name: buildargs.get(name, Unknown(f"${{{name}}} is set by the builder, not the Dockerfile"))
            for name in _PLATFORM_ARGS
        }

    def env(self) -> Env:
        return self.values

    def declare(self, pairs: list[tuple[str, str | None]]) -> None:
        for name, default in pairs:
            if name in self.buildargs:
                self.values[name] = self.buildargs[name]
            elif default is not None:
                self.values[name] = _lazily(default, self.values, self.escape)


def _lazily(word: str, env: Env, escape: str) -> str | Unknown:
    """An ARG's default: refused only if a FROM uses it."""
    try:
        return expand(word, env, escape)
    except Unresolvable as exc:
        return Unknown(str(exc))


@dataclass
class _Stage:
    name: str
    triggers: list[str] = field(default_factory=list)  # its ONBUILD lines: run in a stage FROM it


class _Walk:
    """One reading of the instructions, with one way of reading meta ARGs."""

    def __init__(
        self,
        meta: _ClassicMeta | _BuildKitMeta,
        escape: str,
        onbuild: Triggers,
        reads: dict[str, ImageRead],
        parse: Parser,
        mounts: Mounts,
    ) -> None:
        self.parse = parse
        self.mounts = mounts
        self.meta = meta
        self.escape = escape
        self.onbuild = onbuild
        self.reads = reads
        self.stages: list[_Stage] = []
        self.stopped = False

    def run(self, commands: Sequence[Command]) -> None:
        for command in commands:
            if self.stopped:
                return
            kind = command.cmd.lower()
            where = f"line {command.start_line}"
            if kind == "from":
                self.start_stage(command, where)
            elif kind == "arg" and not self.stages:
                self.meta.declare(self.plain_names(command, where))
            else:
                self.instruction(command, self.escape, where)

    def plain_names(self, command: Command, where: str) -> list[tuple[str, str | None]]:
        pairs = _arguments(command.value)
        for name, _default in pairs:
            if not name or any(c in name for c in ("$", "'", '"', self.escape)):
                raise InvalidInput(f"the Dockerfile, {where}: ARG {name!r} is not a plain name")
        return pairs

    def start_stage(self, command: Command, where: str) -> None:
        words = command.value
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].casefold() != "as"):
            raise InvalidInput(f"the Dockerfile, {where}: FROM takes an image and, optionally, AS a name")
        try:
            base = expand(words[0], self.meta.env(), self.escape)
        except Unresolvable as exc:
            raise InvalidInput(
                f"the Dockerfile, {where}: FROM {words[0]} cannot be resolved: {exc}"
            ) from None
        if not base:
            self.stop(f"the Dockerfile, {where}: FROM {words[0]} is blank once expanded")
            return
        bases = [stage for stage in self.stages if stage.name == base]
        self.stages.append(_Stage(words[2].lower() if len(words) == 3 else ""))
        if bases:
            origin = f"stage {base!r}"
            triggers = [trigger for stage in bases for trigger in stage.triggers]
        elif base == SCRATCH:
            return
        else:
            read = self.read(base, f"{where}, FROM")
            if read is None:
                return
            origin = repr(base)
            triggers = list(self.onbuild(read))
        for trigger in triggers:
            self.trigger(trigger, f"an ONBUILD trigger of {origin} ({where})")

    def trigger(self, text: str, where: str) -> None:
        """One trigger runs as an instruction of the stage just begun."""
        if any(c in text for c in "\n\r\x00"):
            raise InvalidInput(f"the Dockerfile, {where}: the trigger spans lines")
        try:
            commands = self.parse(text)
        except GoParseError as exc:
            raise InvalidInput(f"the Dockerfile, {where}: the trigger does not parse: {exc}") from None
        if len(commands) != 1 or commands[0].cmd.lower() == "from":
            raise InvalidInput(
                f"the Dockerfile, {where}: {text!r} is not one instruction Docker runs as a trigger"
            )
        self.instruction(commands[0], "\\", where)

    def instruction(self, command: Command, escape: str, where: str) -> None:
        kind = command.cmd.lower()
        first_line = command.original.split("\n", 1)[0]
        if kind == "onbuild":
            if self.stages:
                self.stages[-1].triggers.append(_ONBUILD.sub("", first_line, count=1))
            return
        if kind not in ("copy", "add", "run"):
            return
        flags = list(command.flags)
        if escape != "\\":  # buildkit up to v0.12 escapes flags with a backslash, later ones with the token
            for reading in (builder_flags(first_line, "\\"), builder_flags(first_line, escape)):
                flags += [flag for flag in reading if flag not in flags]
        if kind == "add":
            self.check_add_sources(command.value[:-1], where)
        for flag in flags:
            name, eq, value = flag.removeprefix("--").partition("=")
            if name.lower() not in _FLAGS[kind]:
                raise InvalidInput(
                    f"the Dockerfile, {where}: {kind.upper()} --{name} is not a flag paas reads "
                    f"({', '.join('--' + f for f in sorted(_FLAGS[kind]))} are): refused"
                )
            if not eq or not value:
                continue
            if kind in ("copy", "add") and name.lower() == "from":
                self.copy_from(value, f"{where}, {kind.upper()} --from")
            elif kind == "run" and name.lower() == "mount":
                self.check_mount(value, f"{where}, RUN --mount")
                for source in self.mount_sources(value):
                    self.mount_from(source, f"{where}, RUN --mount from=")
            elif (
                kind == "run"
                and name.lower() in ("network", "security")
                and value.lower() not in ("default", "none", "sandbox")
            ):
                raise InvalidInput(
                    f"the Dockerfile, {where}: RUN --{name.lower()}={value} would leave the build's "
                    "sandbox: refused"
                )

    def check_add_sources(self, sources: Sequence[str], where: str) -> None:
        """BuildKit's ADD clones a git URL with git and ssh run by the engine,
        as root, with root's SSH keys: the ones paas fetches apps' private
        repositories with. The classic builder has no such ADD."""
        for source in sources:
            if _GIT_SOURCE.match(source):
                raise InvalidInput(
                    f"the Dockerfile, {where}: ADD {source} would be cloned with the server's own git "
                    "credentials: refused (clone it in a RUN step, or vendor it)"
                )

    def check_mount(self, value: str, where: str) -> None:
        kind, options = _mount_options(value, where)
        target = _target(options)
        if kind == "ssh":
            raise InvalidInput(
                f"the Dockerfile, {where}: type=ssh would lend the build an SSH agent: refused"
            )
        if kind == "secret":
            # BuildKit takes source= (or src=) over id=, and the target's name without either
            named = [options[k] for k in ("source", "id") if options.get(k)]
            for secret in named or [target.rstrip("/").rpartition("/")[2]]:
                if secret not in self.mounts.secrets:
                    said = f"the secret {secret!r} is not one of the app's build secrets"
                    raise InvalidInput(f"the Dockerfile, {where}: {said}")
        if kind == "cache" and self.mounts.namespace is not None:
            cache = _cache_id(options)
            if not cache.startswith(self.mounts.namespace):
                raise InvalidInput(
                    f"the Dockerfile, {where}: the cache {cache!r} is not in this app's namespace "
                    f"({self.mounts.namespace}): a cache another app's build could read or write"
                )

    def earlier(self) -> set[str]:
        """The stage names an instruction of the current stage can use."""
        return {stage.name for stage in self.stages[:-1] if stage.name}

    def copy_from(self, value: str, where: str) -> None:
        if "$" in value:
            raise InvalidInput(
                f"the Dockerfile, {where}: {value!r} holds a variable, which Docker does not expand"
            )
        if _STAGE_INDEX.fullmatch(value) or value.lower() in self.earlier():
            return  # a stage (an index out of range fails the build)
        self.read(value, where)

    def mount_sources(self, value: str) -> list[str]:
        """Every ``from=`` of a --mount value ``check_mount`` has read (no
        quotes, no variables), each time it is given."""
        sources = []
        for option in value.split(","):
            key, eq, source = option.partition("=")
            if eq and key.strip().lower() == "from" and source:
                sources.append(source)
        return sources

    def mount_from(self, value: str, where: str) -> None:
        if value.lower() not in self.earlier():
            self.read(value, where)

    def read(self, ref: str, where: str) -> ImageRead | None:
        """None when ``ref`` is no image reference the classic builder reads:
        it stops there."""
        if "$" in ref:
            raise InvalidInput(f"the Dockerfile, {where}: {ref!r} still holds a $ once expanded")
        if not _REFERENCE.fullmatch(ref):
            self.stop(f"the Dockerfile, {where}: {ref!r} is not an image reference paas reads")
            return None
        return self.reads.setdefault(ref, ImageRead(ref, where))

    def stop(self, why: str) -> None:
        """The classic builder fails the build where it meets ``why``, so
        nothing after it runs. BuildKit goes on: a stage the target does not
        need is never fetched, whatever it names, and newer frontends read
        references paas does not (``[::1]:5000/x``). So in BuildKit's reading
        it is refused, or what follows it would go unchecked."""
        if isinstance(self.meta, _BuildKitMeta):
            raise InvalidInput(f"{why}: refused (BuildKit would build on past it)")
        self.stopped = True
