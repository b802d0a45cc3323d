"""unilk.reparameterize and unilk.verify_reparam on any model."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn

import unilk
from unilk.errors import UnilkError


class _WrongFusion(nn.Module):
    """A module whose reparameterize() is deliberately not exact."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def reparameterize(self) -> None:
        with torch.no_grad():
            self.scale.mul_(1.5)


pytestmark = pytest.mark.filterwarnings("ignore:UniRepLKNet. the last-stage map")


@pytest.fixture
def tiny(randomize: Any) -> nn.Module:
    return randomize(unilk.create_model("test_unireplknet", num_classes=4)).double()


def test_reparameterize_in_place_and_copy(tiny: nn.Module) -> None:
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        before = tiny.eval()(x)
        copy = unilk.reparameterize(tiny, inplace=False)
        assert not tiny.deploy
        assert copy.deploy
        assert (copy(x) - before).abs().max() <= 1e-10
        assert unilk.reparameterize(tiny) is tiny
        assert tiny.deploy
        assert (tiny(x) - before).abs().max() <= 1e-10


def test_verify_reparam_reports_the_difference_without_changing_the_model(tiny: nn.Module) -> None:
    tiny.train()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    diff = unilk.verify_reparam(tiny, x, atol=1e-10)
    assert 0 <= diff <= 1e-10
    assert tiny.training  # neither mode nor structure changed
    assert not tiny.deploy


def test_verify_reparam_raises_on_an_inexact_fusion() -> None:
    with pytest.raises(UnilkError, match=r"differ by 0\.5"):
        unilk.verify_reparam(_WrongFusion(), torch.ones(2, 3), atol=1e-6)
    assert unilk.verify_reparam(_WrongFusion(), torch.ones(2, 3)) == pytest.approx(0.5)


def test_verify_reparam_on_features_only_outputs() -> None:
    model = unilk.create_model("test_unireplknet", features_only=True)
    assert unilk.verify_reparam(model, torch.randn(1, 3, 64, 64), atol=1e-5) <= 1e-5
