"""Procfile parsing (pure): ``type: command`` lines.

Blank lines and ``#`` comments are skipped, CRLF line ends accepted, and the
command keeps any colons after the first. A malformed line raises
:class:`InvalidInput` naming its line number.
"""

from __future__ import annotations

import re

from paas.errors import InvalidInput

__all__ = ["formation", "parse_procfile"]

# a type becomes part of container names and labels: a letter, then letters, digits, - or _
MAX_PROCESS_TYPES = 10  # each runs as containers of its own: a cap that keeps one app's share bounded
_LINE = re.compile(r"([A-Za-z][A-Za-z0-9_-]{0,29})\s*:\s*(.*?)\s*")


def parse_procfile(text: str) -> dict[str, str]:
    processes: dict[str, str] = {}
    text = text.removeprefix("\ufeff")  # a byte-order mark from a Windows editor
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise InvalidInput(
                f"Procfile line {number}: expected 'type: command' (a type is a letter, then up to 29 "
                f"letters, digits, - or _), got {line!r}"
            )
        name, command = match.group(1).lower(), match.group(2)
        if not command:
            raise InvalidInput(f"Procfile line {number}: process type {name!r} has no command")
        if name in processes:
            raise InvalidInput(f"Procfile line {number}: process type {name!r} is defined twice")
        if len(processes) == MAX_PROCESS_TYPES:
            raise InvalidInput(f"Procfile line {number}: more than {MAX_PROCESS_TYPES} process types")
        processes[name] = command
    return processes


def formation(procfile: dict[str, str], scale: dict[str, int]) -> dict[str, int]:
    """Containers per process type: web always (at least 1), every other
    Procfile type but ``release``; a type not in ``scale`` runs 1."""
    counts = {"web": max(1, scale.get("web", 1))}
    for process in sorted(procfile):
        if process not in ("web", "release"):
            counts[process] = max(0, scale.get(process, 1))
    return counts
