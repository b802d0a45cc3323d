"""The exactness policy of the fast path (docs/performance.md): against a float64 run of the same model, the fast
path's relative error (max |diff| / max |reference|) on logits and every stage output is at most ``FACTOR`` times the
plain float32 build's."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import timm
import torch
from torch import Tensor, nn

import unilk.models  # noqa: F401  (registers the models with timm)
from unilk.models import UniRepLKNet

pytestmark = pytest.mark.filterwarnings("ignore:.*smaller than the reach:UserWarning")  # tiny inputs on purpose

FACTOR = 2.0  # the policy's bound on fast error / plain float32 error
FLOOR = torch.finfo(torch.float32).eps  # a plain error below float32's epsilon counts as epsilon


def _relative_error(got: Tensor, reference: Tensor) -> float:
    return ((got.double() - reference).abs().max() / reference.abs().max()).item()


def _outputs(model: nn.Module, x: Tensor, autograd: bool) -> list[Tensor]:
    """Logits, then the four stage outputs; with ``autograd`` the input requires grad (the training-time kernels)."""
    x = x.detach().requires_grad_(autograd)
    with torch.set_grad_enabled(autograd):
        logits = model(x)
        stages = model.forward_intermediates(x, intermediates_only=True)
    return [t.detach() for t in (logits, *stages)]


def _check_policy(model: nn.Module, x: Tensor, autograd: bool) -> list[tuple[float, float]]:
    reference = _outputs(copy.deepcopy(model).double().set_fast_path(False), x.double(), autograd)
    plain = _outputs(model.set_fast_path(False), x, autograd)
    fast = _outputs(model.set_fast_path(True), x, autograd)
    errors = []
    for name, want, p, f in zip(["logits", "stage 0", "stage 1", "stage 2", "stage 3"], reference, plain, fast):
        plain_error, fast_error = _relative_error(p, want), _relative_error(f, want)
        assert fast_error <= FACTOR * max(plain_error, FLOOR), f"{name}: fast {fast_error:.2e}, plain {plain_error:.2e}"
        errors.append((plain_error, fast_error))
    return errors


@pytest.mark.parametrize("name", ["test_unireplknet", "test_unireplknet_allk", "test_slak", "test_replknet"])
@pytest.mark.parametrize("deploy", [False, True], ids=["train-form", "deploy-form"])
@pytest.mark.parametrize("autograd", [False, True], ids=["inference", "autograd"])
def test_tiny_models_meet_the_exactness_policy(name: str, deploy: bool, autograd: bool, randomize: Any) -> None:
    model = randomize(timm.create_model(name, num_classes=10), seed=1).eval()
    if deploy:
        model.reparameterize()
    x = torch.randn(2, 3, 96, 80, generator=torch.Generator().manual_seed(0))
    _check_policy(model, x, autograd)


@pytest.mark.parametrize("deploy", [False, True], ids=["train-form", "deploy-form"])
def test_official_unireplknet_a_fixture_meets_the_exactness_policy(
    deploy: bool, unireplknet_a_fixture: dict[str, Any]
) -> None:
    fixture = unireplknet_a_fixture
    model = UniRepLKNet(**fixture["config"]).eval()
    model.load_state_dict(fixture["state_dict"])
    if deploy:
        model.reparameterize()
    x = fixture["input"]
    errors = _check_policy(model, x, autograd=False)
    # In relative terms, the fast path is as close to the official float64 logits as the official float32 run is.
    official_error = _relative_error(fixture["output"], fixture["output_fp64"])
    with torch.inference_mode():
        fast_logits = model(x)
    assert _relative_error(fast_logits, fixture["output_fp64"]) <= FACTOR * max(official_error, FLOOR)
    assert errors[0][1] <= FACTOR * max(official_error, FLOOR)
