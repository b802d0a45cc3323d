"""The official implementations, loaded from their source files, as references for ``unilk bench models``.

unilk never ships or imports the official code; a user who has cloned the official repositories points the benchmark
at them (``--official-src DIR``, any number of times) and gets the official model class, built with the same
architecture and loaded with the same weights as the unilk model it is compared with:

- UniRepLKNet: ``unireplknet.py`` (AILab-CVC/UniRepLKNet), class ``UniRepLKNet``, deploy form by
  ``reparameterize_unireplknet()``;
- SLaK: ``models/SLaK.py`` (VITA-Group/SLaK), class ``SLaK``; there is no official deploy form for decomposed kernels
  (its ``merge_kernel`` fails on them), so the official model runs in its training form, in eval mode;
- RepLKNet: ``replknet.py`` (DingXiaoH/RepLKNet-pytorch), class ``RepLKNet``, deploy form by ``structural_reparam()``.

Importing an official file is contained: it gets a private module name, its prints are captured (logged at debug
level), its timm ``register_model`` calls do not touch timm's registry (the official files register names such as
``unireplknet_a`` that unilk registers too), ``sys.path`` edits are undone, and where a file imports the CUDA-only iGEMM
extension (``depthwise_conv2d_implicit_gemm``) that is not installed, a stand-in is given for the import: an
``nn.Conv2d`` with the same constructor, weights and "same" padding, which computes what the extension computes (the
extension subclasses ``nn.Conv2d`` and only replaces its CUDA kernel).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import inspect
import io
import logging
import re
import sys
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unilk.errors import ConfigError

__all__ = ["OFFICIAL", "OfficialModel", "OfficialSource", "build_official", "find_official_file"]

logger = logging.getLogger(__name__)

IGEMM_MODULE = "depthwise_conv2d_implicit_gemm"


@dataclasses.dataclass(frozen=True)
class OfficialSource:
    """Where one family's official model lives and how to build it like a unilk model.

    Attributes:
        files: paths, relative to a source folder, where the model file may be (the repository root or its parent).
        class_name: the model class in that file.
        deploy_method: the method that re-parameterizes the official model in place, or None (no official deploy form).
        kwargs: the official constructor's arguments for a unilk model (from its ``arch_args``).
    """

    files: tuple[str, ...]
    class_name: str
    deploy_method: str | None
    kwargs: Callable[[nn.Module], dict[str, Any]]


def _unireplknet_kwargs(model: nn.Module) -> dict[str, Any]:
    args = model.arch_args
    return dict(in_chans=args["in_chans"], num_classes=model.num_classes, depths=args["depths"], dims=args["dims"],
                kernel_sizes=args["kernel_sizes"], layer_scale_init_value=args["layer_scale_init_value"])  # fmt: skip


def _slak_kwargs(model: nn.Module) -> dict[str, Any]:
    args = model.arch_args
    return dict(in_chans=args["in_chans"], num_classes=model.num_classes, depths=list(args["depths"]),
                dims=list(args["dims"]), kernel_size=list(args["kernel_size"]), width_factor=args["width_factor"],
                Decom=args["Decom"], bn=args["bn"], layer_scale_init_value=args["layer_scale_init_value"])  # fmt: skip


def _replknet_kwargs(model: nn.Module) -> dict[str, Any]:
    args = model.arch_args
    return dict(large_kernel_sizes=list(args["large_kernel_sizes"]), layers=list(args["layers"]),
                channels=list(args["channels"]), drop_path_rate=0.0, small_kernel=args["small_kernel"],
                dw_ratio=args["dw_ratio"], ffn_ratio=args["ffn_ratio"], in_channels=args["in_chans"],
                num_classes=model.num_classes, use_sync_bn=False)  # fmt: skip


# By unilk model class name.
OFFICIAL: dict[str, OfficialSource] = {
    "UniRepLKNet": OfficialSource(
        ("unireplknet.py", "UniRepLKNet/unireplknet.py"),
        "UniRepLKNet",
        "reparameterize_unireplknet",
        _unireplknet_kwargs,
    ),
    "SLaK": OfficialSource(("models/SLaK.py", "SLaK/models/SLaK.py", "SLaK.py"), "SLaK", None, _slak_kwargs),
    "RepLKNet": OfficialSource(
        ("replknet.py", "RepLKNet-pytorch/replknet.py", "RepLKNet/replknet.py"),
        "RepLKNet",
        "structural_reparam",
        _replknet_kwargs,
    ),
}


@dataclasses.dataclass
class OfficialModel:
    """An official model holding a unilk model's weights.

    Attributes:
        module: the official ``nn.Module`` (eval mode; in its deploy form when ``form == "deploy"``).
        form: ``"deploy"`` or ``"train"`` (the official code has no deploy form for this model).
        path: the source file it was built from.
        notes: what had to be adapted to build it (logged too), e.g. the iGEMM stand-in or renamed keys.
    """

    module: nn.Module
    form: str
    path: Path
    notes: list[str]


def _source_for(model: nn.Module) -> OfficialSource:
    for cls in type(model).__mro__:
        if cls.__name__ in OFFICIAL:
            return OFFICIAL[cls.__name__]
    raise ConfigError(
        f"no official implementation is known for {type(model).__name__}; expected one of {sorted(OFFICIAL)}"
    )


def find_official_file(model: nn.Module, sources: Sequence[Path]) -> Path:
    """The official model file for ``model``'s family under one of ``sources``.

    Raises:
        ConfigError: no source folder holds it (the message lists where it looked).
    """
    source = _source_for(model)
    tried = []
    for folder in sources:
        for relative in source.files:
            path = Path(folder) / relative
            if path.is_file():
                return path
            tried.append(str(path))
    raise ConfigError(
        f"--official-src: no official {source.class_name} file found; looked for {', '.join(tried) or '(no folder)'}. "
        "Pass the folder of a clone of the official repository (or its parent)"
    )


class _IGEMMStandIn(nn.Conv2d):
    """The constructor and parameters of the iGEMM extension's ``DepthWiseConv2dImplicitGEMM`` on ``nn.Conv2d``."""

    def __init__(self, channels: int, kernel: int | tuple[int, int], bias: bool = False) -> None:
        k_h, k_w = (kernel, kernel) if isinstance(kernel, int) else kernel
        super().__init__(channels, channels, (k_h, k_w), padding=(k_h // 2, k_w // 2), groups=channels, bias=bias)


@contextlib.contextmanager
def _contained(notes: list[str], igemm_stand_in: bool = False) -> Iterator[None]:
    """Inside the block official code may run without side effects on this process (see the module docstring);
    ``igemm_stand_in``: also answer an import of the iGEMM extension when it is not installed."""
    import timm.models
    import timm.models._registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm warns that the official files' import path is deprecated
        import timm.models.registry

    saved_path = list(sys.path)
    registries = (timm.models, timm.models.registry, timm.models._registry)
    saved_register = [module.register_model for module in registries]
    stand_in = igemm_stand_in and importlib.util.find_spec(IGEMM_MODULE) is None
    if stand_in:
        fake = types.ModuleType(IGEMM_MODULE)
        fake.DepthWiseConv2dImplicitGEMM = _IGEMMStandIn  # type: ignore[attr-defined]
        sys.modules[IGEMM_MODULE] = fake
    printed = io.StringIO()
    try:
        for module in registries:
            module.register_model = lambda fn: fn  # type: ignore[assignment]
        with contextlib.redirect_stdout(printed), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for module, register in zip(registries, saved_register):
            module.register_model = register  # type: ignore[assignment]
        sys.path[:] = saved_path
        if stand_in:
            del sys.modules[IGEMM_MODULE]
        if printed.getvalue().strip():
            logger.debug("the official code printed:\n%s", printed.getvalue().rstrip())


def _import_file(path: Path, notes: list[str]) -> types.ModuleType:
    name = "_unilk_official_" + re.sub(r"\W", "_", str(path.resolve()))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"--official-src: {path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        with _contained(notes, igemm_stand_in=True):
            spec.loader.exec_module(module)
    except Exception as err:
        raise ConfigError(f"--official-src: importing {path} failed: {type(err).__name__}: {err}") from err
    sys.modules[name] = module
    return module


def _uses_stand_in(module: types.ModuleType) -> bool:
    return any(value is _IGEMMStandIn for value in vars(module).values())


def _accepted(cls: type, kwargs: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """``kwargs`` limited to what ``cls`` takes (older official versions lack some arguments)."""
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    dropped = sorted(set(kwargs) - set(parameters))
    if dropped:
        notes.append(f"this version of {cls.__name__} takes no {', '.join(dropped)}")
    return {k: v for k, v in kwargs.items() if k in parameters}


def _load_same_weights(official: nn.Module, state_dict: dict[str, Tensor], notes: list[str]) -> None:
    """Strict load; where only the key names differ (an older official version), load by position."""
    target = official.state_dict()
    shapes_match = len(target) == len(state_dict) and all(
        a.shape == b.shape for a, b in zip(target.values(), state_dict.values())
    )
    if shapes_match and list(target) == list(state_dict):
        official.load_state_dict(state_dict, strict=True)
        return
    if not shapes_match:
        differing = next(
            ((a, tuple(t.shape), b, tuple(u.shape)) for (a, t), (b, u) in zip(target.items(), state_dict.items())
             if t.shape != u.shape),
            None,
        )  # fmt: skip
        detail = (
            f"{len(target)} tensors in the official model, {len(state_dict)} in unilk's"
            if differing is None
            else "official {} {} vs unilk {} {}".format(*differing)
        )
        raise ConfigError(
            f"the official {type(official).__name__} does not match the unilk model's weights ({detail}); check that "
            "the source is the official repository"
        )
    renamed = [(a, b) for a, b in zip(state_dict, target) if a != b]
    notes.append(f"{len(renamed)} keys differ in name only (e.g. {renamed[0][0]} -> {renamed[0][1]}): loaded in order")
    official.load_state_dict(dict(zip(target, state_dict.values())), strict=True)


def build_official(model: nn.Module, sources: Sequence[Path]) -> OfficialModel:
    """The official implementation of ``model``'s family, with ``model``'s architecture and weights, in eval mode and
    its deploy form where the official code has one.

    Args:
        model: a unilk model in its training form (before ``reparameterize``).
        sources: folders holding clones of the official repositories.

    Raises:
        ConfigError: the file is not found, does not import, or does not fit the model's weights.
    """
    if getattr(model, "deploy", False):
        raise ConfigError("build_official needs the unilk model in its training form (before reparameterize)")
    source = _source_for(model)
    path = find_official_file(model, sources)
    notes: list[str] = []
    module = _import_file(path, notes)
    cls = getattr(module, source.class_name, None)
    if cls is None:
        raise ConfigError(f"--official-src: {path} has no class {source.class_name}")
    if _uses_stand_in(module):
        notes.append(f"{IGEMM_MODULE} (CUDA only) is not installed: nn.Conv2d stands in for its kernel")
    with _contained(notes):
        official = cls(**_accepted(cls, source.kwargs(model), notes))
    _load_same_weights(official, model.state_dict(), notes)
    official.eval()
    form = "train"
    if source.deploy_method is not None:
        with _contained(notes), torch.no_grad():
            getattr(official, source.deploy_method)()
        form = "deploy"
    for note in notes:
        logger.info("official %s: %s", source.class_name, note)
    return OfficialModel(official, form, path, notes)
