"""timm's model contract, as timm's own model tests exercise it, on every tiny ``test_*`` model of every family.

Built through ``timm.create_model`` (not unilk's view of it): whatever a timm user or timm's test suite does with a
unilk model must work. Each test checks behaviour (outputs, shapes, gradients), not only that a call returns.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from timm.models import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import unilk.models
from unilk.models import list_models

TINY = list_models("test_*")
TRACER_KWARGS = dict(
    leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(), param_shapes_constant=True
)


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*last-stage map.*", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.script is deprecated upstream
        yield


def _input(model: torch.nn.Module, batch: int = 1) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, *model.default_cfg["input_size"])


def _fx(model: torch.nn.Module) -> torch.nn.Module:
    _, eval_nodes = get_graph_node_names(model, tracer_kwargs=TRACER_KWARGS)
    return create_feature_extractor(model, return_nodes=[eval_nodes[-1]], tracer_kwargs=TRACER_KWARGS)


def test_every_family_has_tiny_models_in_timms_registry() -> None:
    assert {"test_unireplknet", "test_slak", "test_replknet"} <= set(TINY)
    assert set(TINY) <= set(timm.list_models(module=list(unilk.models._builder.FAMILY_MODULES)))


@pytest.mark.parametrize("name", TINY)
def test_cfg_alias_unpooled_output_and_pool_types(name: str) -> None:
    model = timm.create_model(name).eval()
    assert model.default_cfg is model.pretrained_cfg
    x = _input(model)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[-2:] == tuple(model.default_cfg["pool_size"])
        pooled = model.forward_head(features, pre_logits=True)
        model.reset_classifier(0)
        assert torch.equal(model(x), pooled)
        model.reset_classifier(0, "")
        unpooled = model(x)
        assert unpooled.shape == features.shape
        model.reset_classifier(0, "max")
        maxed = model(x)
        assert maxed.shape == pooled.shape
        assert not torch.allclose(maxed, pooled)
        unpooled_at_init = timm.create_model(name, num_classes=0, global_pool="").eval()
        unpooled_at_init.load_state_dict(model.state_dict())
        torch.testing.assert_close(unpooled_at_init(x), unpooled)
    with pytest.raises(ValueError, match="global_pool"):
        model.reset_classifier(3, "attention")


@pytest.mark.parametrize("name", TINY)
def test_unknown_keyword_raises_type_error_and_meta_build_allocates_nothing(name: str) -> None:
    with pytest.raises(TypeError):
        timm.create_model(name, not_a_model_arg=1)
    model = timm.create_model(name, device="meta", dtype=torch.float64)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    model.reset_classifier(7)
    assert model.get_classifier().weight.device.type == "meta"
    assert model.get_classifier().weight.dtype == torch.float64


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("feature_cls", ["getter", "hook", "list", "dict", "fx"])
def test_feature_wrappers_return_the_stage_maps(name: str, feature_cls: str) -> None:
    torch.manual_seed(0)  # the same seed builds the same weights, wrapped or not
    reference = timm.create_model(name).eval()
    torch.manual_seed(0)
    model = timm.create_model(name, features_only=True, feature_cls=feature_cls).eval()
    x = _input(reference)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, intermediates_only=True)
    with torch.no_grad():
        features = model(x)
    maps = list(features.values()) if isinstance(features, dict) else features
    assert [m.shape[1] for m in maps] == model.feature_info.channels()
    for got, want in zip(maps, expected):
        torch.testing.assert_close(got, want)
    if feature_cls == "dict":
        assert list(features) == [f"stages_{i}" for i in range(len(maps))]


@pytest.mark.parametrize("name", TINY)
def test_native_backbone_keeps_official_keys_and_normalises_each_stage(name: str) -> None:
    model = timm.create_model(name, features_only=True, out_indices=(1, -1)).eval()
    keys = model.state_dict().keys()
    assert not any(k.startswith(("head.", "norm.")) for k in keys)
    x = _input(model)
    with torch.no_grad():
        raw = model.forward_intermediates(x, indices=[1, -1], intermediates_only=True)
        normed = model(x)
    assert len(normed) == 2
    assert model.feature_info.channels() == [m.shape[1] for m in normed]
    assert any(not torch.equal(a, b) for a, b in zip(raw, normed)) or name.startswith("test_replknet")


@pytest.mark.parametrize("name", TINY)
def test_prune_intermediate_layers(name: str) -> None:
    model = timm.create_model(name).eval()
    x = _input(model, batch=2)
    with torch.no_grad():
        taps = model.forward_intermediates(x, intermediates_only=True)
        kept = copy.deepcopy(model)
        kept.prune_intermediate_layers([len(taps) - 1], prune_head=False)
        torch.testing.assert_close(kept(x), model(x))
        for index in range(len(taps)):
            pruned = copy.deepcopy(model)
            take = pruned.prune_intermediate_layers([index])
            assert len(pruned.stages) == index + 1
            torch.testing.assert_close(
                pruned.forward_intermediates(x, indices=take, intermediates_only=True)[0], taps[index]
            )
            pruned.reset_classifier(4, "avg")
            assert pruned(x).shape == (2, 4)
    pruned.train()
    pruned(x).sum().backward()
    unused = [n for n, p in pruned.named_parameters() if p.grad is None]
    assert unused == []


@pytest.mark.parametrize("name", TINY)
def test_grad_checkpointing_keeps_outputs_and_gradients(name: str) -> None:
    model = timm.create_model(name).train()
    x = _input(model, batch=2)
    torch.manual_seed(1)
    model(x).sum().backward()
    plain_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    torch.manual_seed(1)
    model(x).sum().backward()
    for got, want in zip([p.grad for p in model.parameters()], plain_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("deploy", [False, True])
def test_fx_and_torchscript_match_eager(name: str, deploy: bool) -> None:
    model = timm.create_model(name, deploy=deploy).eval()
    x = _input(model)
    with torch.no_grad():
        expected = model(x)
        scripted = torch.jit.script(copy.deepcopy(model))
        torch.testing.assert_close(scripted(x), expected, rtol=1e-5, atol=1e-6)
        traced = _fx(model)
        torch.testing.assert_close(next(iter(traced(x).values())), expected, rtol=1e-5, atol=1e-6)
        both = torch.jit.script(_fx(model))
        torch.testing.assert_close(next(iter(both(x).values())), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["test_unireplknet", "test_slak", "test_replknet"])
def test_fx_backward_gives_every_parameter_a_gradient(name: str) -> None:
    model = timm.create_model(name, num_classes=7).train()
    nodes, _ = get_graph_node_names(model, tracer_kwargs=TRACER_KWARGS)
    traced = create_feature_extractor(
        model, train_return_nodes=[nodes[-1]], eval_return_nodes=[nodes[-1]], tracer_kwargs=TRACER_KWARGS
    )
    out = next(iter(traced(_input(model, batch=2)).values()))
    assert out.shape == (2, 7)
    out.mean().backward()
    assert [n for n, p in traced.named_parameters() if p.grad is None] == []


def test_only_fetchable_weights_are_listed_as_pretrained() -> None:
    pretrained = timm.list_pretrained("*replknet*") + timm.list_pretrained("slak*")
    assert all(name.startswith("unireplknet_") for name in pretrained)
    assert "unireplknet_a.in1k" in pretrained
    assert all(timm.get_pretrained_cfg(name).hf_hub_id for name in pretrained)
    # the Google Drive releases stay described (input size, source) without claiming a download
    cfg = timm.get_pretrained_cfg("replknet_31b.in22k_ft_in1k_384")
    assert cfg.input_size == (3, 384, 384)
    assert not cfg.url
    assert "drive.google.com" in cfg.notes


@pytest.mark.parametrize("name", ["test_unireplknet", "test_slak", "test_replknet"])
def test_pretrained_cfg_overlay_file_goes_through_the_family_filter(name: str, tmp_path: Path) -> None:
    source = timm.create_model(name).eval()
    path = tmp_path / "weights.pth"
    torch.save({"model": source.state_dict()}, path)
    deploy = timm.create_model(name, deploy=True, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = _input(source)
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), source(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("test_unireplknet", {}), ("test_slak", {}), ("test_replknet", {})],
)
def test_training_checkpoint_without_layer_scale_filters_into_a_deploy_model(
    name: str, kwargs: dict[str, Any], tmp_path: Path, randomize: Any
) -> None:
    extra = {} if name == "test_replknet" else {"layer_scale_init_value": 0}
    source = randomize(timm.create_model(name, **extra, **kwargs)).eval()
    assert not any(k.endswith("gamma") and "grn" not in k for k in source.state_dict() if ".act." not in k)
    path = tmp_path / "train.pth"
    torch.save(source.state_dict(), path)
    deploy = unilk.models.create_model(name, deploy=True, checkpoint_path=path, **extra, **kwargs).eval()
    x = _input(source)
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), source(x), rtol=1e-4, atol=1e-5)
