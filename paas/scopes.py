"""Env var scopes, in a module of their own so that the CLI can offer them
without importing the database models (which costs it most of a second)."""

from __future__ import annotations

import enum

__all__ = ["EnvScope"]


class EnvScope(enum.StrEnum):
    run = "run"  # containers' environment (release phase and processes)
    build = "build"  # build args
    both = "both"
