"""Checkpoint conversion: official ``.pth`` to unilk safetensors or ``.pth`` with its config embedded; train to deploy.

The converted file holds the state_dict of a registered model and, next to it, a config (model name, classes, input
channels, form, source file and its sha256) that ``read_checkpoint_config`` returns, so a file always says how to
rebuild its model::

    convert_checkpoint("unireplknet_s_in1k_224_acc83.0.pth", "s.safetensors", deploy=True)
    model = unilk.create_model("unireplknet_s", deploy=True, checkpoint_path="s.safetensors")

Every conversion is checked: the model built from the source runs on a seeded random input, the written file is read
back into a freshly built model, and the maximum output differences (training vs deploy form, source vs written file)
are reported.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from unilk.errors import CheckpointError, ConfigError
from unilk.hub import file_sha256

__all__ = [
    "CONFIG_KEY",
    "ConversionReport",
    "infer_model_name",
    "save_checkpoint",
    "read_checkpoint_config",
    "refuse_nonfinite",
    "convert_checkpoint",
]

logger = logging.getLogger(__name__)

CONFIG_KEY = "unilk_config"  # safetensors metadata key (a JSON string) and .pth dict key of the embedded config
FORMATS = ("safetensors", "pth")


@dataclass(frozen=True)
class ConversionReport:
    """What ``convert_checkpoint`` wrote and how well the result matches its source.

    Attributes:
        out: the written file.
        config: the embedded config.
        num_tensors: tensors in the written state_dict.
        input_shape: the ``(N, C, H, W)`` check input.
        max_abs_deploy: max |training-form output − deploy-form output| (None without ``deploy``).
        max_abs_roundtrip: max |output of the converted model − output of a model loaded from the written file|.
        output_absmax: max |output|, for scale.
    """

    out: Path
    config: dict[str, Any]
    num_tensors: int
    input_shape: tuple[int, ...]
    max_abs_deploy: float | None
    max_abs_roundtrip: float
    output_absmax: float

    def passed(self, atol: float) -> bool:
        """Whether both differences are within ``atol``."""
        return self.max_abs_roundtrip <= atol and (self.max_abs_deploy is None or self.max_abs_deploy <= atol)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@dataclass(frozen=True)
class _Signature:
    """What a model's state_dict looks like, without its weights."""

    shapes: dict[str, tuple[int, ...]]
    classifier: str | None
    first_conv: str | None

    @property
    def loose_keys(self) -> tuple[str, ...]:
        """Keys whose shapes follow ``num_classes`` / ``in_chans``, compared by name only."""
        keys = [f"{self.classifier}.{p}" for p in ("weight", "bias")] if self.classifier else []
        return (*keys, f"{self.first_conv}.weight") if self.first_conv else tuple(keys)


@functools.cache
def _signature(name: str, deploy: bool, kwargs_json: str = "{}") -> _Signature:
    """Build ``name`` on the meta device (cheap, no memory) and record its keys, shapes, classifier and first conv.

    ``kwargs_json`` holds the model keywords as JSON, so that the result can be cached.
    """
    from unilk.diagnostics.info import build_any_model

    kwargs = json.loads(kwargs_json)
    with torch.device("meta"):
        model = build_any_model(name, **kwargs, deploy=True) if deploy else build_any_model(name, **kwargs)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return _Signature(_shapes(model), cfg.get("classifier") or None, cfg.get("first_conv") or None)


def _matches(state_dict: dict[str, Tensor], signature: _Signature) -> bool:
    if set(signature.shapes) != set(state_dict):
        return False
    loose = signature.loose_keys
    return all(key in loose or tuple(state_dict[key].shape) == shape for key, shape in signature.shapes.items())


def _detect_form(state_dict: dict[str, Tensor], name: str, kwargs_json: str = "{}") -> bool | None:
    """True if the state_dict is the deploy form of ``name``, False if the training form, None if neither."""
    from unilk.models.registry import is_model

    if _matches(state_dict, _signature(name, False, kwargs_json)):
        return False
    # only unilk's families have a deploy form (timm models take no ``deploy`` keyword)
    if is_model(name) and _matches(state_dict, _signature(name, True, kwargs_json)):
        return True
    return None


def _could_be(state_dict: dict[str, Tensor], name: str) -> bool:
    """Cheap pre-check without building: the cfg's first conv must be among the keys (it rules out other families)."""
    from unilk.models.registry import get_pretrained_cfg

    first_conv = get_pretrained_cfg(name).first_conv
    return not first_conv or f"{first_conv}.weight" in state_dict


def infer_model_name(state_dict: dict[str, Tensor], candidates: Sequence[str] | None = None) -> str:
    """Find the registered model whose state_dict (training or deploy form) has these keys and shapes.

    Models are built on the ``meta`` device, so this is cheap even for the largest variants. The classifier and first
    conv are compared by name only (their shapes follow ``num_classes`` and ``in_chans``).

    Args:
        state_dict: checkpoint tensors with the model's key names.
        candidates: names to try (default: every registered unilk model).

    Returns:
        The model name.

    Raises:
        CheckpointError: if no candidate, or more than one, matches.
    """
    import unilk.models  # noqa: F401  (registers the model families)
    from unilk.models.registry import list_models

    names = list(candidates) if candidates is not None else list_models()
    found = [name for name in names if _could_be(state_dict, name) and _detect_form(state_dict, name) is not None]
    if len(found) != 1:
        what = "no registered model" if not found else f"several models ({found})"
        raise CheckpointError(
            f"{what} has the checkpoint's {len(state_dict)} keys and shapes; pass the architecture with --model "
            "(e.g. --model unireplknet_s)"
        )
    return found[0]


def save_checkpoint(state_dict: dict[str, Tensor], path: str | Path, config: dict[str, Any], fmt: str) -> Path:
    """Write a state_dict with its config embedded.

    Args:
        state_dict: the tensors.
        path: output file.
        config: JSON-serialisable config, stored under ``CONFIG_KEY`` (safetensors metadata, or a key of the ``.pth``
            dict next to ``"state_dict"``).
        fmt: ``"safetensors"`` or ``"pth"``.

    Returns:
        The written path.

    Raises:
        ConfigError: for another format.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().contiguous().cpu() for key, value in state_dict.items()}
    tmp = _temp_name(path)
    try:  # written under a temporary name and renamed: a reader never sees a partial file
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(tensors, str(tmp), metadata={"format": "pt", CONFIG_KEY: json.dumps(config)})
        elif fmt == "pth":
            torch.save({"state_dict": tensors, CONFIG_KEY: config}, tmp)
        else:
            raise ConfigError(f"checkpoint format {fmt!r} is not supported; expected one of {FORMATS}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _temp_name(path: Path) -> Path:
    """A hidden sibling of ``path`` with the same suffix (readers pick the format from it)."""
    return path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:12]}{path.suffix}")


def refuse_nonfinite(state_dict: Mapping[str, Tensor], where: str) -> None:
    """Raise if a floating-point tensor holds NaN or inf (such weights give NaN outputs, never a working model).

    Raises:
        CheckpointError: naming the first tensors with non-finite values.
    """
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"{where}: {len(bad)} tensor(s) hold NaN or inf values, e.g. {bad[:4]}; expected finite weights. "
            "Fix: use an intact checkpoint (a diverged training run writes such weights)"
        )


def read_checkpoint_config(path: str | Path) -> dict[str, Any] | None:
    """The config embedded by ``save_checkpoint`` (None for a file without one, e.g. an official checkpoint).

    Raises:
        CheckpointError: if the file cannot be read.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                text = (handle.metadata() or {}).get(CONFIG_KEY)
            return json.loads(text) if text else None
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors, pickle and OS errors alike: the file is unusable
        raise CheckpointError(
            f"cannot read {str(path)!r}: {err}; pass a .safetensors or weights-only .pth file"
        ) from err
    config = obj.get(CONFIG_KEY) if isinstance(obj, dict) else None
    return dict(config) if isinstance(config, dict) else None


def _resolve_format(out: Path, fmt: str | None) -> str:
    if fmt is None:
        fmt = "safetensors" if out.suffix == ".safetensors" else "pth" if out.suffix in (".pth", ".pt") else None
        if fmt is None:
            raise ConfigError(f"cannot tell the format of {str(out)!r} from its suffix; pass fmt= one of {FORMATS}")
    if fmt not in FORMATS:
        raise ConfigError(f"checkpoint format {fmt!r} is not supported; expected one of {FORMATS}")
    return fmt


def _classes_and_chans(state_dict: dict[str, Tensor], signature: _Signature) -> dict[str, int]:
    found: dict[str, int] = {}
    head = f"{signature.classifier}.weight"
    if signature.classifier and head in state_dict:
        found["num_classes"] = int(state_dict[head].shape[0])
    stem = f"{signature.first_conv}.weight"
    if signature.first_conv and stem in state_dict:
        found["in_chans"] = int(state_dict[stem].shape[1])
    return found


@torch.no_grad()
def convert_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    model: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    deploy: bool = False,
    fmt: str | None = None,
    input_size: Sequence[int] | None = None,
    seed: int = 0,
    atol: float | None = None,
) -> ConversionReport:
    """Convert a checkpoint to a unilk file with its config embedded, optionally to the deploy form.

    Args:
        checkpoint: source ``.pth``/``.pt``/``.safetensors`` (official layout; ``model``/``state_dict`` wrappers and
            ``module.`` prefixes are removed).
        out: output file.
        model: registered architecture; inferred from the keys and shapes when None.
        model_kwargs: constructor keywords for a configuration that is not a registered variant (e.g. official
            ``depths``/``dims``/``kernel_size``); needs ``model``. ``num_classes`` and ``in_chans`` are read from the
            checkpoint unless given here. Stored in the embedded config.
        deploy: write the re-parameterized inference form.
        fmt: ``"safetensors"`` or ``"pth"``; from ``out``'s suffix when None.
        input_size: ``(C, H, W)`` of the check input; default the model cfg's input size.
        seed: seed of the check input.
        atol: when given, a check whose difference exceeds it raises and leaves nothing at ``out``; when None the
            caller decides (see ``ConversionReport.passed``).

    Returns:
        The report.

    Raises:
        CheckpointError: when the source cannot be read, holds NaN/inf weights, matches no model, or (with ``atol``)
            fails the check. ``out`` is written only once the check passed.
        ConfigError: for an unknown format or model name.
    """
    from unilk.diagnostics.info import build_any_model, deploy_copy
    from unilk.hub import load_state_dict_file

    source, out = Path(checkpoint), Path(out)
    fmt = _resolve_format(out, fmt)
    if model_kwargs and not model:
        raise ConfigError(f"model_kwargs {sorted(model_kwargs)} need the architecture: pass model= (--model)")
    state_dict = load_state_dict_file(source)
    refuse_nonfinite(state_dict, repr(str(source)))
    name = model or infer_model_name(state_dict)
    given = dict(model_kwargs or {})
    inferred = _classes_and_chans(state_dict, _signature(name, False, json.dumps(given, sort_keys=True)))
    if "in_channels" in given:  # RepLKNet's official name of in_chans
        inferred.pop("in_chans", None)
    shape_kwargs = {**inferred, **given}
    kwargs_json = json.dumps(shape_kwargs, sort_keys=True)
    source_is_deploy = _detect_form(state_dict, name, kwargs_json)
    if source_is_deploy is None:
        probe = _signature(name, False, kwargs_json).shapes
        missing, unexpected = sorted(set(probe) - set(state_dict)), sorted(set(state_dict) - set(probe))
        raise CheckpointError(
            f"{str(source)!r} does not fit {name!r} in training or deploy form: missing {missing[:4]} "
            f"({len(missing)}), unexpected {unexpected[:4]} ({len(unexpected)}); pass the right --model"
        )
    form_kwargs = {"deploy": True} if source_is_deploy else {}
    net = build_any_model(name, checkpoint_path=source, **shape_kwargs, **form_kwargs).eval()

    size = tuple(input_size or (getattr(net, "pretrained_cfg", None) or {}).get("input_size") or (3, 224, 224))
    x = torch.randn(1, *size, generator=torch.Generator().manual_seed(seed))
    reference = converted_output = net(x)
    max_abs_deploy = None
    if deploy and not source_is_deploy:
        net = deploy_copy(net)
        converted_output = net(x)
        max_abs_deploy = float((converted_output - reference).abs().max())

    config = {
        "model": name,
        "num_classes": shape_kwargs.get("num_classes"),
        "in_chans": shape_kwargs.get("in_chans", shape_kwargs.get("in_channels")),
        "model_kwargs": given,
        "deploy": bool(deploy or source_is_deploy),
        "input_size": list(size),
        "source": source.name,
        "source_sha256": file_sha256(source),
    }
    state = net.state_dict()
    refuse_nonfinite(state, f"the converted {name}")
    candidate = _temp_name(out)  # checked before it takes the name `out`
    try:
        save_checkpoint(state, candidate, config, fmt)
        written_form = {"deploy": True} if config["deploy"] else {}
        reloaded = build_any_model(name, checkpoint_path=candidate, **shape_kwargs, **written_form)
        max_abs_roundtrip = float((reloaded.eval()(x) - converted_output).abs().max())
        report = ConversionReport(
            out=out,
            config=config,
            num_tensors=len(state),
            input_shape=tuple(x.shape),
            max_abs_deploy=max_abs_deploy,
            max_abs_roundtrip=max_abs_roundtrip,
            output_absmax=float(reference.abs().max()),
        )
        if not math.isfinite(report.output_absmax) or (atol is not None and not report.passed(atol)):
            raise CheckpointError(
                f"{str(source)!r} -> {str(out)!r}: the equivalence check failed (deploy diff {max_abs_deploy}, "
                f"round-trip diff {max_abs_roundtrip:.3g}, |output| max {report.output_absmax:.3g}, atol {atol}); "
                "nothing was written"
            )
        os.replace(candidate, out)
    finally:
        candidate.unlink(missing_ok=True)
    logger.info("converted %s -> %s (%s, %d tensors)", source, out, name, len(state))
    return report
