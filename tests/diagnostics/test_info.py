"""`unilk info`: parameters, MACs, stage shapes, oversized kernels, feature_info."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from unilk.diagnostics.commands import info as info_command
from unilk.diagnostics.flops import count_macs, count_params
from unilk.diagnostics.info import ConvRecord, model_info, survey_convs
from unilk.models.registry import create_model

# tiny models on small inputs: the trunks warn that the last-stage map is smaller than the kernels
pytestmark = pytest.mark.filterwarnings("ignore:.*last-stage map:UserWarning")


def test_unireplknet_s_matches_spec() -> None:
    # spec unireplknet.md §1.2: train 56,456,704 / deploy 55,645,984 params, 9.094 GMACs at 224 (deploy)
    report = model_info("unireplknet_s")
    assert report.input_size == (3, 224, 224)
    assert report.params_train == 56_456_704
    assert report.params_deploy == 55_645_984
    assert round(report.macs_deploy / 1e9, 3) == 9.094
    assert report.stage_shapes == [(96, 56, 56), (192, 28, 28), (384, 14, 14), (768, 7, 7)]
    assert [e["num_chs"] for e in report.feature_info] == [96, 192, 384, 768]
    # the 13×13 kernels of stage 4 run on a 7×7 map; stage 3's 14×14 map is large enough
    assert {r.name for r in report.oversized_kernels} == {f"stages.3.{j}.dwconv.lk_origin" for j in range(3)}


def test_tiny_model_counts_equal_real_model_on_cpu() -> None:
    report = model_info("test_unireplknet", (1, 96, 64), device="cpu")
    model = create_model("test_unireplknet", in_chans=1).eval()
    assert report.params_train == count_params(model)
    assert report.macs_train == count_macs(model, (1, 96, 64)).total
    deploy = create_model("test_unireplknet", in_chans=1, deploy=True)
    assert report.params_deploy == count_params(deploy)
    assert report.macs_deploy == count_macs(deploy, (1, 96, 64)).total
    assert report.stage_shapes[-1] == (64, 3, 2)
    # every 13×13 kernel from stage 2 on sees a map smaller than 13 (12×8, 6×4, 3×2)
    assert {r.name for r in report.oversized_kernels} == {
        "stages.1.0.dwconv.lk_origin",
        "stages.2.0.dwconv.lk_origin",
        "stages.3.0.dwconv.lk_origin",
    }


def test_survey_sees_functional_and_dilated_convs() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.big = nn.Conv2d(2, 2, 9, groups=2)
            self.dil = nn.Conv2d(2, 2, 3, dilation=3, padding=3)

        def forward(self, x):
            x = nn.functional.conv2d(x, self.big.weight, padding=4, groups=2)  # functional, as lkconv does
            return self.dil(x)

    records = survey_convs(Net(), torch.zeros(1, 2, 8, 12))
    assert records == [
        ConvRecord("big", (9, 9), (1, 1), (8, 12)),
        ConvRecord("dil", (3, 3), (3, 3), (8, 12)),
    ]
    assert records[0].exceeds_map
    assert records[1].extent == (7, 7)
    assert not records[1].exceeds_map


def test_timm_model_without_training_form() -> None:
    report = model_info("resnet10t", (3, 64, 64))
    assert report.params_train == report.params_deploy
    assert report.macs_train == report.macs_deploy > 0
    assert len(report.stage_shapes) == 5  # timm's resnet reports the stem and four stages


def test_info_command_prints_report() -> None:
    result = CliRunner().invoke(info_command, ["test_unireplknet", "--input-size", "3", "64", "64"])
    assert result.exit_code == 0, result.output
    assert "params  train" in result.output
    assert "stage 3        64x2x2" in result.output
    assert "stages.3.0.dwconv.lk_origin" in result.output
    result = CliRunner().invoke(info_command, ["no_such_model"])
    assert result.exit_code != 0
    assert "unknown model" in result.output


@pytest.mark.parametrize("flag", ["--json"])
def test_info_command_json(flag: str) -> None:
    import json

    result = CliRunner().invoke(info_command, ["test_unireplknet", "--input-size", "3", "64", "64", flag])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["params_train"] > data["params_deploy"]
    assert data["oversized_kernels"][0]["extent"] == [13, 13]


def test_built_model_is_measured_in_place() -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 7, padding=3, groups=4))
    weight = model[0].weight.detach().clone()
    report = model_info(model, (2, 10, 10))
    assert report.params_train == report.params_deploy == count_params(model)
    assert report.macs_train == 10 * 10 * (4 * 2 * 9 + 4 * 49)
    assert report.oversized_kernels == []
    assert torch.equal(model[0].weight, weight)  # still on the CPU with its weights


def test_sparse_figures_scale_each_layer_by_its_weight_density() -> None:
    from unilk.diagnostics.info import sparse_figures

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 6 * 5, 3))
    with torch.no_grad():
        model[0].weight.view(-1)[::2] = 0.0  # half the kernel: density 0.5
        model[2].weight[:, :30] = 0.0  # a quarter of the linear weight: density 0.75
    figures = sparse_figures(model, (2, 6, 5))
    conv_macs, linear_macs = (6 * 5 * 4) * (2 * 3 * 3), 120 * 3
    assert figures.macs_dense == conv_macs + linear_macs == count_macs(model, (2, 6, 5)).total
    assert figures.macs_sparse == round(0.5 * conv_macs + 0.75 * linear_macs)
    assert figures.params_nonzero == count_params(model) - 36 - 90


def test_info_reads_a_training_checkpoint_and_reports_sparse_figures(tmp_path) -> None:
    from unilk.diagnostics.info import format_info
    from unilk.models.modal import create_modal_model
    from unilk.train.checkpoint import save_checkpoint

    adapter = {"modality": "image", "input_size": [3, 32, 32], "crop_pct": 1.0}
    model = create_modal_model("image", "classification", "test_slak", num_classes=3, adapter_config=adapter)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() in (2, 4):  # 40 % sparsity on every conv/linear weight, as SLaK masks them
                param.mul_(torch.rand(param.shape, generator=generator) >= 0.4)
    arch = {"builder": "unilk.models.modal.create_modal_model", "modality": "image", "task": "classification",
            "trunk": "test_slak", "num_classes": 3, "kwargs": {}, "head_kwargs": {}}  # fmt: skip
    path = save_checkpoint(tmp_path / "last.pt", {"model": model.state_dict(), "arch": arch, "adapter": adapter})
    report = model_info(str(path))
    assert report.input_size == (3, 32, 32)
    assert report.sparse is not None
    assert report.sparse.params_nonzero == sum(int(p.count_nonzero()) for p in model.parameters())
    assert report.sparse.macs_dense == report.macs_train
    assert 0.5 < report.sparse.macs_sparse / report.macs_train < 0.7  # about 60 % dense in every layer
    assert "params  non-zero" in format_info(report)
    result = CliRunner().invoke(info_command, [str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert '"params_nonzero"' in result.output
