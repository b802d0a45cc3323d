"""Frozen-feature probes: agreement with scikit-learn on the same features, mAP, determinism, and ``unilk probe``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from unilk.cli import cli
from unilk.errors import InputError
from unilk.probe import fit_linear, knn_scores, linear_probe, score


def _clusters(seed: int, n_train: int = 400, n_test: int = 300, classes: int = 5, dim: int = 16, spread: float = 1.6):
    """Overlapping Gaussian clusters on random directions (about 70-90 % separable): features with real structure."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    scale = rng.uniform(0.5, 2.0, size=dim)  # unequal feature scales: standardisation matters for the linear probe

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = rng.integers(0, classes, size=n)
        x = (centres[y] + spread * rng.normal(size=(n, dim))) * scale + 3.0
        return torch.from_numpy(x).float(), torch.from_numpy(y)

    return (*draw(n_train), *draw(n_test))


@pytest.mark.parametrize("seed", [0, 1])
def test_weighted_knn_agrees_with_sklearn(seed: int) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    x_train, y_train, x_test, y_test = _clusters(seed)
    k, temperature = 20, 0.07
    ours = score(knn_scores(x_train, y_train, x_test, 5, k=k, temperature=temperature), y_test)
    reference = KNeighborsClassifier(
        n_neighbors=k,
        metric="cosine",
        algorithm="brute",
        weights=lambda distance: np.exp((1.0 - distance) / temperature),  # cosine distance = 1 - similarity
    ).fit(x_train.numpy(), y_train.numpy())
    theirs = reference.score(x_test.numpy(), y_test.numpy())
    assert 0.4 < theirs < 0.99  # the task is neither trivial nor hopeless
    assert abs(ours - theirs) <= 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_linear_probe_agrees_with_sklearn_logistic_regression(seed: int) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x_train, y_train, x_test, y_test = _clusters(seed)
    logits, probe, held_out = linear_probe(x_train, y_train, x_test, 5, seed=seed)
    assert probe.l2 in held_out
    ours = score(logits, y_test)
    scaler = StandardScaler().fit(x_train.numpy())
    # ours: mean cross-entropy + l2 ||W||²; sklearn: C · sum cross-entropy + ½ ||W||²  =>  C = 1 / (2 · l2 · N)
    reference = LogisticRegression(C=1.0 / (2 * probe.l2 * len(x_train)), max_iter=5000, tol=1e-8)
    reference.fit(scaler.transform(x_train.numpy()), y_train.numpy())
    theirs = reference.score(scaler.transform(x_test.numpy()), y_test.numpy())
    assert 0.4 < theirs < 0.99
    assert abs(ours - theirs) <= 0.01
    # the same optimum, not just the same accuracy
    ours_proba = torch.softmax(fit_linear(x_train, y_train, 5, probe.l2).scores(x_test).double(), 1).numpy()
    theirs_proba = reference.predict_proba(scaler.transform(x_test.numpy()))
    assert np.abs(ours_proba - theirs_proba).max() < 1e-3


def test_linear_probe_is_deterministic_and_regularisation_matters() -> None:
    x_train, y_train, x_test, _ = _clusters(3)
    first, _probe, held = linear_probe(x_train, y_train, x_test, 5, seed=7)
    second, _, held_again = linear_probe(x_train, y_train, x_test, 5, seed=7)
    assert torch.equal(first, second)
    assert held == held_again
    weak = fit_linear(x_train, y_train, 5, 1e-6).weight.norm()
    strong = fit_linear(x_train, y_train, 5, 1.0).weight.norm()
    assert strong < 0.5 * weak


def test_multilabel_probes_score_map_like_sklearn() -> None:
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(240, 12))).float()
    truth = torch.from_numpy(rng.normal(size=(12, 4))).float()
    targets = ((x @ truth + 0.8 * torch.randn(240, 4, generator=torch.Generator().manual_seed(0))) > 0.5).float()
    train, test = slice(0, 160), slice(160, None)
    logits, probe, _ = linear_probe(x[train], targets[train], x[test], 4)
    assert probe.multilabel
    ours = score(logits, targets[test])
    theirs = average_precision_score(targets[test].numpy(), logits.numpy(), average="macro")
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert ours > 0.7
    votes = knn_scores(x[train], targets[train], x[test], 4)
    assert score(votes, targets[test]) == pytest.approx(
        average_precision_score(targets[test].numpy(), votes.numpy(), average="macro"), abs=1e-6
    )


def test_probes_refuse_bad_features() -> None:
    x_train, y_train, x_test, _ = _clusters(0, n_train=20, n_test=5)
    with pytest.raises(InputError, match="same N"):
        knn_scores(x_train, y_train[:5], x_test, 5)
    x_train[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        fit_linear(x_train, y_train, 5, 1e-3)


# ---------------------------------------------------------------------------------------------------- unilk probe


def _image(rng: np.random.Generator, label: int) -> np.ndarray:
    x = rng.normal(128, 20, (32, 32, 3))
    if label == 0:
        x[:, ::4] += 60  # vertical stripes
    elif label == 1:
        x[::4, :] += 60  # horizontal stripes
    else:
        x[:, :, 2] += 50  # bluish
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A tiny untrained image classifier checkpoint and a 3-class folder dataset with train and val splits."""
    from PIL import Image

    from unilk.models.modal import create_modal_model
    from unilk.train.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("probe")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        for label in range(3):
            folder = root / "data" / split / f"c{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(_image(rng, label)).save(folder / f"{i}.png")
    adapter = {"modality": "image", "input_size": [3, 32, 32]}
    torch.manual_seed(0)
    model = create_modal_model("image", "classification", "test_unireplknet", num_classes=3, adapter_config=adapter)
    arch = {"builder": "unilk.models.modal.create_modal_model", "modality": "image", "task": "classification",
            "trunk": "test_unireplknet", "num_classes": 3, "kwargs": {}, "head_kwargs": {}}  # fmt: skip
    checkpoint = save_checkpoint(root / "best.pt", {"model": model.state_dict(), "arch": arch, "adapter": adapter})
    return {"root": root, "checkpoint": checkpoint, "data": root / "data"}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_probe_command_scores_caches_and_calibrates(image_run) -> None:
    root, cache = image_run["root"], image_run["root"] / "cache"
    args = ["probe", str(image_run["checkpoint"]), str(image_run["data"]), "--k", "5", "--cache-dir", str(cache)]
    runner = CliRunner()
    first = runner.invoke(cli, [*args, "--json", str(root / "first.json")])
    assert first.exit_code == 0, first.output
    result = json.loads((root / "first.json").read_text())
    assert (result["train"], result["eval"], result["metric"], result["errors"]) == (24, 12, "top1", [])
    assert 0.0 <= result["knn"] <= 1.0
    assert 0.0 <= result["linear"] <= 1.0
    cached = sorted(p.name for p in cache.iterdir())
    assert len(cached) == 2  # train and eval embeddings
    again = runner.invoke(cli, [*args, "--json", str(root / "again.json")])
    assert again.exit_code == 0, again.output
    assert json.loads((root / "again.json").read_text()) == result  # deterministic, from the cache
    assert sorted(p.name for p in cache.iterdir()) == cached
    calibrated = runner.invoke(cli, [*args, "--calibrate", "--method", "knn", "--json", str(root / "cal.json")])
    assert calibrated.exit_code == 0, calibrated.output
    report = json.loads((root / "cal.json").read_text())
    assert report["calibration"]["layers"] > 0
    assert report["calibration"]["samples"] == 24
    assert "linear" not in report
    taken = runner.invoke(cli, [*args, "--json", str(root / "first.json")])
    assert taken.exit_code != 0
    assert "already exists" in taken.output


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_probe_reads_a_registered_loader_with_its_folds(tmp_path) -> None:
    """ESC-50's layout (metadata csv, five folds): train = folds 2-5, eval = fold 1, an audio model's own adapter."""
    from unilk.datasets.synthetic import make_esc50
    from unilk.models.modal import create_modal_model
    from unilk.probe_cli import run_probe
    from unilk.train.checkpoint import save_checkpoint

    data = make_esc50(tmp_path / "esc50", n_per_class=5, duration_s=0.5)
    adapter = {"modality": "audio", "num_mel_bins": 32, "target_frames": 48}
    torch.manual_seed(0)
    model = create_modal_model("audio", "classification", "test_unireplknet", num_classes=5, adapter_config=adapter)
    arch = {"builder": "unilk.models.modal.create_modal_model", "modality": "audio", "task": "classification",
            "trunk": "test_unireplknet", "num_classes": 5, "kwargs": {}, "head_kwargs": {}}  # fmt: skip
    checkpoint = save_checkpoint(tmp_path / "best.pt", {"model": model.state_dict(), "arch": arch, "adapter": adapter})
    result = run_probe(str(checkpoint), str(data), dataset="esc50", dataset_kwargs={"test_fold": 1}, method="knn")
    assert (result["modality"], result["train"], result["eval"], result["metric"]) == ("audio", 20, 5, "top1")
    assert 0.0 <= result["knn"] <= 1.0
