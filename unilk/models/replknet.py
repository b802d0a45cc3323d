"""RepLKNet: a ConvNet of 31×31 depthwise kernels with structural re-parameterization.

Paper: "Scaling Up Your Kernels to 31x31: Revisiting Large Kernel Design in CNNs" (Ding et al., CVPR 2022,
arXiv 2203.06717). Official code: https://github.com/DingXiaoH/RepLKNet-pytorch (``replknet.py`` at commit b76808a),
MIT licence. The released checkpoints (Google Drive / Baidu links in the official README, not on a model hub) load
here unchanged with ``checkpoint_path=``.

State_dict keys, shapes and order equal the official ones in training form and after the official
``structural_reparam()`` (``small_kernel_merged=True``, or ``deploy=True``). Every conv is bias-free and followed by a
BatchNorm; the only conv with a bias is the deploy ``large_kernel.lkb_reparam``. Unlike the official constructor,
``use_sync_bn`` defaults to False and never changes a module-global setting.
"""

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from timm.layers import DropPath
from timm.models import checkpoint_seq, generate_default_cfgs, register_model
from torch import Tensor

from unilk.errors import ConfigError
from unilk.layers.activation import GELU
from unilk.layers.replk import ReparamLargeKernelConv
from unilk.models._builder import PretrainedCfg, build_trunk
from unilk.models._checkpoint import official_keys, reparameterized_for
from unilk.models._trunk import LargeKernelTrunk, drop_path_rates, stage_feature_info

__all__ = ["RepLKNet", "RepLKBlock", "ConvFFN", "RepLKNetStage", "checkpoint_filter_fn"]

logger = logging.getLogger(__name__)


def conv_bn(
    in_chs: int,
    out_chs: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    *,
    relu: bool = False,
    norm_layer: type[nn.Module] = nn.BatchNorm2d,
) -> nn.Sequential:
    """A bias-free conv (padding ``k // 2``) + BN (+ ReLU): keys ``conv.weight``, ``bn.*`` (official ``conv_bn``)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        bn=norm_layer(out_chs),
    )
    if relu:
        layers["nonlinear"] = nn.ReLU(inplace=True)  # on the BatchNorm's fresh output
    return nn.Sequential(layers)


class RepLKBlock(nn.Module):
    """x + DropPath(pw2(ReLU(LK(pw1(BN(x)))))): pw1 = 1×1 conv + BN + ReLU, LK = K×K ∥ k×k depthwise, pw2 = 1×1 + BN.

    Keys in the official registration order: ``pw1``, ``pw2``, ``large_kernel``, ``prelkb_bn``.

    Args:
        in_chs: C.
        dw_chs: channels of the large-kernel layer (``int(C * dw_ratio)``).
        kernel_size: K.
        small_kernel: k, or None for no small branch.
        drop_path: stochastic depth rate.
        deploy: build the re-parameterized large-kernel layer (``lkb_reparam``).
        norm_layer: BatchNorm class.
    """

    def __init__(
        self,
        in_chs: int,
        dw_chs: int,
        kernel_size: int,
        small_kernel: int | None,
        drop_path: float = 0.0,
        *,
        deploy: bool = False,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.pw1 = conv_bn(in_chs, dw_chs, 1, relu=True, norm_layer=norm_layer)
        self.pw2 = conv_bn(dw_chs, in_chs, 1, norm_layer=norm_layer)
        self.large_kernel = ReparamLargeKernelConv(dw_chs, kernel_size, small_kernel, deploy=deploy,
                                                   norm_layer=norm_layer)  # fmt: skip
        self.lk_nonlinear = nn.ReLU(inplace=True)  # on the large-kernel layer's fresh output
        self.prelkb_bn = norm_layer(in_chs)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        out = self.pw2(self.lk_nonlinear(self.large_kernel(self.pw1(self.prelkb_bn(x)))))
        return x + self.drop_path(out)


class ConvFFN(nn.Module):
    """x + DropPath(pw2(GELU(pw1(BN(x))))), both 1×1 convs with BN. Keys: ``preffn_bn``, ``pw1``, ``pw2``.

    Args:
        in_chs: C.
        hidden_chs: ``int(C * ffn_ratio)``.
        drop_path: stochastic depth rate.
        norm_layer: BatchNorm class.
    """

    def __init__(
        self, in_chs: int, hidden_chs: int, drop_path: float = 0.0, *, norm_layer: type[nn.Module] = nn.BatchNorm2d
    ) -> None:
        super().__init__()
        self.preffn_bn = norm_layer(in_chs)
        self.pw1 = conv_bn(in_chs, hidden_chs, 1, norm_layer=norm_layer)
        self.pw2 = conv_bn(hidden_chs, in_chs, 1, norm_layer=norm_layer)
        self.nonlinear = GELU(inplace=True)  # on pw1's fresh output
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        return x + self.drop_path(self.pw2(self.nonlinear(self.pw1(self.preffn_bn(x)))))


class RepLKNetStage(nn.Module):
    """``num_blocks`` pairs [RepLKBlock, ConvFFN] in one ModuleList ``blocks`` (even index LK, odd index FFN).

    Args:
        channels: C.
        num_blocks: number of pairs.
        kernel_size: the stage's large kernel K.
        drop_path: one rate per pair (both members share it).
        small_kernel: k, or None.
        dw_ratio: large-kernel channels = ``int(C * dw_ratio)``.
        ffn_ratio: FFN hidden channels = ``int(C * ffn_ratio)``.
        deploy: build re-parameterized large-kernel layers.
        norm_intermediate_features: add a BN ``norm`` applied to the stage output in backbone mode.
        norm_layer: BatchNorm class.
    """

    def __init__(
        self,
        channels: int,
        num_blocks: int,
        kernel_size: int,
        drop_path: Sequence[float],
        small_kernel: int | None,
        dw_ratio: float = 1.0,
        ffn_ratio: float = 4.0,
        *,
        deploy: bool = False,
        norm_intermediate_features: bool = False,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(num_blocks):
            blocks.append(RepLKBlock(channels, int(channels * dw_ratio), kernel_size, small_kernel, drop_path[i],
                                     deploy=deploy, norm_layer=norm_layer))  # fmt: skip
            blocks.append(ConvFFN(channels, int(channels * ffn_ratio), drop_path[i], norm_layer=norm_layer))
        self.blocks = nn.ModuleList(blocks)
        self.norm = norm_layer(channels) if norm_intermediate_features else nn.Identity()
        self.grad_checkpointing = False

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)`` (without ``norm``, which only the backbone outputs use)."""
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        for block in self.blocks:
            x = block(x)
        return x


class RepLKNet(LargeKernelTrunk):
    """RepLKNet classifier or dense-prediction backbone.

    Input ``(N, in_chans, H, W)``, any H, W (odd sizes round up at each stride-2 conv); the stem reduces by 4 and each
    transition by 2 more. Classification returns ``(N, num_classes)`` logits. Backbone mode (``features_only=True``, or
    the official ``num_classes=None`` with ``out_indices``) returns the stage maps selected by ``out_indices``, each
    through the stage's ``norm`` (a BN with ``norm_intermediate_features``, else identity), and has no
    ``norm``/``head`` keys.

    Args:
        large_kernel_sizes: K per stage (odd).
        layers: [RepLKBlock, ConvFFN] pairs per stage.
        channels: channels per stage.
        drop_path_rate: stochastic depth, linearly increasing over the pairs.
        small_kernel: the parallel small kernel (odd, ≤ every K), or None.
        dw_ratio: large-kernel width relative to the stage width.
        ffn_ratio: FFN hidden width relative to the stage width.
        in_channels: the official name of ``in_chans`` (None: use ``in_chans``).
        num_classes: classes of the head; 0 gives an identity head; None (official) means backbone mode.
        out_indices: stages returned in backbone mode (negative indices count from the end).
        use_checkpoint: gradient checkpointing (same as ``set_grad_checkpointing(True)``).
        small_kernel_merged: build the re-parameterized inference form (official name of ``deploy``).
        use_sync_bn: ``nn.SyncBatchNorm`` everywhere (same keys).
        norm_intermediate_features: a BN on each backbone output (used for XL on ADE20K/COCO).
        in_chans: input channels (timm's name).
        deploy: same as ``small_kernel_merged``.
        global_pool: '', 'avg', 'max' or 'avgmax' after the final BatchNorm.
        features_only: dense-prediction backbone mode.
        drop_rate: dropout before the head.

    Raises:
        ConfigError: for inconsistent stage lists, kernels, channel names or head/backbone settings.
    """

    def __init__(
        self,
        large_kernel_sizes: Sequence[int] = (31, 29, 27, 13),
        layers: Sequence[int] = (2, 2, 18, 2),
        channels: Sequence[int] = (128, 256, 512, 1024),
        drop_path_rate: float = 0.0,
        small_kernel: int | None = 5,
        dw_ratio: float = 1.0,
        ffn_ratio: float = 4.0,
        in_channels: int | None = None,
        num_classes: int | None = 1000,
        out_indices: Sequence[int] | None = None,
        use_checkpoint: bool = False,
        small_kernel_merged: bool = False,
        use_sync_bn: bool = False,
        norm_intermediate_features: bool = False,
        *,
        in_chans: int = 3,
        deploy: bool = False,
        global_pool: str = "avg",
        features_only: bool = False,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        kernels, layers, channels = tuple(large_kernel_sizes), tuple(layers), tuple(channels)
        num_stages = len(layers)
        if num_stages < 1 or len(kernels) != num_stages or len(channels) != num_stages:
            raise ConfigError(
                f"large_kernel_sizes={kernels}, layers={layers} and channels={channels} need one entry per stage each"
            )
        if in_channels is not None and in_chans not in (3, in_channels):
            raise ConfigError(
                f"in_channels={in_channels} (official name) and in_chans={in_chans} disagree; pass only one of them"
            )
        in_chans = in_chans if in_channels is None else in_channels
        backbone = features_only or num_classes is None
        if not backbone and out_indices is not None:
            raise ConfigError(
                f"out_indices={tuple(out_indices)} with num_classes={num_classes}: stage outputs are returned in "
                "backbone mode only; pass features_only=True (or the official num_classes=None)"
            )
        if not backbone and norm_intermediate_features:
            raise ConfigError(
                "norm_intermediate_features=True needs backbone mode; pass features_only=True (or num_classes=None)"
            )
        deploy = deploy or small_kernel_merged
        self.arch_args = dict(large_kernel_sizes=kernels, layers=layers, channels=channels, small_kernel=small_kernel,
                              dw_ratio=dw_ratio, ffn_ratio=ffn_ratio, in_chans=in_chans,
                              norm_intermediate_features=norm_intermediate_features)  # fmt: skip
        self.large_kernel_sizes, self.layers, self.channels = kernels, layers, channels
        self.in_chans = in_chans
        self.deploy = deploy
        self.num_features = channels[-1]
        norm_layer = nn.SyncBatchNorm if use_sync_bn else nn.BatchNorm2d

        width = channels[0]
        self.stem = nn.ModuleList([
            conv_bn(in_chans, width, 3, stride=2, relu=True, norm_layer=norm_layer),
            conv_bn(width, width, 3, groups=width, relu=True, norm_layer=norm_layer),
            conv_bn(width, width, 1, relu=True, norm_layer=norm_layer),
            conv_bn(width, width, 3, stride=2, groups=width, relu=True, norm_layer=norm_layer),
        ])  # fmt: skip
        self.grad_checkpointing = False

        rates = drop_path_rates(drop_path_rate, layers)
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for i in range(num_stages):
            self.stages.append(RepLKNetStage(
                channels[i], layers[i], kernels[i], rates[i], small_kernel, dw_ratio, ffn_ratio,
                deploy=deploy, norm_intermediate_features=norm_intermediate_features, norm_layer=norm_layer,
            ))  # fmt: skip
            if i < num_stages - 1:
                self.transitions.append(nn.Sequential(
                    conv_bn(channels[i], channels[i + 1], 1, relu=True, norm_layer=norm_layer),
                    conv_bn(channels[i + 1], channels[i + 1], 3, stride=2, groups=channels[i + 1], relu=True,
                            norm_layer=norm_layer),
                ))  # fmt: skip

        self.feature_info = stage_feature_info(channels)
        if backbone:
            self._init_backbone(tuple(range(num_stages)) if out_indices is None else out_indices)
        else:
            self._init_head(num_classes, global_pool, drop_rate, norm_layer(channels[-1]), norm_first=True)
        self._choose_fast_path()
        if use_checkpoint:
            self.set_grad_checkpointing(True)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise learning-rate decay (a transition goes with the stage before it).

        Args:
            coarse: one group per stage instead of one per block.

        Returns:
            timm's matcher dict ``{"stem": regex, "blocks": [(regex, suffix), ...]}``.
        """
        if coarse:
            return dict(stem=r"^stem\.", blocks=[(r"^(?:stages|transitions)\.(\d+)\.", None)])
        return dict(
            stem=r"^stem\.",
            blocks=[
                (r"^stages\.(\d+)\.blocks\.(\d+)\.", None),
                (r"^stages\.(\d+)\.norm\.", (99998,)),
                (r"^transitions\.(\d+)\.", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block (and stem layers 1-3, as officially) in the backward pass."""
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def _stage_input(self, index: int, x: Tensor) -> Tensor:
        if index == 0:
            return self._stem(x)
        for i, transition in enumerate(self.transitions):  # a loop, not [index]: TorchScript needs constant indices
            if i == index - 1:
                x = transition(x)
        return x

    def _stem(self, x: Tensor) -> Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.stem[1:], self.stem[0](x))
        for layer in self.stem:
            x = layer(x)
        return x

    def _prune_stage_inputs(self, num_stages: int) -> None:
        self.transitions = self.transitions[: num_stages - 1]

    @torch.jit.unused
    def _stage_norm(self, index: int, x: Tensor) -> Tensor:
        return self.stages[index].norm(x)

    @torch.jit.ignore
    @torch.no_grad()
    def reparameterize(self) -> None:
        """Merge every large-kernel layer in place (the official ``structural_reparam``; idempotent; eval-mode BN).

        The model then equals a ``small_kernel_merged=True`` build: same keys, same order.
        """
        for module in self.modules():
            if isinstance(module, ReparamLargeKernelConv):
                module.reparameterize()
        self.deploy = True


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: RepLKNet) -> dict[str, Tensor]:
    """Map official RepLKNet checkpoints onto ``model``.

    * detection/segmentation checkpoints: the ``backbone.`` prefix is removed and other keys dropped;
    * a classification checkpoint into a backbone-mode model: ``norm``/``head`` are dropped and stage norms missing
      from the checkpoint keep their initialisation;
    * a training-form checkpoint into a deploy model: it is re-parameterized on the fly.

    Args:
        state_dict: official keys.
        model: the target model.

    Returns:
        A state_dict with the model's keys.
    """
    state_dict = official_keys(state_dict, model, lambda key: key.startswith("stages.") and ".norm." in key)
    if model.deploy and any(".large_kernel.lkb_origin." in k for k in state_dict):
        state_dict = reparameterized_for(model, state_dict)
    return state_dict


def _create_replknet(variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    num_stages = len(kwargs.get("layers", (2, 2, 18, 2)))
    return build_trunk(RepLKNet, variant, pretrained, filter_fn=checkpoint_filter_fn, num_stages=num_stages, **kwargs)


def _cfg(drive_id: str | None = None, **kwargs: Any) -> PretrainedCfg:
    # the official weights are Google Drive pages, which pretrained=True cannot fetch: so no url (timm would list the
    # tag as pretrained), only the source in the notes (docs/models.md says how to load a downloaded file)
    source = f"https://drive.google.com/file/d/{drive_id}/view" if drive_id else None
    notes = kwargs.pop("notes", None)
    kwargs.setdefault("pool_size", (7, 7))  # timm's cfg has no default; every trunk reduces by 32
    return PretrainedCfg(
        notes=f"{notes}; source: {source}" if source else notes,
        first_conv="stem.0.conv",
        classifier="head",
        license="mit",
        paper_ids="arXiv:2203.06717",
        origin_url="https://github.com/DingXiaoH/RepLKNet-pytorch",
        **kwargs,
    )


def _cfg_384(drive_id: str, **kwargs: Any) -> PretrainedCfg:
    return _cfg(drive_id, input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0, **kwargs)


_B_PARAMS, _B_22K_PARAMS = 79_864_168, 101_226_193
_MANUAL = "download it from the official README and pass checkpoint_path="

default_cfgs = generate_default_cfgs({
    "replknet_31b.in1k": _cfg("1azQUiCxK9feYVkkrPqwVPBtNsTzDrX7S", num_params=_B_PARAMS,
                              notes=f"RepLKNet-31B_ImageNet-1K_224.pth, 83.5 %; {_MANUAL}"),
    "replknet_31b.in1k_384": _cfg_384("1vo-P3XB6mRLUeDzmgv90dOu73uCeLfZN", num_params=_B_PARAMS,
                                      notes=f"IN-1K fine-tuned at 384, 84.8 %; {_MANUAL}"),
    "replknet_31b.in22k_ft_in1k": _cfg("1DslZ2voXZQR1QoFY9KnbsHAeF84hzS0s", num_params=_B_PARAMS,
                                       notes=f"IN-22K -> 1K at 224, 85.2 %; {_MANUAL}"),
    "replknet_31b.in22k_ft_in1k_384": _cfg_384("1Sc46BWdXXm2fVP-K_hKKU_W8vAB-0duX", num_params=_B_PARAMS,
                                               notes=f"IN-22K -> 1K at 384, 86.0 %; {_MANUAL}"),
    "replknet_31b.in22k": _cfg("1PYJiMszZYNrkZOeYwjccvxX8UHMALB7z", num_classes=21841, num_params=_B_22K_PARAMS,
                               notes=f"IN-22K pre-training; {_MANUAL}"),
    "replknet_31l.in22k_ft_in1k_384": _cfg_384("1JYXoNHuRvC33QV1pmpzMTKEni1hpWfBl", num_params=172_671_016,
                                               notes=f"RepLKNet-31L_ImageNet-22K-to-1K_384.pth, 86.6 %; {_MANUAL}"),
    "replknet_xl.meg73m_ft_in1k_320": _cfg("1tPC60El34GntXByIRHb-z-Apm4Y5LX1T", input_size=(3, 320, 320),
                                           pool_size=(10, 10), crop_pct=1.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                           num_params=335_435_752,
                                           notes=f"RepLKNet-XL_MegData73M_ImageNet1K.pth, 87.8 %; {_MANUAL}"),
    "test_replknet": _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
    "test_replknet_xl": _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
})  # fmt: skip


@register_model
def replknet_31b(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """RepLKNet-31B: 79.9M params (79.5M deployed), IN-1K 83.5 % at 224."""
    model_args = dict(large_kernel_sizes=(31, 29, 27, 13), layers=(2, 2, 18, 2), channels=(128, 256, 512, 1024),
                      small_kernel=5)  # fmt: skip
    return _create_replknet("replknet_31b", pretrained, **dict(model_args, **kwargs))


@register_model
def replknet_31l(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """RepLKNet-31L: 172.7M params, IN-22K -> 1K 86.6 % at 384."""
    model_args = dict(large_kernel_sizes=(31, 29, 27, 13), layers=(2, 2, 18, 2), channels=(192, 384, 768, 1536),
                      small_kernel=5)  # fmt: skip
    return _create_replknet("replknet_31l", pretrained, **dict(model_args, **kwargs))


@register_model
def replknet_xl(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """RepLKNet-XL: 335.4M params, no small kernel, dw_ratio 1.5; MegData-73M -> IN-1K 87.8 % at 320."""
    model_args = dict(large_kernel_sizes=(27, 27, 27, 13), layers=(2, 2, 18, 2), channels=(256, 512, 1024, 2048),
                      small_kernel=None, dw_ratio=1.5)  # fmt: skip
    return _create_replknet("replknet_xl", pretrained, **dict(model_args, **kwargs))


@register_model
def test_replknet(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """A tiny RepLKNet for tests (kernels 13/11/9/7 with a 3×3 branch)."""
    model_args = dict(large_kernel_sizes=(13, 11, 9, 7), layers=(1, 1, 2, 1), channels=(8, 16, 24, 32),
                      small_kernel=3)  # fmt: skip
    return _create_replknet("test_replknet", pretrained, **dict(model_args, **kwargs))


@register_model
def test_replknet_xl(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """A tiny XL-style RepLKNet for tests (no small kernel, dw_ratio 1.5)."""
    model_args = dict(large_kernel_sizes=(9, 9, 7, 5), layers=(1, 1, 1, 1), channels=(8, 16, 24, 32),
                      small_kernel=None, dw_ratio=1.5)  # fmt: skip
    return _create_replknet("test_replknet_xl", pretrained, **dict(model_args, **kwargs))
