"""A tiny, fast training problem shared by the engine tests, also runnable as a script (for SIGKILL and torchrun).

Usage as a script: ``python _train_tiny.py OUT_DIR [--resume] [--slow-ms N] [--drop P] [--bad I,J,...] [--bn]
[key=value ...]``; prints the summary JSON. ``--bad`` lists training samples that fail to load; ``--bn`` adds a
BatchNorm (buffers that DDP broadcasts at every forward).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from unilk.train.config import Recipe, recipe_from_dict
from unilk.train.distributed import shutdown_process_group
from unilk.train.engine import Trainer, TrainParts


class Blobs(Dataset):
    """Four Gaussian blobs in 2×4×4 'images'; the class sets the mean of one channel-quadrant."""

    classes: ClassVar[list[str]] = ["a", "b", "c", "d"]

    def __init__(self, n: int, seed: int, slow_ms: float = 0.0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.targets = torch.randint(0, 4, (n,), generator=g)
        self.x = torch.randn(n, 2, 4, 4, generator=g) * 0.5
        for i, t in enumerate(self.targets.tolist()):
            self.x[i, t % 2, (t // 2) * 2 : (t // 2) * 2 + 2, :] += 1.5
        self.slow_ms = slow_ms

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.slow_ms:
            time.sleep(self.slow_ms / 1000)
        return {"id": f"s{i}", "input": self.x[i], "target": int(self.targets[i])}


class Unreadable(Dataset):
    """``dataset`` whose samples at ``bad`` raise when read, as corrupt files do."""

    def __init__(self, dataset: Dataset, bad: set[int]) -> None:
        self.dataset, self.bad = dataset, bad
        self.classes = dataset.classes
        self.targets = dataset.targets

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i in self.bad:
            raise ValueError(f"s{i}: cannot decode")
        return self.dataset[i]


class TinyNet(nn.Module):
    """Conv + LayerNorm + dropout + Linear: no BatchNorm (unless ``bn``), so DDP matches one process exactly."""

    def __init__(self, drop: float = 0.1, bn: bool = False) -> None:
        super().__init__()
        self.conv = (
            nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8)) if bn else nn.Conv2d(2, 8, 3, padding=1)
        )
        self.norm = nn.LayerNorm(8)
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).mean((2, 3))  # (N, 8)
        return self.fc(self.drop(self.norm(x)))


def tiny_recipe(out_dir: str, overrides: list[str] | None = None) -> Recipe:
    """A recipe for :func:`tiny_parts`; overrides are ``key=value`` strings."""
    base = {
        "name": "tiny",
        "task": "classification",
        "output_dir": out_dir,
        "data": {"batch_size": 8, "eval_batch_size": 7},
        "optim": {"opt": "adamw", "lr": 0.02, "weight_decay": 0.01},
        "sched": {"sched": "cosine", "warmup_epochs": 0.5, "min_lr": 1e-4},
        "train": {"epochs": 3, "deterministic": True, "device": "cpu", "seed": 3},
        "log": {"every_steps": 2, "progress": False, "tensorboard": False},
    }
    return recipe_from_dict(base).replace(overrides or [])


def tiny_parts(
    slow_ms: float = 0.0, drop: float = 0.1, bad: set[int] | frozenset[int] = frozenset(), bn: bool = False
) -> TrainParts:
    """Model and data; the model is initialised from a fixed seed so every run starts equal."""
    torch.manual_seed(1)
    train_set: Dataset = Blobs(64, seed=0, slow_ms=slow_ms)
    return TrainParts(
        model=TinyNet(drop, bn),
        train_set=Unreadable(train_set, set(bad)) if bad else train_set,
        eval_set=Blobs(29, seed=1),
        arch={"name": "tiny"},
        labels=Blobs.classes,
    )


def _flag(rest: list[str], name: str, default: float) -> float:
    return float(rest[rest.index(name) + 1]) if name in rest else default


def main(argv: list[str]) -> None:
    out_dir, rest = argv[0], argv[1:]
    torch.set_num_threads(1)  # the test machine is shared; one thread is faster and reproducible
    overrides = [a for a in rest if "=" in a]
    bad = {int(i) for i in rest[rest.index("--bad") + 1].split(",")} if "--bad" in rest else set()
    parts = tiny_parts(_flag(rest, "--slow-ms", 0.0), _flag(rest, "--drop", 0.1), bad, "--bn" in rest)
    summary = Trainer(tiny_recipe(out_dir, overrides), parts).fit(resume="--resume" in rest)
    shutdown_process_group(wait_for_peers=True)
    # One write per line: the ranks share torchrun's stdout pipe and finish together (PYTHONUNBUFFERED splits print()).
    sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
