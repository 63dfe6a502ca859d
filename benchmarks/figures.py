"""The pure half of the benchmarks: samples summarised, memory read from
/proc, and the results table (tested by tests/unit/test_bench_figures.py)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Figure", "Samples", "percentile", "pss_kib", "process_tree", "render"]


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def spread(self, unit: str, digits: int = 2) -> str:
        """min / median / max, with the unit."""
        if not self.values:
            return "not measured"
        low, mid, high = min(self.values), self.median, max(self.values)
        return f"{low:.{digits}f} / **{mid:.{digits}f}** / {high:.{digits}f} {unit}"


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))  # 1-based
    return ordered[rank - 1]


@dataclass
class Figure:
    """One row: what was measured, its runs, the floor beside it, and the goal."""

    name: str
    samples: Samples
    unit: str
    goal: str
    floor: Samples | None = None
    floor_name: str = ""
    digits: int = 2
    note: str = ""

    def ratio(self) -> str:
        if self.floor is None or not self.floor.values or not self.samples.values or not self.floor.median:
            return ""
        return f"{self.samples.median / self.floor.median:.1f}×"

    def row(self) -> str:
        floor = (
            f"{self.floor_name}: {self.floor.spread(self.unit, self.digits)}"
            if self.floor is not None
            else self.floor_name or "none"
        )
        runs = len(self.samples.values)
        return (
            f"| {self.name} | {runs} | {self.samples.spread(self.unit, self.digits)} | {floor} "
            f"| {self.ratio()} | {self.goal} |"
        )


def render(figures: list[Figure], *, machine: str, extra: list[str]) -> str:
    lines = [
        f"Measured on {machine}.",
        "",
        "Each cell is min / **median** / max over the runs; the ratio is the median ÷ the floor's median,",
        "both measured in the same run.",
        "",
        "| figure | runs | paas | floor (same run) | ratio | goal |",
        "|---|---|---|---|---|---|",
        *(f.row() for f in figures),
        "",
        *extra,
    ]
    notes = [f"- {f.name}: {f.note}" for f in figures if f.note]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines).rstrip() + "\n"


def pss_kib(pid: int, proc: Path = Path("/proc")) -> int:
    """Proportional set size of a process, in KiB (0 once it is gone)."""
    try:
        text = (proc / str(pid) / "smaps_rollup").read_text(encoding="ascii")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def process_tree(root: int, proc: Path = Path("/proc")) -> dict[int, str]:
    """``root`` and every descendant: pid → command line."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
        names[int(entry.name)] = cmdline
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in names:
            found[pid] = names[pid]
            todo += children.get(pid, [])
    return found
