"""SLaK: conformance with the official fixture, the exact deploy forms, official variants and the model contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from unilk.errors import ConfigError
from unilk.models import slak as slak_module
from unilk.models.registry import create_model
from unilk.models.slak import SLaK


@pytest.fixture(scope="module")
def fixture(fixtures_dir: Path) -> dict[str, Any]:
    return torch.load(fixtures_dir / "slak_small_official.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def official_fp32(fixture: dict[str, Any]) -> SLaK:
    model = SLaK(**fixture["config"]).eval()
    model.load_state_dict(fixture["state_dict"], strict=True)
    return model


def test_official_keys_order_and_shapes(fixture: dict[str, Any]) -> None:
    state = SLaK(**fixture["config"]).state_dict()
    assert list(state) == list(fixture["state_dict"])
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in fixture["state_dict"].items()}
    assert SLaK(**fixture["config"]).dims == tuple(fixture["report"]["effective_dims"])


def test_fp32_logits_features_and_stages(fixture: dict[str, Any], official_fp32: SLaK) -> None:
    with torch.no_grad():
        last, stages = official_fp32.forward_intermediates(fixture["input"])
        pre_logits = official_fp32.forward_head(last, pre_logits=True)
        logits = official_fp32.forward_head(last)
    torch.testing.assert_close(logits, fixture["output"], rtol=0, atol=1e-5)
    torch.testing.assert_close(last, fixture["features"], rtol=0, atol=1e-5)
    torch.testing.assert_close(pre_logits, fixture["pre_logits"], rtol=0, atol=1e-5)
    for ours, theirs in zip(stages, fixture["stage_outputs"], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_fp32_deploy_matches_official_logits(fixture: dict[str, Any]) -> None:
    model = SLaK(**fixture["config"]).eval()
    model.load_state_dict(fixture["state_dict"])
    model.reparameterize()
    assert not any(".small_conv." in k or ".bn." in k for k in model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(fixture["input"]), fixture["output"], rtol=0, atol=1e-5)


def test_fp64_train_and_deploy_match_official(fixture: dict[str, Any]) -> None:
    model = SLaK(**fixture["config"]).eval().double()
    model.load_state_dict(fixture["state_dict"])
    x = fixture["input"].double()
    with torch.no_grad():
        train = model(x)
        model.reparameterize()
        decomposed = model(x)
    torch.testing.assert_close(train, fixture["output_fp64"], rtol=0, atol=1e-10)
    torch.testing.assert_close(decomposed, fixture["output_fp64"], rtol=0, atol=1e-10)
    torch.testing.assert_close(decomposed, train, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_fp64_dense_merge_matches_official(fixture: dict[str, Any]) -> None:
    model = SLaK(**fixture["config"]).eval().double()
    model.load_state_dict(fixture["state_dict"])
    model.reparameterize(dense=True)
    assert model.state_dict()["stages.0.0.large_kernel.lkb_reparam.weight"].shape == (20, 1, 31, 31)
    with torch.no_grad():
        dense = model(fixture["input"].double())
    torch.testing.assert_close(dense, fixture["output_fp64"], rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("name", "params", "keys", "dims"),
    [
        ("slak_t", 50_703_838, 470, (124, 249, 499, 998)),
        ("slak_s", 91_131_820, 920, (124, 249, 499, 998)),
        ("slak_b", 157_950_792, 920, (166, 332, 665, 1331)),
    ],
)
def test_official_variants_on_meta(name: str, params: int, keys: int, dims: tuple[int, ...]) -> None:
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params == model.pretrained_cfg["num_params"]
    assert len(model.state_dict()) == keys
    assert model.dims == dims
    shapes = model.state_dict()
    assert shapes["stages.0.0.large_kernel.LoRA1.conv.weight"].shape == (dims[0], 1, 51, 5)
    assert shapes["stages.3.0.large_kernel.LoRA2.conv.weight"].shape == (dims[3], 1, 5, 13)
    assert shapes["stages.3.0.large_kernel.small_conv.conv.weight"].shape == (dims[3], 1, 5, 5)
    decomposed = sum(2 * m * 5 + 25 for m in (51, 49, 47, 13))  # per channel, every block of a stage
    assert decomposed < 51 * 51


# in_chans 1, non-square input, kernels far larger than the maps
_WIDE_INPUT = dict(in_chans=1, depths=(1, 2, 1, 1), dims=(8, 12, 16, 20), kernel_size=(31, 29, 27, 13, 5),
                   width_factor=1.3, Decom=True)  # fmt: skip
# dense RepLKNet-style baseline, no BN, no layer scale, three stages, N = 7
_DENSE_NO_BN = dict(depths=(1, 1, 2), dims=(6, 10, 14), kernel_size=(11, 9, 7, 7), width_factor=1.5, Decom=False,
                    bn=False, layer_scale_init_value=0.0)  # fmt: skip
# ConvNeXt baseline: N larger than every M, so no square branch anywhere
_CONVNEXT = dict(depths=(1, 1, 1, 1), dims=(4, 8, 12, 16), kernel_size=(7, 7, 7, 7, 100), Decom=False)


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [(_WIDE_INPUT, (2, 1, 40, 72)), (_DENSE_NO_BN, (1, 3, 35, 33)), (_CONVNEXT, (1, 3, 64, 64))],
)
def test_general_configs_reparameterize_exactly(kwargs: dict[str, Any], shape: tuple[int, ...], randomize: Any) -> None:
    model = randomize(SLaK(num_classes=7, **kwargs)).eval().double()
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        train = model(x)
        stages = model.forward_intermediates(x, intermediates_only=True)
        model.reparameterize()
        deploy = model(x)
    assert train.shape == (shape[0], 7)
    height, width = shape[2] // 4, shape[3] // 4  # unpadded 4x4 stem, then unpadded 2x2 downsamples: floor
    for i, stage in enumerate(stages):
        if i > 0:
            height, width = height // 2, width // 2
        assert stage.shape[1:] == (model.dims[i], height, width)
    torch.testing.assert_close(deploy, train, rtol=0, atol=1e-10)
    deployed = SLaK(num_classes=7, deploy=True, **kwargs).double()
    deployed.load_state_dict(model.state_dict(), strict=True)
    assert list(deployed.state_dict()) == list(model.state_dict())


def test_dense_mode_keys_and_no_layer_scale() -> None:
    model = SLaK(depths=(1, 1), dims=(4, 8), kernel_size=(9, 7, 5), Decom=False, layer_scale_init_value=0)
    keys = list(model.state_dict())
    assert "stages.0.0.large_kernel.lkb_origin.conv.weight" in keys
    assert "stages.0.0.large_kernel.small_conv.bn.running_var" in keys
    assert not any(k.endswith("gamma") for k in keys)
    assert model.state_dict()["stages.1.0.large_kernel.lkb_origin.conv.weight"].shape == (8, 1, 7, 7)


def test_contract_features_head_and_checkpointing(randomize: Any) -> None:
    model = randomize(create_model("test_slak", num_classes=5)).eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        logits = model(x)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    assert logits.shape == (2, 5)
    assert pooled.shape == (2, model.num_features)
    model.set_grad_checkpointing(True)
    x.requires_grad_(True)
    out = model(x)
    out.sum().backward()
    torch.testing.assert_close(out.detach(), logits, rtol=0, atol=1e-6)
    assert all(p.grad is not None for p in model.parameters())
    model.reset_classifier(0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), pooled, rtol=0, atol=1e-6)

    features = create_model("test_slak", features_only=True, out_indices=(1, -1))
    maps = features(torch.randn(1, 3, 64, 64))
    assert [m.shape[1:] for m in maps] == [(20, 8, 8), (41, 2, 2)]
    assert features.feature_info.reduction() == [8, 32]
    assert not any(k.startswith(("head.", "norm.")) for k in features.state_dict())

    import timm

    assert isinstance(timm.create_model("test_slak"), SLaK)
    deployed = timm.utils.reparameterize_model(model)  # timm's walker finds the layers' reparameterize()
    assert any(k.endswith("large_kernel.LoRA1.bias") for k in deployed.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), pooled, rtol=0, atol=1e-5)
    groups = timm.models.group_parameters(model, model.group_matcher())
    assert sum(len(v) for v in groups.values()) == len(list(model.named_parameters()))


def test_checkpoint_loading_renames_legacy_keys_and_reparameterizes(tmp_path: Path, randomize: Any) -> None:
    model = randomize(create_model("test_slak")).eval()
    legacy = {k.replace("LoRA1", "Decom1").replace("LoRA2", "Decom2"): v for k, v in model.state_dict().items()}
    path = tmp_path / "slak.pth"
    torch.save({"model": legacy}, path)
    x = torch.randn(1, 3, 64, 64)
    loaded = create_model("test_slak", checkpoint_path=path).eval()
    deployed = create_model("test_slak", checkpoint_path=path, deploy=True).eval()
    dense = create_model("test_slak", checkpoint_path=path, deploy=True, merge_dense=True).eval()
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(loaded(x), ref, rtol=0, atol=0)
        torch.testing.assert_close(deployed(x), ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(dense(x), ref, rtol=0, atol=1e-5)
    assert any(k.endswith("lkb_reparam.weight") for k in dense.state_dict())
    assert slak_module.checkpoint_filter_fn(legacy, loaded).keys() == model.state_dict().keys()
    backbone = create_model("test_slak", checkpoint_path=path, features_only=True).eval()
    torch.testing.assert_close(backbone.stages[0][0].gamma, model.stages[0][0].gamma, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [dict(kernel_size=(51, 49, 47, 5)), dict(depths=(1, 1), dims=(4, 8, 16)), dict(kernel_size=(50, 49, 47, 13, 5))],
)
def test_bad_configs_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SLaK(**kwargs)
