"""Acceptance (slow): each quick recipe learns its synthetic dataset on CPU within 5 minutes.

Classification: >= 90 % accuracy on the held-out split. Forecasting: test MSE at most half of the repeat-last-value
baseline (the last input step repeated over the horizon).

The runs use one intra-op thread: on a shared, loaded machine two threads spin against each other and a run becomes
several times slower, while one thread's CPU time bounds the wall time the run needs on two idle cores. So the budget is
checked on CPU time (load-independent) as well as on the trainer's wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import torch

from unilk.datasets import synthetic
from unilk.recipes import list_recipes
from unilk.train.build import build_parts
from unilk.train.config import load_recipe
from unilk.train.engine import Trainer

QUICK = [name for name in list_recipes() if "/quick_" in name]


@pytest.fixture
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _repeat_last_mse(dataset) -> float:
    targets = torch.stack([dataset[i]["target"] for i in range(len(dataset))])  # (N, H, C)
    last = torch.stack([dataset[i]["input"][-1] for i in range(len(dataset))])  # (N, C)
    return (last[:, None, :] - targets).pow(2).mean().item()


@pytest.mark.slow
@pytest.mark.parametrize("name", QUICK)
@pytest.mark.usefixtures("_one_thread")
def test_quick_recipe_learns_within_five_minutes(name, tmp_path):
    recipe = load_recipe(name, [f"output_dir={tmp_path}/run", f"data.root={tmp_path}/data", "log.progress=false"])
    if recipe.data.synthetic is None:  # a recipe for the user's own folder (series/quick_classify): write one
        synthetic.make_series_archive(tmp_path / "data", n_per_class=50, min_length=100, max_length=300)
    parts = build_parts(recipe)
    cpu_start = time.process_time()
    summary = Trainer(recipe, parts).fit()
    cpu_minutes = (time.process_time() - cpu_start) / 60
    assert summary["minutes"] <= 5.0
    assert cpu_minutes <= 5.0, f"{name}: {cpu_minutes:.2f} CPU minutes on one thread"
    if recipe.task == "forecast":
        assert summary["metrics"]["mse"] <= 0.5 * _repeat_last_mse(parts.eval_set)
    else:
        assert summary["metrics"]["acc"] >= 0.9
