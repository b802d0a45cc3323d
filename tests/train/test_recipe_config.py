"""Recipe schema: defaults, unknown keys, types, ``key=value`` overrides, YAML round trip; optimizer and schedule."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch import nn

from unilk.errors import ConfigError
from unilk.train.config import Recipe, apply_overrides, load_recipe, recipe_from_dict
from unilk.train.optim import LRSchedule, build_optimizer, effective_lr


def test_defaults_and_round_trip(tmp_path):
    recipe = recipe_from_dict({"name": "x", "optim": {"lr": 1, "betas": [0.8, 0.9]}})
    assert recipe.optim.lr == 1.0
    assert isinstance(recipe.optim.lr, float)
    assert recipe.optim.betas == (0.8, 0.9)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe.to_dict()))
    assert load_recipe(path) == recipe
    assert recipe_from_dict({}) == Recipe()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"optim": {"lrr": 1.0}}, r"unknown key\(s\) \['lrr'\].*'layer_decay'.*'lr'"),
        ({"trian": {}}, r"recipe section 'recipe'.*\['trian'\].*'train'"),
        ({"train": {"epochs": "3"}}, r"train\.epochs: got '3', expected an integer"),
        ({"train": {"amp": 1}}, r"train\.amp: got 1, expected true or false"),
        ({"task": "regression"}, r"task: got 'regression', expected one of"),
        ({"optim": {"betas": [0.9]}}, r"optim\.betas: got \[0\.9\], expected a list of 2 values"),
        ({"data": {"batch_size": 0}}, r"data\.batch_size: got 0, expected >= 1"),
        ({"task": "forecast", "train": {"mixup": 0.5}}, r"classification only"),
    ],
)
def test_bad_recipes_raise_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict(data)


def test_overrides_are_typed_and_dotted():
    data = apply_overrides(
        {"optim": {"lr": 0.1}},
        ["optim.lr=1e-4", "train.max_steps=null", "model.kwargs.drop_path_rate=0.1", "train.amp=true", "name=run a"],
    )
    recipe = recipe_from_dict(data)
    assert recipe.optim.lr == pytest.approx(1e-4)
    assert recipe.train.max_steps is None
    assert recipe.model.kwargs == {"drop_path_rate": 0.1}
    assert recipe.train.amp is True
    assert recipe.name == "run a"
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(ConfigError, match="is not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])
    with pytest.raises(ConfigError, match="shipped"):
        load_recipe("audio/no_such_recipe")


def test_lr_schedule_warmup_cosine_step_and_layer_scale():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD([{"params": [model.weight], "lr_scale": 0.5}, {"params": [model.bias]}], lr=1.0)
    cosine = recipe_from_dict({"sched": {"sched": "cosine", "warmup_epochs": 1, "warmup_lr": 0.0, "min_lr": 0.0}})
    sched = LRSchedule(opt, cosine.sched, base_lr=1.0, total_steps=12, steps_per_epoch=2)
    assert sched.lr_at(0) == 0.0
    assert sched.lr_at(1) == pytest.approx(0.5)
    assert sched.lr_at(2) == pytest.approx(1.0)
    assert sched.lr_at(7) == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert sched.lr_at(12) == pytest.approx(0.0)
    sched.set_step(7)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * sched.lr_at(7))
    assert opt.param_groups[1]["lr"] == pytest.approx(sched.lr_at(7))
    # the official Speech Commands schedule: constant for 5 epochs, then x0.85 at every epoch start
    step = recipe_from_dict(
        {"sched": {"sched": "step", "decay_epochs": 1, "decay_start_epochs": 5, "decay_rate": 0.85}}
    )
    sched = LRSchedule(opt, step.sched, base_lr=1.0, total_steps=100, steps_per_epoch=10)
    assert [sched.lr_at(10 * e) for e in (0, 4, 5, 6)] == pytest.approx([1.0, 1.0, 0.85, 0.85**2])
    assert effective_lr(recipe_from_dict({"optim": {"lr": 4e-3, "lr_base_batch": 256}}).optim, 64) == pytest.approx(
        1e-3
    )


def test_optimizer_layer_decay_on_a_modal_model():
    from unilk.models.modal import create_modal_model

    model = create_modal_model("image", "classification", "test_unireplknet", num_classes=3)
    cfg = recipe_from_dict({"optim": {"opt": "adamw", "lr": 1e-3, "layer_decay": 0.5}}).optim
    opt = build_optimizer(model, cfg, lr=1e-3)
    scales = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    assert len(scales) == sum(1 for _ in model.parameters())  # every parameter optimized exactly once
    head = [scales[id(p)] for p in model.head.parameters()]
    stem = [scales[id(p)] for p in model.trunk.downsample_layers[0].parameters()]
    assert head == [1.0] * len(head)
    assert max(stem) < min(head)
    no_decay = [g for g in opt.param_groups if g["weight_decay"] == 0.0]
    assert all(p.ndim <= 1 for g in no_decay for p in g["params"])
    with pytest.raises(ConfigError, match=r"optim\.opt"):
        build_optimizer(model, recipe_from_dict({"optim": {"opt": "adamx"}}).optim, lr=1e-3)
