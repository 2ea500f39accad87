"""What `soak.py` measures with and what it prints: resident memory and open file
descriptors of a process, latency statistics, the Markdown table, the flatness notes and
the chart (matplotlib, from the `bench` extra, imported only when a chart is drawn)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _processes import rss_kib

try:  # psutil is optional: /proc says the same on Linux
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

PROBE_SOURCE = "psutil" if psutil is not None else "/proc"


# -- probes ---------------------------------------------------------------------------------


def process_usage(pid: int) -> dict[str, int]:
    """A process's resident memory (KiB) and number of open file descriptors, now."""
    if psutil is not None:
        process = psutil.Process(pid)
        return {"rss_kib": process.memory_info().rss // 1024, "fds": process.num_fds()}
    return {"rss_kib": rss_kib(pid), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


class Probe:
    """Reads the usage of this process and, when the engine runs apart, of the engine."""

    def __init__(self, engine_pid: int | None) -> None:
        self.pids = {"this": os.getpid()}
        if engine_pid is not None:
            self.pids["engine"] = engine_pid

    def take(self) -> dict[str, dict[str, int]]:
        return {role: process_usage(pid) for role, pid in self.pids.items()}

    def sample(
        self, at: int, seconds: float, taken: dict[str, dict[str, int]] | None = None
    ) -> dict[str, Any]:
        """One flat record for the charts (of `taken`, else of now): `at` counts calls
        (soak) or cycles (churn)."""
        record: dict[str, Any] = {"at": at, "seconds": round(seconds, 4)}
        for role, usage in (taken or self.take()).items():
            record[f"{role}_rss_kib"] = usage["rss_kib"]
            record[f"{role}_fds"] = usage["fds"]
        return record


# -- statistics -----------------------------------------------------------------------------


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p90, p99, p99.9 and maximum of `seconds`, in milliseconds."""
    if not seconds:
        return dict.fromkeys(("p50", "p90", "p99", "p999", "max"), math.nan)
    ordered = sorted(seconds)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, int(q * n))] * 1000

    return {
        "p50": at(0.5),
        "p90": at(0.9),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": ordered[-1] * 1000,
    }


def slope_per(samples: Sequence[dict[str, Any]], key: str, per: float) -> float:
    """Least-squares slope of `key` against `at` over `samples`, per `per` units of `at`."""
    points = [(s["at"], s[key]) for s in samples if key in s]
    if len(points) < 2:
        return math.nan
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return math.nan
    return float(sum((x - mean_x) * (y - mean_y) for x, y in points) / spread * per)


# -- the table ------------------------------------------------------------------------------


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def _usage_cell(phase: dict[str, Any], role: str, key: str) -> str:
    """`before → peak → after` of one role's RSS (MiB) or fds over a phase."""
    points = [phase.get(moment, {}).get(role) for moment in ("before", "peak", "after")]
    if points[0] is None:
        return "n/a"
    show = _mib if key == "rss_kib" else str
    return " → ".join(show(p[key]) for p in points if p is not None)


def _ms(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def table(results: dict[str, Any]) -> list[str]:
    """The Markdown table of a run: one row per measured series."""
    roles = ["this", "engine"] if results["engine"] == "process" else ["this"]
    head = "| phase | timed | count | answered | failed | seconds | per second | median ms |"
    head += " p99 ms |"
    for role in roles:
        name = "this process" if role == "this" else "engine"
        head += f" {name} RSS MiB | {name} fds |"
    lines = [head, "|" + "---|" * 2 + "---:|" * 7 + "---|---|" * len(roles)]
    for row in results["rows"]:
        latency = row["latency_ms"]
        failed = sum(row["errors"].values())
        cells = [
            row["name"],
            row["timed"],
            f"{row['count']:,}",
            f"{row['answered']:,}",
            f"{failed:,}",
            f"{row['seconds']:.2f}",
            f"{row['answered'] / row['seconds']:,.0f}" if row["seconds"] > 0 else "n/a",
            _ms(latency["p50"]),
            _ms(latency["p99"]),
        ]
        for role in roles:
            cells.append(_usage_cell(row, role, "rss_kib"))
            cells.append(_usage_cell(row, role, "fds"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def census(points: Sequence[Sequence[int]]) -> str:
    """`[objects, blocks]` readings as `gc-tracked objects a → b (+d), allocated blocks ...`:
    the first and the last differ by what the phase left behind."""
    if not points:
        return "n/a"
    parts = []
    for index, what in enumerate(("gc-tracked objects", "allocated blocks")):
        values = [point[index] for point in points]
        path = " → ".join(f"{v:,}" for v in values)
        parts.append(f"{what} {path} ({values[-1] - values[0]:+,})")
    return ", ".join(parts)


def notes(results: dict[str, Any]) -> list[str]:
    """Flatness figures: growth over the soak and the churn, memory per connected worker."""
    out: list[str] = []
    roles = ["this", "engine"] if results["engine"] == "process" else ["this"]
    labels = {"this": "this process", "engine": "engine"}
    if results["engine"] == "inprocess":
        labels["this"] = "this process (engine and workers)"
    soak = results.get("soak")
    if soak and soak["samples"]:
        first, last = soak["samples"][0], soak["samples"][-1]
        half = soak["samples"][len(soak["samples"]) // 2 :]
        for role in roles:
            rss = [s[f"{role}_rss_kib"] for s in soak["samples"]]
            fds = [s[f"{role}_fds"] for s in soak["samples"]]
            slope = slope_per(half, f"{role}_rss_kib", 100_000)
            out.append(
                f"soak, {labels[role]}: RSS {_mib(first[f'{role}_rss_kib'])} MiB after the "
                f"warm-up, {_mib(last[f'{role}_rss_kib'])} MiB after {last['at']:,} calls "
                f"({(last[f'{role}_rss_kib'] - first[f'{role}_rss_kib']) / 1024:+.2f} MiB; "
                f"max {_mib(max(rss))}; second half {slope:+.0f} KiB per 100k calls); "
                f"fds {fds[0]} → {fds[-1]} (min {min(fds)}, max {max(fds)})"
            )
        if soak.get("gc_objects"):
            out.append(f"soak, this process after gc: {census(soak['gc_objects'])}")
    for scale in results.get("scale") or []:
        if not scale.get("connected"):
            continue
        name = f"scale, round {scale['round']}"
        for role in roles:
            per = scale["per_worker_kib"].get(role)
            if per is None:
                continue
            before, peak, after = (scale[m][role] for m in ("before", "peak", "after"))
            out.append(
                f"{name}, {labels[role]}: RSS {_mib(before['rss_kib'])} → "
                f"{_mib(peak['rss_kib'])} MiB with {scale['connected']:,} workers ({per:.1f} "
                f"KiB each) → {_mib(after['rss_kib'])} MiB after they closed; fds "
                f"{before['fds']} → {peak['fds']} → {after['fds']}"
            )
        if scale.get("gc_objects"):
            out.append(f"{name}, this process after gc: {census(scale['gc_objects'])}")
        out.append(
            f"{name}: {scale['connected']:,} workers connected and registered in "
            f"{scale['connect_seconds']:.2f} s, listed by the engine after "
            f"{scale['listed_seconds']:.2f} s, closed in {scale['close_seconds']:.2f} s"
        )
    for flight in results.get("in_flight") or []:
        if not flight.get("held"):
            continue
        out.append(
            f"in flight, round {flight['round']}: {flight['held']:,} calls running in the "
            f"callee {flight['hold_seconds']:.2f} s after the first was made; all answered "
            f"{flight['answer_seconds']:.2f} s after the release; this process after gc: "
            f"{census(flight.get('gc_objects') or [])}"
        )
    churn = results.get("churn")
    if churn and churn.get("before"):
        for role in roles:
            before, after = churn["before"][role], churn["after"][role]
            out.append(
                f"churn, {labels[role]}: RSS {_mib(before['rss_kib'])} → "
                f"{_mib(after['rss_kib'])} MiB "
                f"({(after['rss_kib'] - before['rss_kib']) / 1024:+.2f}), fds "
                f"{before['fds']} → {after['fds']} ({after['fds'] - before['fds']:+d}) over "
                f"{churn['cycles']:,} cycles"
            )
        if churn.get("gc_objects"):
            out.append(f"churn, this process after gc: {census(churn['gc_objects'])}")
    end = results.get("end")
    if end and end.get("trimmed_rss_kib") is not None:
        first = (results.get("soak") or {}).get("samples") or [{}]
        start = first[0].get("this_rss_kib")
        out.append(
            f"end of the run, {labels['this']}: RSS {_mib(end['usage']['this']['rss_kib'])} MiB, "
            f"{_mib(end['trimmed_rss_kib'])} MiB once malloc_trim(0) returned the allocator's "
            f"free memory"
            + (f" (the soak began at {_mib(start)} MiB)" if start is not None else "")
        )
    return out


# -- the chart ------------------------------------------------------------------------------


def run_label(results: dict[str, Any]) -> str:
    return f"{results['backend']}, engine {results['engine']}"


def draw_chart(path: Path, runs: Sequence[dict[str, Any]]) -> None:
    """RSS and fds over the soak and the churn, latency per phase and memory per connected
    worker; one line (or bar) per run and process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    styles = {"this": "-", "engine": "--"}
    for number, run in enumerate(runs):
        color = f"C{number}"
        roles = ["this", "engine"] if run["engine"] == "process" else ["this"]
        for row, (phase, unit) in enumerate((("soak", "calls"), ("churn", "cycles"))):
            samples = (run.get(phase) or {}).get("samples") or []
            xs = [s["at"] for s in samples]
            for role in roles:
                name = "workers" if role == "this" and run["engine"] == "process" else role
                if role == "this" and run["engine"] == "inprocess":
                    name = "engine + workers"
                label = f"{run_label(run)}: {name}"
                axes[row][0].plot(
                    xs,
                    [s[f"{role}_rss_kib"] / 1024 for s in samples],
                    styles[role],
                    color=color,
                    label=label,
                )
                axes[row][1].plot(
                    xs, [s[f"{role}_fds"] for s in samples], styles[role], color=color, label=label
                )
            axes[row][0].set(title=f"RSS during the {phase}", xlabel=unit, ylabel="MiB")
            axes[row][1].set(title=f"Open fds during the {phase}", xlabel=unit, ylabel="fds")
    names = [row["name"] for row in runs[0]["rows"]] if runs else []
    width = 0.8 / max(len(runs), 1)
    for number, run in enumerate(runs):
        by_name = {row["name"]: row for row in run["rows"]}
        xs = [i + (number - (len(runs) - 1) / 2) * width for i in range(len(names))]
        p50 = [by_name[n]["latency_ms"]["p50"] if n in by_name else math.nan for n in names]
        p99 = [by_name[n]["latency_ms"]["p99"] if n in by_name else math.nan for n in names]
        axes[0][2].bar(xs, p50, width, color=f"C{number}", label=f"{run_label(run)}: median")
        axes[0][2].scatter(xs, p99, marker="_", s=200, color="black", zorder=3)
    axes[0][2].scatter([], [], marker="_", s=200, color="black", label="p99")
    axes[0][2].set_xticks(range(len(names)))
    axes[0][2].set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    axes[0][2].set(title="Latency per phase (bar: median)", ylabel="ms", yscale="log")
    bars: list[tuple[str, float, str]] = []
    for number, run in enumerate(runs):
        for scale in run.get("scale") or []:
            for role, kib in (scale.get("per_worker_kib") or {}).items():
                if role == "this":
                    who = "engine + workers" if run["engine"] == "inprocess" else "workers"
                else:
                    who = "engine"
                label = f"{run_label(run)}, round {scale['round']}: {who}"
                bars.append((label, kib, f"C{number}"))
    axes[1][2].barh([b[0] for b in bars], [b[1] for b in bars], color=[b[2] for b in bars])
    axes[1][2].set(title="RSS per connected worker (scale)", xlabel="KiB")
    axes[1][2].tick_params(axis="y", labelsize=7)
    for row in axes:
        for ax in row:
            ax.grid(True, alpha=0.3)
    for ax in (axes[0][0], axes[0][1], axes[1][0], axes[1][1]):
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    axes[0][2].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load_runs(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Runs saved earlier with `--json`, to draw alongside this one."""
    runs: list[dict[str, Any]] = []
    for name in paths:
        with open(name, encoding="utf-8") as saved:
            runs.append(json.load(saved))
    return runs
