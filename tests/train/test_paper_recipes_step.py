"""Every paper recipe of the audio, image, video and point modalities runs one optimisation step, with its
augmentations, sampler and evaluation protocol, on a stand-in of its dataset in the real layout.

Only sizes shrink (tiny trunk, small maps, batch 2); the augmentation, mixup, sampler and protocol fields stay the
recipe's own.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_recipes import _standin

from unilk.datasets import SPEECH_COMMANDS_V2_CLASSES
from unilk.recipes import list_recipes
from unilk.train.build import build_parts
from unilk.train.config import load_recipe
from unilk.train.engine import Trainer

_SMALL = {
    "audio": ["adapter.num_mel_bins=32", "adapter.target_frames=48"],
    "image": ["adapter.input_size=[3, 32, 32]"],
    "video": ["adapter.short_side=32", "adapter.crop_size=32", "adapter.test_clips=2"],
    "points": ["adapter.image_size=32", "adapter.num_points=256", "evaluation.votes=3"],
}

PAPER = [n for n in list_recipes() if "/quick_" not in n and "sparse" not in n and n.split("/")[0] in _SMALL]


def test_the_paper_recipes_carry_their_augmentations():
    for name in PAPER:
        recipe = load_recipe(name)
        assert recipe.augment, f"{name}: no augment section"
    assert load_recipe("audio/audioset").data.sampler == "balanced"
    assert load_recipe("audio/esc50").evaluation.folds == [1, 2, 3, 4, 5]
    assert load_recipe("video/kinetics400").evaluation.multiview
    assert load_recipe("points/modelnet40").evaluation.votes == 10
    assert tuple(load_recipe("audio/speech_commands").data.kwargs["classes"]) == SPEECH_COMMANDS_V2_CLASSES  # 35


@pytest.mark.parametrize("name", PAPER)
def test_paper_recipe_runs_one_step(name, tmp_path):
    recipe = load_recipe(name)
    root = tmp_path / "data"
    root = _standin(recipe.data.dataset, recipe.data.kwargs, root, recipe.adapter)
    recipe = recipe.replace(
        [
            *_SMALL[recipe.modality],
            "model.arch=test_unireplknet",
            "model.pretrained=false",
            "model.kwargs={}",
            f"data.root={root}",
            "data.batch_size=2",
            "data.eval_batch_size=2",
            "data.num_workers=0",
            "train.grad_accum_steps=1",
            "train.max_steps=1",
            "train.amp=false",
            "train.device=cpu",
            "evaluation.folds=[]",
            "log.progress=false",
            "log.tensorboard=false",
            f"output_dir={tmp_path}/run",
        ]
    )
    parts = build_parts(recipe)
    assert type(parts.train_set.transform).__name__.endswith("Train")  # the augmenting transform, not the adapter
    before = [p.detach().clone() for p in parts.model.parameters()]
    summary = Trainer(recipe, parts).fit()
    assert summary["step"] == 1
    after = list(parts.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # the step changed the weights
    assert all(math.isfinite(v) for v in summary["metrics"].values())
    assert set(summary["metrics"]) >= ({"mAP"} if recipe.task == "multilabel" else {"acc", "bacc"})
