"""Acceptance (slow): each quick recipe learns its synthetic dataset on CPU within 5 minutes.

Classification: >= 90 % accuracy on the held-out split. Forecasting: test MSE at most half of the repeat-last-value
baseline (the last input step repeated over the horizon).
"""

from __future__ import annotations

import pytest
import torch

from unilk.recipes import list_recipes
from unilk.train.build import build_parts
from unilk.train.config import load_recipe
from unilk.train.engine import Trainer

QUICK = [name for name in list_recipes() if "/quick_" in name]


def _repeat_last_mse(dataset) -> float:
    targets = torch.stack([dataset[i]["target"] for i in range(len(dataset))])  # (N, H, C)
    last = torch.stack([dataset[i]["input"][-1] for i in range(len(dataset))])  # (N, C)
    return (last[:, None, :] - targets).pow(2).mean().item()


@pytest.mark.slow
@pytest.mark.parametrize("name", QUICK)
def test_quick_recipe_learns_within_five_minutes(name, tmp_path):
    recipe = load_recipe(name, [f"output_dir={tmp_path}/run", f"data.root={tmp_path}/data", "log.progress=false"])
    parts = build_parts(recipe)
    summary = Trainer(recipe, parts).fit()
    assert summary["minutes"] <= 5.0
    if recipe.task == "forecast":
        assert summary["metrics"]["mse"] <= 0.5 * _repeat_last_mse(parts.eval_set)
    else:
        assert summary["metrics"]["acc"] >= 0.9
