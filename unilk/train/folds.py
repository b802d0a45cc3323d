"""Cross-validation: one training run per held-out fold, and the mean ± std of their metrics (ESC-50's protocol).

A recipe with ``evaluation.folds: [1, 2, 3, 4, 5]`` trains once per fold with ``data.kwargs.<fold_key>`` set to it,
in ``<output_dir>/fold<k>``, and writes ``<output_dir>/folds.json``: every fold's final metrics and, per metric, the
mean and the sample standard deviation over folds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch.distributed as dist

from unilk.train.config import Recipe
from unilk.train.metrics import mean_std

__all__ = ["fold_recipe", "run_folds"]

logger = logging.getLogger(__name__)


def fold_recipe(recipe: Recipe, fold: int) -> Recipe:
    """The recipe of one fold: the fold held out, its own output directory, no further folds."""
    key = recipe.evaluation.fold_key
    return recipe.replace(
        [f"data.kwargs.{key}={fold}", f"output_dir={Path(recipe.output_dir) / f'fold{fold}'}", "evaluation.folds=[]"]
    )


def run_folds(recipe: Recipe, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train and evaluate every fold of ``recipe.evaluation.folds``; returns (and writes) the summary.

    Args:
        recipe: a recipe with a non-empty ``evaluation.folds``.
        resume: continue each fold that has a ``last.pt``; folds without one start fresh.

    Returns:
        ``{"folds": {fold: metrics}, "mean": {metric: value}, "std": {metric: value}}``.
    """
    from unilk.train.build import build_parts
    from unilk.train.engine import Trainer

    per_fold: dict[int, dict[str, float]] = {}
    for fold in recipe.evaluation.folds:
        one = fold_recipe(recipe, fold)
        again = resume and (Path(one.output_dir) / "last.pt").is_file()
        summary = Trainer(one, build_parts(one)).fit(resume=again, overwrite=overwrite)
        per_fold[fold] = dict(summary["metrics"])
        logger.info("fold %d: %s", fold, per_fold[fold])
    names = sorted(set.intersection(*(set(m) for m in per_fold.values())))
    stats = {name: mean_std([m[name] for m in per_fold.values()]) for name in names}
    result = {
        "folds": per_fold,
        "mean": {name: stats[name][0] for name in names},
        "std": {name: stats[name][1] for name in names},
    }
    if not dist.is_initialized() or dist.get_rank() == 0:
        out = Path(recipe.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "folds.json").write_text(json.dumps(result, indent=2))
    return result
