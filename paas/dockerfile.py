"""Which images a Dockerfile reads (pure): every ``FROM`` and every
``COPY --from`` / ``ADD --from`` / ``RUN --mount=from=`` that names an image
rather than an earlier stage, with ``ARG`` defaults and build args expanded
as Docker expands them.

The agent resolves each through the engine before a build: one app's
Dockerfile must not read another app's images (their code and build-time
values), whatever name, tag or id it uses.
"""

from __future__ import annotations

import re
import shlex

__all__ = ["image_references"]

_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_FROM_FLAG = re.compile(r"--from=(\S+)")
_MOUNT_FROM = re.compile(r"--mount=\S*?\bfrom=([^,\s]+)")


def _logical_lines(text: str) -> list[str]:
    """Instructions with their continuation lines joined, comments dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current.strip():
        lines.append(current)
    return lines


def _expand(value: str, variables: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        value = variables.get(match["braced"] or match["bare"], "")
        if match["op"] == "-":  # ${VAR:-word}: the word when VAR is empty
            return value or match["word"]
        if match["op"] == "+":  # ${VAR:+word}: the word when VAR is set
            return match["word"] if value else ""
        return value

    return _VARIABLE.sub(one, value)


def image_references(text: str, buildargs: dict[str, str] | None = None) -> list[str]:
    """Every image the Dockerfile ``text`` reads, in order, without duplicates."""
    args = dict(buildargs or {})
    variables: dict[str, str] = {}
    stages: set[str] = set()
    found: list[str] = []

    def add(ref: str) -> None:
        ref = _expand(ref, variables)
        if ref and ref.lower() not in stages and not ref.isdigit() and ref != "scratch" and ref not in found:
            found.append(ref)

    for line in _logical_lines(text):
        instruction, _, rest = line.partition(" ")
        keyword = instruction.upper()
        if keyword == "ARG":
            for item in shlex.split(rest, posix=True) if rest.strip() else []:
                name, eq, default = item.partition("=")
                variables[name] = args.get(name, _expand(default, variables) if eq else "")
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            if words:
                add(words[0])
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
        elif keyword in ("COPY", "ADD"):
            for ref in _FROM_FLAG.findall(rest):
                add(ref)
        elif keyword == "RUN":
            for ref in _MOUNT_FROM.findall(rest):
                add(ref)
    return found
