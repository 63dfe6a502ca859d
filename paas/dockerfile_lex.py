"""How Docker reads the words of a Dockerfile, emulated where the parser
package (``dockerfile`` on PyPI, moby/buildkit's Go parser) stops: the
parser directives, the ``--flags`` of an instruction, and the variable
expansion of a word (buildkit's ``shell.Lex.ProcessWord``).

Three parsers build on the engines paas meets: Debian 12's docker.io
(20.10, buildkit's parser of v0.8), Docker 28's classic builder and BuildKit
(v0.22 and later); the ``dockerfile`` package wraps v0.12. Where they read
a file differently, paas refuses it rather than guess which one builds.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from paas.errors import InvalidInput

__all__ = [
    "SYNTAX_ALLOWED",
    "Unknown",
    "Unresolvable",
    "builder_flags",
    "expand",
    "go_strip",
    "read_directives",
]

# unicode.IsSpace in Go (Python's str.isspace also counts \x1c-\x1f)
GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
_RE2_SPACE = "[\t\n\f\r ]"  # \s in Go's regexp
_DIRECTIVE = re.compile(rf"([a-zA-Z][a-zA-Z0-9]*){_RE2_SPACE}*={_RE2_SPACE}*(.+?){_RE2_SPACE}*")
_KNOWN = {"syntax", "escape", "check"}

# The one frontend a `# syntax=` line may ask for: Docker's own, stable
# channel, by major, minor or patch version (optionally pinned by digest).
# Any other is code the repository chose, run by the builder.
SYNTAX_ALLOWED = re.compile(r"(?:docker\.io/)?docker/dockerfile:1(?:\.[0-9]+){0,2}(?:@sha256:[0-9a-f]{64})?")


def go_strip(text: str) -> str:
    return text.strip(GO_SPACE)


# -- parser directives ---------------------------------------------------------


@dataclass(frozen=True)
class _Reading:
    """One parser's way of reading the directive lines."""

    prefix: str  # "#", or "//" (BuildKit's syntax detection only)
    unicode_space: bool  # after the prefix: Go's unicode.IsSpace (newest) or regexp's \s
    valid: frozenset[str]
    left_trim: bool  # the Dockerfile parser trims each line; syntax detection does not


_OLD = frozenset({"escape", "syntax"})
_NEW = frozenset(_KNOWN)
_MAIN = (  # the Dockerfile parser: buildkit v0.8-v0.12, v0.13-v0.22, newest
    _Reading("#", False, _OLD, True),
    _Reading("#", False, _NEW, True),
    _Reading("#", True, _NEW, True),
)
_DETECT = tuple(  # BuildKit's DetectSyntax, which picks the frontend
    _Reading(prefix, space, _NEW, False) for prefix in ("#", "//") for space in (False, True)
)


def _scan(lines: list[str], how: _Reading) -> tuple[dict[str, tuple[str, int]], tuple[str, int] | None, bool]:
    """The directives ``how`` finds at the top of ``lines``; the first line
    shaped like a directive that is none (name, line); whether it met one twice."""
    found: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.removesuffix("\r")
        if how.left_trim:
            line = line.lstrip(GO_SPACE)
        if not line.startswith(how.prefix):
            break
        rest = line[len(how.prefix) :]
        rest = rest.lstrip(GO_SPACE) if how.unicode_space else rest.lstrip("\t\n\f\r ")
        match = _DIRECTIVE.fullmatch(rest)
        if match is None:
            break
        name = match[1].lower()
        if name not in how.valid:
            return found, (name, number), False
        if name in found:
            return found, None, True
        found[name] = (match[2], number)
    return found, None, False


def read_directives(text: str) -> str:
    """The escape token of ``text``, after refusing what paas does not
    allow: a frontend other than Docker's own, a directive it does not know,
    and directives that Docker versions read differently."""
    lines = text.removeprefix("\ufeff").split("\n")
    escapes: set[str] = set()
    syntaxes: list[tuple[str, int]] = []
    for how in _MAIN:
        found, unknown, twice = _scan(lines, how)
        if twice:
            raise InvalidInput("the Dockerfile repeats a parser directive")
        if unknown is not None and unknown[0] not in _KNOWN:
            raise InvalidInput(
                f"line {unknown[1]} of the Dockerfile is a parser directive paas does not allow "
                f"({unknown[0]}): only escape, check and syntax are"
            )
        escapes.add(found.get("escape", ("\\", 0))[0])
        if "syntax" in found:
            syntaxes.append(found["syntax"])
    if len(escapes) > 1:
        raise InvalidInput(
            "Docker versions read the Dockerfile's escape directive differently "
            "(a `# check` or unusual space before it): put `# escape=` on the first line"
        )
    (escape,) = escapes
    if escape not in ("\\", "`"):
        raise InvalidInput(f"the Dockerfile's escape directive names {escape!r}: Docker allows ` or \\ only")
    body = "\n".join(lines)
    shebang, _, after = body.partition("\n")
    for start, skipped in ((body, 0), (after, 1)) if shebang.startswith("#!") else ((body, 0),):
        for how in _DETECT:
            found, _unknown, _twice = _scan(start.split("\n"), how)
            if "syntax" in found:
                syntaxes.append((found["syntax"][0], found["syntax"][1] + skipped))
        if start.lstrip(" \t\r\n").startswith("{"):
            raise InvalidInput("the Dockerfile starts with `{`: BuildKit would read it as JSON directives")
    for value, number in syntaxes:
        if not SYNTAX_ALLOWED.fullmatch(value):
            raise InvalidInput(
                f"line {number} of the Dockerfile asks for the frontend {value!r}: a custom frontend is "
                "code the repository chooses; only `# syntax=docker/dockerfile:1` (or 1.N, 1.N.N) is allowed"
            )
    return escape


# -- builder flags ---------------------------------------------------------------


def builder_flags(line: str, escape: str) -> list[str]:
    """The leading ``--flags`` of an instruction ``line`` as buildkit's
    splitCommand/extractBuilderFlags reads them with ``escape`` (v0.13 and
    later; older parsers always escape with \\). Go walks the bytes, so a
    byte of a multi-byte character may count as a space."""
    parts = re.split(r"[\t\v\f\r ]+", go_strip(line), maxsplit=1)
    if len(parts) < 2:
        return []
    text = parts[1].encode("utf-8").decode("latin-1")
    spaces = "\t\n\v\f\r \x85\xa0"
    words: list[str] = []
    word, phase, quote, blank_ok = "", "spaces", "", False
    pos = 0
    while pos <= len(text):
        at_end = pos == len(text)
        ch = "" if at_end else text[pos]
        if phase == "spaces":
            if at_end:
                break
            if ch in spaces:
                pos += 1
                continue
            if ch != "-" or pos + 1 == len(text) or text[pos + 1] != "-":
                return words
            phase = "word"
        if at_end:
            if word != "--" and (blank_ok or word):
                words.append(word)
            break
        if phase == "word":
            if ch in spaces:
                if word == "--":
                    return words
                if blank_ok or word:
                    words.append(word)
                word, phase, blank_ok = "", "spaces", False
            elif ch in "'\"":
                quote, blank_ok, phase = ch, True, "quote"
            elif ch == escape and pos + 1 == len(text):
                pass  # an escape at the end is dropped
            else:
                if ch == escape:
                    pos += 1
                    ch = text[pos]
                word += ch
        elif ch == quote or (ch == escape and pos + 1 == len(text)):
            phase = "word"  # a closing quote, or an escape at the end (dropped)
        else:
            if ch == escape:
                pos += 1
                ch = text[pos]
            word += ch
        pos += 1
    return words


# -- variable expansion ------------------------------------------------------------


class Unresolvable(Exception):
    """A word whose expansion paas cannot know as Docker would make it."""


@dataclass(frozen=True)
class Unknown:
    """A variable whose value paas cannot know (the builder sets it)."""

    why: str


Env = Mapping[str, "str | Unknown"]
_SPECIAL = "@*#?-$!0"


def expand(word: str, env: Env, escape: str) -> str:
    """``word`` with its quotes, escapes and variables processed as
    buildkit's ProcessWord does (the forms all its versions share, and
    ``${VAR-w}``/``${VAR+w}`` as the newer ones read them); raises
    Unresolvable for the forms paas does not read (``#``, ``%``, ``/``), for
    an error Docker would report, and for a variable of unknown value."""
    return _Word(word, env, escape).stop_on(None)


class _Word:
    def __init__(self, word: str, env: Env, escape: str) -> None:
        self.chars = word.removeprefix("\ufeff")  # Go's text/scanner skips a leading BOM
        self.pos = 0
        self.env = env
        self.escape = escape

    def peek(self) -> str | None:
        return self.chars[self.pos] if self.pos < len(self.chars) else None

    def next(self) -> str | None:
        ch = self.peek()
        if ch is not None:
            self.pos += 1
        return ch

    def stop_on(self, stop: str | None) -> str:
        out: list[str] = []
        while (ch := self.peek()) is not None:
            if ch == stop:
                self.next()
                return "".join(out)
            if ch == "'":
                out.append(self.single_quoted())
            elif ch == '"':
                out.append(self.double_quoted())
            elif ch == "$":
                out.append(self.dollar())
            else:
                self.next()
                if ch == self.escape:
                    ch = self.next()
                    if ch is None:
                        break
                out.append(ch)
        if stop is not None:
            raise Unresolvable(f"no closing {stop}")
        return "".join(out)

    def single_quoted(self) -> str:
        self.next()
        out: list[str] = []
        while (ch := self.next()) != "'":
            if ch is None:
                raise Unresolvable("an unterminated single quote")
            out.append(ch)
        return "".join(out)

    def double_quoted(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if ch is None:
                raise Unresolvable("an unterminated double quote")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.next()
            if ch == self.escape:
                following = self.peek()
                if following is None:
                    continue
                if following in ('"', "$", self.escape):
                    ch = following
                    self.next()
            out.append(ch)

    def name(self) -> str:
        out: list[str] = []
        while (ch := self.peek()) is not None:
            if not out and unicodedata.category(ch) == "Nd":
                while (digit := self.peek()) is not None and unicodedata.category(digit) == "Nd":
                    out.append(digit)
                    self.next()
                return "".join(out)
            if not out and ch in _SPECIAL:
                self.next()
                return ch
            if not (unicodedata.category(ch)[0] == "L" or unicodedata.category(ch) == "Nd" or ch == "_"):
                break
            out.append(ch)
            self.next()
        return "".join(out)

    def lookup(self, name: str) -> tuple[str, bool]:
        if name not in self.env:
            return "", False
        value = self.env[name]
        if isinstance(value, Unknown):
            raise Unresolvable(value.why)
        return value, True

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            return self.lookup(name)[0] if name else "$"
        self.next()
        following = self.peek()
        if following is None or following in "{}:":
            raise Unresolvable("a bad ${} substitution")
        name = self.name()
        modifier = self.next()
        if modifier == "}":
            return self.lookup(name)[0]
        null_is_unset = modifier == ":"
        if null_is_unset:
            modifier = self.next()
        if modifier in ("#", "%", "/"):
            raise Unresolvable(f"a ${{{name}{modifier}...}} expansion, which paas does not read")
        if modifier not in ("+", "-", "?"):
            raise Unresolvable(f"an unsupported modifier in ${{{name}...}}")
        word = self.stop_on("}")
        value, is_set = self.lookup(name)
        empty = not is_set or (null_is_unset and value == "")
        if modifier == "-":
            return word if empty else value
        if modifier == "+":
            return "" if empty else word
        if empty:
            raise Unresolvable(f"${{{name}}} is not set, and Docker stops there")
        return value
