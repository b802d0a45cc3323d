"""RepLKNet: conformance with the official fixture (train and deploy), official variants and the model contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from unilk.errors import ConfigError
from unilk.models import replknet as replknet_module
from unilk.models.registry import create_model
from unilk.models.replknet import RepLKNet


@pytest.fixture(scope="module")
def fixture(fixtures_dir: Path) -> dict[str, Any]:
    return torch.load(fixtures_dir / "replknet_small_official.pt", map_location="cpu", weights_only=True)


def test_official_keys_order_and_shapes(fixture: dict[str, Any]) -> None:
    state = RepLKNet(**fixture["config"]).state_dict()
    assert list(state) == list(fixture["state_dict"])
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in fixture["state_dict"].items()}
    merged = RepLKNet(**{**fixture["config"], "small_kernel_merged": True}).state_dict()
    assert list(merged) == list(fixture["deploy_state_dict"])


def test_fp32_train_and_deploy_match_official(fixture: dict[str, Any]) -> None:
    model = RepLKNet(**fixture["config"]).eval()
    model.load_state_dict(fixture["state_dict"], strict=True)
    with torch.no_grad():
        last, stages = model.forward_intermediates(fixture["input"])
        pre_logits = model.forward_head(last, pre_logits=True)
        logits = model.forward_head(last)
    torch.testing.assert_close(logits, fixture["output"], rtol=0, atol=1e-5)
    torch.testing.assert_close(last, fixture["features"], rtol=0, atol=1e-5)
    torch.testing.assert_close(pre_logits, fixture["pre_logits"], rtol=0, atol=1e-5)
    for ours, theirs in zip(stages, fixture["stage_outputs"], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)

    model.reparameterize()
    state = model.state_dict()
    official = fixture["deploy_state_dict"]
    assert list(state) == list(official)
    assert all(state[k].shape == v.shape for k, v in official.items())
    torch.testing.assert_close(state, official, rtol=0, atol=1e-5)
    with torch.no_grad():
        deploy_features = model.forward_features(fixture["input"])
        deploy_logits = model.forward_head(deploy_features)
    torch.testing.assert_close(deploy_logits, fixture["deploy_output"], rtol=0, atol=1e-5)
    torch.testing.assert_close(deploy_features, fixture["deploy_features"], rtol=0, atol=2e-5)

    merged = RepLKNet(**{**fixture["config"], "small_kernel_merged": True}).eval()
    merged.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(merged(fixture["input"]), deploy_logits, rtol=0, atol=0)


def test_fp64_train_matches_official(fixture: dict[str, Any]) -> None:
    model = RepLKNet(**fixture["config"]).eval().double()
    model.load_state_dict(fixture["state_dict"])
    with torch.no_grad():
        torch.testing.assert_close(model(fixture["input"].double()), fixture["output_fp64"], rtol=0, atol=1e-10)


@pytest.mark.slow
def test_fp64_deploy_matches_official(fixture: dict[str, Any]) -> None:
    model = RepLKNet(**fixture["config"]).eval().double()
    model.load_state_dict(fixture["state_dict"])
    model.reparameterize()
    with torch.no_grad():
        deploy = model(fixture["input"].double())
    torch.testing.assert_close(deploy, fixture["deploy_output_fp64"], rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("name", "params", "deploy_params", "keys", "deploy_keys"),
    [
        ("replknet_31b", 79_864_168, 79_527_272, 1171, 931),
        ("replknet_31l", 172_671_016, 172_165_672, 1171, 931),
        ("replknet_xl", 335_435_752, 335_399_656, 1027, 931),
    ],
)
def test_official_variants_on_meta(name: str, params: int, deploy_params: int, keys: int, deploy_keys: int) -> None:
    with torch.device("meta"):
        model = create_model(name)
        merged = create_model(name, small_kernel_merged=True)
    assert sum(p.numel() for p in model.parameters()) == params == model.pretrained_cfg["num_params"]
    assert len(model.state_dict()) == keys
    model.reparameterize()
    assert sum(p.numel() for p in model.parameters()) == deploy_params
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert len(shapes) == deploy_keys
    assert list(shapes) == list(merged.state_dict())
    assert shapes == {k: v.shape for k, v in merged.state_dict().items()}


def test_xl_has_no_small_kernel_and_wider_large_kernels() -> None:
    with torch.device("meta"):
        state = create_model("replknet_xl").state_dict()
    assert not any(".small_conv." in k for k in state)
    assert state["stages.0.blocks.0.large_kernel.lkb_origin.conv.weight"].shape == (384, 1, 27, 27)
    assert state["stages.0.blocks.0.pw1.conv.weight"].shape == (384, 256, 1, 1)


# in_chans 1 (official name), three stages, kernels far larger than the maps, XL-style: no small kernel, dw_ratio 1.5
_XL_STYLE = dict(large_kernel_sizes=(31, 27, 13), layers=(1, 2, 1), channels=(8, 12, 16), small_kernel=None,
                 dw_ratio=1.5, in_channels=1)  # fmt: skip
# five stages, 3x3 small kernel, ffn_ratio 2, two input channels
_FIVE_STAGES = dict(large_kernel_sizes=(7, 7, 5, 5, 3), layers=(1, 1, 1, 1, 1), channels=(4, 6, 8, 10, 12),
                    small_kernel=3, ffn_ratio=2, in_chans=2)  # fmt: skip


@pytest.mark.parametrize(("kwargs", "shape"), [(_XL_STYLE, (1, 1, 37, 50)), (_FIVE_STAGES, (1, 2, 70, 33))])
def test_general_configs_reparameterize_exactly(kwargs: dict[str, Any], shape: tuple[int, ...], randomize: Any) -> None:
    model = randomize(RepLKNet(num_classes=6, **kwargs)).eval().double()
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        train = model(x)
        stages = model.forward_intermediates(x, intermediates_only=True)
        model.reparameterize()
        deploy = model(x)
    assert train.shape == (shape[0], 6)
    height, width = shape[2:]
    for i, stage in enumerate(stages):
        for _ in range(2 if i == 0 else 1):  # stride-2 3x3 convs with padding 1 round up
            height, width = (height + 1) // 2, (width + 1) // 2
        assert stage.shape[1:] == (model.channels[i], height, width)
    torch.testing.assert_close(deploy, train, rtol=0, atol=1e-10)
    merged = RepLKNet(num_classes=6, small_kernel_merged=True, **kwargs)
    assert list(merged.state_dict()) == list(model.state_dict())


def test_backbone_mode_official_and_timm() -> None:
    kwargs = dict(large_kernel_sizes=(7, 5, 5, 3), layers=(1, 1, 1, 1), channels=(4, 8, 12, 16), small_kernel=3)
    official = RepLKNet(**kwargs, num_classes=None, out_indices=(0, 2), norm_intermediate_features=True).eval()
    assert "stages.0.norm.running_var" in official.state_dict()
    assert not any(k.startswith(("head.", "norm.")) for k in official.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = official(x)
        raw = official.forward_intermediates(x, (0, 2), intermediates_only=True)
    assert [m.shape[1:] for m in maps] == [(4, 16, 16), (12, 4, 4)]
    torch.testing.assert_close(maps[0], official.stages[0].norm(raw[0]))
    features = create_model("test_replknet", features_only=True, out_indices=(1, 3))
    assert features.feature_info.channels() == [16, 32]
    assert [m.shape[1] for m in features(x)] == [16, 32]


def test_contract_head_checkpointing_and_groups(randomize: Any) -> None:
    model = randomize(create_model("test_replknet", num_classes=3)).eval()
    x = torch.randn(2, 3, 64, 40)
    with torch.no_grad():
        logits = model(x)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    model.set_grad_checkpointing(True)
    x.requires_grad_(True)
    out = model(x)
    out.sum().backward()
    torch.testing.assert_close(out.detach(), logits, rtol=0, atol=1e-6)
    assert all(p.grad is not None for p in model.parameters())
    model.reset_classifier(0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), pooled, rtol=0, atol=1e-6)

    import timm

    assert isinstance(timm.create_model("test_replknet_xl"), RepLKNet)
    deployed = timm.utils.reparameterize_model(model)
    assert list(deployed.state_dict()) == list(create_model("test_replknet", num_classes=0, deploy=True).state_dict())
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), pooled, rtol=0, atol=1e-5)
    groups = timm.models.group_parameters(model, model.group_matcher())
    assert sum(len(v) for v in groups.values()) == len(list(model.named_parameters()))


def test_training_checkpoint_into_deploy_model(tmp_path: Path, randomize: Any) -> None:
    model = randomize(create_model("test_replknet")).eval()
    path = tmp_path / "replknet.pth"
    torch.save({"model": model.state_dict()}, path)
    deployed = create_model("test_replknet", checkpoint_path=path, deploy=True).eval()
    assert any(k.endswith("lkb_reparam.bias") for k in deployed.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), model(x), rtol=0, atol=1e-5)
    backbone = create_model("test_replknet", features_only=True)
    filtered = replknet_module.checkpoint_filter_fn(model.state_dict(), backbone)
    backbone.load_state_dict(filtered, strict=True)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(large_kernel_sizes=(31, 29, 27), layers=(2, 2, 18, 2)),
        dict(small_kernel=33),
        dict(large_kernel_sizes=(30, 29, 27, 13)),
        dict(out_indices=(0, 1)),
        dict(in_channels=1, in_chans=2),
    ],
)
def test_bad_configs_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError), torch.device("meta"):
        RepLKNet(**kwargs)


def test_pretrained_cfgs_match_their_models() -> None:
    from unilk.models.registry import get_pretrained_cfg, list_models

    names = [f"{arch}.{tag}" for arch in list_models("replknet_*")
             for tag in replknet_module.default_cfgs[arch].tags if tag]  # fmt: skip
    assert "replknet_31b.in1k" in names
    for name in names:
        with torch.device("meta"):
            model = create_model(name)
        cfg = get_pretrained_cfg(name)
        assert sum(p.numel() for p in model.parameters()) == cfg.num_params, name
        assert model.num_classes == cfg.num_classes
        assert cfg.first_conv + ".weight" in model.state_dict()
