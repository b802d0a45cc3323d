"""Known-answer tests of the ERF method and metric (RepLKNet/SLaK definition)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from unilk.diagnostics.erf import (
    AreaRatio,
    area_ratios,
    batched,
    compute_erf,
    input_gradient_maps,
    last_stage_map,
    list_input_files,
    load_input_map,
    normalize_erf,
)
from unilk.errors import ConfigError, InputError


def _ones_conv(k: int) -> nn.Conv2d:
    conv = nn.Conv2d(1, 1, k, padding=k // 2, bias=False)
    nn.init.ones_(conv.weight)
    return conv


def _positive_batches(n: int, size: int, batch: int = 2) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return list(batched((torch.rand(1, size, size, generator=gen) + 0.5 for _ in range(n)), batch))


@pytest.mark.parametrize("k", [3, 7, 11])
def test_box_filter_gives_square_of_side_k(k: int) -> None:
    erf = compute_erf(_ones_conv(k), _positive_batches(3, 32), progress=False)
    # the contribution map is exactly the K×K box around the centre (every tap contributes 1)
    support = torch.nonzero(erf.map)
    assert support[:, 0].max() - support[:, 0].min() + 1 == k
    assert support[:, 1].max() - support[:, 1].min() + 1 == k
    (r99,) = area_ratios(erf.map, [0.99])
    assert r99 == AreaRatio(0.99, k, k * k / 32**2)
    # uniform box: the smallest centred square holding more than t has side s with s² > t·K²
    for ratio in area_ratios(erf.map, [0.2, 0.3, 0.5]):
        expected = next(s for s in range(3, k + 1, 2) if s * s > ratio.threshold * k * k)
        assert ratio.side == expected


@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_stacked_3x3_convs_give_side_2n_plus_1(n: int) -> None:
    model = nn.Sequential(*[_ones_conv(3) for _ in range(n)])
    erf = compute_erf(model, _positive_batches(2, 33), progress=False)
    ratios = {r.threshold: r for r in area_ratios(erf.map)}
    assert ratios[0.99].side == 2 * n + 1
    assert ratios[0.99].ratio == pytest.approx((2 * n + 1) ** 2 / 33**2)
    assert all(r.side is not None and r.side <= 2 * n + 1 for r in ratios.values())


def _brute_force(erf_map: np.ndarray, t: float, log: bool) -> tuple[int, float] | None:
    a = np.log10(erf_map + 1) if log else erf_map.astype(np.float64)
    a = a / a.max()
    h, w = a.shape
    for i in range(1, min(h, w) // 2 + 1):
        top, left = h // 2 - i, w // 2 - i
        if top < 0 or left < 0 or h // 2 + i >= h or w // 2 + i >= w:
            return None
        if a[top : h // 2 + i + 1, left : w // 2 + i + 1].sum() / a.sum() > t:
            return 2 * i + 1, (2 * i + 1) ** 2 / (h * w)
    return None


def test_hand_built_map_equals_definition() -> None:
    # 9×9: centre 3×3 = 99 (log10(100) = 2 -> 1 after max-normalising), the rest of the 5×5 = 9 (-> 0.5), zeros outside
    erf_map = torch.zeros(9, 9, dtype=torch.float64)
    erf_map[2:7, 2:7] = 9
    erf_map[3:6, 3:6] = 99
    # total = 9·1 + 16·0.5 = 17; the 3×3 square holds 9/17 = 0.529, the 5×5 all of it
    got = area_ratios(erf_map, [0.2, 0.3, 0.5, 0.53, 0.99])
    assert [r.side for r in got] == [3, 3, 3, 5, 5]
    assert [r.ratio for r in got] == [9 / 81, 9 / 81, 9 / 81, 25 / 81, 25 / 81]
    # without the log the centre dominates: 9·99 / (9·99 + 16·9) = 0.861
    got = area_ratios(erf_map, [0.85, 0.87], log=False)
    assert [r.side for r in got] == [3, 5]


@pytest.mark.parametrize(("shape", "seed"), [((40, 40), 0), ((31, 37), 1), ((24, 50), 2)])
def test_random_maps_equal_brute_force(shape: tuple[int, int], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    erf_map = torch.rand(shape, generator=gen, dtype=torch.float64) ** 6 * 50
    for log in (True, False):
        for ratio in area_ratios(erf_map, [0.1, 0.2, 0.3, 0.5, 0.9, 0.99], log=log):
            expected = _brute_force(erf_map.numpy(), ratio.threshold, log)
            if expected is None:
                assert ratio.side is None
                assert ratio.ratio is None
            else:
                assert ratio.side == expected[0]
                assert ratio.ratio == pytest.approx(expected[1])


def test_threshold_never_reached_is_none() -> None:
    # uniform 8×8 map: the largest centred square that fits is 7×7 = 49/64 of the mass
    ratios = area_ratios(torch.ones(8, 8), [0.5, 0.99])
    assert ratios[0] == AreaRatio(0.5, 7, 49 / 64)
    assert ratios[1] == AreaRatio(0.99, None, None)
    assert all(r.side is None for r in area_ratios(torch.zeros(8, 8)))


def test_bad_threshold_raises() -> None:
    with pytest.raises(ConfigError, match="thresholds"):
        area_ratios(torch.ones(5, 5), [0.5, 99])


def test_normalize_log_and_no_log() -> None:
    erf_map = torch.tensor([[0.0, 9.0], [99.0, 999.0]])
    assert torch.allclose(normalize_erf(erf_map), torch.tensor([[0.0, 1 / 3], [2 / 3, 1.0]], dtype=torch.float64))
    assert torch.allclose(normalize_erf(erf_map, log=False), erf_map.double() / 999)
    assert normalize_erf(torch.zeros(3, 3)).abs().sum() == 0


def test_relu_of_gradient_and_centre_pixel() -> None:
    # one 3×3 conv with mixed-sign weights: only the positive taps contribute, and a negative centre output gives 0
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[0, 0] = torch.tensor([[1.0, -2.0, 0.0], [3.0, 1.0, -1.0], [0.0, 0.5, 2.0]])
        conv.weight[1, 0] = -5.0  # this channel's centre output is negative for a positive input: ReLU kills it
    maps = input_gradient_maps(conv, torch.ones(1, 1, 7, 7))
    expected = torch.zeros(7, 7)
    expected[2:5, 2:5] = conv.weight[0, 0].clamp(min=0)
    assert torch.equal(maps[0], expected)


class _Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x  # its gradient 2x is NaN for a NaN input, as a real model's would be


def test_batched_equals_one_at_a_time_and_nan_skipped() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), _Square(), nn.Conv2d(4, 4, 5, padding=2))
    inputs = [torch.randn(3, 16, 16) for _ in range(4)]
    together = compute_erf(model, batched(inputs, 4), progress=False)
    one_by_one = compute_erf(model, batched(inputs, 1), progress=False)
    assert torch.allclose(together.map, one_by_one.map, atol=1e-6)
    assert together.num_inputs == 4
    inputs[1] = torch.full((3, 16, 16), math.nan)
    with_nan = compute_erf(model, batched(inputs, 2), progress=False)
    assert (with_nan.num_inputs, with_nan.num_skipped) == (3, 1)
    assert not torch.isnan(with_nan.map).any()


def test_last_stage_map_of_timm_models_is_pre_pool() -> None:
    import timm

    resnet = timm.create_model("resnet10t", pretrained=False, num_classes=5).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(last_stage_map(resnet, x), resnet.forward_features(x))
    with pytest.raises(ConfigError, match="feature_fn"):
        last_stage_map(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)), torch.randn(1, 3, 4, 4))


def test_input_files_and_maps(tmp_path) -> None:
    from PIL import Image

    (tmp_path / "b").mkdir()
    Image.fromarray(np.full((20, 30, 3), 255, dtype=np.uint8)).save(tmp_path / "b" / "1.png")
    np.save(tmp_path / "a.npy", np.ones((1, 8, 6), dtype=np.float32))
    torch.save(torch.zeros(2, 5, 5), tmp_path / "c.pt")
    (tmp_path / "notes.txt").write_text("not an input")
    files = list_input_files(tmp_path)
    assert [p.name for p in files] == ["a.npy", "1.png", "c.pt"]
    assert list_input_files(tmp_path, num=1) == files[:1]
    image = load_input_map(files[1], size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert image.shape == (3, 16, 16)
    assert torch.allclose(image, torch.full_like(image, 2.0))
    assert load_input_map(files[0]).shape == (1, 8, 6)
    assert load_input_map(files[0], size=(4, 4)).shape == (1, 4, 4)
    torch.save(torch.zeros(5, 5), tmp_path / "bad.pt")
    with pytest.raises(InputError, match=r"expected \(C, H, W\)"):
        load_input_map(tmp_path / "bad.pt")
    with pytest.raises(InputError, match="does not exist"):
        list_input_files(tmp_path / "missing")


@pytest.mark.filterwarnings("ignore:.*last-stage map:UserWarning")
@pytest.mark.parametrize("name", ["test_unireplknet", "test_slak", "test_replknet"])
def test_erf_of_each_trunk(name: str) -> None:
    import importlib

    for family in ("unireplknet", "slak", "replknet"):  # register the three families
        importlib.import_module(f"unilk.models.{family}")
    from unilk.models.registry import create_model

    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert last_stage_map(model, x).shape == model.forward_features(x).shape
    ratios = area_ratios(compute_erf(model, [x], progress=False).map)
    sides = [r.side for r in ratios]
    assert all(s is not None for s in sides)
    assert sides == sorted(sides)


def test_batched_rejects_mixed_shapes() -> None:
    assert [b.shape for b in batched([torch.zeros(1, 4, 4)] * 3, 2)] == [(2, 1, 4, 4), (1, 1, 4, 4)]
    with pytest.raises(InputError, match="same shape"):
        list(batched([torch.zeros(1, 4, 4), torch.zeros(1, 5, 4)], 4))
