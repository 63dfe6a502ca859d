"""The ``paas`` command line, in two halves.

``server.py``: commands run on the server (``up``, ``web``, ``agent``,
``migrate``, ``admin``, ``keys``); the only part that imports ``web`` or
``agent``. ``client.py`` (apps, deploys, rollback), ``env.py`` (env vars)
and ``runtime.py`` (scale, domains, ps, logs, releases): commands that talk
to the REST API over HTTP (``http.py`` is their client and keeps the login). ``common.py``: the Typer
apps both hang their commands on. Expected failures print one line and exit
non-zero.
"""

from paas.cli import client, databases, env, notify, runtime, server  # noqa: F401  (importing them registers their commands)
from paas.cli.common import app, main
from paas.cli.http import ClientError

__all__ = ["ClientError", "app", "main"]
