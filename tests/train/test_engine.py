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

from unilk.errors import CheckpointError, ConfigError
from unilk.train.checkpoint import load_checkpoint
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


def test_two_torchrun_processes_match_one_process(tmp_path):
    args = ["--drop", "0", "train.epochs=2", "data.batch_size=8", "data.eval_batch_size=5"]
    single = Trainer(tiny_recipe(str(tmp_path / "one"), args[2:]), tiny_parts(drop=0.0)).fit()
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port: torchrun's static rendezvous does not accept port 0
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    cmd += [f"--master_port={port}", str(SCRIPT)]
    out = subprocess.run(
        [*cmd, str(tmp_path / "two"), *args], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summaries = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2
    assert summaries[0]["metrics"] == summaries[1]["metrics"]
    for key, value in single["metrics"].items():
        assert summaries[0]["metrics"][key] == pytest.approx(value, abs=1e-4)
    assert _max_diff(_weights(tmp_path / "two" / "last.pt"), _weights(tmp_path / "one" / "last.pt")) < 1e-4
    assert len(load_checkpoint(tmp_path / "two" / "last.pt")["rng"]) == 2


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
