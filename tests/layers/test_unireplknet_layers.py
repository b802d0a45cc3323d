"""UniRepLKNet's building blocks: channels-first LayerNorm, SE, GRN and the Dilated Reparam Block."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from unilk.errors import ConfigError
from unilk.layers.dilated_reparam import DRB_BRANCHES, DilatedReparamBlock
from unilk.layers.grn import GRNwithNHWC
from unilk.layers.norm import LayerNorm2d
from unilk.layers.se import SEBlock


def test_layer_norm_2d_equals_layer_norm_over_channels(randomize: Any) -> None:
    norm = randomize(LayerNorm2d(6)).double()
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (6,), norm.weight, norm.bias, 1e-6).permute(0, 3, 1, 2)
    assert (norm(x) - expected).abs().max() < 1e-12
    assert list(norm.state_dict()) == ["weight", "bias"]


def test_se_block_gates_each_channel(randomize: Any) -> None:
    se = randomize(SEBlock(8, 2)).double()
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    gate = torch.sigmoid(se.up(torch.relu(se.down(x.mean((2, 3), keepdim=True)))))
    assert (se(x) - x * gate).abs().max() < 1e-12
    assert sorted(se.state_dict()) == ["down.bias", "down.weight", "up.bias", "up.weight"]


def test_grn_formula_and_bias_free_form(randomize: Any) -> None:
    grn = randomize(GRNwithNHWC(4)).double()
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    gx = x.pow(2).sum((1, 2), keepdim=True).sqrt()
    nx = gx / (gx.mean(-1, keepdim=True) + 1e-6)
    assert (grn(x) - ((grn.gamma * nx + 1) * x + grn.beta)).abs().max() < 1e-12
    assert grn.gamma.shape == (1, 1, 1, 4)
    assert list(GRNwithNHWC(4, use_bias=False).state_dict()) == ["gamma"]


@pytest.mark.parametrize("kernel_size", sorted(DRB_BRANCHES))
def test_drb_reparameterize_is_exact_in_fp64(kernel_size: int, randomize: Any) -> None:
    drb = randomize(DilatedReparamBlock(4, kernel_size), seed=kernel_size).double().eval()
    x = torch.randn(2, 4, 19, 14, dtype=torch.float64)  # non-square, smaller than 2x the largest dilated size
    with torch.no_grad():
        before = drb(x)
        drb.reparameterize()
        after = drb(x)
    assert (before - after).abs().max() < 1e-10
    assert sorted(drb.state_dict()) == ["lk_origin.bias", "lk_origin.weight"]
    drb.reparameterize()  # idempotent
    assert torch.equal(drb(x), after)


def test_drb_branch_keys_and_deploy_form() -> None:
    keys = list(DilatedReparamBlock(4, 13).state_dict())
    assert keys[:2] == ["lk_origin.weight", "origin_bn.weight"]
    assert [k.split(".")[0] for k in keys if k.startswith("dil_conv")] == [
        "dil_conv_k5_1",
        "dil_conv_k7_2",
        "dil_conv_k3_3",
        "dil_conv_k3_4",
        "dil_conv_k3_5",
    ]
    deploy = DilatedReparamBlock(4, 13, deploy=True)
    assert {k: v.shape for k, v in deploy.state_dict().items()} == {
        "lk_origin.weight": (4, 1, 13, 13),
        "lk_origin.bias": (4,),
    }


@pytest.mark.parametrize("kernel_size", [3, 4, 8, 19])
def test_drb_rejects_unsupported_kernel_sizes(kernel_size: int) -> None:
    with pytest.raises(ConfigError, match=f"kernel_size={kernel_size}"):
        DilatedReparamBlock(4, kernel_size)
