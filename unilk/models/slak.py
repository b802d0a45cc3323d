"""SLaK: a ConvNeXt trunk whose depthwise conv is a decomposed (M×N ∥ N×M ∥ N×N) sparse large kernel.

Paper: "More ConvNets in the 2020s: Scaling up Kernels Beyond 51x51 using Sparsity" (Liu et al., ICLR 2023,
arXiv 2207.03620). Official code: https://github.com/VITA-Group/SLaK (``models/SLaK.py`` at commit 44b4aab), MIT
licence. The released checkpoints (surfdrive links in the official README, not on a model hub) come from dynamic sparse
training; their masks are not stored, the weights are dense tensors with zeros, so they load here unchanged with
``checkpoint_path=``.

State_dict keys and shapes equal the official ones (``Decom=True``: ``large_kernel.LoRA1/LoRA2/small_conv``;
``Decom=False``: ``large_kernel.lkb_origin/small_conv``). Unlike the official code, which needs a CUDA extension and
has no working merge for ``Decom=True``, every branch here is a plain ``nn.Conv2d`` run through
``unilk.ops.lkconv`` with per-axis "same" padding, and ``reparameterize()`` gives the exact inference form.
Following timm, ``forward_features`` returns the last-stage map; the official one returns the pooled, normalised
vector, which is ``forward_head(x, pre_logits=True)`` here.
"""

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from timm.layers import DropPath, trunc_normal_
from timm.models import generate_default_cfgs, register_model
from torch import Tensor

from unilk.errors import ConfigError
from unilk.layers.decomposed import DecomposedLargeKernelConv
from unilk.layers.norm import LayerNorm2d
from unilk.layers.replk import ReparamLargeKernelConv
from unilk.models._builder import PretrainedCfg, build_trunk
from unilk.models._checkpoint import official_keys, reparameterized_for
from unilk.models._trunk import LargeKernelTrunk, TrunkStage, drop_path_rates, stage_feature_info
from unilk.ops.fused import convnext_block_tail, fused_enabled
from unilk.ops.tracing import plain_required

__all__ = ["SLaK", "SLaKBlock", "checkpoint_filter_fn"]

logger = logging.getLogger(__name__)


class SLaKBlock(nn.Module):
    """ConvNeXt block with a large-kernel mixer: LK -> LayerNorm -> Linear(4C) -> GELU -> Linear(C) -> ·gamma -> + x.

    The large-kernel layer has no activation after it (official order). Keys: ``gamma``, ``large_kernel.*``,
    ``norm.*``, ``pwconv1.*``, ``pwconv2.*``.

    Args:
        dim: C.
        kernel_size: M, the stage's large kernel.
        small_kernel: N, the short side of the rectangles and the square branch (present only when N < M).
        decompose: SLaK's ``Decom``: M×N ∥ N×M (∥ N×N) instead of a dense M×M (∥ N×N).
        bn: BatchNorm after each large-kernel branch.
        drop_path: stochastic depth rate of the residual branch.
        layer_scale_init_value: initial ``gamma``; ≤ 0 or None disables layer scale (no ``gamma`` key).
        deploy: build the re-parameterized large-kernel layer.
        merge_dense: with ``deploy``, the decomposed layer's inference form is one dense M×M conv.
        norm_layer: BatchNorm class of the large-kernel branches.
    """

    def __init__(
        self,
        dim: int,
        kernel_size: int,
        small_kernel: int,
        *,
        decompose: bool = True,
        bn: bool = True,
        drop_path: float = 0.0,
        layer_scale_init_value: float | None = 1e-6,
        deploy: bool = False,
        merge_dense: bool = False,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if decompose:
            self.large_kernel: nn.Module = DecomposedLargeKernelConv(
                dim, kernel_size, small_kernel, bn=bn, deploy=deploy, merge_dense=merge_dense, norm_layer=norm_layer
            )
        else:
            # the official dense mode adds the square branch only when it is strictly smaller
            small = small_kernel if small_kernel < kernel_size else None
            self.large_kernel = ReparamLargeKernelConv(
                dim, kernel_size, small, bn=bn, deploy=deploy, norm_layer=norm_layer
            )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        use_ls = layer_scale_init_value is not None and layer_scale_init_value > 0
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init_value))) if use_ls else None
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.fast_path = True

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        if torch.jit.is_scripting():
            return self._plain_forward(x)
        if not plain_required() and fused_enabled(self.fast_path):
            return self._fused_forward(x)
        return self._plain_forward(x)

    def _plain_forward(self, x: Tensor) -> Tensor:
        out = self.large_kernel(x).permute(0, 2, 3, 1)  # (N, H, W, C): LayerNorm and Linear act on channels last
        out = self.pwconv2(self.act(self.pwconv1(self.norm(out))))
        if self.gamma is not None:
            out = self.gamma * out
        return x + self.drop_path(out.permute(0, 3, 1, 2))

    @torch.jit.unused
    def _fused_forward(self, x: Tensor) -> Tensor:
        # LayerNorm -> Linear -> GELU -> Linear -> gamma in the NCHW layout with the affine parts folded into the
        # matmuls (unilk.ops.fused): the module chain's numbers up to float rounding, without its permute copies.
        drop_path_active = self.training and not isinstance(self.drop_path, nn.Identity)
        shortcut_in_tail = not drop_path_active  # nothing between the last Linear and the shortcut add
        residual = x if shortcut_in_tail else None
        out = convnext_block_tail(self.large_kernel(x), self.norm, self.pwconv1, self.pwconv2, self.gamma, residual)
        return out if shortcut_in_tail else x + self.drop_path(out)


class SLaK(LargeKernelTrunk):
    """SLaK classifier or dense-prediction backbone.

    Input ``(N, in_chans, H, W)``, any H, W (square or not); stages run at strides 4, 8, 16, 32, ... with
    ``int(d * width_factor)`` channels. Classification returns ``(N, num_classes)`` logits; ``features_only=True``
    returns the stage maps selected by ``out_indices``, each through a channels-first LayerNorm ``norm{i}`` (the
    ConvNeXt-style segmentation backbone: no ``norm``/``head`` keys).

    Args:
        in_chans: input channels.
        num_classes: classes of the head; 0 gives an identity head (pooled features).
        depths: blocks per stage.
        dims: base channels per stage, before ``width_factor``.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        layer_scale_init_value: initial layer scale ``gamma``; ≤ 0 disables it.
        head_init_scale: multiplies the head's initial weight and bias.
        kernel_size: ``[M_1, ..., M_S, N]``: one large kernel per stage, then N, which is both the short side of the
            rectangles and the small square kernel.
        width_factor: channel multiplier; widths are truncated toward zero (``int(d * width_factor)``) as officially.
        Decom: decomposed M×N ∥ N×M kernels (the SLaK models) instead of dense M×M ones (None/False, the official
            default, the "RepLKNet recipe" baseline).
        bn: BatchNorm after each large-kernel branch.
        deploy: build the re-parameterized inference form.
        merge_dense: in the deploy form, merge each decomposed layer into one dense M×M kernel.
        use_sync_bn: ``nn.SyncBatchNorm`` in the large-kernel branches (same keys; the official file always uses it).
        global_pool: '', 'avg', 'max' or 'avgmax' before the head norm.
        features_only: dense-prediction backbone mode.
        out_indices: stages returned in ``features_only`` mode (negative indices count from the end).
        drop_rate: dropout before the head.

    Raises:
        ConfigError: for inconsistent depths, dims, kernel sizes or out_indices.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float | None = 1e-6,
        head_init_scale: float = 1.0,
        kernel_size: Sequence[int] = (51, 49, 47, 13, 5),
        width_factor: float = 1.0,
        Decom: bool | None = None,  # noqa: N803 -- the official keyword
        bn: bool = True,
        *,
        deploy: bool = False,
        merge_dense: bool = False,
        use_sync_bn: bool = False,
        global_pool: str = "avg",
        features_only: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        depths, base_dims, kernel_size = tuple(depths), tuple(dims), tuple(int(k) for k in kernel_size)
        num_stages = len(depths)
        if num_stages < 1 or len(base_dims) != num_stages:
            raise ConfigError(f"depths and dims need one entry per stage, got depths={depths}, dims={base_dims}")
        if len(kernel_size) != num_stages + 1:
            raise ConfigError(
                f"kernel_size={list(kernel_size)} does not fit {num_stages} stages; expected {num_stages + 1} entries: "
                "one large kernel per stage, then the small kernel N (e.g. [51, 49, 47, 13, 5])"
            )
        dims = tuple(int(d * width_factor) for d in base_dims)
        if min(dims) < 1:
            raise ConfigError(f"dims={base_dims} × width_factor={width_factor} gives {dims}; every width must be ≥ 1")
        # what a twin (train <-> deploy) of this model is built from
        self.arch_args = dict(in_chans=in_chans, depths=depths, dims=base_dims, kernel_size=kernel_size,
                              width_factor=width_factor, Decom=bool(Decom), bn=bn, merge_dense=merge_dense,
                              layer_scale_init_value=layer_scale_init_value)  # fmt: skip
        self.depths, self.dims, self.kernel_size = depths, dims, kernel_size
        self.in_chans = in_chans
        self.decompose = bool(Decom)
        self.deploy = deploy
        self.merge_dense = merge_dense
        self.num_features = dims[-1]
        norm_layer = nn.SyncBatchNorm if use_sync_bn else nn.BatchNorm2d

        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(
            nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0], eps=1e-6))
        )
        for i in range(1, num_stages):
            self.downsample_layers.append(
                nn.Sequential(LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dims[i], 2, stride=2))
            )
        rates = drop_path_rates(drop_path_rate, depths)
        self.stages = nn.ModuleList(
            TrunkStage(
                [
                    SLaKBlock(
                        dims[i],
                        kernel_size[i],
                        kernel_size[-1],
                        decompose=self.decompose,
                        bn=bn,
                        drop_path=rates[i][j],
                        layer_scale_init_value=layer_scale_init_value,
                        deploy=deploy,
                        merge_dense=merge_dense,
                        norm_layer=norm_layer,
                    )
                    for j in range(depths[i])
                ]
            )
            for i in range(num_stages)
        )
        self.feature_info = stage_feature_info(dims)
        if features_only:
            self._init_backbone(out_indices)
            for i in range(num_stages):
                self.add_module(f"norm{i}", LayerNorm2d(dims[i], eps=1e-6))
        else:
            self._init_head(num_classes, global_pool, drop_rate, nn.LayerNorm(dims[-1], eps=1e-6))
        self.apply(self._init_weights)
        self._scale_head_init(head_init_scale)
        self._choose_fast_path()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # official: every conv (the large-kernel branches included) and linear gets trunc_normal(0.02), zero bias
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not module.weight.is_meta:
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise learning-rate decay (a stage's downsample goes with the stage).

        Args:
            coarse: one group per stage instead of one per block.

        Returns:
            timm's matcher dict ``{"stem": regex, "blocks": [(regex, suffix), ...]}``.
        """
        if coarse:
            return dict(stem=r"^downsample_layers\.0\.", blocks=[(r"^(?:downsample_layers|stages)\.(\d+)\.", None)])
        return dict(
            stem=r"^downsample_layers\.0\.",
            blocks=[(r"^downsample_layers\.(\d+)\.", (0,)), (r"^stages\.(\d+)\.(\d+)\.", None)],
        )

    def _stage_input(self, index: int, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.downsample_layers):  # a loop, not [index]: TorchScript needs constant indices
            if i == index:
                x = layer(x)
        return x

    def _prune_stage_inputs(self, num_stages: int) -> None:
        self.downsample_layers = self.downsample_layers[:num_stages]

    @torch.jit.ignore
    @torch.no_grad()
    def reparameterize(self, dense: bool | None = None) -> None:
        """Re-parameterize every large-kernel layer in place (idempotent; BN must hold its eval statistics).

        Args:
            dense: for decomposed layers, merge into one dense M×M kernel instead of two rectangles; None keeps each
                layer's ``merge_dense`` setting. Dense-mode (``Decom=False``) layers always become one M×M conv.
        """
        for module in self.modules():
            if isinstance(module, DecomposedLargeKernelConv):
                module.reparameterize(dense)
            elif isinstance(module, ReparamLargeKernelConv):
                module.reparameterize()
        self._apply_fast_path()  # the new convs follow the model's choice
        self.deploy = True


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: SLaK) -> dict[str, Tensor]:
    """Map official SLaK checkpoints onto ``model``.

    * segmentation checkpoints: the ``backbone.`` prefix is removed and other keys (decode heads) dropped;
    * checkpoints from before commit a5c177b: ``Decom1``/``Decom2`` are renamed ``LoRA1``/``LoRA2``;
    * a classification checkpoint into a features_only model: ``norm``/``head`` are dropped and ``norm0..`` keep
      their initialisation;
    * a training-form checkpoint into a ``deploy=True`` model: it is re-parameterized on the fly.

    Args:
        state_dict: official keys.
        model: the target model.

    Returns:
        A state_dict with the model's keys.
    """
    state_dict = official_keys(state_dict, model, lambda key: key.startswith("norm") and key[4:5].isdigit())
    state_dict = {k.replace(".Decom1.", ".LoRA1.").replace(".Decom2.", ".LoRA2."): v for k, v in state_dict.items()}
    if model.deploy and any(".large_kernel." in k and k.endswith(".conv.weight") for k in state_dict):
        state_dict = reparameterized_for(model, state_dict)
    return state_dict


def _create_slak(variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    num_stages = len(kwargs.get("depths", (3, 3, 9, 3)))
    return build_trunk(SLaK, variant, pretrained, filter_fn=checkpoint_filter_fn, num_stages=num_stages, **kwargs)


def _cfg(**kwargs: Any) -> PretrainedCfg:
    kwargs.setdefault("pool_size", (7, 7))  # timm's cfg has no default; every trunk reduces by 32
    return PretrainedCfg(
        first_conv="downsample_layers.0.0",
        classifier="head",
        license="mit",
        paper_ids="arXiv:2207.03620",
        origin_url="https://github.com/VITA-Group/SLaK",
        **kwargs,
    )


# the official ImageNet-1K weights (40 % sparse, 300 epochs) are surfdrive links in the SLaK README, not on a hub
_MANUAL = "official IN-1K weights: download them from the SLaK README and pass checkpoint_path="

default_cfgs = generate_default_cfgs({
    "slak_t.in1k": _cfg(num_params=50_703_838, notes=f"82.5 %; {_MANUAL}"),
    "slak_s.in1k": _cfg(num_params=91_131_820, notes=f"83.8 %; {_MANUAL}"),
    "slak_b.in1k": _cfg(num_params=157_950_792, notes=f"84.0 %; {_MANUAL}"),
    "test_slak": _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
    "test_slak_dense": _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
})  # fmt: skip

_SLAK_KERNELS = (51, 49, 47, 13, 5)


@register_model
def slak_t(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """SLaK-T: 50.7M dense params (30M at 40 % sparsity), IN-1K 82.5 %."""
    model_args = dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), kernel_size=_SLAK_KERNELS, width_factor=1.3,
                      Decom=True)  # fmt: skip
    return _create_slak("slak_t", pretrained, **dict(model_args, **kwargs))


@register_model
def slak_s(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """SLaK-S: 91.1M dense params (55M at 40 % sparsity), IN-1K 83.8 %."""
    model_args = dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768), kernel_size=_SLAK_KERNELS, width_factor=1.3,
                      Decom=True)  # fmt: skip
    return _create_slak("slak_s", pretrained, **dict(model_args, **kwargs))


@register_model
def slak_b(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """SLaK-B: 158.0M dense params (95M at 40 % sparsity), IN-1K 84.0 %."""
    model_args = dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), kernel_size=_SLAK_KERNELS, width_factor=1.3,
                      Decom=True)  # fmt: skip
    return _create_slak("slak_b", pretrained, **dict(model_args, **kwargs))


@register_model
def test_slak(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """A tiny decomposed SLaK for tests (kernels 13/11/9/7 × 3)."""
    model_args = dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), kernel_size=(13, 11, 9, 7, 3), width_factor=1.3,
                      Decom=True)  # fmt: skip
    return _create_slak("test_slak", pretrained, **dict(model_args, **kwargs))


@register_model
def test_slak_dense(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """A tiny dense-kernel SLaK (``Decom=False``, the RepLKNet-recipe baseline) for tests."""
    model_args = dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), kernel_size=(9, 7, 5, 3, 5), Decom=False)
    return _create_slak("test_slak_dense", pretrained, **dict(model_args, **kwargs))
