"""The disk soak (issue 18, "Disk stays bounded"): ``scripts/soak.sh``.

Deploys one small app N times (default 100) through signed webhooks, with
paas's default retention (PAAS_KEEP_RELEASES 10, PAAS_KEEP_RELEASE_LOGS 50),
and every 10 deploys prints what paas leaves on disk: this installation's
images and their size in the engine, the engine's whole image, container and
build-cache use (``docker system df``), the live containers' json-file logs,
and the data directory (database, release logs, git cache, builds). Each
must level off: images after 10 releases, release logs after 50; the
database keeps every release's row (a few hundred bytes each). Not part
of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from benchmarks.__main__ import APP, app_files, docker, first_deploy
from testkit.harness import Nginx, Stack, traversable_dir


def du(path: Path) -> int:
    """Bytes under ``path`` (apparent sizes, links not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                continue
    return total


def reading(stack: Stack, deploys: int) -> dict[str, object]:
    data = Path(stack.env["PAAS_DATA_DIR"])
    instance = (data / "instance-id").read_text().strip()
    ours = docker("image", "ls", "-q", "--no-trunc", "--filter", f"label=paas.instance={instance}").split()
    df = {
        row["Type"]: row["Size"]
        for row in (
            json.loads(line) for line in docker("system", "df", "--format", "{{json .}}").splitlines()
        )
    }
    logs = 0
    for name in docker("ps", "-q", "--filter", f"label=paas.instance={instance}").split():
        path = docker("inspect", "--format", "{{.LogPath}}", name)
        logs += os.path.getsize(path) if path and os.path.exists(path) else 0
    release_logs = list((data / "logs" / APP).glob("v*.log"))
    return {
        "deploys": deploys,
        "our images": len(ours),
        "engine images": df.get("Images", "?"),
        "containers": df.get("Containers", "?"),
        "build cache": df.get("Build Cache", "?"),
        "container logs MiB": logs / 2**20,
        "release logs": len(release_logs),
        "data dir MiB": du(data) / 2**20,
        "db + WAL MiB": du(data / "db") / 2**20,
        "paas log MiB": stack.log_path.stat().st_size / 2**20,
    }


def line(row: dict[str, object]) -> str:
    return "| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()) + " |"


def show(rows: list[dict[str, object]]) -> None:
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print(line(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/soak.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploys", type=int, default=100)
    parser.add_argument("--every", type=int, default=10)
    # the hourly clean-up, sooner, with BuildKit's cache bound low enough that a soak reaches it
    parser.add_argument("--cleanup-seconds", type=int, default=60)
    parser.add_argument("--build-cache-max", default="64m")
    options = parser.parse_args()
    root = traversable_dir("paas-soak-")
    nginx = Nginx(root / "nginx")
    nginx.start()
    (root / "stack").mkdir()
    stack = Stack(
        root / "stack",
        nginx,
        PAAS_LOG_LEVEL="WARNING",
        PAAS_CLEANUP_INTERVAL_SECONDS=str(options.cleanup_seconds),
        PAAS_BUILD_CACHE_MAX=options.build_cache_max,
    )
    rows: list[dict[str, object]] = []
    try:
        stack.start()
        repo, secret = first_deploy(stack)
        rows.append(reading(stack, 1))
        show(rows)
        for n in range(2, options.deploys + 1):
            payload = repo.commit(app_files(f"s{n}"), f"s{n}")
            assert stack.webhook(APP, secret, payload).status_code == 202
            done = stack.wait_release(APP, n)
            if done["status"] != "succeeded":
                raise SystemExit(f"soak: v{n} {done['status']}: {done.get('error')}")
            if n % options.every == 0:
                rows.append(reading(stack, n))
                print(line(rows[-1]), flush=True)
        print()
        show(rows)
        first, last = rows[len(rows) // 2], rows[-1]
        print(
            f"\nfrom deploy {first['deploys']} to {last['deploys']}: our images {first['our images']} -> "
            f"{last['our images']}, release logs {first['release logs']} -> {last['release logs']}, "
            f"data dir {first['data dir MiB']:.1f} -> {last['data dir MiB']:.1f} MiB, "
            f"build cache {first['build cache']} -> {last['build cache']} "
            f"(PAAS_BUILD_CACHE_MAX={options.build_cache_max}, trimmed every {options.cleanup_seconds} s)"
        )
    finally:
        stack.stop()
        stack.remove_everything()
        nginx.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    main()
