"""The engine learns, resumes exactly after SIGKILL, and two torchrun processes match one process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from unilk.errors import CheckpointError, ConfigError, InputError
from unilk.train.checkpoint import load_checkpoint
from unilk.train.distributed import GlobalBatchSampler
from unilk.train.engine import Trainer

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "_train_tiny.py"
sys.path.insert(0, str(HERE))
from _train_tiny import tiny_parts, tiny_recipe  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)


def _script(out: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(out), *args], env=env, stdout=subprocess.PIPE, text=True)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_fit_learns_and_writes_logs_and_checkpoints(tmp_path):
    recipe = tiny_recipe(str(tmp_path / "run"), ["train.ema=true", "train.ema_decay=0.9", "train.clip_grad=1.0"])
    summary = Trainer(recipe, tiny_parts()).fit()
    assert summary["completed"]
    assert summary["step"] == 24
    assert summary["metrics"]["acc"] >= 0.9
    run = tmp_path / "run"
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["step", "epoch", "lr", "loss"]
    assert len(rows) == 1 + 24 // 2 + 3  # header, a train row every 2 steps, an eval row per epoch
    epochs_of_step: dict[str, set[str]] = {}
    for row in rows[1:]:
        step, epoch = row.split(",")[:2]
        epochs_of_step.setdefault(step, set()).add(epoch)
    assert all(len(epochs) == 1 for epochs in epochs_of_step.values()), epochs_of_step  # train and eval rows agree
    assert epochs_of_step["8"] == {"0"}  # 8 steps per epoch: step 8 ends epoch 0
    assert "acc5" not in rows[0].split(",")  # 4 classes: top-5 accuracy would always be 1
    ckpt = load_checkpoint(run / "last.pt")  # weights_only=True inside
    assert ckpt["labels"] == ["a", "b", "c", "d"]
    assert ckpt["recipe"]["optim"]["lr"] == pytest.approx(0.02)
    assert ckpt["progress"]["step"] == 24
    assert set(ckpt) >= {"optimizer", "ema", "rng", "metrics", "arch"}
    best = load_checkpoint(run / "best.pt")
    assert "optimizer" not in best
    assert best["metrics"]["acc"] == summary["best"]
    assert json.loads((run / "metrics.json").read_text())["step"] == 24
    with pytest.raises(ConfigError, match=r"already holds .*last\.pt.* of an earlier run"):
        Trainer(recipe, tiny_parts()).fit()


def test_accumulation_matches_large_batch(tmp_path):
    """Two micro-batches of 4 with accumulation = one batch of 8 (data order is per global batch of 8)."""
    common = ["train.epochs=1", "train.max_steps=5", "log.every_steps=0"]
    Trainer(tiny_recipe(str(tmp_path / "a"), common), tiny_parts(drop=0.0)).fit()
    accum = [*common, "data.batch_size=4", "train.grad_accum_steps=2"]
    Trainer(tiny_recipe(str(tmp_path / "b"), accum), tiny_parts(drop=0.0)).fit()
    # batch 4 draws a different permutation grouping only if the sampler differed; same seed -> same order.
    assert _max_diff(_weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt")) < 1e-6


def test_sigkill_midway_then_resume_equals_uninterrupted(tmp_path):
    reference = Trainer(tiny_recipe(str(tmp_path / "ref"), ["checkpoint.every_steps=2"]), tiny_parts()).fit()
    assert reference["step"] == 24

    run = tmp_path / "killed"
    proc = _script(run, "--slow-ms", "15", "checkpoint.every_steps=2")
    deadline = time.monotonic() + 120
    step = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "last.pt").exists():
            step = load_checkpoint(run / "last.pt")["progress"]["step"]
            if step >= 6:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; raise --slow-ms"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(run / "last.pt")["progress"]["step"]
    assert 6 <= killed_at < 24

    resumed = Trainer(tiny_recipe(str(run), ["checkpoint.every_steps=2"]), tiny_parts()).fit(resume=True)
    assert resumed["step"] == 24
    assert _max_diff(_weights(run / "last.pt"), _weights(tmp_path / "ref" / "last.pt")) <= 1e-6
    assert resumed["metrics"]["acc"] == pytest.approx(reference["metrics"]["acc"], abs=1e-6)
    steps = [int(line.split(",")[0]) for line in (run / "log.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps)  # rows the killed run logged after its checkpoint were not duplicated


def test_resume_refuses_a_different_model_section(tmp_path):
    Trainer(tiny_recipe(str(tmp_path), ["train.max_steps=2"]), tiny_parts()).fit()
    other = tiny_recipe(str(tmp_path), ["train.max_steps=4", "model.arch=other"])
    with pytest.raises(CheckpointError, match="model section"):
        Trainer(other, tiny_parts()).fit(resume=True)


def _torchrun_tiny(out_dir: Path, args: list[str]) -> list[dict]:
    """Two CPU processes (gloo) train the tiny problem; returns both ranks' summaries."""
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port: torchrun's static rendezvous does not accept port 0
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    cmd += [f"--master_port={port}", str(SCRIPT)]
    out = subprocess.run([*cmd, str(out_dir), *args], env=env, capture_output=True, text=True, timeout=240, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    summaries = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2
    return summaries


def test_two_torchrun_processes_match_one_process(tmp_path):
    args = ["--drop", "0", "train.epochs=2", "data.batch_size=8", "data.eval_batch_size=5"]
    single = Trainer(tiny_recipe(str(tmp_path / "one"), args[2:]), tiny_parts(drop=0.0)).fit()
    summaries = _torchrun_tiny(tmp_path / "two", args)
    assert summaries[0]["metrics"] == summaries[1]["metrics"]
    for key, value in single["metrics"].items():
        assert summaries[0]["metrics"][key] == pytest.approx(value, abs=1e-4)
    assert _max_diff(_weights(tmp_path / "two" / "last.pt"), _weights(tmp_path / "one" / "last.pt")) < 1e-4
    assert len(load_checkpoint(tmp_path / "two" / "last.pt")["rng"]) == 2


def _bad_samples(seed: int, world_size: int, batch_size: int) -> tuple[set[int], set[int]]:
    """Training samples to fail in epoch 0: all of rank 1's share of global batches 0 and 3, and all of batch 5."""
    ranks = [list(GlobalBatchSampler(64, batch_size, seed, rank, world_size)) for rank in range(world_size)]
    rank1_empty = set(ranks[1][0]) | set(ranks[1][3])
    return rank1_empty | set(ranks[0][5]) | set(ranks[1][5]), rank1_empty


def test_a_rank_whose_whole_batch_fails_keeps_step_with_the_others(tmp_path):
    """Under DDP a rank with nothing to train on contributes zero weight; the update equals one process's."""
    bad, _ = _bad_samples(seed=3, world_size=2, batch_size=8)
    # with accumulation over 2 micro-batches: rank 1 is empty in the first micro-batch of update 0, in the last of
    # update 1, and every rank is empty in the last of update 2; in epoch 1 the bad samples fall anywhere
    args = ["train.epochs=2", "data.batch_size=8", "train.grad_accum_steps=2", "data.eval_batch_size=5"]
    parts = tiny_parts(drop=0.0, bad=bad)
    single = Trainer(tiny_recipe(str(tmp_path / "one"), args), parts).fit()
    summaries = _torchrun_tiny(tmp_path / "two", ["--drop", "0", "--bad", ",".join(map(str, sorted(bad))), *args])
    assert [s["step"] for s in summaries] == [single["step"]] * 2 == [8, 8]
    assert summaries[0]["failed_samples"] == len(bad) == 16
    errors = [json.loads(line) for line in (tmp_path / "two" / "data_errors.jsonl").read_text().splitlines()]
    assert {(e["split"], e["index"]) for e in errors} == {("train", i) for i in bad}
    assert _max_diff(_weights(tmp_path / "two" / "last.pt"), _weights(tmp_path / "one" / "last.pt")) < 1e-4
    for key, value in single["metrics"].items():
        assert summaries[0]["metrics"][key] == pytest.approx(value, abs=1e-4)


def test_with_batchnorm_buffers_an_empty_rank_does_not_hang(tmp_path):
    """DDP broadcasts BatchNorm buffers at every forward; a rank with no sample must not leave its peer waiting."""
    _, rank1_empty = _bad_samples(seed=3, world_size=2, batch_size=8)
    args = ["--bn", "--bad", ",".join(map(str, sorted(rank1_empty))), "train.epochs=1", "data.batch_size=8"]
    summaries = _torchrun_tiny(tmp_path, args)
    assert summaries[0]["metrics"] == summaries[1]["metrics"]
    assert summaries[0]["step"] == 8
    assert summaries[0]["failed_samples"] == 8


def test_a_batch_whose_every_sample_fails_is_a_zero_weight_step(tmp_path, caplog):
    bad = set(next(iter(GlobalBatchSampler(64, 8, seed=3))))  # the whole first batch
    with caplog.at_level("WARNING", logger="unilk.train.engine"):
        summary = Trainer(tiny_recipe(str(tmp_path), ["train.epochs=1"]), tiny_parts(bad=bad)).fit()
    assert summary["step"] == 8
    assert summary["failed_samples"] == 8
    assert "every sample of a training batch failed to load" in caplog.text
    everything = set(range(64))
    with pytest.raises(InputError, match="none of the 64 training samples could be read"):
        Trainer(tiny_recipe(str(tmp_path / "none"), ["train.epochs=1"]), tiny_parts(bad=everything)).fit()


def test_mixup_with_an_odd_batch_left_by_a_failed_sample(tmp_path):
    bad = {next(iter(GlobalBatchSampler(64, 8, seed=3)))[0]}  # the first batch keeps 7 samples
    recipe = tiny_recipe(str(tmp_path), ["train.mixup=0.8", "train.label_smoothing=0.1", "train.max_steps=2"])
    summary = Trainer(recipe, tiny_parts(bad=bad)).fit()
    assert summary["step"] == 2
    assert summary["failed_samples"] == 1


def test_mixup_bf16_autocast_and_limits(tmp_path):
    recipe = tiny_recipe(
        str(tmp_path),
        ["train.mixup=0.8", "train.cutmix=1.0", "train.label_smoothing=0.1", "train.amp=true", "train.max_steps=3"],
    )
    summary = Trainer(recipe, tiny_parts()).fit()
    assert summary["step"] == 3
    assert summary["completed"]
    assert torch.isfinite(torch.tensor(summary["metrics"]["eval_loss"]))


def test_time_limit_stops_and_checkpoints(tmp_path):
    recipe = tiny_recipe(str(tmp_path), ["train.max_minutes=0.0", "log.tensorboard=true", "log.every_steps=1"])
    summary = Trainer(recipe, tiny_parts()).fit()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert not summary["completed"]
    assert summary["step"] == 1
    assert load_checkpoint(tmp_path / "last.pt")["progress"]["step"] == 1


def test_progress_is_lines_when_stderr_is_not_a_terminal(tmp_path, caplog):
    recipe = tiny_recipe(str(tmp_path / "run"), ["log.progress=true", "train.epochs=1", "log.every_steps=4"])
    with caplog.at_level("INFO", logger="unilk.train.engine"):
        Trainer(recipe, tiny_parts()).fit()  # pytest captures stderr: not a terminal
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tiny: step")]
    assert [line.split(": ", 1)[1].split(" (")[0] for line in lines] == ["step 4/8", "step 8/8"]


def test_a_batch_larger_than_the_training_set_shrinks_to_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recipe = tiny_recipe(str(tmp_path), ["data.batch_size=100", "train.grad_accum_steps=2"])
    with caplog.at_level("WARNING", logger="unilk.train.engine"):
        trainer = Trainer(recipe, tiny_parts())
    assert trainer.recipe.data.batch_size == 32  # 64 samples, two micro-batches per update
    assert trainer.steps_per_epoch == 1
    assert "exceeds the 64 training samples; training with batch_size 32" in caplog.text
    unchanged = tiny_recipe(str(tmp_path))
    assert Trainer(unchanged, tiny_parts()).recipe is unchanged
