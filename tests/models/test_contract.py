"""The model contract (timm's), checked on every registered tiny ``test_*`` model of every family.

Full-size variants are checked for keys, shapes and parameter counts on the meta device in the family tests.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

import unilk
from unilk.models import create_model, list_models
from unilk.models.registry import get_pretrained_cfg
from unilk.reparam import reparameterize

TINY = list_models("test_*")


@pytest.fixture(autouse=True)
def _quiet_small_inputs() -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*last-stage map.*", category=UserWarning)
        yield


def _input(name: str, batch: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    channels, height, width = get_pretrained_cfg(name).input_size
    return torch.randn(batch, channels, height, width, dtype=dtype)


def test_tiny_models_are_registered() -> None:
    assert "test_unireplknet" in TINY


@pytest.mark.parametrize("name", TINY)
def test_forward_backward_and_feature_shapes(name: str) -> None:
    model = create_model(name, num_classes=5)
    cfg = get_pretrained_cfg(name)
    x = _input(name)
    features = model.forward_features(x)
    assert features.shape == (2, model.num_features, *cfg.pool_size)
    assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
    logits = model.forward_head(features)
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()
    logits.pow(2).mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    assert f"{cfg.first_conv}.weight" in model.state_dict()
    assert f"{cfg.classifier}.weight" in model.state_dict()


@pytest.mark.parametrize("name", TINY)
def test_an_empty_batch_passes_in_every_form(name: str) -> None:
    # a data-parallel rank whose samples all failed to load runs an empty batch; the fast path must take it too
    model = create_model(name, num_classes=3)
    x = torch.randn(0, 3, 64, 64, requires_grad=True)
    out = model.train()(x)
    assert out.shape == (0, 3)
    out.sum().backward()
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (0, 3)
        unilk.reparameterize(model)
        assert model(x).shape == (0, 3)


@pytest.mark.parametrize("name", TINY)
def test_reset_classifier_and_get_classifier(name: str) -> None:
    model = create_model(name).eval()
    x = _input(name)
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        model.reset_classifier(0)
        assert torch.allclose(model(x), pooled)
    model.reset_classifier(4)
    assert model.get_classifier().out_features == 4


@pytest.mark.parametrize("name", TINY)
def test_features_only_matches_feature_info(name: str) -> None:
    model = create_model(name, features_only=True, out_indices=(0, 1, 2, 3)).eval()
    x = _input(name, batch=1)
    with torch.no_grad():
        maps = model(x)
    assert [m.shape[1] for m in maps] == model.feature_info.channels()
    assert [x.shape[-1] // m.shape[-1] for m in maps] == model.feature_info.reduction()


@pytest.mark.parametrize("name", TINY)
def test_reparameterize_is_exact_in_fp64(name: str, randomize: Any) -> None:
    model = randomize(create_model(name, num_classes=3)).double().eval()
    x = _input(name, batch=1, dtype=torch.float64)
    with torch.no_grad():
        before = model(x)
        reparameterize(model)
        assert (model(x) - before).abs().max() <= 1e-10
    deploy = create_model(name, num_classes=3, deploy=True)
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in deploy.state_dict().items()
    ]


@pytest.mark.parametrize("name", TINY)
def test_strict_state_dict_round_trip(name: str, randomize: Any) -> None:
    model = randomize(create_model(name)).eval()
    clone = create_model(name).eval()
    clone.load_state_dict(model.state_dict(), strict=True)
    x = _input(name, batch=1)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))


@pytest.mark.parametrize("name", list_models())
def test_num_params_of_every_cfg(name: str) -> None:
    cfg = get_pretrained_cfg(name)
    if cfg.num_params is None:
        assert not cfg.has_weights, f"{name}: a cfg with weights must state num_params"
        return
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == cfg.num_params
