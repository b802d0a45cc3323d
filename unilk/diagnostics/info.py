"""What a model is: parameters and MACs in training and deploy form, stage shapes, oversized kernels, feature_info.

The model is built on the ``meta`` device by default: shapes, parameter counts and MACs need no weights, so even the
largest variants are measured in a second or two without allocating memory. A model with real weights (built on
``cpu``, or read from a ``unilk train`` checkpoint) also gets its sparse figures: non-zero parameters, and MACs counted
on non-zero weights (each conv/linear call's MACs × its weight's density), as SLaK reports its sparse models.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from unilk.diagnostics.flops import count_macs, count_params

__all__ = ["ConvRecord", "ModelInfo", "SparseFigures", "build_any_model", "has_training_form", "deploy_copy",
           "survey_convs", "sparse_figures", "model_info", "format_info"]  # fmt: skip

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvRecord:
    """One convolution call seen during a forward pass.

    Attributes:
        name: the module owning its weight (``stages.2.0.dwconv.lk_origin``), or ``"?"`` when the weight is not a
            parameter of the model (e.g. a kernel assembled on the fly).
        kernel_size: ``(k_h, k_w)``.
        dilation: ``(r_h, r_w)``.
        input_size: ``(H, W)`` of the map it ran on.
    """

    name: str
    kernel_size: tuple[int, int]
    dilation: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def extent(self) -> tuple[int, int]:
        """Spatial extent of the (dilated) kernel, ``((k_h - 1) r_h + 1, (k_w - 1) r_w + 1)``."""
        return tuple((k - 1) * r + 1 for k, r in zip(self.kernel_size, self.dilation))  # type: ignore[return-value]

    @property
    def exceeds_map(self) -> bool:
        """Whether the kernel's extent is larger than the map on either axis (some taps only ever see padding)."""
        return any(e > s for e, s in zip(self.extent, self.input_size))


@dataclass(frozen=True)
class ModelInfo:
    """A model's summary at one input size.

    Attributes:
        name: model name.
        input_size: ``(C, H, W)``.
        params_train: parameters of the model as built (training form).
        params_deploy: parameters after re-parameterization (equal to ``params_train`` for models without a
            training-time structure).
        macs_train: MACs of one image in training form (conv + linear).
        macs_deploy: MACs of one image in deploy form (what the papers report).
        stage_shapes: ``(C, h, w)`` of each stage output (``forward_intermediates``); empty if the model has none.
        feature_info: ``[{"num_chs", "reduction", "module"}, ...]``.
        oversized_kernels: convolutions of the deploy form whose kernel extent exceeds their input map.
        num_convs: convolution calls in one deploy-form forward pass.
        sparse: non-zero figures of the training form; None for a model without weights (``meta``).
    """

    name: str
    input_size: tuple[int, int, int]
    params_train: int
    params_deploy: int
    macs_train: int
    macs_deploy: int
    stage_shapes: list[tuple[int, ...]]
    feature_info: list[dict[str, Any]]
    oversized_kernels: list[ConvRecord]
    num_convs: int
    sparse: SparseFigures | None = None


@dataclass(frozen=True)
class SparseFigures:
    """A model's size counted on its non-zero weights (SLaK's sparse params / FLOPs).

    Attributes:
        params_nonzero: parameters that are not exactly zero.
        macs_sparse: MACs of one image with each conv/linear call's MACs scaled by its weight's density (the fraction
            of non-zero entries), i.e. multiply-accumulates with non-zero weights only.
        macs_dense: the same calls counted dense (equals ``count_macs``).
    """

    params_nonzero: int
    macs_sparse: int
    macs_dense: int


def sparse_figures(model: nn.Module, input_size: Sequence[int]) -> SparseFigures:
    """Non-zero parameters and MACs on non-zero weights of one eval-mode forward pass.

    Like :func:`~unilk.diagnostics.flops.count_macs`, only convolutions and matrix products count, with large kernels
    run whole (``lkconv`` plain mode). The weight operand of a call is the convolution kernel, or the second matrix of
    ``mm``/``addmm`` (a Linear's transposed weight), so activations never scale the count.

    Args:
        model: a model with real weights (not on ``meta``); it is put in eval mode.
        input_size: ``(C, H, W)``.

    Returns:
        The figures for a batch of one.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    from unilk.ops.lkconv import lkconv_mode

    totals = {"dense": 0.0, "sparse": 0.0}

    class _Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten.convolution.default and not args[6]:  # transposed convs: none in the trunks
                weight = args[1]
                macs = out.numel() * weight[0].numel()  # each output element: C_in/groups × k_h × k_w MACs
            elif func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default):
                weight = args[-1]  # (k, n); the input is (m, k)
                macs = out.numel() * weight.shape[0]
            else:
                return out
            totals["dense"] += macs
            totals["sparse"] += macs * int(torch.count_nonzero(weight)) / weight.numel()
            return out

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    model.eval()
    with torch.no_grad(), lkconv_mode("plain"), _Counter():
        model(torch.zeros(1, *input_size, device=device, dtype=dtype))
    params_nonzero = sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())
    return SparseFigures(
        params_nonzero=params_nonzero, macs_sparse=round(totals["sparse"]), macs_dense=round(totals["dense"])
    )


def _from_model_file(source: str) -> tuple[nn.Module, tuple[int, ...] | None]:
    """The model in a file (anything ``unilk.load`` reads) and the map size its adapter makes (None for a trunk)."""
    from unilk.loading import build, example_inputs, read_model_file

    found = read_model_file(source)
    model = build(found)
    if found.kind == "modal" and found.modality == "series":
        return model.trunk, None  # the trunk sees the stem's maps; the trunk's cfg says their size
    if found.kind == "modal":  # the whole model (head included) runs on its adapter's maps
        return model, tuple(example_inputs(found, batch=1)[0].shape[1:])
    return model, None


def build_any_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a unilk model by name, or any timm model (``resnet50``, ``convnext_tiny``, ...).

    Args:
        name: registered unilk name (``unireplknet_s``) or a timm name.
        **kwargs: ``create_model`` keywords (``num_classes``, ``in_chans``, ``checkpoint_path``, ``pretrained``...).

    Returns:
        The model.

    Raises:
        ConfigError: for a name neither registry knows.
    """
    import unilk.models  # noqa: F401  (registers the model families)
    from unilk.models.registry import create_model, is_model

    if is_model(name):
        return create_model(name, **kwargs)
    import timm

    if timm.is_model(name):
        checkpoint_path = kwargs.pop("checkpoint_path", None)
        model = timm.create_model(name, **kwargs)
        if checkpoint_path:
            from unilk.loading import load_weights

            load_weights(model, checkpoint_path)
        return model
    return create_model(name, **kwargs)  # raises ConfigError with the closest unilk names


def has_training_form(model: nn.Module) -> bool:
    """Whether some module of the model has a ``reparameterize()`` method (a training-time structure)."""
    return any(callable(getattr(m, "reparameterize", None)) for m in model.modules())


def deploy_copy(model: nn.Module) -> nn.Module:
    """A re-parameterized (deploy-form) copy of the model, in eval mode; the model itself is left untouched."""
    from unilk.reparam import reparameterize

    return reparameterize(model, inplace=False).eval()


def survey_convs(model: nn.Module, x: Tensor) -> list[ConvRecord]:
    """Record every convolution of one forward pass (modules and functional calls alike).

    Large-kernel layers call ``unilk.ops.lkconv.depthwise_conv2d`` with their module's weight instead of the module,
    so forward hooks would miss them; the calls are caught at the ATen level instead, with ``lkconv`` in its plain
    mode so that each kernel is seen whole.

    Args:
        model: the model (eval mode is set).
        x: an input ``(N, C, H, W)``.

    Returns:
        One record per call, in call order.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    from unilk.ops.lkconv import lkconv_mode

    names = {id(p): name for name, p in model.named_parameters()}
    records: list[ConvRecord] = []

    class _Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution.default and not args[6]:  # skip transposed convolutions
                inp, weight, dilation = args[0], args[1], args[5]
                records.append(
                    ConvRecord(
                        name=names.get(id(weight), "?").removesuffix(".weight"),
                        kernel_size=tuple(weight.shape[2:4]),
                        dilation=tuple(dilation) if len(dilation) == 2 else (dilation[0], dilation[0]),
                        input_size=tuple(inp.shape[2:4]),
                    )
                )
            return func(*args, **(kwargs or {}))

    model.eval()
    # "plain" runs every large kernel as one F.conv2d with the module's own weight (the fast paths crop it or use FFTs)
    with torch.no_grad(), lkconv_mode("plain"), _Recorder():
        model(x)
    return records


def _feature_info(model: nn.Module) -> list[dict[str, Any]]:
    info = getattr(model, "feature_info", None)
    info = getattr(info, "info", info)  # timm's FeatureInfo wraps the list
    if not isinstance(info, Sequence):
        return []
    return [{k: entry[k] for k in ("num_chs", "reduction", "module") if k in entry} for entry in info]


def model_info(
    model: str | nn.Module,
    input_size: Sequence[int] | None = None,
    *,
    device: str | torch.device = "meta",
    **create_kwargs: Any,
) -> ModelInfo:
    """Summarise a model at one input size.

    Args:
        model: a name for ``build_any_model``, a built model (which is put in eval mode), or a model file that
            ``unilk.load`` reads (built on CPU with its weights; a modal model at its adapter's map size).
        input_size: ``(C, H, W)``; default the model's ``pretrained_cfg["input_size"]`` or ``(3, 224, 224)``. A ``C``
            other than the model's is passed as ``in_chans`` when building by name.
        device: where to build and run a model given by name; ``"meta"`` (default) needs no memory and no weights.
            A built model is measured on its own device.
        **create_kwargs: keywords for ``build_any_model`` (``num_classes``, ...).

    Returns:
        The summary.
    """
    name = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str) and (Path(model).exists() or model.startswith("hf-hub:")):
        model, adapter_size = _from_model_file(model)
        input_size = input_size or adapter_size
    if isinstance(model, nn.Module):  # a built model is measured where it lives, never moved (it keeps its weights)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.device(device), warnings.catch_warnings():
        # the report lists oversized kernels itself; the trunks' own warning about them would only repeat it
        warnings.filterwarnings("ignore", message=".*last-stage map.*")
        if isinstance(model, str):
            if input_size is not None:
                create_kwargs.setdefault("in_chans", int(input_size[0]))
            model = build_any_model(model, **create_kwargs)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        size = tuple(int(v) for v in (input_size or cfg.get("input_size") or (3, 224, 224)))
        model.eval()
        deploy = deploy_copy(model) if has_training_form(model) else model
        x = torch.zeros(1, *size)
        stage_shapes: list[tuple[int, ...]] = []
        if hasattr(model, "forward_intermediates"):
            with torch.no_grad():
                stage_shapes = [tuple(t.shape[1:]) for t in model.forward_intermediates(x, intermediates_only=True)]
        convs = survey_convs(deploy, x)
        has_weights = next(model.parameters(), torch.empty(0)).device.type != "meta"
        return ModelInfo(
            name=name,
            input_size=size,  # type: ignore[arg-type]
            params_train=count_params(model),
            params_deploy=count_params(deploy),
            macs_train=count_macs(model, size).total,
            macs_deploy=count_macs(deploy, size).total,
            stage_shapes=stage_shapes,
            feature_info=_feature_info(model),
            oversized_kernels=[c for c in convs if c.exceeds_map],
            num_convs=len(convs),
            sparse=sparse_figures(model, size) if has_weights else None,
        )


def format_info(info: ModelInfo) -> str:
    """A human-readable report of ``model_info`` (what ``unilk info`` prints)."""
    c, h, w = info.input_size
    lines = [
        f"model            {info.name}",
        f"input            {c}x{h}x{w}",
        f"params  train    {info.params_train:,} ({info.params_train / 1e6:.2f} M)",
        f"params  deploy   {info.params_deploy:,} ({info.params_deploy / 1e6:.2f} M)",
        f"MACs    train    {info.macs_train / 1e9:.3f} G",
        f"MACs    deploy   {info.macs_deploy / 1e9:.3f} G",
    ]
    if info.sparse is not None:
        density = info.sparse.macs_sparse / max(info.sparse.macs_dense, 1)
        lines += [
            f"params  non-zero {info.sparse.params_nonzero:,} ({info.sparse.params_nonzero / 1e6:.2f} M, "
            f"{100 * info.sparse.params_nonzero / max(info.params_train, 1):.1f} % of train)",
            f"MACs    sparse   {info.sparse.macs_sparse / 1e9:.3f} G (train form on non-zero weights, "
            f"{100 * density:.1f} % of dense)",
        ]
    if info.stage_shapes:
        lines.append("stage outputs")
        lines += [f"  stage {i}        {'x'.join(map(str, s))}" for i, s in enumerate(info.stage_shapes)]
    if info.feature_info:
        lines.append("feature_info")
        lines += [
            f"  {e.get('module', '?'):<14} num_chs={e.get('num_chs')} reduction={e.get('reduction')}"
            for e in info.feature_info
        ]
    if info.oversized_kernels:
        lines.append(f"kernels larger than their feature map ({len(info.oversized_kernels)} of {info.num_convs} convs)")
        lines += [
            f"  {r.name:<44} kernel {'x'.join(map(str, r.extent))} on a {'x'.join(map(str, r.input_size))} map"
            for r in info.oversized_kernels
        ]
    else:
        lines.append(f"kernels larger than their feature map: none (of {info.num_convs} convs)")
    return "\n".join(lines)
