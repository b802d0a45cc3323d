"""Figures: ERF heatmaps of several models side by side, and training curves from a run's CSV log.

matplotlib is imported inside the functions (with the non-interactive Agg backend), so importing this module is cheap
and needs no display. Figures are saved at an exact pixel size (``figsize × dpi``), without tight cropping.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from unilk.diagnostics.erf import AreaRatio
from unilk.errors import InputError

__all__ = ["ERF_PANEL_INCHES", "plot_erf", "CurveLog", "read_curve_log", "find_run_log", "plot_training_curves"]

ERF_PANEL_INCHES = (4.0, 5.0)  # width, height of one model's panel (heatmap above, its r(t) table below)
_X_COLUMNS = ("step", "global_step", "iteration", "iter", "epoch")  # preferred x axis first
_SKIPPED = {"time", "timestamp", "wall_time", "elapsed", "elapsed_s", "epoch_time", "time_s", "seconds"}
_MAX_SERIES_VALUES = 8  # a text column with at most this many values splits the curves (e.g. split=train/val)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; also safe when another backend was selected earlier in the process
    import matplotlib.pyplot as plt

    return plt


def plot_erf(
    maps: Mapping[str, Tensor],
    path: str | Path,
    ratios: Mapping[str, Sequence[AreaRatio]] | None = None,
    *,
    dpi: int = 100,
    cmap: str = "RdYlGn",
) -> Path:
    """Draw normalised ERF maps side by side, each with its r(t) table, into one PNG.

    Args:
        maps: model name -> ``(H, W)`` map already normalised to ``[0, 1]`` (``normalize_erf``).
        path: output PNG path.
        ratios: model name -> its ``area_ratios``; printed under each heatmap when given.
        dpi: pixels per inch; the image is ``len(maps) · 4 · dpi`` × ``5 · dpi`` pixels.
        cmap: matplotlib colormap (the official figures use seaborn's ``RdYlGn``).

    Returns:
        The written path.

    Raises:
        InputError: if ``maps`` is empty or a map is not 2-D.
    """
    if not maps:
        raise InputError("plot_erf got no maps; pass at least one {model name: (H, W) map}")
    plt = _pyplot()
    width, height = ERF_PANEL_INCHES
    fig = plt.figure(figsize=(width * len(maps), height), dpi=dpi)
    for col, (name, erf_map) in enumerate(maps.items()):
        if erf_map.dim() != 2:
            raise InputError(f"ERF map of {name!r} has shape {tuple(erf_map.shape)}, expected (H, W)")
        # panel-relative boxes; the right part of each panel is left for the colorbar and its labels
        ax = fig.add_axes(((col + 0.04) / len(maps), 0.3, 0.8 / len(maps), 0.62))
        image = ax.imshow(erf_map.double().cpu().numpy(), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
        if ratios and name in ratios:
            rows = [[f"{r.threshold:.0%}", _fmt_side(r), _fmt_ratio(r)] for r in ratios[name]]
            table_ax = fig.add_axes(((col + 0.1) / len(maps), 0.02, 0.8 / len(maps), 0.22))
            table_ax.axis("off")
            table_ax.table(cellText=rows, colLabels=["t", "side", "r(t)"], loc="center", cellLoc="center")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _fmt_side(ratio: AreaRatio) -> str:
    return "-" if ratio.side is None else str(ratio.side)


def _fmt_ratio(ratio: AreaRatio) -> str:
    return "not reached" if ratio.ratio is None else f"{100 * ratio.ratio:.2f}%"


@dataclass(frozen=True)
class CurveLog:
    """Numeric curves read from a CSV log.

    Attributes:
        x_name: the x column (``step``, ``epoch``, ...).
        groups: ``{"loss" | "lr" | "metrics": {label: (xs, ys)}}``; a label is the column name, with the series
            value in brackets when a text column (e.g. ``split``) separates rows.
    """

    x_name: str
    groups: dict[str, dict[str, tuple[list[float], list[float]]]]


def find_run_log(run: str | Path) -> Path:
    """The CSV log of a run: the file itself, or the single CSV (or ``metrics.csv``/``log.csv``) in a run directory.

    Raises:
        InputError: if no CSV can be chosen.
    """
    run = Path(run)
    if run.is_file():
        return run
    if not run.is_dir():
        raise InputError(f"run {str(run)!r} does not exist; pass a run directory or its CSV log")
    csvs = sorted(run.glob("*.csv"))
    for preferred in ("metrics.csv", "log.csv", "train.csv"):
        if run / preferred in csvs:
            return run / preferred
    if len(csvs) == 1:
        return csvs[0]
    raise InputError(
        f"run directory {str(run)!r} holds {len(csvs)} CSV files ({[p.name for p in csvs]}); expected exactly one, "
        "or metrics.csv; pass the CSV file itself"
    )


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _group_of(column: str) -> str:
    name = column.lower()
    if "loss" in name:
        return "loss"
    if name in ("lr", "learning_rate") or name.startswith("lr") or name.endswith("_lr") or "learning_rate" in name:
        return "lr"
    return "metrics"


def read_curve_log(path: str | Path) -> CurveLog:
    """Read a CSV log into curves grouped as losses, learning rates and other metrics.

    Any CSV with a header, one of the columns ``step``, ``global_step``, ``iteration``, ``iter`` or ``epoch`` (the
    first present is the x axis) and numeric columns works. Empty cells are gaps (train and validation rows often fill
    different columns). Wall-clock columns are left out. A text column with at most 8 distinct values (``split``,
    ``phase``) splits each curve into one line per value.

    Args:
        path: the CSV file.

    Returns:
        The curves.

    Raises:
        InputError: if the file has no x column or no numeric column.
    """
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    header = list(reader.fieldnames or [])
    x_name = next((c for c in _X_COLUMNS if c in header), None)
    if x_name is None:
        raise InputError(f"{str(path)!r} has columns {header}, none of them an x axis; expected one of {_X_COLUMNS}")
    candidates = [c for c in header if c not in _X_COLUMNS and c.lower() not in _SKIPPED]
    numeric, text = [], []
    for column in candidates:
        values = [row[column] for row in rows if row[column] not in ("", None)]
        if values and all(_number(v) is not None for v in values):
            numeric.append(column)
        elif 0 < len(set(values)) <= _MAX_SERIES_VALUES:
            text.append(column)
    if not numeric:
        raise InputError(f"{str(path)!r} has no numeric column besides {x_name!r}; columns are {header}")
    groups: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for row in rows:
        x = _number(row[x_name] or "")
        if x is None:
            continue
        series = ", ".join(row[c] for c in text if row[c])
        for column in numeric:
            y = _number(row[column] or "")
            if y is None or math.isnan(y):
                continue
            label = f"{column} ({series})" if series else column
            xs, ys = groups.setdefault(_group_of(column), {}).setdefault(label, ([], []))
            xs.append(x)
            ys.append(y)
    return CurveLog(x_name=x_name, groups=groups)


def _is_evaluation(label: str, group: str) -> bool:
    """Evaluation series (metrics, ``eval_*``/``val_*`` columns) are drawn as markers: they have a point per eval."""
    name = label.lower()
    return group == "metrics" or name.startswith(("eval", "val", "test"))


def _run_title(log_path: Path) -> str:
    """``run NAME · recipe RECIPE`` for a run folder's log (the recipe read from its checkpoint when there is one)."""
    title = f"run {log_path.parent.name}"
    for name in ("last.pt", "best.pt"):
        checkpoint = log_path.parent / name
        if not checkpoint.is_file():
            continue
        import torch

        try:
            recipe = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True).get("recipe") or {}
        except Exception:  # an unreadable checkpoint only loses the recipe name in the title
            return title
        return f"{title} · recipe {recipe['name']}" if recipe.get("name") else title
    return title


def plot_training_curves(run: str | Path, path: str | Path, *, dpi: int = 100, title: str | None = None) -> Path:
    """Plot a run's losses, metrics and learning rate into one PNG (one panel per group, stacked).

    Training series are lines; evaluations (metrics, ``eval_*`` columns) are markers, so two evaluations are two
    points, not a segment. The figure is titled with the run and its recipe, each panel's axes are labelled.

    Args:
        run: the run directory or its CSV log (see ``find_run_log`` and ``read_curve_log``).
        path: output PNG path.
        dpi: pixels per inch; the image is ``8 · dpi`` wide and ``3 · dpi`` high per panel.
        title: the figure title (default: the run folder's name and the recipe of its checkpoint).

    Returns:
        The written path.

    Raises:
        InputError: if the log cannot be found or read.
    """
    log_path = find_run_log(run)
    log = read_curve_log(log_path)
    order = [g for g in ("loss", "metrics", "lr") if g in log.groups]
    plt = _pyplot()
    fig, axes = plt.subplots(len(order), 1, figsize=(8, 3 * len(order) + 0.4), dpi=dpi, squeeze=False, sharex=True)
    ylabels = {"loss": "loss", "metrics": "metric value", "lr": "learning rate"}
    for ax, group in zip(axes[:, 0], order):
        for label, (xs, ys) in log.groups[group].items():
            if _is_evaluation(label, group):
                ax.plot(xs, ys, label=label, marker="o", linestyle=":" if len(xs) > 1 else "none", linewidth=0.8)
            else:
                ax.plot(xs, ys, label=label, marker="." if len(xs) <= 3 else None)
        ax.set_ylabel(ylabels[group])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel(log.x_name)
    fig.suptitle(title or _run_title(log_path), fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
