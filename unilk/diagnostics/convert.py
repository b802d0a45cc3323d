"""Checkpoint conversion: any model file to unilk safetensors or ``.pth`` with its config embedded; train to deploy.

The source is anything :func:`unilk.load` reads (an official ``.pth``, a ``unilk train`` checkpoint, an earlier
conversion or export). The converted file holds the state_dict and, next to it, the config that says how to rebuild
the model (a trunk: model name, classes, input channels; a modal model: its architecture, adapter config, labels and
recipe; both: form, source file and its sha256), so ``unilk.load`` and ``create_model(checkpoint_path=)`` read it::

    convert_checkpoint("unireplknet_s_in1k_224_acc83.0.pth", "s.safetensors", deploy=True)
    model = unilk.load("s.safetensors")

Every conversion is checked: the model built from the source runs on a seeded random input, the written file is read
back into a freshly built model, and the maximum output differences (training vs deploy form, source vs written file)
are reported. The file is written under a temporary name and renamed only after the check; with ``atol`` a failed
check leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from unilk.errors import CheckpointError, ConfigError
from unilk.hub import file_sha256, refuse_nonfinite
from unilk.identify import infer_model_name
from unilk.loading import CONFIG_KEY, FORMAT

__all__ = [
    "CONFIG_KEY",
    "ConversionReport",
    "infer_model_name",
    "save_checkpoint",
    "read_checkpoint_config",
    "convert_checkpoint",
]

logger = logging.getLogger(__name__)

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
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path), metadata={"format": "pt", CONFIG_KEY: json.dumps(config)})
    elif fmt == "pth":
        torch.save({"state_dict": tensors, CONFIG_KEY: config}, path)
    else:
        raise ConfigError(f"checkpoint format {fmt!r} is not supported; expected one of {FORMATS}")
    return path


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


@torch.no_grad()
def convert_checkpoint(
    checkpoint: str | os.PathLike[str],
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
    """Convert a model file to a unilk file with its config embedded, optionally to the deploy form.

    Args:
        checkpoint: anything :func:`unilk.load` reads: an official ``.pth``/``.safetensors`` (``model``/
            ``state_dict`` wrappers and ``module.`` prefixes are removed), a ``unilk train`` checkpoint, an earlier
            conversion or export.
        out: output file; it must not exist yet.
        model: architecture of a bare state_dict; inferred from the keys and shapes when None.
        model_kwargs: constructor keywords for a configuration that is not a registered variant (e.g. official
            ``depths``/``dims``/``kernel_size``); needs ``model``. ``num_classes`` and ``in_chans`` are read from the
            checkpoint unless given here. Stored in the embedded config.
        deploy: write the re-parameterized inference form.
        fmt: ``"safetensors"`` or ``"pth"``; from ``out``'s suffix when None.
        input_size: ``(C, H, W)`` of the check input; default the adapter's map shape or the model cfg's input size.
        seed: seed of the check input.
        atol: when given, a difference above it is an error and no file is left behind.

    Returns:
        The report (without ``atol`` the caller decides what difference is acceptable; see ``ConversionReport.passed``).

    Raises:
        CheckpointError: the source cannot be read or matches no model, or the check fails ``atol``.
        ConfigError: an unknown format or model name, or ``out`` exists.
    """
    from unilk.atomic import atomic_file, refuse_existing
    from unilk.diagnostics.info import deploy_copy
    from unilk.loading import build, example_inputs, read_model_file
    from unilk.version import __version__

    out = Path(out)
    fmt = _resolve_format(out, fmt)
    refuse_existing(out, "output file")
    if model_kwargs and not model:
        raise ConfigError(f"model_kwargs {sorted(model_kwargs)} need the architecture: pass model= (--model)")
    found = read_model_file(checkpoint, model=model, model_kwargs=model_kwargs)
    net = build(found)
    inputs = example_inputs(found, batch=1, input_size=tuple(input_size) if input_size else None, seed=seed)
    reference = converted_output = net(*inputs)
    max_abs_deploy = None
    if deploy and not found.deploy:
        net = deploy_copy(net)
        converted_output = net(*inputs)
        max_abs_deploy = float((converted_output - reference).abs().max())

    config = {
        **found.config,
        "format": FORMAT,
        "deploy": bool(deploy or found.deploy),
        "input_size": list(inputs[0].shape[1:]),
        "source": found.path.name,
        "source_sha256": file_sha256(found.path),
        "unilk_version": __version__,
    }
    state = net.state_dict()
    refuse_nonfinite(state, f"the converted {found.describe()}")
    with atomic_file(out) as tmp:
        save_checkpoint(state, tmp, config, fmt)
        reloaded = build(read_model_file(tmp))
        max_abs_roundtrip = float((reloaded(*inputs) - converted_output).abs().max())
        report = ConversionReport(
            out=out,
            config=config,
            num_tensors=len(state),
            input_shape=tuple(inputs[0].shape),
            max_abs_deploy=max_abs_deploy,
            max_abs_roundtrip=max_abs_roundtrip,
            output_absmax=float(reference.abs().max()),
        )
        if atol is not None and not report.passed(atol):
            raise CheckpointError(
                f"converting {found.describe()}: the check failed (train vs deploy {max_abs_deploy}, file read back "
                f"{max_abs_roundtrip}, atol {atol:g}); nothing was written"
            )
    logger.info("converted %s -> %s (%s, %d tensors)", found.source, out, found.architecture, len(state))
    return report
