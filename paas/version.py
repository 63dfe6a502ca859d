"""Which paas this is: the package's version and, for an installation that
deploy/install.sh made, the source it was built from (``0.2.0+g1a2b3c4d5e6f``:
a commit; ``+s…``: a checkout with changes, by the hash of its files).
install.sh writes that source into the virtual environment it installs
into, so the same code always reports the same version."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from paas import __version__

__all__ = ["SOURCE_FILE", "version"]

SOURCE_FILE = "paas-source"  # in the venv's directory (sys.prefix), written by install.sh


@functools.cache
def version() -> str:
    try:
        source = (Path(sys.prefix) / SOURCE_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        source = ""
    return f"{__version__}+{source}" if source.isascii() and source.isalnum() else __version__
