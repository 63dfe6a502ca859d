"""The benchmarks' pure half (benchmarks/figures.py): summaries, ratios, the
table, and memory read from /proc. The suite itself runs with scripts/bench.sh."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.figures import Figure, Samples, percentile, process_tree, pss_kib, render


def test_samples_show_min_median_max_and_the_ratio_to_the_floor() -> None:
    paas, floor = Samples([3.0, 1.0, 2.0]), Samples([0.5, 1.0, 0.75])
    assert paas.spread("s") == "1.00 / **2.00** / 3.00 s"
    figure = Figure("redeploy", paas, "s", "within 1 s", floor, "docker")
    assert figure.ratio() == "2.7×"
    assert figure.row() == (
        "| redeploy | 3 | 1.00 / **2.00** / 3.00 s | docker: 0.50 / **0.75** / 1.00 s | 2.7× | within 1 s |"
    )
    assert Figure("x", Samples(), "s", "").row() == "| x | 0 | not measured | none |  |  |"


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50.0, 99.0, 100.0)
    assert percentile([7.0], 0.99) == 7.0


def test_the_table_names_the_machine_and_the_notes() -> None:
    table = render(
        [Figure("memory", Samples([100.0]), "MiB", "≤ 120 MiB", note="after one deploy")],
        machine="a test box",
        extra=["per process: web 40"],
    )
    assert table.startswith("Measured on a test box.\n")
    assert "| memory | 1 | 100.00 / **100.00** / 100.00 MiB | none |  | ≤ 120 MiB |" in table
    assert "per process: web 40" in table and "- memory: after one deploy" in table


def test_memory_is_the_pss_of_a_process_and_its_descendants() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = process_tree(os.getpid())
        assert os.getpid() in tree and child.pid in tree
        assert pss_kib(os.getpid()) > 1000
    finally:
        child.kill()
        child.wait()
    assert pss_kib(child.pid) == 0  # gone: nothing to count
