"""The tables and charts of `scaling.py`: Markdown to stdout, one PNG per series
(matplotlib, from the `bench` extra, imported only when a chart is drawn)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _scaling_scripts import OFFICIAL

# -- what a series measures ------------------------------------------------------------------


@dataclass
class Timing:
    """How long a load phase warms up and measures."""

    window: float = 2.0
    warmup: float = 0.5
    waves: int = 2  # a window also lasts at least this many full waves of calls
    limit: float = 90.0  # give up waiting for warm-up or window after this long


@dataclass
class Plan:
    levels: list[int]
    sizes: list[int]
    size_in_flight: int
    hold: int  # calls held for the memory measurement; 0 for none
    timing: Timing


@dataclass
class PairResult:
    levels: dict[int, dict[str, Any]] = field(default_factory=dict)
    sizes: dict[int, dict[str, Any]] = field(default_factory=dict)
    hold: dict[str, float] = field(default_factory=dict)
    failed: str | None = None  # what went wrong, when a phase failed under load


@dataclass(frozen=True)
class EngineLoad:
    label: str
    workers: int
    functions: int


# -- tables ---------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return statistics.median(present) if present else math.nan


def ratio_text(ratios: Sequence[float]) -> str:
    present = [r for r in ratios if not math.isnan(r)]
    if not present:
        return "n/a"
    rounds = ", ".join(f"{r:.2f}" for r in ratios)
    return f"{statistics.median(present):.2f}x ({rounds})"


def count_text(n: float) -> str:
    return "n/a" if math.isnan(n) else f"{n:,.0f}"


def rate_text(n: float) -> str:
    """Three significant digits below 100, whole numbers above."""
    if math.isnan(n):
        return "n/a"
    return f"{n:,.0f}" if n >= 100 else f"{n:.3g}"


def errors_text(phases: Sequence[dict[str, Any]]) -> str:
    totals: dict[str, int] = {}
    for phase in phases:
        for code, n in phase["errors"].items():
            totals[code] = totals.get(code, 0) + n
    return ", ".join(f"{code}: {n:,}" for code, n in sorted(totals.items())) or "0"


def phase_values(runs: list[PairResult], key: str, level: int, what: str) -> list[float]:
    """`what` of the phase at `level` (in `levels` or `sizes`) in every round (NaN where
    the round has no such phase)."""
    values = []
    for run in runs:
        phase = getattr(run, key).get(level)
        values.append(math.nan if phase is None else float(phase[what]))
    return values


def report_inflight(runs: dict[str, list[PairResult]], levels: list[int]) -> None:
    print("\n### a. Calls in flight (100-byte echo)\n")
    print(
        "| SDK | in flight | calls/s | p50 µs | p99 µs | caller CPU µs/call "
        "| callee CPU µs/call | engine CPU µs/call | errors | calls/s vs official |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for sdk, rounds in runs.items():
        for level in levels:
            phases = [r.levels[level] for r in rounds if level in r.levels]
            if not phases:
                failures = "; ".join(r.failed for r in rounds if r.failed) or "not run"
                print(f"| {sdk} | {level:,} | failed: {failures} | | | | | | | |")
                continue

            def med(what: str, lv: int = level, rs: list[PairResult] = rounds) -> float:
                return median(phase_values(rs, "levels", lv, what))

            versus = ""
            if sdk != OFFICIAL and OFFICIAL in runs:
                ours = phase_values(rounds, "levels", level, "rate")
                theirs = phase_values(runs[OFFICIAL], "levels", level, "rate")
                versus = ratio_text([o / t for o, t in zip(ours, theirs, strict=True)])
            print(
                f"| {sdk} | {level:,} | {count_text(med('rate'))} | {count_text(med('p50_us'))} "
                f"| {count_text(med('p99_us'))} | {count_text(med('caller_cpu_us'))} "
                f"| {count_text(med('callee_cpu_us'))} | {count_text(med('engine_cpu_us'))} "
                f"| {errors_text(phases)} | {versus} |"
            )
    stopped = [(sdk, r.failed) for sdk, rs in runs.items() for r in rs if r.failed]
    for sdk, failure in stopped:
        print(f"\n{sdk}: a round stopped early: {failure}")


def size_label(size: int) -> str:
    if size >= 2**20:
        return f"{size / 2**20:g} MiB"
    if size >= 1024:
        return f"{size / 1024:g} KiB"
    return f"{size} B"


def report_sizes(runs: dict[str, list[PairResult]], sizes: list[int], in_flight: int) -> None:
    print(f"\n### b. Payload size (echo, {in_flight} in flight; MB/s = 10^6 payload bytes/s)\n")
    names = list(runs)
    others = [sdk for sdk in names if sdk != OFFICIAL]
    header = " | ".join(f"{sdk} MB/s" for sdk in names)
    ratios = " | ".join(f"{sdk} / official" for sdk in others) if OFFICIAL in runs else ""
    print(f"| payload | {header} |" + (f" {ratios} |" if ratios else ""))
    print("|---|" + "---:|" * len(names) + ("---|" * len(others) if ratios else ""))
    for size in sizes:
        cells = [rate_text(median(phase_values(runs[sdk], "sizes", size, "mb_s"))) for sdk in names]
        row = f"| {size_label(size)} | " + " | ".join(cells) + " |"
        if ratios:
            theirs = phase_values(runs[OFFICIAL], "sizes", size, "mb_s")
            for sdk in others:
                ours = phase_values(runs[sdk], "sizes", size, "mb_s")
                row += f" {ratio_text([o / t for o, t in zip(ours, theirs, strict=True)])} |"
        print(row)
    errors = [
        f"{sdk} {errors_text([p for r in rs for p in r.sizes.values()])}"
        for sdk, rs in runs.items()
    ]
    print("\nerrors: " + "; ".join(errors))


def report_routing(runs: dict[str, list[dict[str, Any]]], configs: list[EngineLoad]) -> None:
    print("\n### c. Routing cost (anyiii asyncio pair, 100 in flight, 100-byte echo)\n")
    print(
        "| engine also holds | connected workers | user functions | calls/s "
        "| engine CPU µs/call | engine CPU vs first row |"
    )
    print("|---|---:|---:|---:|---:|---|")
    base = [r["engine_cpu_us"] for r in runs[configs[0].label]]
    for config in configs:
        rounds = runs[config.label]
        cpu = [r["engine_cpu_us"] for r in rounds]
        print(
            f"| {config.label} | {config.workers + 2:,} | {config.functions + 1:,} "
            f"| {median([r['rate'] for r in rounds]):,.0f} | {median(cpu):.1f} "
            f"| {ratio_text([c / b for c, b in zip(cpu, base, strict=True)])} |"
        )


def report_memory(
    engine_runs: list[dict[str, float]],
    workers: int,
    hold_runs: dict[str, list[dict[str, float]]],
    held: int,
) -> None:
    print("\n### d. Memory (VmRSS growth, KiB)\n")
    print("| memory | process | count | KiB each (median) | per round |")
    print("|---|---|---:|---:|---|")

    def row(what: str, who: str, count: int, values: list[float]) -> None:
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {what} | {who} | {count:,} | {median(values):.2f} | {rounds} |")

    if engine_runs:
        row("per connected idle worker", "engine", workers, [r["engine_kib"] for r in engine_runs])
        row(
            "per connection",
            "anyiii helper holding them",
            workers,
            [r["helper_kib"] for r in engine_runs],
        )
    for sdk, runs in hold_runs.items():
        row("per pending call", f"{sdk} caller", held, [r["caller_kib"] for r in runs])
    for sdk, runs in hold_runs.items():
        row("per held invocation", f"{sdk} callee", held, [r["callee_kib"] for r in runs])


# -- charts (matplotlib is the `bench` extra: imported only here) ---------------------------


def draw_charts(
    out: Path,
    pairs: dict[str, list[PairResult]],
    plan: Plan,
    series: set[str],
    routing: dict[str, list[dict[str, Any]]],
    configs: list[EngineLoad],
    engine_mem: list[dict[str, float]],
    holds: dict[str, list[dict[str, float]]],
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)

    if "a" in series:
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
        for sdk, rounds in pairs.items():
            xs = [lv for lv in plan.levels if any(lv in r.levels for r in rounds)]
            if not xs:
                continue

            def med(
                what: str, rs: list[PairResult] = rounds, levels: list[int] = xs
            ) -> list[float]:
                return [median(phase_values(rs, "levels", lv, what)) for lv in levels]

            axes[0].plot(xs, med("rate"), marker="o", label=sdk)
            axes[1].plot(xs, [v / 1000 for v in med("p50_us")], marker="o", label=sdk)
            total = [
                c + e + n
                for c, e, n in zip(
                    med("caller_cpu_us"), med("callee_cpu_us"), med("engine_cpu_us"), strict=True
                )
            ]
            (line,) = axes[2].plot(xs, total, marker="o", label=f"{sdk}: all three")
            axes[2].plot(
                xs, med("engine_cpu_us"), ls="--", color=line.get_color(), label=f"{sdk}: engine"
            )
        axes[0].set(title="Throughput", ylabel="calls/s")
        axes[1].set(title="p50 latency", ylabel="ms", yscale="log")
        axes[2].set(title="CPU per call", ylabel="µs (caller + callee + engine)")
        for ax in axes:
            ax.set(xscale="log", xlabel="calls in flight")
            ax.grid(True, alpha=0.3)
        axes[0].set_ylim(bottom=0)
        axes[2].set_ylim(bottom=0)
        axes[0].legend(fontsize=8)
        axes[2].legend(fontsize=7)
        save(fig, "scaling-inflight.png")

    if "b" in series:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        width = 0.8 / max(len(pairs), 1)
        for i, (sdk, rounds) in enumerate(pairs.items()):
            values = [median(phase_values(rounds, "sizes", s, "mb_s")) for s in plan.sizes]
            offset = (i - (len(pairs) - 1) / 2) * width
            ax.bar([k + offset for k in range(len(plan.sizes))], values, width, label=sdk)
        ax.set_xticks(range(len(plan.sizes)), [size_label(s) for s in plan.sizes])
        ax.set(
            title=f"Echo throughput by payload size ({plan.size_in_flight} in flight)",
            ylabel="MB/s of payload (log)",
            yscale="log",
            xlabel="payload",
        )
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "scaling-payload.png")

    if "c" in series:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        labels = [c.label for c in configs]
        cpu = [median([r["engine_cpu_us"] for r in routing[label]]) for label in labels]
        rate = [median([r["rate"] for r in routing[label]]) for label in labels]
        axes[0].bar(range(len(labels)), cpu, color="tab:green")
        axes[0].set(title="Engine CPU per routed call", ylabel="µs")
        axes[1].bar(range(len(labels)), rate, color="tab:blue")
        axes[1].set(title="Throughput (anyiii asyncio pair, 100 in flight)", ylabel="calls/s")
        for ax in axes:
            ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
            ax.grid(True, axis="y", alpha=0.3)
        save(fig, "scaling-routing.png")

    if "d" in series:
        fig, ax = plt.subplots(figsize=(9, 4.2))
        bars: list[tuple[str, float]] = []
        if engine_mem:
            bars.append(("engine\nper worker", median([r["engine_kib"] for r in engine_mem])))
            bars.append(("helper\nper connection", median([r["helper_kib"] for r in engine_mem])))
        for sdk, runs in holds.items():
            bars.append((f"{sdk}\ncaller per call", median([r["caller_kib"] for r in runs])))
        for sdk, runs in holds.items():
            bars.append((f"{sdk}\ncallee per call", median([r["callee_kib"] for r in runs])))
        ax.bar(range(len(bars)), [v for _, v in bars], color="tab:purple")
        ax.set_xticks(range(len(bars)), [label for label, _ in bars], fontsize=7)
        ax.set(title="Resident memory growth", ylabel="KiB each")
        ax.grid(True, axis="y", alpha=0.3)
        save(fig, "scaling-memory.png")
    return written
