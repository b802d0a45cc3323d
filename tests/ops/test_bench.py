"""The benchmark helpers time, check equality and format; the CLI prints a table (tiny shapes only)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch import Tensor, nn

from unilk.diagnostics.bench import (
    LKCONV_SHAPES,
    QUICK_SHAPES,
    BenchSetting,
    ConvShape,
    _time_pair,
    bench,
    bench_lkconv,
    bench_model,
    format_lkconv_table,
    format_model_table,
)
from unilk.ops.lkconv import current_mode, depthwise_conv2d


def test_shape_table_covers_the_trunks() -> None:
    families = {s.family for s in LKCONV_SHAPES}
    assert families == {"unireplknet_a", "unireplknet_s", "slak_t", "replknet_31b"}
    slak = [(s.size, s.k_h, s.k_w) for s in LKCONV_SHAPES if s.family == "slak_t"]
    assert {(56, 51, 5), (56, 5, 51), (56, 5, 5), (7, 13, 5)} <= set(slak)
    assert {(s.size, s.k_h) for s in LKCONV_SHAPES if s.family == "replknet_31b"} == {
        (56, 31),
        (28, 29),
        (14, 27),
        (7, 13),
    }
    assert set(QUICK_SHAPES) <= set(LKCONV_SHAPES)


def test_bench_lkconv_reports_ratios_and_equal_outputs() -> None:
    rows = bench_lkconv([ConvShape("tiny", 4, 10, 15, 5)], batches=(2,), repeats=1, progress=False, min_time_s=0.0)
    (row,) = rows
    assert row["batch"] == 2
    assert row["max_rel_err"] <= 1e-5
    assert row["fwd_ratio"] > 0
    assert row["train_ratio"] > 0
    table = format_lkconv_table(rows)
    assert "tiny C4 10x10 k15x5" in table
    assert table.count("\n") == 2


class _TinyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.lk = nn.Conv2d(4, 4, 17, padding=8, groups=4)
        self.modes: list[str] = []

    def forward(self, x: Tensor) -> Tensor:
        self.modes.append(current_mode())
        return depthwise_conv2d(self.stem(x), self.lk.weight, self.lk.bias).mean((2, 3))


def test_bench_model_runs_the_same_model_plain_and_fast() -> None:
    model = _TinyModel()
    result = bench_model(model, batch=2, image_size=12, repeats=1, min_time_s=0.0)
    assert set(model.modes) == {"plain", "auto"}
    assert result["infer_rel_err"] <= 1e-5
    assert result["infer_ratio"] > 0
    assert result["train_ratio"] > 0
    table = format_model_table([{"model": "tiny", "form": "train", "batch": 2, **result}])
    assert "| tiny | train | eager | 2 |" in table
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_cli_lists_both_benchmarks_and_rejects_unknown_family() -> None:
    runner = CliRunner()
    result = runner.invoke(bench, ["--help"])
    assert result.exit_code == 0
    assert "lkconv" in result.output
    assert "models" in result.output
    result = runner.invoke(bench, ["lkconv", "--family", "nope", "--no-progress"])
    assert result.exit_code != 0
    assert "no shapes for family 'nope'" in result.output


def test_cli_models_deploy_only_prints_one_deploy_row() -> None:
    runner = CliRunner()
    args = ["models", "unireplknet_a", "--batch", "1", "--image-size", "64", "--repeats", "1", "--deploy-only"]
    result = runner.invoke(bench, [*args, "--threads", "0", "--eager-only"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| unireplknet_a")]
    assert len(rows) == 1
    assert "| deploy | eager | 1 |" in rows[0]


@pytest.mark.slow  # Inductor code generation
def test_bench_model_compiled_row_checks_the_compiled_default_build_against_plain() -> None:
    from unilk.models import create_model

    model = create_model("test_unireplknet", num_classes=4)
    result = bench_model(model, batch=2, image_size=64, repeats=1, min_time_s=0.0, compiled=True)
    assert result["infer_rel_err"] <= 1e-5
    assert result["infer_ratio"] > 0
    assert result["train_ratio"] > 0
    assert model.fast_path  # the benchmark leaves the model's own choice as it was


def test_bench_lkconv_in_bfloat16_channels_last_with_a_forced_mode() -> None:
    setting = BenchSetting(dtype=torch.bfloat16, channels_last=True, mode="channels_last")
    assert setting.describe() == "bfloat16, cpu, channels-last, fast mode channels_last"
    (row,) = bench_lkconv(
        [ConvShape("tiny", 4, 10, 15, 5)], batches=(2,), repeats=1, progress=False, min_time_s=0.0, setting=setting
    )
    assert row["max_rel_err"] <= 2e-2  # bfloat16 keeps 8 bits of mantissa
    assert row["fwd_ratio"] > 0


def test_bench_model_under_autocast_and_channels_last() -> None:
    model = _TinyModel()
    setting = BenchSetting(dtype=torch.bfloat16, channels_last=True)
    result = bench_model(model, batch=2, image_size=12, repeats=1, min_time_s=0.0, setting=setting)
    assert set(model.modes) == {"plain", "auto"}
    assert result["infer_rel_err"] <= 2e-2
    assert model.stem.weight.is_contiguous(memory_format=torch.channels_last)


def test_timing_waits_for_the_device() -> None:
    calls: list[str] = []
    _time_pair(lambda: calls.append("ref"), lambda: calls.append("fast"), 1, 0.0, lambda: calls.append("sync"))
    # Every clock read is preceded by a synchronize: before and after each timed call.
    assert calls[:4] == ["sync", "ref", "fast", "sync"]
    assert calls[4:8] == ["sync", "ref", "sync", "sync"]


def test_cli_rejects_a_device_it_cannot_use() -> None:
    runner = CliRunner()
    result = runner.invoke(bench, ["lkconv", "--quick", "--device", "nonsense", "--no-progress"])
    assert result.exit_code != 0
    assert "--device: got 'nonsense', not a device" in str(result.exception)  # one Error: line from unilk's main
    if not torch.cuda.is_available():
        result = runner.invoke(bench, ["models", "unireplknet_a", "--device", "cuda"])
        assert result.exit_code != 0
        assert "no CUDA GPU is available here" in str(result.exception)
