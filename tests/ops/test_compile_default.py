"""``torch.compile`` of a model on its default (fast) path: the layers step aside while the graph is captured, and
the compiled model equals the eager fast path to float rounding, forward and backward."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import timm
import torch

import unilk.models  # noqa: F401  (registers the models with timm)
from unilk.layers.fast_path import uses_fast_path

pytestmark = pytest.mark.filterwarnings("ignore:.*smaller than the reach:UserWarning")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.slow  # about a minute of Inductor code generation per model on two cores
@pytest.mark.parametrize("name", ["test_unireplknet", "test_slak", "test_replknet"])
def test_torch_compile_of_the_default_fast_path_trains_and_infers(name: str, randomize: Any) -> None:
    model = randomize(timm.create_model(name, num_classes=5), seed=2).eval()
    assert uses_fast_path(model)  # the default
    compiled = torch.compile(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = compiled(x)
        (got_grad,) = torch.autograd.grad(got.square().sum(), x)
    want = model(x)
    (want_grad,) = torch.autograd.grad(want.square().sum(), x)
    assert _rel(got.detach(), want.detach()) <= 1e-5
    assert _rel(got_grad, want_grad) <= 1e-4
