"""The pieces of UniRepLKNet's FFN as named containers: ``Sequential`` subclasses, so the official keys
(``pwconv1.1.weight``, ``act.1.gamma``, ``pwconv2.0.weight``, ``pwconv2.2.*``) stay, with names for their parts."""

from torch import Tensor, nn

from unilk.layers.grn import GRNwithNHWC

__all__ = ["GELUThenGRN", "LinearFromNCHW", "LinearToNCHW", "NCHWtoNHWC", "NHWCtoNCHW"]


class NCHWtoNHWC(nn.Module):
    """Permute ``(N, C, H, W) -> (N, H, W, C)`` (a module so that the official Sequential indices are kept)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1)


class NHWCtoNCHW(nn.Module):
    """Permute ``(N, H, W, C) -> (N, C, H, W)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2)


class LinearFromNCHW(nn.Sequential):
    """``permute to NHWC -> Linear``: ``(N, C, H, W) -> (N, H, W, D)``. Keys ``1.weight``, ``1.bias``."""

    __jit_unused_properties__ = ("linear",)  # eager-only accessors; TorchScript compiles the Sequential's forward

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(NCHWtoNHWC(), nn.Linear(in_features, out_features))

    @property
    def linear(self) -> nn.Linear:
        """The Linear."""
        return self[1]


class GELUThenGRN(nn.Sequential):
    """``GELU -> GRN`` on an NHWC map. Keys ``1.gamma`` (and ``1.beta`` with ``use_bias``)."""

    __jit_unused_properties__ = ("grn",)

    def __init__(self, dim: int, use_bias: bool = True) -> None:
        super().__init__(nn.GELU(), GRNwithNHWC(dim, use_bias=use_bias))

    @property
    def grn(self) -> GRNwithNHWC:
        """The GRN."""
        return self[1]


class LinearToNCHW(nn.Sequential):
    """``Linear -> permute to NCHW`` (deploy form), or ``Linear without bias -> permute -> BatchNorm`` (train form).

    Keys ``0.weight`` (``0.bias`` in deploy form), ``2.*`` for the BatchNorm.

    Args:
        in_features: D; ``out_features``: C.
        norm: the BatchNorm after the permute, or None (the Linear then has a bias).
    """

    __jit_unused_properties__ = ("linear", "norm")

    def __init__(self, in_features: int, out_features: int, norm: nn.Module | None = None) -> None:
        linear = nn.Linear(in_features, out_features, bias=norm is None)
        super().__init__(linear, NHWCtoNCHW(), *([] if norm is None else [norm]))

    @property
    def linear(self) -> nn.Linear:
        """The Linear."""
        return self[0]

    @property
    def norm(self) -> nn.Module | None:
        """The trailing BatchNorm (train form), or None."""
        return self[2] if len(self) == 3 else None

    def replace_linear(self, linear: nn.Linear) -> None:
        """Swap in a Linear with bias and drop the BatchNorm (re-parameterization folded it into ``linear``)."""
        self[0] = linear
        if len(self) == 3:
            del self[2]
