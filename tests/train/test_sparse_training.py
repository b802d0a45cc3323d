"""SLaK dynamic sparsity in the engine: recipe section, masks after every step, sparse EMA, exact resume, reports.

The slow test is the acceptance check: 40 % sparse training of a tiny SLaK on the synthetic stripes reaches the dense
run's accuracy within 2 points, same seed and budget.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from unilk.errors import CheckpointError, ConfigError
from unilk.train.checkpoint import load_checkpoint
from unilk.train.config import recipe_from_dict
from unilk.train.engine import Trainer
from unilk.train.sparse import SparsityConfig

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _train_tiny import tiny_parts, tiny_recipe  # noqa: E402

SPARSE = ["sparsity={sparsity: 0.4, init: snip, prune_rate: 0.5, update_frequency: 4}"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)


def _assert_masked_zero(state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
    assert masks
    for name, mask in masks.items():
        assert not state[name][~mask].any(), name
        assert state[name][mask].count_nonzero() > 0.9 * mask.sum(), name  # active weights are really trained


def test_sparsity_section_is_parsed_and_validated():
    assert recipe_from_dict({}).sparsity is None  # absent: dense
    recipe = recipe_from_dict({"sparsity": {"sparsity": 0.4, "update_frequency": 2000, "prune_rate": 0.5}})
    assert recipe.sparsity == SparsityConfig(sparsity=0.4, update_frequency=2000, prune_rate=0.5)
    assert recipe_from_dict(recipe.to_dict()) == recipe
    with pytest.raises(ConfigError, match="update_frequency") as err:
        recipe_from_dict({"sparsity": {"sparsity": 0.4, "update_freq": 100}})
    assert "update_freq" in str(err.value)
    with pytest.raises(ConfigError, match="sparsity"):
        recipe_from_dict({"sparsity": {"sparsity": 1.5}})


@pytest.mark.parametrize(
    ("size", "update_frequency", "prune_rate"), [("t", 2000, 0.5), ("s", 100, 0.3), ("b", 100, 0.3)]
)
def test_slak_recipes_carry_the_paper_settings(size, update_frequency, prune_rate):
    from unilk.train.config import load_recipe

    recipe = load_recipe(f"image/slak_{size}_imagenet")
    assert recipe.model.arch == f"slak_{size}"
    assert recipe.model.kwargs["width_factor"] == 1.3
    assert recipe.sparsity == SparsityConfig(
        sparsity=0.4, init="snip", growth="random", prune_rate=prune_rate, update_frequency=update_frequency
    )
    assert recipe.data.batch_size * recipe.train.grad_accum_steps == recipe.optim.lr_base_batch == 4096
    assert (recipe.optim.lr, recipe.optim.weight_decay, recipe.sched.warmup_epochs) == (4e-3, 0.05, 20)
    assert (recipe.train.epochs, recipe.train.ema_decay, recipe.train.label_smoothing) == (300, 0.9999, 0.1)
    assert (recipe.train.mixup, recipe.train.cutmix, recipe.train.amp) == (0.8, 1.0, False)


def test_sparse_fit_masks_every_step_under_bf16_with_sparse_ema(tmp_path):
    overrides = [*SPARSE, "train.amp=true", "train.ema=true", "train.ema_decay=0.9", "train.mixup=0.5"]
    summary = Trainer(tiny_recipe(str(tmp_path), overrides), tiny_parts()).fit()
    assert summary["step"] == 24
    ckpt = load_checkpoint(tmp_path / "last.pt")
    sparse = ckpt["sparsity"]
    assert sparse["step_count"] == 24  # after_optimizer_step ran once per update; 6 mask updates happened
    masks = sparse["masks"]
    _assert_masked_zero(ckpt["model"], masks)
    for name, mask in masks.items():  # the EMA is sparse too: pruned positions are exactly zero
        assert not ckpt["ema"][name][~mask].any(), name
    assert "sparsity" in load_checkpoint(tmp_path / "best.pt")

    report = json.loads((tmp_path / "density.json").read_text())
    active = sum(layer["active"] for layer in report["layers"])
    total = sum(layer["numel"] for layer in report["layers"])
    assert report["overall_density"] == pytest.approx(active / total)
    assert abs(report["overall_density"] - 0.6) < 0.01
    # masked-out weights are zero; a few active ones too: those regrown at the last update (step 24) start at 0
    assert report["params"] - (total - active) - 0.05 * active <= report["params_nonzero"]
    assert report["params_nonzero"] <= report["params"] - (total - active)
    header, *rows = (tmp_path / "log.csv").read_text().splitlines()
    column = header.split(",").index("density")
    densities = [float(r.split(",")[column]) for r in rows if r.split(",")[column]]
    assert densities
    assert all(d == pytest.approx(report["overall_density"]) for d in densities)


class _Interrupted(Trainer):
    """Stops at step 10, as a time limit or a crash after the step-10 checkpoint would."""

    def _should_stop(self, start_time: float) -> bool:
        return self.step >= 10


def test_sparse_resume_is_exact(tmp_path):
    common = [*SPARSE, "checkpoint.every_steps=2", "train.ema=true", "train.ema_decay=0.9"]
    reference = Trainer(tiny_recipe(str(tmp_path / "ref"), common), tiny_parts()).fit()
    stopped = _Interrupted(tiny_recipe(str(tmp_path / "run"), common), tiny_parts()).fit()
    assert stopped["step"] == 10
    assert not stopped["completed"]
    resumed = Trainer(tiny_recipe(str(tmp_path / "run"), common), tiny_parts()).fit(resume=True)
    assert resumed["step"] == reference["step"] == 24
    ref, run = load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(tmp_path / "run" / "last.pt")
    for name in ref["sparsity"]["masks"]:
        assert torch.equal(ref["sparsity"]["masks"][name], run["sparsity"]["masks"][name]), name
    for key in ("model", "ema"):
        for name, value in ref[key].items():
            assert torch.equal(value, run[key][name]), (key, name)
    assert resumed["metrics"] == reference["metrics"]


def test_resume_refuses_a_sparsity_mismatch(tmp_path):
    Trainer(tiny_recipe(str(tmp_path / "dense"), ["train.max_steps=2"]), tiny_parts()).fit()
    with pytest.raises(CheckpointError, match="no sparsity masks"):
        Trainer(tiny_recipe(str(tmp_path / "dense"), SPARSE), tiny_parts()).fit(resume=True)
    Trainer(tiny_recipe(str(tmp_path / "sparse"), [*SPARSE, "train.max_steps=2"]), tiny_parts()).fit()
    with pytest.raises(CheckpointError, match="no sparsity section"):
        Trainer(tiny_recipe(str(tmp_path / "sparse")), tiny_parts()).fit(resume=True)


@pytest.mark.slow
def test_sparse_slak_matches_dense_accuracy_on_synthetic_stripes(tmp_path):
    """Acceptance: 40 % sparse tiny SLaK within 2 accuracy points of the same run dense (same seed and budget)."""
    from unilk.diagnostics.info import sparse_figures
    from unilk.train.build import build_parts
    from unilk.train.config import load_recipe

    common = [f"data.root={tmp_path}/data", "log.progress=false"]
    sparse = load_recipe("image/slak_sparse_stripes", [*common, f"output_dir={tmp_path}/sparse"])
    dense = sparse.replace([f"output_dir={tmp_path}/dense", "sparsity=null"])
    assert dense.sparsity is None
    assert sparse.sparsity.sparsity == 0.4
    results = {}
    for name, recipe in (("dense", dense), ("sparse", sparse)):
        torch.manual_seed(recipe.train.seed)  # the same initial weights for both runs
        parts = build_parts(recipe)
        results[name] = Trainer(recipe, parts).fit()["metrics"]["acc"]
        if name == "sparse":
            figures = sparse_figures(parts.model, tuple(recipe.adapter["input_size"]))
    assert results["dense"] >= 0.9  # the comparison means something only if dense training learns the task
    assert results["sparse"] >= results["dense"] - 0.02, results
    report = json.loads((tmp_path / "sparse" / "density.json").read_text())
    assert abs(report["overall_density"] - 0.6) < 0.01
    assert figures.params_nonzero < 0.75 * report["params"]
    assert figures.macs_sparse < 0.75 * figures.macs_dense


@pytest.mark.slow
def test_two_torchrun_processes_draw_rank0_snip_masks(tmp_path):
    """Under DDP every rank scores rank 0's per-rank batch: the masks equal a one-process run on that batch."""
    import os
    import socket
    import subprocess

    args = ["--drop", "0", "train.max_steps=3", "data.batch_size=8", *SPARSE]
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    cmd += [f"--master_port={port}", str(HERE / "_train_tiny.py"), str(tmp_path / "two"), *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    summaries = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2
    assert summaries[0]["metrics"] == summaries[1]["metrics"]
    # rank 0's slice of the first global batch of 8 is the first batch of 4 of the same permutation
    single = tiny_recipe(str(tmp_path / "one"), [*args[2:], "data.batch_size=4"])
    Trainer(single, tiny_parts(drop=0.0)).fit()
    two, one = load_checkpoint(tmp_path / "two" / "last.pt"), load_checkpoint(tmp_path / "one" / "last.pt")
    assert two["sparsity"]["masks"].keys() == one["sparsity"]["masks"].keys()
    for name, mask in one["sparsity"]["masks"].items():
        assert torch.equal(two["sparsity"]["masks"][name], mask), name
    _assert_masked_zero(two["model"], two["sparsity"]["masks"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="float16 autocast with a GradScaler needs CUDA")
def test_sparse_fit_masks_every_step_under_fp16_grad_scaler(tmp_path):
    overrides = [*SPARSE, "train.device=cuda", "train.amp=true", "train.amp_dtype=float16", "train.deterministic=false"]
    summary = Trainer(tiny_recipe(str(tmp_path), overrides), tiny_parts()).fit()
    assert summary["step"] == 24
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["scaler"]["scale"] > 0  # the scaler was on
    _assert_masked_zero(ckpt["model"], ckpt["sparsity"]["masks"])
