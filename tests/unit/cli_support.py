"""Running the CLI in tests: Typer's runner, and main() for the exit path."""

from __future__ import annotations

from typer.testing import CliRunner

from paas.cli import app as cli
from paas.settings import Settings

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(cli, list(args), env=env, input=input, catch_exceptions=False)
    return result.exit_code, result.output


def invoke_main(main: object, args: tuple[str, ...], env: dict[str, str]) -> None:
    import os
    import sys

    saved_argv, saved_env = sys.argv, dict(os.environ)
    sys.argv = ["paas", *args]
    os.environ.pop("PAAS_URL", None)
    os.environ.pop("PAAS_TOKEN", None)
    os.environ.update(env)
    try:
        main()  # type: ignore[operator]
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)


def server_env(settings: Settings) -> dict[str, str]:
    """The PAAS_ variables that point a server command (migrate, admin, keys)
    at the test's own data, keys and run directory."""
    return {
        "PAAS_DATA_DIR": str(settings.data_dir),
        "PAAS_KEYS_DIR": str(settings.keys_dir),
        "PAAS_RUN_DIR": str(settings.run_dir),
        "PAAS_DOMAIN": settings.domain,
    }
