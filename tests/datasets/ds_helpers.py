"""Helpers of the dataset tests: tiny files in real formats and a linear probe."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def write_wav(path: Path, seconds: float = 0.05, rate: int = 16000) -> Path:
    """Write a short quiet noise clip (creates the folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.01 * np.random.default_rng(0).standard_normal(int(rate * seconds)), rate)
    return path


def touch(path: Path, text: str = "x") -> Path:
    """Write a small text file (creates the folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Fit a ridge-regression classifier (one-vs-rest, closed form) on standardised features; return test accuracy.

    Closed form in numpy rather than SGD in torch: instant and deterministic on a busy machine.
    """
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xtr = np.hstack([(x_train - mean) / std, np.ones((len(x_train), 1))])
    xte = np.hstack([(x_test - mean) / std, np.ones((len(x_test), 1))])
    onehot = np.eye(int(max(y_train.max(), y_test.max())) + 1)[y_train]
    if len(xtr) < xtr.shape[1]:  # more features than samples (flattened maps): the dual form is the cheap one
        weights = xtr.T @ np.linalg.solve(xtr @ xtr.T + np.eye(len(xtr)), onehot)
    else:
        weights = np.linalg.solve(xtr.T @ xtr + np.eye(xtr.shape[1]), xtr.T @ onehot)
    return float(((xte @ weights).argmax(1) == y_test).mean())


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: on a shared 2-core machine, intra-op threads spin against each other (measured:
    10 fbanks take 1.8 s with 2 threads under load, 0.02 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
