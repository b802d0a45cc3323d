"""MAC and parameter counts."""

from __future__ import annotations

import torch.nn as nn

from unilk.diagnostics.flops import count_macs, count_params


def test_macs_count_conv_and_linear_only() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8·3·9 MACs per output pixel, 16×16 pixels
        nn.BatchNorm2d(8),
        nn.GELU(),
        nn.Conv2d(8, 8, 5, padding=2, groups=8),  # depthwise: 8·25 per pixel
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
    macs = count_macs(model, (3, 16, 16))
    conv = 8 * 3 * 9 * 256 + 8 * 25 * 256
    assert macs.by_op == {"convolution": conv, "addmm": 80}
    assert macs.total == conv + 80
    assert macs.input_shape == (1, 3, 16, 16)
    assert count_macs(model, (3, 16, 16), batch_size=3).total == 3 * macs.total


def test_linear_on_nhwc_maps_is_counted() -> None:
    # UniRepLKNet's FFN applies nn.Linear to (N, H, W, C) tensors
    class Ffn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 16)

        def forward(self, x):
            return self.fc(x.permute(0, 2, 3, 1))

    assert count_macs(Ffn(), (4, 5, 6)).total == 5 * 6 * 4 * 16


def test_count_params() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    assert count_params(model) == 3 * 4 + 4 + 4 + 4
    model[1].requires_grad_(False)
    assert count_params(model, trainable_only=True) == 16


def test_large_kernels_counted_whole_on_small_maps() -> None:
    # lkconv's fast path crops taps that only see padding; the papers' count uses the full kernel
    from unilk.ops.lkconv import depthwise_conv2d

    class LargeKernel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 13, padding=6, groups=4, bias=False)

        def forward(self, x):
            return depthwise_conv2d(x, self.conv.weight)

    assert count_macs(LargeKernel().double(), (4, 3, 5)).total == 4 * 169 * 15
