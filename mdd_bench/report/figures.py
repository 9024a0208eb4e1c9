"""Figures (PNG for reading, PDF for the paper): mean recall against budget, distillation time against
mean recall, and the cross-architecture heatmap. Drawn on Agg canvases owned by each figure, so nothing
touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator

from mdd_bench.record import FULL_DATA
from mdd_bench.report.frame import TIMING_TRACK
from mdd_bench.report.names import dataset_name, method_name, ordered_datasets, ordered_methods
from mdd_bench.report.random_weights import is_random, mark

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
MISSING_COLOUR = "0.88"


def _colours(methods: list[str]) -> dict[str, tuple]:
    palette = sns.color_palette("tab10", max(len(methods), 1))
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def _labels(frame: pd.DataFrame, track: str) -> dict[str, str]:
    """Legend names; a method that used its extras in this track says so, as the tables' dagger does."""
    used = frame[(frame["track"] == track) & (frame["extras"] != "")]["method"]
    return {m: method_name(m) + (" (+extras)" if m in set(used) else "") for m in set(frame["method"])}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# The same results must give the same bytes (committed reports regenerate exactly): a PDF otherwise
# carries the time it was written (CreationDate, unless SOURCE_DATE_EPOCH is set). The PNG's only text
# is matplotlib's version ("Software"), a function of the environment like the pixels, so it stays.
PDF_METADATA = {"CreationDate": None}


def _save(fig: Figure, folder: Path, stem: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.png", folder / f"{stem}.pdf"]
    with rc_context({"pdf.fonttype": 42}):  # TrueType in the PDF: what paper submission systems ask for
        fig.savefig(paths[0], dpi=150)
        fig.savefig(paths[1], metadata=PDF_METADATA)
    return paths


def _source_recall(frame: pd.DataFrame, track: str) -> pd.DataFrame:
    """Mean recall of the source encoders per (dataset, method, budget): mean, std (ddof=1) over seeds."""
    df = frame[
        (frame["ablation_group"] == "")
        & (frame["track"] == track)
        & frame["source"]
        & (frame["metric"] == "mean")
    ]
    return df.groupby(["dataset", "method", "budget"])["value"].agg(["mean", "std", "count"]).reset_index()


def _budget_axis(ax, budgets: list[int]) -> None:
    if len(budgets) > 1 and max(budgets) / min(budgets) >= 4:
        ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(budgets))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(b) for b in budgets])


def recall_vs_budget(frame: pd.DataFrame, track: str, folder: Path) -> list[Path]:
    stats = _source_recall(frame, track)
    if stats.empty:
        return []
    datasets = ordered_datasets(stats["dataset"])
    methods = ordered_methods(stats["method"])
    colours = _colours(methods)
    names = _labels(frame, track)
    budgets = sorted(set(stats.loc[stats["method"] != FULL_DATA, "budget"]))
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = _new_figure(3.6 * len(datasets) + 1.8, 3.2)
        axes = fig.subplots(1, len(datasets), squeeze=False)[0]
        for ax, dataset in zip(axes, datasets, strict=True):
            part = stats[stats["dataset"] == dataset]
            for k, method in enumerate(methods):
                m = part[part["method"] == method].sort_values("budget")
                if m.empty:
                    continue
                dodge = 1 + 0.015 * (k - (len(methods) - 1) / 2)  # keep error bars of one budget apart
                ax.errorbar(
                    m["budget"] * dodge,
                    m["mean"],
                    yerr=m["std"].fillna(0),
                    label=names[method],
                    color=colours[method],
                    marker="o",
                    capsize=3,
                    linewidth=1.5,
                )
            full = part[part["method"] == FULL_DATA]
            if not full.empty:
                ax.axhline(full["mean"].mean(), color="black", linestyle="--", linewidth=1, label="Full data")
            _budget_axis(ax, budgets)
            ax.set_title(dataset_name(dataset))
            ax.set_xlabel("Budget (pairs)")
            ax.set_ylabel("Mean recall (%)")
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes[1:]:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(handles, labels, loc="outside right center", frameon=False)
        fig.suptitle(f"Mean recall vs budget, {track} track\n(source encoders; mean ± std over seeds)")
        return _save(fig, folder, f"recall_vs_budget_{track}")


def time_vs_recall(frame: pd.DataFrame, track: str, folder: Path) -> list[Path]:
    recall = _source_recall(frame, track)
    cost = frame[
        (frame["ablation_group"] == "") & (frame["track"] == TIMING_TRACK) & (frame["metric"] == "distill_s")
    ]
    cost = cost.groupby(["dataset", "method", "budget"])["value"].mean().rename("seconds").reset_index()
    both = recall.merge(cost, on=["dataset", "method", "budget"]).dropna(subset=["mean", "seconds"])
    both = both[both["method"] != FULL_DATA]
    if both.empty:
        return []
    datasets = ordered_datasets(both["dataset"])
    methods = ordered_methods(both["method"])
    budgets = sorted(set(both["budget"]))
    colours = _colours(ordered_methods(recall["method"]))
    markers = {b: MARKERS[i % len(MARKERS)] for i, b in enumerate(budgets)}
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = _new_figure(3.6 * len(datasets) + 1.8, 3.2)
        axes = fig.subplots(1, len(datasets), squeeze=False)[0]
        for ax, dataset in zip(axes, datasets, strict=True):
            part = both[both["dataset"] == dataset]
            for row in part.itertuples(index=False):
                ax.errorbar(
                    max(row.seconds, 1e-3),
                    row.mean,
                    yerr=0 if math.isnan(row.std) else row.std,
                    color=colours[row.method],
                    marker=markers[row.budget],
                    markersize=6,
                    capsize=2,
                    linestyle="none",
                )
            ax.set_xscale("log")
            ax.set_title(dataset_name(dataset))
            ax.set_xlabel("Distillation wall time (s, log)")
            ax.set_ylabel("Mean recall (%)")
        handles = [Line2D([], [], color=colours[m], marker="o", linestyle="none") for m in methods]
        handles += [Line2D([], [], color="0.4", marker=markers[b], linestyle="none") for b in budgets]
        names = _labels(frame, track)
        labels = [names[m] for m in methods] + [f"{b} pairs" for b in budgets]
        fig.legend(handles, labels, loc="outside right center", frameon=False)
        fig.suptitle(
            f"Distillation time vs mean recall, {track} track\n(source encoders; mean ± std over seeds)"
        )
        return _save(fig, folder, f"time_vs_recall_{track}")


def cross_arch_heatmap(frame: pd.DataFrame, track: str, folder: Path) -> list[Path]:
    df = frame[
        (frame["ablation_group"] == "")
        & (frame["track"] == track)
        & (frame["metric"] == "mean")
        & (frame["method"] != FULL_DATA)
    ]
    pairs = list(dict.fromkeys(zip(df["image_encoder"], df["text_encoder"], strict=True)))
    if len(pairs) < 2:
        return []
    source = df.loc[df["source"], ["image_encoder", "text_encoder"]].drop_duplicates()
    source_pair = tuple(source.iloc[0]) if len(source) else None
    pairs.sort(key=lambda p: p != source_pair)
    datasets = ordered_datasets(df["dataset"])
    budgets = sorted(set(df["budget"]))
    methods = ordered_methods(df["method"])
    means = df.groupby(["dataset", "budget", "method", "image_encoder", "text_encoder"])["value"].mean()
    labels = [f"{i}\n{t}" + (" *" if (i, t) == source_pair else "") for i, t in pairs]
    names = _labels(frame, track)
    with sns.axes_style("white"), sns.plotting_context("paper"):
        fig = _new_figure(
            max(4.0, (0.75 * len(pairs) + 1.3) * len(budgets)), 0.42 * len(methods) * len(datasets) + 2.0
        )
        axes = fig.subplots(len(datasets), len(budgets), squeeze=False)
        for r, dataset in enumerate(datasets):
            grids = [
                np.array([[means.get((dataset, b, m, i, t), np.nan) for i, t in pairs] for m in methods])
                for b in budgets
            ]
            lo, hi = np.nanmin(grids), np.nanmax(grids)  # one colour scale per dataset
            for c, (budget, grid) in enumerate(zip(budgets, grids, strict=True)):
                ax = axes[r][c]
                ax.set_facecolor(MISSING_COLOUR)
                sns.heatmap(
                    pd.DataFrame(grid, index=[names[m] for m in methods], columns=labels),
                    ax=ax,
                    annot=True,
                    fmt=".1f",
                    cmap="viridis",
                    vmin=lo,
                    vmax=hi,
                    cbar=False,
                    linewidths=0.5,
                    annot_kws={"fontsize": 7},
                )
                ax.set_title(f"{dataset_name(dataset)}, {budget} pairs")
                ax.tick_params(axis="x", labelrotation=0, labelsize=6)
                ax.tick_params(axis="y", labelrotation=0, labelsize=7)
                if c:
                    ax.set_yticklabels([])
        fig.suptitle(
            f"Cross-architecture mean recall (%), {track} track\n"
            "columns: image / text encoder; * source pair; grey: not run"
        )
        return _save(fig, folder, f"cross_arch_{track}")


FIGURES = {
    "recall_vs_budget": (recall_vs_budget, "Mean recall against the budget (source encoders)"),
    "time_vs_recall": (time_vs_recall, "Distillation wall time against mean recall"),
    "cross_arch": (cross_arch_heatmap, "Cross-architecture mean recall"),
}


def write_figures(frame: pd.DataFrame, track: str, folder: Path) -> list[tuple[Path, str]]:
    """Every figure the results allow, as (path, caption) for PNG and PDF each."""
    out: list[tuple[Path, str]] = []
    for draw, caption in FIGURES.values():
        caption = mark(caption) if is_random(frame) else caption
        out += [(path, caption) for path in draw(frame, track, folder)]
    return out
