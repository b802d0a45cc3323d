"""UniRepLKNet against the official fixture, re-parameterization, dense mode and the timm contract details."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
import torch.nn.functional as F

from unilk.errors import ConfigError
from unilk.models import UniRepLKNet, create_model
from unilk.models.unireplknet import UniRepLKNetBlock

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def official(unireplknet_a_fixture: dict[str, Any]) -> dict[str, Any]:
    return unireplknet_a_fixture


def _official_model(fixture: dict[str, Any], dtype: torch.dtype = torch.float32, **overrides: Any) -> UniRepLKNet:
    model = UniRepLKNet(**{**fixture["config"], **overrides}).to(dtype).eval()
    model.load_state_dict(fixture["state_dict"])
    return model


# ------------------------------------------------------------------------------------------- official fixture (fp32)
def test_fixture_logits_stages_features_pre_logits_fp32(official: dict[str, Any]) -> None:
    model = _official_model(official)
    assert list(model.state_dict()) == list(official["state_dict"])  # names and order
    with torch.no_grad():
        last, stages = model.forward_intermediates(official["input"])
        pre_logits = model.forward_head(last, pre_logits=True)
        logits = model.forward_head(last)
    # relative to each tensor's scale: summation order (threads, algorithm) moves fp32 results by a few ulps of the
    # largest values; the official code's own train-vs-deploy gap is 5e-7..1.7e-6 of the scale
    for ours, theirs in zip(stages, official["stage_outputs"], strict=True):
        assert _relative_error(ours, theirs) <= 2e-6
    assert _relative_error(last, official["features"]) <= 2e-6
    assert _relative_error(pre_logits, official["pre_logits"]) <= 2e-6
    assert _relative_error(logits, official["output"]) <= 2e-6


def _relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


def test_fixture_deploy_weights_and_logits_fp32(official: dict[str, Any]) -> None:
    model = _official_model(official)
    model.reparameterize()
    state = model.state_dict()
    for key, value in official["deploy_state_dict_subset"].items():
        torch.testing.assert_close(state[key], value, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        deploy_logits = model(official["input"])
    assert (deploy_logits - official["deploy_output"]).abs().max() <= 1e-5
    deploy_built = UniRepLKNet(**{**official["config"], "deploy": True}).eval()
    deploy_built.load_state_dict(state)  # strict: a deploy build has exactly the re-parameterized keys
    assert list(deploy_built.state_dict()) == list(state)


@pytest.mark.slow  # fp64 13x13 depthwise convs at 224x224 take ~40 s on 2 CPU cores
def test_fixture_fp64_train_and_deploy(official: dict[str, Any]) -> None:
    model = _official_model(official, torch.float64)
    x = official["input"].double()
    with torch.no_grad():
        assert (model(x) - official["output_fp64"]).abs().max() <= 1e-10
        model.reparameterize()
        assert (model(x) - official["deploy_output_fp64"]).abs().max() <= 1e-10


def test_train_checkpoint_loads_into_a_deploy_model(official: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "official_a.pth"
    torch.save({"model": official["state_dict"]}, path)
    model = create_model("unireplknet_a", checkpoint_path=path, deploy=True).eval()
    assert model.deploy
    assert "stages.1.0.dwconv.origin_bn.weight" not in model.state_dict()
    with torch.no_grad():
        assert (model(official["input"]) - official["deploy_output"]).abs().max() <= 1e-5


# --------------------------------------------------------------------------------------------- dense-prediction mode
def test_features_only_loads_an_official_backbone_state_dict_strictly(official: dict[str, Any], randomize: Any) -> None:
    model = create_model("unireplknet_a", features_only=True).eval()
    norms = randomize(
        torch.nn.ModuleDict({f"norm{i}": torch.nn.LayerNorm(c) for i, c in enumerate((40, 80, 160, 320))})
    )
    backbone = {k: v for k, v in official["state_dict"].items() if not k.startswith(("norm.", "head."))}
    backbone.update(norms.state_dict())
    model.load_state_dict(backbone, strict=True)
    assert set(model.state_dict()) == set(backbone)
    with torch.no_grad():
        maps = model(official["input"])
    assert model.feature_info.channels() == [40, 80, 160, 320]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    for i, (ours, stage) in enumerate(zip(maps, official["stage_outputs"], strict=True)):
        norm = norms[f"norm{i}"]
        expected = F.layer_norm(stage.permute(0, 2, 3, 1), stage.shape[1:2], norm.weight, norm.bias, 1e-6)
        assert (ours - expected.permute(0, 3, 1, 2)).abs().max() <= 1e-5


def test_features_only_out_indices_and_imagenet_checkpoint(official: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "a.pth"
    torch.save(official["state_dict"], path)
    model = create_model("unireplknet_a", features_only=True, out_indices=(0, -3), checkpoint_path=path).eval()
    assert model.feature_info.channels() == [40, 80]
    with torch.no_grad():
        maps = model(official["input"])  # stops after stage 1
    assert [m.shape for m in maps] == [(1, 40, 56, 56), (1, 80, 28, 28)]
    # norm0..3 keep their initialisation (weight 1, bias 0): the maps are the layer-normalised stage outputs
    expected = F.layer_norm(official["stage_outputs"][1].permute(0, 2, 3, 1), (80,), eps=1e-6).permute(0, 3, 1, 2)
    assert (maps[1] - expected).abs().max() <= 1e-4


def test_detection_checkpoint_with_backbone_prefix_loads(official: dict[str, Any], tmp_path: Path) -> None:
    state = {f"backbone.{k}": v for k, v in official["state_dict"].items() if not k.startswith(("norm.", "head."))}
    state.update({f"backbone.norm{i}.weight": torch.ones(c) for i, c in enumerate((40, 80, 160, 320))})
    state.update({f"backbone.norm{i}.bias": torch.zeros(c) for i, c in enumerate((40, 80, 160, 320))})
    state["neck.fpn.weight"] = torch.zeros(3)
    path = tmp_path / "cascade.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 36}}, path)
    model = create_model("unireplknet_a", features_only=True, checkpoint_path=path)
    assert torch.equal(model.state_dict()["stages.0.0.gamma"], official["state_dict"]["stages.0.0.gamma"])


# ------------------------------------------------------------------------------------------ train vs deploy, generic
@pytest.mark.filterwarnings("ignore:UniRepLKNet. the last-stage map")
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("size", [(48, 48), (64, 40)], ids=["square", "non-square"])
def test_every_kernel_size_train_equals_deploy(in_chans: int, size: tuple[int, int], randomize: Any) -> None:
    model = randomize(create_model("test_unireplknet_allk", in_chans=in_chans, num_classes=5), seed=in_chans).eval()
    assert {k for ks in model.kernel_sizes for k in ks} == {0, 3, 5, 7, 9, 11, 13, 15, 17}
    x = torch.randn(1, in_chans, *size)  # maps down to 2x2: kernels larger than the map are covered too
    with torch.no_grad():
        train32 = model(x)
        deploy32 = create_model("test_unireplknet_allk", in_chans=in_chans, num_classes=5, deploy=True).eval()
        fused = UniRepLKNet(**_args(model)).eval()
        fused.load_state_dict(model.state_dict())
        fused.reparameterize()
        deploy32.load_state_dict(fused.state_dict())
        assert (train32 - deploy32(x)).abs().max() <= 1e-5
        model64 = model.double()
        train64 = model64(x.double())
        model64.reparameterize()
        assert (train64 - model64(x.double())).abs().max() <= 1e-10


def _args(model: UniRepLKNet) -> dict[str, Any]:
    return dict(
        in_chans=model.in_chans,
        num_classes=model.num_classes,
        depths=model.depths,
        dims=model.dims,
        kernel_sizes=model.kernel_sizes,
    )


@pytest.mark.parametrize(("kernel_size", "layer_scale"), [(13, 1e-6), (3, None), (5, 0.0), (0, 1e-6)])
def test_block_reparameterize_is_idempotent_and_matches_deploy_keys(
    kernel_size: int, layer_scale: float | None, randomize: Any
) -> None:
    block = randomize(UniRepLKNetBlock(8, kernel_size, layer_scale_init_value=layer_scale)).double().eval()
    x = torch.randn(1, 8, 15, 15, dtype=torch.float64)
    with torch.no_grad():
        before = block(x)
        block.reparameterize()
        block.reparameterize()
        assert (block(x) - before).abs().max() <= 1e-10
    deploy_keys = list(UniRepLKNetBlock(8, kernel_size, deploy=True).state_dict())
    assert list(block.state_dict()) == deploy_keys


# --------------------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("bad", [1, 2, 4, 19, 31])
def test_unsupported_kernel_sizes_raise(bad: int) -> None:
    with pytest.raises(ConfigError, match=f"kernel_size={bad}"):
        UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (bad,), (3,), (3,)))


def test_bad_depths_and_kernel_lists_raise() -> None:
    with pytest.raises(ConfigError, match="no default kernel_sizes"):
        UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
    with pytest.raises(ConfigError, match="does not match depths"):
        UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (3,), (3, 3), (3,)))
    with pytest.raises(ConfigError, match="unknown keyword"):
        create_model("test_unireplknet", drop_path=0.1)
    with pytest.raises(ConfigError, match="did you mean"):
        create_model("unireplknet_ss")


def test_drop_path_rates_increase_linearly_over_all_blocks() -> None:
    model = create_model("test_unireplknet", drop_path_rate=0.4)
    blocks = [block for stage in model.stages for block in stage]
    assert isinstance(blocks[0].drop_path, torch.nn.Identity)  # rate 0
    assert [round(b.drop_path.drop_prob, 6) for b in blocks[1:]] == [0.1, 0.2, 0.3, 0.4]


def test_default_kernel_patterns() -> None:
    with torch.device("meta"):
        t = create_model("unireplknet_t")
        s = create_model("unireplknet_s")
    assert t.kernel_sizes[2] == (13, 3) * 9
    assert s.kernel_sizes[2] == (13, 3, 3) * 9
    assert s.kernel_sizes[0] == (3, 3, 3)
    assert s.kernel_sizes[3] == (13, 13, 13)


# ---------------------------------------------------------------------------------------------------- timm contract
def test_timm_creates_and_reparameterizes_our_models(randomize: Any) -> None:
    from timm.utils import reparameterize_model

    import unilk  # noqa: F401  (registration happens on import)

    with torch.device("meta"):
        assert timm.create_model("unireplknet_s", num_classes=0).num_features == 768
    assert "unireplknet_xl" in timm.list_models("unireplknet*")
    assert "unireplknet_s.in22k" in timm.list_pretrained("unireplknet_s*")
    model = randomize(timm.create_model("test_unireplknet", num_classes=3)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = reparameterize_model(model)
        assert (fused(x) - model(x)).abs().max() <= 1e-5
    assert list(fused.state_dict()) == list(create_model("test_unireplknet", num_classes=3, deploy=True).state_dict())


def test_timm_sees_our_models_after_a_plain_import_unilk() -> None:
    code = (
        "import unilk, timm, torch\n"
        "with torch.device('meta'):\n"
        "    print(timm.create_model('unireplknet_s', num_classes=0).num_features)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.split() == ["768"]


def test_group_matcher_gives_the_official_layer_decay_groups() -> None:
    from timm.models import group_parameters

    def official_layer_id(name: str) -> int:  # spec §6.4 (get_num_layer_for_convnext)
        if name.startswith("downsample_layers"):
            stage = int(name.split(".")[1])
            return {0: 0, 1: 2, 2: 3, 3: 12}[stage]
        if name.startswith("stages"):
            stage, block = int(name.split(".")[1]), int(name.split(".")[2])
            return {0: 1, 1: 2, 2: 3 + block // 3, 3: 12}[stage]
        return 13

    with torch.device("meta"):
        model = create_model("unireplknet_s")
    ours = group_parameters(model, model.group_matcher(), reverse=True)
    official = {name: official_layer_id(name) for name, _ in model.named_parameters()}
    assert len(set(ours.values())) == len(set(official.values())) == 14
    order = {oid: tid for tid, oid in sorted({(ours[n], official[n]) for n in official})}
    assert all(order[official[n]] == ours[n] for n in official)  # same groups, same order
    coarse = group_parameters(model, model.group_matcher(coarse=True), reverse=True)
    assert coarse["downsample_layers.1.0.weight"] == coarse["stages.1.0.gamma"] < coarse["stages.2.0.gamma"]


def test_grad_checkpointing_gives_the_same_output_and_grads(randomize: Any) -> None:
    model = randomize(create_model("test_unireplknet", num_classes=4))
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = model(x).sum()
        reference.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        model.set_grad_checkpointing(True)
        checkpointed = model(x).sum()
        checkpointed.backward()
    assert torch.allclose(reference, checkpointed, rtol=0, atol=1e-6)
    assert all(torch.allclose(a, p.grad, rtol=1e-5, atol=1e-7) for a, p in zip(grads, model.parameters()))
    assert create_model("test_unireplknet", with_cp=True).stages[0].grad_checkpointing


def test_forward_head_reset_classifier_and_intermediates(randomize: Any) -> None:
    model = randomize(create_model("test_unireplknet", num_classes=7)).eval()
    x = torch.randn(2, 3, 224, 200)  # non-square; a 7x7 last map uses every tap of the 13x13 kernels
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        assert features.shape == (2, 64, 7, 7)
        assert pooled.shape == (2, 64)
        assert model(x).shape == (2, 7)
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [t.shape[1] for t in last_two] == [32, 64]
        model.reset_classifier(0)
        assert torch.equal(model(x), pooled)
        assert isinstance(model.get_classifier(), torch.nn.Identity)
        model.reset_classifier(3)
        assert model.forward_head(features).shape == (2, 3)


def test_small_input_warns_and_normal_input_does_not() -> None:
    model = create_model("test_unireplknet").eval()
    with torch.no_grad():
        with pytest.warns(UserWarning, match="smaller than the reach of the largest kernel"):
            assert model(torch.randn(1, 3, 64, 48)).shape == (1, 1000)  # last-stage map 2x2 for 13x13 kernels
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per model: a training loop is not flooded
            assert model(torch.randn(1, 3, 64, 48)).shape == (1, 1000)
        with pytest.warns(UserWarning, match="last-stage map is \\(1, 1\\)"):
            assert create_model("test_unireplknet").eval()(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert model(torch.randn(1, 3, 193, 193)).shape == (1, 1000)  # 7x7: every kernel tap is used
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the paper's audio map (1024 frames x 128 mel bins) ends as 32x4
            audio = create_model("test_unireplknet", in_chans=1).eval()
            assert audio(torch.randn(1, 1, 1024, 128)).shape == (1, 1000)
