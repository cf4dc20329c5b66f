"""The report's pictures (matplotlib with the Agg backend: no display needed). Plotting only: the numbers and their
intervals come from pipeline/report.py as ``Series`` (one line per group of runs, x = iteration)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = plt.get_cmap("tab10").colors


@dataclass
class Series:
    """One group's values of one metric per iteration; lo/hi bound the 95% interval (None: no interval)."""

    label: str
    x: list[int]
    y: list[float]
    lo: list[float] | None = None
    hi: list[float] | None = None


def line_panel(ax, series: list[Series], title: str, unit: str | None) -> None:
    """unit "%": a rate in [0, 1] drawn in percent; "p": a probability drawn as is; None: any other figure. The band
    of a rate or probability stops at its bounds (a t interval over 3 seeds can reach past them)."""
    scale, top = {"%": (100, 100), "p": (1, 1)}.get(unit, (1, None))
    for i, s in enumerate(series):
        c = COLORS[i % len(COLORS)]
        ax.plot(s.x, [scale * v for v in s.y], marker="o", color=c, label=s.label)
        if s.lo is not None:
            lo, hi = ([scale * v if top is None else min(max(scale * v, 0), top) for v in b] for b in (s.lo, s.hi))
            ax.fill_between(s.x, lo, hi, color=c, alpha=0.18, lw=0)
    ax.set_title(title, fontsize=10)
    if unit == "%":
        ax.set_ylabel("%")
    _integer_axis(ax, "iteration", [x for s in series for x in s.x])
    if top is not None and len({v for s in series for v in s.y}) == 1:
        ax.set_ylim(-0.03 * top, 1.03 * top)  # one value (e.g. an evaluation-only run): its place on the whole scale, not a +-5% zoom
    ax.grid(alpha=0.3)


def lines(path: Path, title: str, panels: list[tuple[str, list[Series], str | None]]) -> Path:
    """One row of line panels, (panel title, series, unit) each; the legend once, under the row."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (name, series, unit) in zip(axes[0], panels):
        line_panel(ax, series, name, unit)
    _legend(fig, axes[0][0])
    return _save(fig, path, title)


def stacked_bars(path: Path, title: str, groups: list[tuple[str, list[int], dict[str, list[float]]]],
                 ylabel: str) -> Path:
    """Per group a panel of bars per iteration, stacked by category (e.g. prompts skipped, by reason)."""
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False, sharey=True)
    cats = list(dict.fromkeys(c for _, _, parts in groups for c in parts))
    for ax, (label, x, parts) in zip(axes[0], groups):
        bottom = [0.0] * len(x)
        for j, cat in enumerate(cats):
            vals = parts.get(cat, [0.0] * len(x))
            ax.bar(x, vals, bottom=bottom, color=COLORS[j % len(COLORS)], label=cat)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_title(label, fontsize=10)
        _integer_axis(ax, "iteration", x)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel(ylabel)
    _legend(fig, axes[0][0])
    return _save(fig, path, title)


def histograms(path: Path, title: str, groups: list[tuple[str, dict[int, list[float]]]], xlabel: str,
               ylabel: str = "judgments", bins: list[float] | None = None) -> Path:
    """Per group a panel with one step histogram per iteration (e.g. the judge's scores; bins: the edges, default
    one per integer score when the values are small integers, else 20)."""
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False, sharey=True)
    for ax, (label, by_iter) in zip(axes[0], groups):
        values = [v for vs in by_iter.values() for v in vs]
        lo, hi = (min(values), max(values)) if values else (0, 1)
        edges = bins or ([lo - 0.5 + k for k in range(int(hi - lo) + 2)] if float(lo).is_integer() and hi - lo <= 20
                         else 20)
        for i, (t, vs) in enumerate(sorted(by_iter.items())):
            ax.hist(vs, bins=edges, histtype="step", lw=1.6, color=plt.get_cmap("viridis")(i / max(len(by_iter) - 1, 1)),
                    label=f"iteration {t}")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel(ylabel)
    _legend(fig, axes[0][0])
    return _save(fig, path, title)


def per_round(path: Path, title: str, groups: list[tuple[str, dict[int, list[float]]]], target: float) -> Path:
    """Per group a panel with one line per iteration over the rounds (x = round; SEELE's accuracy per round, in
    [0, 1]) and the target as a dashed line."""
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False, sharey=True)
    for ax, (label, by_iter) in zip(axes[0], groups):
        for i, (t, ys) in enumerate(sorted(by_iter.items())):
            ax.plot(range(1, len(ys) + 1), [100 * y for y in ys], marker="o", label=f"iteration {t}",
                    color=plt.get_cmap("viridis")(i / max(len(by_iter) - 1, 1)))
        ax.axhline(100 * target, ls="--", color="gray", lw=1, label="target")
        ax.set_title(label, fontsize=10)
        _integer_axis(ax, "round", [r for ys in by_iter.values() for r in range(1, len(ys) + 1)])
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("sample accuracy (%)")
    _legend(fig, axes[0][0])
    return _save(fig, path, title)


def _integer_axis(ax, label: str, xs: list[int]) -> None:
    """An x axis of iterations or rounds: integer ticks only, also for a single one (an evaluation-only run,
    ``iterations=0``), where matplotlib's locator would otherwise fall back to fractional ticks."""
    ax.set_xlabel(label)
    if len(set(xs)) == 1:
        ax.set_xticks(sorted(set(xs)))
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)


def _legend(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)


def _save(fig, path: Path, title: str) -> Path:
    fig.suptitle(title, fontsize=11)
    rows = -(-len(fig.legends[0].get_texts()) // 4) if fig.legends else 0
    # fixed margins for panels 4.2 x 3.4 in (tight_layout measured every tick label: half the report's time)
    fig.subplots_adjust(left=0.72 / fig.get_figwidth(), right=1 - 0.15 / fig.get_figwidth(), top=0.84,
                        bottom=0.16 + 0.06 * rows, wspace=0.28)
    fig.savefig(path, dpi=96)
    plt.close(fig)
    return path
