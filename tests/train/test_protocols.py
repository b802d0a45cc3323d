"""Protocols on small generated data: balanced sampling, multi-view / voting evaluation, cross-validation folds,
automatic statistics, and mixup of single- and multi-label targets."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from torch import nn

from unilk.datasets import synthetic
from unilk.errors import ConfigError
from unilk.train.config import recipe_from_dict
from unilk.train.engine import Trainer, TrainParts
from unilk.train.metrics import reduce_views
from unilk.train.samplers import BalancedBatchSampler, label_balanced_weights

# ----------------------------------------------------------------------------------------------- balanced sampling


def test_balanced_sampler_evens_out_rare_labels():
    targets = [0] * 90 + [1] * 10
    weights = label_balanced_weights(targets, 2)
    assert weights[0].item() == pytest.approx(1000 / 90.01)  # a label seen c times weighs 1000 / (c + 0.01)
    assert weights[-1].item() == pytest.approx(1000 / 10.01)
    sampler = BalancedBatchSampler(weights, batch_size=20, seed=0)
    drawn = torch.tensor([targets[i] for batch in sampler for i in batch])
    assert len(drawn) == 100  # one epoch: as many draws as samples
    assert 0.35 < drawn.float().mean().item() < 0.65  # the rare label is drawn about half the time, not 10 %
    assert [b for b in sampler] == [b for b in sampler]  # a pure function of (seed, epoch)
    sampler.set_position(1)
    assert [b for b in sampler] != [b for b in BalancedBatchSampler(weights, 20, seed=0)]


def test_balanced_sampler_ranks_share_the_global_batches():
    hot = torch.zeros(40, 3)
    hot[:30, 0] = 1
    hot[30:, 1] = 1
    hot[35:, 2] = 1  # multi-hot: the last 5 clips carry two labels
    weights = label_balanced_weights(list(hot), 3)
    one = list(BalancedBatchSampler(weights, 8, seed=3))
    halves = [list(BalancedBatchSampler(weights, 8, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves)] == one
    with pytest.raises(ConfigError, match="targets"):
        label_balanced_weights(["cat", "dog"], 2)


def test_trainer_uses_the_balanced_sampler():
    recipe = recipe_from_dict({"modality": "image", "data": {"sampler": "balanced", "batch_size": 4}})
    dataset = _Items([torch.zeros(3, 4, 4)] * 12, [0] * 11 + [1])
    dataset.targets = [0] * 11 + [1]
    trainer = Trainer(recipe, TrainParts(model=nn.Identity(), train_set=dataset, labels=["a", "b"]))
    assert isinstance(trainer._batch_sampler(), BalancedBatchSampler)


# --------------------------------------------------------------------------------------------- multi-view tests


class _Items(torch.utils.data.Dataset):
    def __init__(self, inputs, targets):
        self.inputs, self.target_list = inputs, targets

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, i):
        return {"id": str(i), "input": self.inputs[i], "target": self.target_list[i]}


def test_reduce_views_by_hand():
    outputs = torch.tensor([[[2.0, 0.0], [0.0, 4.0]]])  # one sample, two views
    probs = (torch.tensor([2.0, 0.0]).softmax(0) + torch.tensor([0.0, 4.0]).softmax(0)) / 2
    torch.testing.assert_close(reduce_views(outputs, "softmax").exp()[0], probs)
    torch.testing.assert_close(reduce_views(outputs, "logits")[0], torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("reduce", ["softmax", "logits"])
def test_multiview_evaluation_averages_the_views(reduce):
    gen = torch.Generator().manual_seed(0)
    views = [torch.randn(3, 3, 2, 2, generator=gen) for _ in range(6)]  # 6 videos × 3 views of a 3×2×2 map
    targets = [0, 1, 2, 0, 1, 2]
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    recipe = recipe_from_dict(
        {"modality": "video", "evaluation": {"multiview": True, "reduce": reduce}, "train": {"device": "cpu"}}
    )
    trainer = Trainer(recipe, TrainParts(model=model, train_set=_Items(views, targets), labels=["a", "b", "c"]))
    metrics = trainer.evaluate(model, _Items(views, targets))
    with torch.no_grad():
        outputs = model(torch.stack(views).flatten(0, 1)).unflatten(0, (6, 3))
    expected = reduce_views(outputs, reduce)
    acc = (expected.argmax(1) == torch.tensor(targets)).float().mean().item()
    assert metrics["acc"] == pytest.approx(acc)
    assert metrics["eval_loss"] == pytest.approx(nn.functional.cross_entropy(expected, torch.tensor(targets)).item())


# ------------------------------------------------------------------------------------------------- mixup targets


@pytest.mark.parametrize("task", ["classification", "multilabel"])
def test_mixup_mixes_labels_with_the_inputs(task):
    recipe = recipe_from_dict({"modality": "audio", "task": task, "train": {"mixup": 10.0, "mixup_prob": 1.0}})
    trainer = Trainer(recipe, TrainParts(model=nn.Identity(), train_set=_Items([0] * 4, [0] * 4), labels=list("abcd")))
    mixup = trainer._build_mixup()
    x = torch.stack([torch.full((1, 2, 2), float(v)) for v in (0, 1, 2, 3)])
    if task == "classification":
        y = torch.tensor([0, 1, 2, 3])
    else:
        y = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0]]).float()
    torch.manual_seed(0)
    mixed_x, mixed_y = mixup(x.clone(), y)
    lam = 1 - mixed_x[0, 0, 0, 0].item() / 3.0  # sample 0 (value 0) is mixed with the flipped batch's sample 3
    assert 0.1 < lam < 0.9  # Beta(10, 10)
    hot = y if task == "multilabel" else torch.eye(4)[y]
    torch.testing.assert_close(mixed_y, lam * hot + (1 - lam) * hot.flip(0))
    if task == "classification":
        torch.testing.assert_close(mixed_y.sum(1), torch.ones(4))  # mixed one-hot labels still sum to 1


def test_cutmix_pastes_a_box_and_mixes_smoothed_labels_by_its_area():
    recipe = recipe_from_dict(
        {"modality": "image", "train": {"cutmix": 1.0, "mixup_prob": 1.0, "label_smoothing": 0.1}}
    )
    trainer = Trainer(recipe, TrainParts(model=nn.Identity(), train_set=_Items([0] * 4, [0] * 4), labels=list("abcd")))
    cutmix = trainer._build_mixup()
    x = torch.stack([torch.full((3, 16, 16), float(v)) for v in (0, 1, 2, 3)])
    y = torch.tensor([0, 1, 2, 3])
    torch.manual_seed(0)
    mixed_x, mixed_y = cutmix(x.clone(), y)
    pasted = mixed_x[0, 0] == 3.0  # sample 0 takes a box from the flipped batch's sample 3
    assert torch.equal(pasted | (mixed_x[0, 0] == 0.0), torch.ones(16, 16, dtype=torch.bool))  # no blending
    rows, cols = pasted.any(1).nonzero().flatten(), pasted.any(0).nonzero().flatten()
    box = pasted[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert 0 < pasted.sum() < 256  # neither empty nor the whole image
    assert box.all()  # one rectangle
    lam = 1 - pasted.float().mean().item()  # the labels carry the kept area
    off = 0.1 / 4
    smooth = torch.full((4, 4), off) + torch.eye(4) * (1 - 0.1)  # timm's smoothed one-hot: 0.925 and 0.025
    torch.testing.assert_close(mixed_y, lam * smooth + (1 - lam) * smooth.flip(0))
    torch.testing.assert_close(mixed_y.sum(1), torch.ones(4))


# ---------------------------------------------------------------------------------------------- cross-validation

_TINY_AUDIO = {
    "modality": "audio",
    "model": {"arch": "test_unireplknet"},
    "adapter": {"num_mel_bins": 16, "target_frames": 32, "mean": -6.6, "std": 5.4},
    "train": {"max_steps": 1, "device": "cpu"},
    "log": {"progress": False, "tensorboard": False},
}


def test_folds_train_each_fold_and_report_mean_and_std(tmp_path):
    from unilk.train.folds import run_folds

    root = tmp_path / "esc"
    synthetic.make_esc50(root, categories=("dog", "rain"), n_per_class=5)
    recipe = recipe_from_dict(
        {
            **_TINY_AUDIO,
            "output_dir": str(tmp_path / "run"),
            "data": {"dataset": "ESC50", "root": str(root), "batch_size": 2, "eval_batch_size": 4},
            "evaluation": {"folds": [1, 3, 5]},  # three of ESC-50's five folds keep the test short
        }
    )
    result = run_folds(recipe)
    assert sorted(result["folds"]) == [1, 3, 5]
    for fold in (1, 3, 5):
        saved = json.loads((tmp_path / "run" / f"fold{fold}" / "metrics.json").read_text())
        assert saved["metrics"] == result["folds"][fold]
        ckpt = torch.load(tmp_path / "run" / f"fold{fold}" / "last.pt", weights_only=True)
        assert ckpt["recipe"]["data"]["kwargs"]["test_fold"] == fold
    accs = [result["folds"][k]["acc"] for k in (1, 3, 5)]
    assert result["mean"]["acc"] == pytest.approx(statistics.mean(accs))
    assert result["std"]["acc"] == pytest.approx(statistics.stdev(accs))
    assert json.loads((tmp_path / "run" / "folds.json").read_text())["mean"] == result["mean"]


# --------------------------------------------------------------------------------------------- automatic statistics


def test_auto_statistics_are_computed_once_and_cached_with_the_fingerprint(tmp_path, monkeypatch):
    from unilk.adapters.audio import AudioConfig
    from unilk.adapters.audio_stats import fbank_mean_std
    from unilk.datasets import SpeechCommands
    from unilk.train import auto_stats
    from unilk.train.build import build_parts

    root = tmp_path / "sc"
    synthetic.make_speech_commands(root, words=("no", "yes"), n_per_class=4)
    recipe = recipe_from_dict(
        {
            **_TINY_AUDIO,
            "adapter": {"num_mel_bins": 16, "target_frames": 32, "mean": "auto", "std": "auto"},
            "output_dir": str(tmp_path / "run"),
            "data": {"dataset": "SpeechCommands", "root": str(root), "batch_size": 2},
        }
    )
    parts = build_parts(recipe)
    train = SpeechCommands(root, "train")
    mean, std, _ = fbank_mean_std([str(s.source) for s in train.samples], AudioConfig(num_mel_bins=16), progress=False)
    assert parts.adapter["mean"] == pytest.approx(mean)
    assert parts.adapter["std"] == pytest.approx(std)
    cached = list((root / ".unilk_stats").glob("audio-*.json"))
    assert len(cached) == 1
    assert json.loads(cached[0].read_text())["mean"] == pytest.approx(mean)

    def no_compute(*args, **kwargs):
        raise AssertionError("statistics recomputed although cached")

    monkeypatch.setattr(auto_stats, "_compute", no_compute)
    assert build_parts(recipe).adapter["mean"] == pytest.approx(mean)  # read from the cache
    # another front end or a changed training file gives another fingerprint: no stale numbers
    with pytest.raises(AssertionError, match="recomputed"):
        build_parts(recipe.replace(["adapter.num_mel_bins=20"]))
    victim = Path(train.samples[0].source)
    victim.write_bytes(victim.read_bytes())  # same bytes, new mtime
    import os

    os.utime(victim, ns=(1, 1))
    with pytest.raises(AssertionError, match="recomputed"):
        build_parts(recipe)


def test_auto_statistics_fall_back_when_the_data_is_read_only(tmp_path):
    from unilk.datasets import SpeechCommands
    from unilk.train.auto_stats import resolve_auto_stats

    root = tmp_path / "sc"
    synthetic.make_speech_commands(root, words=("no",), n_per_class=3)
    (root / ".unilk_stats").write_text("a file where the cache folder would go")  # makes the cache unwritable
    fields = {"num_mel_bins": 16, "mean": "auto", "std": "auto"}
    out = resolve_auto_stats("audio", fields, SpeechCommands(root, "train"), root, tmp_path / "fallback")
    assert isinstance(out["mean"], float)
    assert len(list((tmp_path / "fallback").glob("audio-*.json"))) == 1
    with pytest.raises(ConfigError, match="points"):
        resolve_auto_stats("points", {"mean": "auto"}, SpeechCommands(root, "train"), root, tmp_path)


def test_auto_statistics_leave_out_broken_links_and_unreadable_files(tmp_path):
    import os

    from PIL import Image

    from unilk.datasets import ImageFolder, SpeechCommands
    from unilk.train.auto_stats import resolve_auto_stats

    root = tmp_path / "sc"
    synthetic.make_speech_commands(root, words=("no",), n_per_class=3)
    fields = {"num_mel_bins": 16, "mean": "auto", "std": "auto"}
    torch.manual_seed(0)  # the fbank's dither is random
    clean = resolve_auto_stats("audio", fields, SpeechCommands(root, "train"), root, tmp_path / "fallback")
    os.symlink(root / "gone.wav", root / "no" / "zz_dangling.wav")  # os.stat of it ended the run
    (root / "no" / "zz_text.wav").write_text("not audio")
    torch.manual_seed(0)
    out = resolve_auto_stats("audio", fields, SpeechCommands(root, "train"), root, tmp_path / "fallback")
    assert out["mean"] == pytest.approx(clean["mean"])
    assert out["std"] == pytest.approx(clean["std"])
    images = tmp_path / "images"
    (images / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(images / "a" / "red.png")
    (images / "a" / "text.png").write_text("not an image")  # ended the run with its InputError
    os.symlink(images / "gone.png", images / "a" / "zz.png")
    stats = resolve_auto_stats("image", {"mean": "auto"}, ImageFolder(images), images, tmp_path / "fallback")
    assert stats["mean"] == pytest.approx([1.0, 0.0, 0.0])


# ----------------------------------------------------------------------------------------------- recipe validation


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"augment": {"freqm": 48}}, "freqm"),
        ({"augment": {"time_mask": "wide"}}, "time_mask"),
        ({"evaluation": {"votes": 5}}, "points"),
        ({"evaluation": {"multiview": True}}, "video"),
        ({"evaluation": {"folds": [1, 1]}}, "distinct"),
        ({"evaluation": {"folds": "1-5"}}, "list"),
        ({"data": {"sampler": "weighted"}}, "sampler"),
    ],
)
def test_recipes_reject_bad_protocol_and_augmentation_fields(section, match):
    with pytest.raises(ConfigError, match=match):
        recipe_from_dict({"modality": "audio", **section})
