"""UniRepLKNet: large-kernel ConvNet with Dilated Reparam Blocks, SE and GRN.

Paper: "UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud, Time-Series and Image
Recognition" (Ding et al., CVPR 2024, arXiv 2311.15599; TPAMI extension arXiv 2410.08049).
Official code: https://github.com/AILab-CVC/UniRepLKNet (``unireplknet.py`` at commit b5677d8, last model change
2016283). Weights: https://huggingface.co/DingXiaoH/UniRepLKNet (Apache-2.0, as the repository).

State_dict keys and shapes equal the official ones for every variant, in training and in deploy form, so the released
checkpoints load strictly. Every large-kernel depthwise convolution runs through ``unilk.ops.lkconv`` while the modules
stay plain ``nn.Conv2d``.
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
from unilk.layers.activation import GELU
from unilk.layers.depthwise import DepthwiseConv2d
from unilk.layers.dilated_reparam import DilatedReparamBlock
from unilk.layers.ffn import GELUThenGRN, LinearFromNCHW, LinearToNCHW
from unilk.layers.fuse import fuse_bn
from unilk.layers.norm import LayerNorm2d
from unilk.layers.se import SEBlock
from unilk.models._builder import PretrainedCfg, build_trunk
from unilk.models._checkpoint import official_keys, reparameterized_for
from unilk.models._trunk import LargeKernelTrunk, TrunkStage, drop_path_rates, stage_feature_info
from unilk.once import warn_once
from unilk.ops.fused import fused_enabled, unireplknet_block_tail
from unilk.ops.tracing import plain_required

__all__ = ["UniRepLKNet", "UniRepLKNetBlock", "default_kernel_sizes", "checkpoint_filter_fn"]

logger = logging.getLogger(__name__)

VALID_KERNEL_SIZES = (0, 3, 5, 7, 9, 11, 13, 15, 17)


class UniRepLKNetBlock(nn.Module):
    """One block: spatial depthwise mixer -> BN -> SE -> Linear(4C) -> GELU -> GRN -> Linear(C) -> BN, layer scale.

    ``kernel_size`` ≥ 7 makes a LarK block (Dilated Reparam Block), 3 or 5 a SmaK block (plain depthwise conv), 0 a
    block without spatial mixing. ``deploy=True`` builds the re-parameterized form (same keys as ``reparameterize()``
    produces).

    Args:
        dim: C.
        kernel_size: one of 0, 3, 5, 7, 9, 11, 13, 15, 17.
        drop_path: stochastic depth rate of the residual branch.
        layer_scale_init_value: initial layer scale ``gamma``; None or ≤ 0 disables it.
        deploy: build the inference form.
        norm_layer: BatchNorm class (``nn.SyncBatchNorm`` has the same keys).
        ffn_factor: hidden width of the FFN as a multiple of C.

    Raises:
        ConfigError: for an unsupported kernel size.
    """

    def __init__(
        self,
        dim: int,
        kernel_size: int,
        drop_path: float = 0.0,
        layer_scale_init_value: float | None = 1e-6,
        *,
        deploy: bool = False,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        ffn_factor: int = 4,
    ) -> None:
        super().__init__()
        if kernel_size not in VALID_KERNEL_SIZES:
            raise ConfigError(
                f"UniRepLKNet block kernel_size={kernel_size!r} is not supported; expected one of {VALID_KERNEL_SIZES}"
            )
        self.kernel_size = kernel_size
        self.deploy = deploy
        hidden = ffn_factor * dim
        if kernel_size == 0:
            self.dwconv: nn.Module = nn.Identity()
        elif kernel_size >= 7:
            self.dwconv = DilatedReparamBlock(dim, kernel_size, deploy=deploy, norm_layer=norm_layer)
        else:  # SmaK: a "same"-padded depthwise conv routed through unilk.ops.lkconv like the large kernels
            self.dwconv = DepthwiseConv2d(dim, kernel_size, bias=deploy)
        self.norm = nn.Identity() if deploy or kernel_size == 0 else norm_layer(dim)
        self.se = SEBlock(dim, dim // 4)
        self.pwconv1 = LinearFromNCHW(dim, hidden)
        self.act = GELUThenGRN(hidden, use_bias=not deploy)
        self.pwconv2 = LinearToNCHW(hidden, dim, norm=None if deploy else norm_layer(dim))
        self.fast_path = True
        use_scale = not deploy and layer_scale_init_value is not None and layer_scale_init_value > 0
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim)) if use_scale else None
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        if torch.jit.is_scripting():
            return self._plain_forward(x)
        if plain_required():
            return self._plain_forward(x)
        if not fused_enabled(self.fast_path):
            return self._plain_forward(x)
        y = self.norm(self.dwconv(x))
        if self._shortcut_in_tail():
            return self._fused_tail(y, residual=x)
        return self._add_residual(x, self._fused_tail(y))

    def _plain_forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x))
        return self._add_residual(x, self.pwconv2(self.act(self.pwconv1(self.se(y)))))

    def _add_residual(self, x: Tensor, y: Tensor) -> Tensor:
        if self.gamma is not None:
            y = self.gamma.view(1, -1, 1, 1) * y
        return x + self.drop_path(y)

    @torch.jit.unused
    def _shortcut_in_tail(self) -> bool:
        # Deploy form without stochastic depth: nothing sits between the last Linear and the shortcut add.
        drop_path_active = self.training and not isinstance(self.drop_path, nn.Identity)
        return self.pwconv2.norm is None and self.gamma is None and not drop_path_active

    @torch.jit.unused
    def _fused_tail(self, y: Tensor, residual: Tensor | None = None) -> Tensor:
        # SE -> Linear -> GELU -> GRN -> Linear in the NCHW layout with the gates folded into the matmuls
        # (unilk.ops.fused): the module chain's numbers up to float rounding, without its permute copies and passes.
        y = unireplknet_block_tail(y, self.se.gate(y), self.pwconv1.linear, self.act.grn, self.pwconv2.linear, residual)
        norm = self.pwconv2.norm  # train form: the trailing BatchNorm
        return y if norm is None else norm(y)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the DRB branches, both BNs, the GRN bias and the layer scale into convs/Linear, in place (idempotent).

        Afterwards the block has exactly the keys of a ``deploy=True`` block.
        """
        if isinstance(self.dwconv, DilatedReparamBlock):
            self.dwconv.reparameterize()
        if isinstance(self.norm, nn.modules.batchnorm._BatchNorm):
            if isinstance(self.dwconv, DilatedReparamBlock):
                conv = self.dwconv.lk_origin
                kernel, bias = fuse_bn(conv.weight, self.norm, conv.bias)
                conv.weight.copy_(kernel)
                conv.bias.copy_(bias)
            else:
                kernel, bias = fuse_bn(self.dwconv.weight, self.norm, self.dwconv.bias)
                conv = DepthwiseConv2d(kernel.shape[0], self.kernel_size, bias=True)
                conv = conv.to(device=kernel.device, dtype=kernel.dtype)
                conv.weight.copy_(kernel)
                conv.bias.copy_(bias)
                self.dwconv = conv
            self.norm = nn.Identity()
        if self.pwconv2.norm is not None:  # Linear(no bias), permute, BN
            linear, bn, grn = self.pwconv2.linear, self.pwconv2.norm, self.act.grn
            # y = BN(W2 (grn_core + beta)) * s: the GRN bias enters the Linear as W2 beta, then BN and scale fold in
            input_bias = linear.weight @ grn.beta.reshape(-1) if grn.beta is not None else None
            weight, bias = fuse_bn(linear.weight, bn, input_bias)
            scale = self.gamma if self.gamma is not None else torch.ones_like(bias)
            fused = nn.Linear(linear.in_features, linear.out_features).to(device=weight.device, dtype=weight.dtype)
            fused.weight.copy_(weight * scale[:, None])
            fused.bias.copy_(bias * scale)
            self.pwconv2.replace_linear(fused)
            grn.beta = None
            self.gamma = None
        self.deploy = True


def default_kernel_sizes(depths: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """The official per-block kernel sizes for the four known depth patterns.

    Args:
        depths: blocks per stage.

    Returns:
        One tuple of kernel sizes per stage.

    Raises:
        ConfigError: for depths without an official default (pass ``kernel_sizes`` explicitly).
    """
    depths = tuple(depths)
    if depths in ((2, 2, 6, 2), (2, 2, 8, 2)):
        stage3 = (13,) * depths[2]
        return (3, 3), (13, 13), stage3, (13, 13)
    if depths == (3, 3, 18, 3):
        return (3, 3, 3), (13, 13, 13), (13, 3) * 9, (13, 13, 13)
    if depths == (3, 3, 27, 3):
        return (3, 3, 3), (13, 13, 13), (13, 3, 3) * 9, (13, 13, 13)
    raise ConfigError(
        f"no default kernel_sizes for depths={depths}; the defaults cover (2, 2, 6, 2), (2, 2, 8, 2), "
        "(3, 3, 18, 3) and (3, 3, 27, 3). Pass kernel_sizes, one tuple per stage with one size per block"
    )


class UniRepLKNet(LargeKernelTrunk):
    """UniRepLKNet classifier or dense-prediction backbone.

    Input ``(N, in_chans, H, W)`` with any H, W ≥ 32 (square or not); stages run at strides 4, 8, 16, 32 with
    ``dims`` channels. Classification returns ``(N, num_classes)`` logits; ``features_only=True`` returns the stage
    maps selected by ``out_indices``, each normalised by the official ``norm{i}`` LayerNorm (the official backbone mode:
    no ``norm``/``head`` keys, plus ``norm0..norm3``).

    Args:
        in_chans: input channels.
        num_classes: classes of the head; 0 gives an identity head (pooled features).
        depths: blocks per stage (4 stages).
        dims: channels per stage.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        layer_scale_init_value: initial layer scale; None or ≤ 0 disables it.
        head_init_scale: multiplies the head's initial weight and bias.
        kernel_sizes: per stage, per block kernel size (0, 3, 5, 7, ..., 17); None picks the official default.
        deploy: build the re-parameterized inference form.
        with_cp: gradient checkpointing (same as ``set_grad_checkpointing(True)``).
        attempt_use_lk_impl: accepted for official compatibility; ``unilk.ops.lkconv`` always picks the kernel.
        use_sync_bn: use ``nn.SyncBatchNorm`` (same keys) for multi-GPU training.
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
        depths: Sequence[int] = (3, 3, 27, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float | None = 1e-6,
        head_init_scale: float = 1.0,
        kernel_sizes: Sequence[Sequence[int]] | None = None,
        deploy: bool = False,
        with_cp: bool = False,
        attempt_use_lk_impl: bool = True,
        use_sync_bn: bool = False,
        *,
        global_pool: str = "avg",
        features_only: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        depths, dims = tuple(depths), tuple(dims)
        if len(depths) != 4 or len(dims) != 4:
            raise ConfigError(f"depths and dims need 4 entries (one per stage), got depths={depths}, dims={dims}")
        kernel_sizes = default_kernel_sizes(depths) if kernel_sizes is None else tuple(map(tuple, kernel_sizes))
        if len(kernel_sizes) != 4 or any(len(k) != d for k, d in zip(kernel_sizes, depths)):
            raise ConfigError(
                f"kernel_sizes={kernel_sizes} does not match depths={depths}: give one tuple per stage with one kernel "
                "size per block"
            )
        # what a twin (train <-> deploy) of this model is built from
        self.arch_args = dict(in_chans=in_chans, depths=depths, dims=dims, kernel_sizes=kernel_sizes,
                              layer_scale_init_value=layer_scale_init_value)  # fmt: skip
        self.depths, self.dims, self.kernel_sizes = depths, dims, kernel_sizes
        self.in_chans = in_chans
        self.deploy = deploy
        self.attempt_use_lk_impl = attempt_use_lk_impl
        self.num_features = dims[-1]
        self._max_kernel = max(max(k) for k in kernel_sizes)
        self._warned_small_input = False  # warn once per model, not at every training step
        norm_layer = nn.SyncBatchNorm if use_sync_bn else nn.BatchNorm2d

        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(
            nn.Sequential(
                nn.Conv2d(in_chans, dims[0] // 2, kernel_size=3, stride=2, padding=1),
                LayerNorm2d(dims[0] // 2),
                GELU(inplace=True),  # its input is the LayerNorm's fresh output
                nn.Conv2d(dims[0] // 2, dims[0], kernel_size=3, stride=2, padding=1),
                LayerNorm2d(dims[0]),
            )
        )
        for i in range(1, 4):
            self.downsample_layers.append(
                nn.Sequential(nn.Conv2d(dims[i - 1], dims[i], kernel_size=3, stride=2, padding=1), LayerNorm2d(dims[i]))
            )
        rates = drop_path_rates(drop_path_rate, depths)
        self.stages = nn.ModuleList(
            TrunkStage(
                [
                    UniRepLKNetBlock(
                        dims[i],
                        kernel_sizes[i][j],
                        drop_path=rates[i][j],
                        layer_scale_init_value=layer_scale_init_value,
                        deploy=deploy,
                        norm_layer=norm_layer,
                    )
                    for j in range(depths[i])
                ]
            )
            for i in range(4)
        )
        self.feature_info = stage_feature_info(dims)
        if features_only:
            self._init_backbone(out_indices)
            for i in range(4):  # all four, as the official backbone state_dict has them
                self.add_module(f"norm{i}", LayerNorm2d(dims[i]))
        else:
            self._init_head(num_classes, global_pool, drop_rate, nn.LayerNorm(dims[-1], eps=1e-6))
        self.apply(self._init_weights)
        self._scale_head_init(head_init_scale)
        self._choose_fast_path()
        if with_cp:
            self.set_grad_checkpointing(True)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not module.weight.is_meta:  # meta tensors hold no values
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise learning-rate decay.

        Fine groups are the official ones (``get_num_layer_for_convnext``): stem 0; stages 0/1 -> 1/2; downsample
        1/2 -> 2/3; stage 2 block j -> 3 + j // 3; stage 3 and its downsample -> 12; norm/head last.
        Coarse groups are one per stage (its downsample included).

        Args:
            coarse: one group per stage.

        Returns:
            timm's matcher dict ``{"stem": regex, "blocks": [(regex, (group_id,)), ...]}``.
        """
        if coarse:
            return dict(stem=r"^downsample_layers\.0\.", blocks=[(r"^(?:downsample_layers|stages)\.(\d+)\.", None)])
        blocks = [
            (r"^stages\.0\.", (1,)),
            (r"^downsample_layers\.1\.", (2,)),
            (r"^stages\.1\.", (2,)),
            (r"^downsample_layers\.2\.", (3,)),
        ]
        blocks += [(rf"^stages\.2\.{j}\.", (3 + j // 3,)) for j in range(self.depths[2])]
        blocks += [(r"^downsample_layers\.3\.", (12,)), (r"^stages\.3\.", (12,))]
        return dict(stem=r"^downsample_layers\.0\.", blocks=blocks)

    def _stage_input(self, index: int, x: Tensor) -> Tensor:
        if index == 0 and not torch.jit.is_scripting() and self._channels_last_stem(x):
            # The stem's two dense 3x3 convs run 3-5x faster channels-last on CPU (oneDNN), and its LayerNorms then
            # work on contiguous channel vectors; the stages take NCHW again.
            stem_input = x.contiguous(memory_format=torch.channels_last)
            return self.downsample_layers[0](stem_input).contiguous()
        for i, layer in enumerate(self.downsample_layers):  # a loop, not [index]: TorchScript needs constant indices
            if i == index:
                x = layer(x)
        if index == len(self.stages) - 1 and not torch.jit.is_scripting():
            self._warn_if_small(x)
        return x

    @torch.jit.unused
    def _channels_last_stem(self, x: Tensor) -> bool:
        return not plain_required() and x.device.type == "cpu" and fused_enabled(self.fast_path)

    def _prune_stage_inputs(self, num_stages: int) -> None:
        self.downsample_layers = self.downsample_layers[:num_stages]

    @torch.jit.unused
    def _warn_if_small(self, x: Tensor) -> None:
        # the official repo's NaN report (#14) came from last-stage maps far smaller than the kernels. A K×K kernel
        # keeps taps in use along a side of at least K // 2 + 1 pixels (7 for 13×13: the 224-pixel regime the models
        # were trained in). A map long along one side (the paper's audio map 1024×128 ends as 32×4) still uses the
        # kernel along that side, as the official audio models do; warn only when the map is short along both.
        if self._warned_small_input or plain_required():
            return
        reach = self._max_kernel // 2 + 1
        if max(x.shape[-2:]) < reach:
            self._warned_small_input = True
            warn_once(
                f"UniRepLKNet: the last-stage map is {tuple(x.shape[-2:])}, smaller than the reach of the largest "
                f"kernel ({self._max_kernel}×{self._max_kernel} needs {reach} pixels along a side), so most of every "
                f"large kernel never sees the input. Use inputs of at least {32 * (reach - 1) + 1} pixels along one "
                "side, or smaller kernels in the last stage",
                UserWarning,
                stacklevel=4,
            )


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: UniRepLKNet) -> dict[str, Tensor]:
    """Map official checkpoints onto ``model``.

    * detection/segmentation checkpoints: the ``backbone.`` prefix is removed and other keys (neck, heads) dropped;
    * a classification checkpoint into a features_only model: ``norm``/``head`` are dropped and ``norm0..norm3``
      keep their initialisation (what the official backbone does when it loads ImageNet weights);
    * a training-form checkpoint into a ``deploy=True`` model: it is re-parameterized on the fly.

    Args:
        state_dict: official keys.
        model: the target model.

    Returns:
        A state_dict with the model's keys.
    """
    state_dict = official_keys(state_dict, model, lambda key: key.startswith("norm") and key[4:5].isdigit())
    if model.deploy and any(".origin_bn." in k or ".pwconv2.2." in k for k in state_dict):
        state_dict = reparameterized_for(model, state_dict)
    return state_dict


def _create_unireplknet(variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    return build_trunk(UniRepLKNet, variant, pretrained, filter_fn=checkpoint_filter_fn, **kwargs)


_HF_REPO = "DingXiaoH/UniRepLKNet"


def _cfg(filename: str | None = None, **kwargs: Any) -> PretrainedCfg:
    kwargs.setdefault("pool_size", (7, 7))  # timm's cfg has no default; every trunk reduces by 32
    return PretrainedCfg(
        hf_hub_id=_HF_REPO if filename else None,
        hf_hub_filename=filename,
        first_conv="downsample_layers.0.0",
        classifier="head",
        license="apache-2.0",
        paper_ids="arXiv:2311.15599",
        origin_url="https://github.com/AILab-CVC/UniRepLKNet",
        **kwargs,
    )


def _cfg_384(filename: str, **kwargs: Any) -> PretrainedCfg:
    # the official evaluation warps inputs >= 384 to the square size without cropping
    return _cfg(filename, input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0, crop_mode="squash", **kwargs)


def _cfg_22k(filename: str, size: int, **kwargs: Any) -> PretrainedCfg:
    return _cfg(filename, num_classes=21841, input_size=(3, size, size), pool_size=(size // 32, size // 32), **kwargs)


default_cfgs = generate_default_cfgs(
    {
        "unireplknet_a.in1k": _cfg("unireplknet_a_in1k_224_acc77.03.pth", num_params=4_649_060),
        "unireplknet_f.in1k": _cfg("unireplknet_f_in1k_224_acc78.58.pth", num_params=6_489_328),
        "unireplknet_p.in1k": _cfg("unireplknet_p_in1k_224_acc80.23.pth", num_params=11_080_520),
        "unireplknet_n.in1k": _cfg("unireplknet_n_in1k_224_acc81.64.pth", num_params=18_818_880),
        "unireplknet_t.in1k": _cfg("unireplknet_t_in1k_224_acc83.21.pth", num_params=31_693_420),
        "unireplknet_s.in1k": _cfg("unireplknet_s_in1k_224_acc83.91.pth", num_params=56_456_704),
        "unireplknet_s.in22k_ft_in1k_384": _cfg_384(
            "unireplknet_s_in22k_to_in1k_384_acc86.44.pth", num_params=56_456_704
        ),
        "unireplknet_s.in22k": _cfg_22k("unireplknet_s_in22k_pretrain.pth", 224, num_params=72_483_433),
        "unireplknet_b.in22k_ft_in1k_384": _cfg_384(
            "unireplknet_b_in22k_to_in1k_384_acc87.40.pth", num_params=99_089_416
        ),
        "unireplknet_b.in22k": _cfg_22k("unireplknet_b_in22k_pretrain.pth", 224, num_params=120_451_441),
        "unireplknet_l.in22k_ft_in1k_384": _cfg_384(
            "unireplknet_l_in22k_to_in1k_384_acc87.88.pth", num_params=220_076_056
        ),
        "unireplknet_l.in22k": _cfg_22k("unireplknet_l_in22k_pretrain.pth", 192, num_params=252_108_673),
        "unireplknet_xl.in22k_ft_in1k_384": _cfg_384(
            "unireplknet_xl_in22k_to_in1k_384_acc87.96.pth", num_params=388_690_984
        ),
        "unireplknet_xl.in22k": _cfg_22k("unireplknet_xl_in22k_pretrain.pth", 192, num_params=431_394_193),
        "test_unireplknet": _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
        "test_unireplknet_allk": _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
    }
)


@register_model
def unireplknet_a(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """UniRepLKNet-A (4.4M deploy params), IN-1K 77.0 %."""
    model_args = dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320))
    return _create_unireplknet("unireplknet_a", pretrained, **dict(model_args, **kwargs))


@register_model
def unireplknet_f(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """UniRepLKNet-F (6.2M deploy params), IN-1K 78.6 %."""
    model_args = dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384))
    return _create_unireplknet("unireplknet_f", pretrained, **dict(model_args, **kwargs))


@register_model
def unireplknet_p(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """UniRepLKNet-P (10.7M deploy params), IN-1K 80.2 %."""
    model_args = dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512))
    return _create_unireplknet("unireplknet_p", pretrained, **dict(model_args, **kwargs))


@register_model
def unireplknet_n(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """UniRepLKNet-N (18.3M deploy params), IN-1K 81.6 %."""
    model_args = dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640))
    return _create_unireplknet("unireplknet_n", pretrained, **dict(model_args, **kwargs))


@register_model
def unireplknet_t(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """UniRepLKNet-T (31.0M deploy params), IN-1K 83.2 %."""
    model_args = dict(depths=(3, 3, 18, 3), dims=(80, 160, 320, 640))
    return _create_unireplknet("unireplknet_t", pretrained, **dict(model_args, **kwargs))


@register_model
def unireplknet_s(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """UniRepLKNet-S (55.6M deploy params), IN-1K 83.9 %; IN-22K -> 1K at 384: 86.4 %."""
    model_args = dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768))
    return _create_unireplknet("unireplknet_s", pretrained, **dict(model_args, **kwargs))


@register_model
def unireplknet_b(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """UniRepLKNet-B (98.0M deploy params); IN-22K -> 1K at 384: 87.4 %."""
    model_args = dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024))
    return _create_unireplknet("unireplknet_b", pretrained, **dict(model_args, **kwargs))


@register_model
def unireplknet_l(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """UniRepLKNet-L (218.5M deploy params); IN-22K -> 1K at 384: 87.9 %."""
    model_args = dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536))
    return _create_unireplknet("unireplknet_l", pretrained, **dict(model_args, **kwargs))


@register_model
def unireplknet_xl(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """UniRepLKNet-XL (386.5M deploy params); IN-22K -> 1K at 384: 88.0 %."""
    model_args = dict(depths=(3, 3, 27, 3), dims=(256, 512, 1024, 2048))
    return _create_unireplknet("unireplknet_xl", pretrained, **dict(model_args, **kwargs))


@register_model
def test_unireplknet(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """A tiny UniRepLKNet for tests (SmaK and 13×13 LarK blocks)."""
    model_args = dict(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (13,), (13, 3), (13,)))
    return _create_unireplknet("test_unireplknet", pretrained, **dict(model_args, **kwargs))


@register_model
def test_unireplknet_allk(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """A tiny UniRepLKNet for tests with every supported kernel size (0, 3, 5, 7, ..., 17)."""
    model_args = dict(depths=(2, 2, 3, 2), dims=(8, 8, 16, 16), kernel_sizes=((0, 3), (5, 7), (9, 11, 13), (15, 17)))
    return _create_unireplknet("test_unireplknet_allk", pretrained, **dict(model_args, **kwargs))
