"""The ``paas`` command. The long-running commands (``paas up``, ``paas
web``, ``paas agent``) start through paas/daemons.py, without the command
line's libraries (Typer, Click, Rich: 9 MiB in every process that would
otherwise keep them); everything else, their ``--help`` included, is the
command line of paas/cli."""

from __future__ import annotations

import sys

__all__ = ["main"]

DAEMONS = ("up", "web", "agent")


def main() -> None:
    if len(sys.argv) == 2 and sys.argv[1] in DAEMONS:
        from paas import daemons

        sys.exit(daemons.run(sys.argv[1]))
    from paas.cli import main as command_line

    command_line()
