"""Stand-ins for the extraction tests: a ``load`` over .npy files and a fixed tiny ``embed``; also a runnable script.

Run as ``python tests/_extract_standins.py SRC OUT [--delay S] [--shard-size N] [--engine ray] [--pid-dir D]`` (the
SIGKILL, torchrun and Ray driver tests launch it in subprocesses). Under torchrun it joins a gloo process group first;
with ``--engine ray`` it joins the cluster named by ``RAY_ADDRESS``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from unilk.errors import InputError
from unilk.extract import extract_items, list_inputs

DIM_IN, DIM_OUT = 6, 4


def write_inputs(root: Path, n: int, corrupt: tuple[int, ...] = ()) -> list[Path]:
    """Write ``n`` small .npy vectors (``corrupt`` indices get garbage bytes) and return their paths."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = root / f"x{i:04d}.npy"
        if i in corrupt:
            path.write_bytes(b"not a numpy file")
        else:
            np.save(path, rng.standard_normal(DIM_IN).astype(np.float32))
        paths.append(path)
    return paths


def note_pid(pid_dir: str | None, role: str) -> None:
    """Leave ``ROLE-PID`` in ``pid_dir`` (so a test can find and kill the process doing that work)."""
    if pid_dir:
        (Path(pid_dir) / f"{role}-{os.getpid()}").touch()


class SlowLoad:
    """``path -> Tensor[DIM_IN]``; sleeps ``delay`` seconds so a test can kill the run midway."""

    def __init__(self, delay: float = 0.0, pid_dir: str | None = None) -> None:
        self.delay = delay
        self.pid_dir = pid_dir

    def __call__(self, path: str) -> torch.Tensor:
        note_pid(self.pid_dir, "load")
        if self.delay:
            time.sleep(self.delay)
        try:
            return torch.from_numpy(np.load(path))
        except (ValueError, OSError) as err:
            raise InputError(f"{path}: cannot read ({err})") from err


def load_raw(path: str) -> np.ndarray:
    """``path -> float32 array``, raising whatever numpy raises (a string array: a plain ValueError)."""
    return np.load(path, allow_pickle=False).astype(np.float32)


def embed_sum(samples: list[np.ndarray]) -> np.ndarray:
    """``samples -> [N, D]`` column sums in float32 (large finite inputs overflow to inf)."""
    return np.stack([s.sum(axis=0, dtype=np.float32) for s in samples])


def make_embed() -> torch.nn.Module:
    """A fixed (seeded) linear map, standing in for a trunk."""
    torch.manual_seed(0)
    return torch.nn.Linear(DIM_IN, DIM_OUT).eval()


class EmbedWith:
    """``samples -> model(stack(samples))``; picklable (Ray actors get a copy); notes the pid of each user."""

    def __init__(self, model: torch.nn.Module, pid_dir: str | None = None) -> None:
        self.model = model
        self.pid_dir = pid_dir

    def __call__(self, samples: list[torch.Tensor]) -> torch.Tensor:
        note_pid(self.pid_dir, "embed")
        return self.model(torch.stack(samples))


def embed_with(model: torch.nn.Module, pid_dir: str | None = None) -> EmbedWith:
    return EmbedWith(model, pid_dir)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--shard-size", type=int, default=5)
    parser.add_argument("--engine", default="torch")
    parser.add_argument("--pid-dir", default=None)
    args = parser.parse_args()
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        torch.distributed.init_process_group("gloo")
    summary = extract_items(
        list_inputs(args.src),
        args.out,
        load=SlowLoad(args.delay, args.pid_dir),
        embed=embed_with(make_embed(), args.pid_dir),
        shard_size=args.shard_size,
        batch_size=3,
        progress=False,
        engine=args.engine,
    )
    print(f"done={summary.done} failed={summary.failed} skipped={summary.skipped} complete={summary.complete}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    sys.exit(0)


if __name__ == "__main__":
    main()
