"""benchmarks/gpu_table.py runs on CPU: one op row here, the whole --smoke run in the slow suite."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_table.py"


@pytest.fixture(scope="module")
def gpu_table() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("gpu_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_table"] = module  # dataclasses look their module up while the script executes
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["gpu_table"]


def test_one_op_row_times_and_checks_every_cpu_algorithm(
    gpu_table: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    shape = gpu_table.OpShape("k51x5+5x51", 3, 6, ((51, 5), (5, 51)))
    notes: list[str] = []
    cells, fwd, full, bound = gpu_table._op_row(shape, 1, torch.float32, "channels_last", "cpu", 0.0, None, notes)
    assert notes == []
    assert bound == "-"  # no bandwidth on CPU
    assert set(fwd) == set(full) == {"plain", "nchw", "channels_last", "fft", "auto"}
    assert cells[gpu_table.ALGORITHMS.index("triton")].startswith("n/a")
    assert all("✗" not in cell for cell in cells)


def test_a_failing_algorithm_is_recorded_not_fatal(gpu_table: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    original = gpu_table._op_run

    def broken_fft(x: torch.Tensor, weights: list[torch.Tensor], algorithm: str, backward: bool) -> tuple:
        if algorithm == "fft":
            raise RuntimeError("cuFFT plan failed")
        return original(x, weights, algorithm, backward)

    monkeypatch.setattr(gpu_table, "_op_run", broken_fft)
    notes: list[str] = []
    shape = gpu_table.OpShape("k13", 2, 5, ((13, 13),))
    cells, fwd, _, _ = gpu_table._op_row(shape, 1, torch.float32, "nchw", "cpu", 0.0, None, notes)
    assert cells[gpu_table.ALGORITHMS.index("fft")] == "error"
    assert "fft" not in fwd
    assert "plain" in fwd
    assert notes == ["k13 b1 float32 nchw fft: RuntimeError: cuFFT plan failed"]


@pytest.mark.slow
def test_smoke_run_prints_every_table(gpu_table: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    assert gpu_table.main(["--smoke", "--budget-s", "3600", "--out", str(out)]) == 0
    text = out.read_text()
    assert "### Large-kernel op" in text
    assert "### Whole models" in text
    assert "skipped: time budget" not in text
    assert "| error |" not in text
    assert "✗" not in text
