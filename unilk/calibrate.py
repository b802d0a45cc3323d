"""BatchNorm recalibration (AdaBN): re-estimate every BatchNorm's running statistics on unlabeled target inputs.

A trunk trained on one distribution (ImageNet photos) and fed another (spectrograms, depth views, a new microphone)
normalises with the wrong statistics. :func:`calibrate_bn` resets each BatchNorm's running mean and variance and
re-estimates them as a cumulative average (``momentum=None``) over the given batches, with every other module in eval
mode (no dropout or drop-path noise in the statistics); weights are unchanged. It must run on the training form:
re-parameterization folds the statistics into the convolutions, so calibrate first and re-parameterize after.

:func:`calibrate_file` does it for a model file and writes the result (training form, config embedded, read by
:func:`unilk.load`) atomically; ``unilk calibrate`` is its command.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from unilk.cli import CommandError
from unilk.devices import DEVICE
from unilk.errors import CheckpointError, ConfigError, InputError, UnilkError

__all__ = [
    "CalibrationReport",
    "LayerShift",
    "batchnorm_layers",
    "calibrate_bn",
    "calibrate_command",
    "calibrate_file",
    "prepared_batches",
]

logger = logging.getLogger(__name__)

_FORMATS = {".safetensors": "safetensors", ".pth": "pth", ".pt": "pth"}


@dataclass(frozen=True)
class LayerShift:
    """How far one BatchNorm's statistics moved.

    Attributes:
        name: the module's name in the model.
        channels: its number of channels.
        mean_shift: RMS over channels of ``|new mean − old mean| / old std`` (in units of the old spread).
        log_std_ratio: RMS over channels of ``|log(new std / old std)|`` (0: same spread; 0.69: twice or half).
    """

    name: str
    channels: int
    mean_shift: float
    log_std_ratio: float


@dataclass(frozen=True)
class CalibrationReport:
    """What :func:`calibrate_bn` changed.

    Attributes:
        layers: one :class:`LayerShift` per BatchNorm, in model order.
        batches: batches seen.
        samples: maps seen (the first dimension of every batch, summed).
    """

    layers: list[LayerShift]
    batches: int
    samples: int

    @property
    def summary(self) -> dict[str, float]:
        """Mean and max over layers of both shifts, and the counts."""
        means = [layer.mean_shift for layer in self.layers]
        stds = [layer.log_std_ratio for layer in self.layers]
        return {
            "layers": len(self.layers),
            "batches": self.batches,
            "samples": self.samples,
            "mean_shift_mean": sum(means) / len(means),
            "mean_shift_max": max(means),
            "log_std_ratio_mean": sum(stds) / len(stds),
            "log_std_ratio_max": max(stds),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``summary`` and ``layers``."""
        return {"summary": self.summary, "layers": [asdict(layer) for layer in self.layers]}


def batchnorm_layers(model: nn.Module) -> dict[str, _BatchNorm]:
    """Every BatchNorm (1d/2d/3d, SyncBatchNorm) of ``model`` that tracks running statistics, by name."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm) and module.track_running_stats
    }


def _shift(name: str, bn: _BatchNorm, old_mean: Tensor, old_var: Tensor) -> LayerShift:
    old_std = (old_var.double() + bn.eps).sqrt()
    new_std = (bn.running_var.double() + bn.eps).sqrt()
    mean_shift = ((bn.running_mean.double() - old_mean.double()) / old_std).pow(2).mean().sqrt()
    log_ratio = (new_std / old_std).log().pow(2).mean().sqrt()
    return LayerShift(name, int(old_mean.numel()), float(mean_shift), float(log_ratio))


def _forward_maps(model: nn.Module, batch: Sequence[Tensor]) -> Any:
    """The trunk on maps (a modal model or a trunk: ``forward_features``); a series model on (windows, marks)."""
    if len(batch) == 2 or getattr(model, "modality", None) == "series":
        return model(*batch)
    return model.forward_features(batch[0])


@torch.no_grad()
def calibrate_bn(
    model: nn.Module,
    batches: Iterable[Sequence[Tensor]],
    *,
    forward: Callable[[nn.Module, Sequence[Tensor]], Any] = _forward_maps,
    device: str | torch.device = "cpu",
) -> CalibrationReport:
    """Re-estimate the running statistics of every BatchNorm of ``model`` in place (cumulative average).

    Args:
        model: a training-form model (its BatchNorms are reset and re-estimated; nothing else changes).
        batches: input batches, each a sequence of tensors ``forward`` takes (maps Tensor[N, C, H, W], or a series
            model's ``(windows, marks)``).
        forward: runs the model on one batch (default: ``forward_features`` on maps, the model itself on series).
        device: where to run.

    Returns:
        The report (per-layer shift of the statistics).

    Raises:
        ConfigError: the model has no BatchNorm (a deploy-form model has them folded away).
        InputError: no batch was given.
    """
    layers = batchnorm_layers(model)
    if not layers:
        raise ConfigError(
            f"calibrate: {type(model).__name__} has no BatchNorm layers with running statistics; a re-parameterized "
            "(deploy-form) model has them folded into its convolutions: calibrate the training form"
        )
    old = {name: (bn.running_mean.clone(), bn.running_var.clone(), bn.momentum) for name, bn in layers.items()}
    was_training = model.training
    model.to(device).eval()
    for bn in layers.values():
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch counts equally
        bn.train()
    n_batches = n_samples = 0
    try:
        for batch in batches:
            batch = [t.to(device) for t in batch]
            forward(model, batch)
            n_batches += 1
            n_samples += int(batch[0].shape[0])
    finally:
        for name, bn in layers.items():
            bn.momentum = old[name][2]
        model.train(was_training)
    if n_batches == 0:
        for name, bn in layers.items():  # nothing was measured: put the old statistics back
            bn.running_mean.copy_(old[name][0])
            bn.running_var.copy_(old[name][1])
        raise InputError("calibrate: no input batch was given; expected at least one batch of target inputs")
    report = CalibrationReport([_shift(n, bn, old[n][0], old[n][1]) for n, bn in layers.items()], n_batches, n_samples)
    logger.info("calibrated %d BatchNorm layers on %d batches: %s", len(layers), n_batches, report.summary)
    return report


def prepared_batches(
    preparer: Callable[[Any], Any], samples: Iterable[Any], batch_size: int, max_batches: int | None = None
) -> Iterable[list[Tensor]]:
    """Batches of adapted samples: maps Tensor[B, C, H, W] (a sample with K maps adds K), or series windows and marks.

    Args:
        preparer: ``sample -> Prepared`` (:class:`unilk.encoding.SamplePreparer`).
        samples: paths or in-memory samples.
        batch_size: samples per batch.
        max_batches: stop after this many batches (None: all).
    """
    pending: list[Any] = []
    count = 0
    for sample in samples:
        pending.append(preparer(sample))
        if len(pending) == batch_size:
            yield _collate(pending)
            pending, count = [], count + 1
            if max_batches is not None and count >= max_batches:
                return
    if pending:
        yield _collate(pending)


def _collate(prepared: list[Any]) -> list[Tensor]:
    if prepared[0].policy == "window":
        windows = torch.stack([p.data for p in prepared])
        return [windows] if prepared[0].marks is None else [windows, torch.stack([p.marks for p in prepared])]
    return [torch.cat([p.data for p in prepared])]


def _preparer(found: Any, modality: str | None) -> tuple[str, Any]:
    from unilk.adapters import build_adapter
    from unilk.encoding import MODALITIES, SamplePreparer

    if found.kind == "modal":
        if modality is not None and modality != found.modality:
            raise ConfigError(f"calibrate: {found.describe()} was trained on {found.modality}, not {modality}")
        modality = found.modality
        config = {k: v for k, v in found.adapter.items() if k != "modality"}
    elif modality in MODALITIES:
        config = None
    else:
        raise ConfigError(f"calibrate: {found.describe()} names no modality; pass one of {list(MODALITIES)}")
    return modality, SamplePreparer(modality, build_adapter(modality, config))


@torch.no_grad()
def calibrate_file(
    source: str | os.PathLike[str],
    inputs: Sequence[Any],
    out: str | os.PathLike[str],
    *,
    modality: str | None = None,
    batches: int | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> CalibrationReport:
    """Calibrate a model file's BatchNorms on target inputs and write the result (training form) atomically.

    Args:
        source: anything :func:`unilk.load` reads, in training form.
        inputs: target samples (file paths or in-memory samples of the modality); their labels are not used.
        out: the output file, ``.safetensors`` or ``.pth``/``.pt``; it must not exist.
        modality: the inputs' modality (a modal model's own by default; required for a bare trunk).
        batches: use at most this many batches (None: all inputs).
        batch_size: samples per batch.
        device: where to run.

    Returns:
        The report; the file's config also carries its summary under ``calibration``.

    Raises:
        ConfigError: ``out`` exists or has another suffix, the file is in deploy form, or the modality is unknown.
        CheckpointError: the written file does not read back to the same model (nothing is left behind).
    """
    from unilk.atomic import atomic_file, refuse_existing
    from unilk.diagnostics.convert import save_checkpoint
    from unilk.hub import file_sha256
    from unilk.loading import FORMAT, build, example_inputs, read_model_file

    out = Path(out)
    if out.suffix not in _FORMATS:
        raise ConfigError(f"calibrate --out {str(out)!r}: expected a .safetensors or .pth file")
    refuse_existing(out, "output file")
    found = read_model_file(source)
    if found.deploy:
        raise ConfigError(
            f"calibrate: {found.describe()} is re-parameterized, so its BatchNorm statistics are folded into the "
            "convolutions; calibrate the training-form file it was made from"
        )
    modality, preparer = _preparer(found, modality)
    chans = found.config.get("in_chans")
    if found.kind == "trunk" and chans is not None and int(chans) != preparer.adapter.in_chans:
        raise ConfigError(
            f"calibrate: {found.describe()} takes {chans}-channel maps, but the {modality} adapter makes "
            f"{preparer.adapter.in_chans}-channel maps; calibrate a trunk built for {modality} (its in_chans)"
        )
    model = build(found)
    report = calibrate_bn(model, prepared_batches(preparer, inputs, batch_size, batches), device=device)
    model.cpu().eval()
    config = {
        **found.config,
        "format": FORMAT,
        "deploy": False,
        "calibration": {**report.summary, "modality": modality, "source": found.path.name,
                        "source_sha256": file_sha256(found.path)},
    }  # fmt: skip
    check = example_inputs(found, batch=2)
    reference = model(*check) if found.kind == "modal" else model.forward_features(*check)
    with atomic_file(out) as tmp:
        save_checkpoint(model.state_dict(), tmp, config, _FORMATS[out.suffix])
        loaded = build(read_model_file(tmp))
        again = loaded(*check) if found.kind == "modal" else loaded.forward_features(*check)
        difference = float((again - reference).abs().max())
        if not difference <= 1e-6 * max(1.0, float(reference.abs().max())):  # also catches NaN
            raise CheckpointError(f"calibrate: {out} reads back differently (max difference {difference:.3g})")
    logger.info("wrote calibrated %s to %s", found.source, out)
    return report


def _format_shift(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


@click.command("calibrate")
@click.argument("source")
@click.argument("data", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output .safetensors or .pth (new).")
@click.option("--modality", default=None, help="Modality of DATA (default: the model's own; needed for a trunk).")
@click.option(
    "--batches", type=click.IntRange(min=1), default=None, help="Use at most N batches (default: every input)."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--device", default="cpu", show_default=True, type=DEVICE, help="cpu, cuda, cuda:1, ...")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the report as JSON.")
def calibrate_command(
    source: str,
    data: tuple[str, ...],
    out: Path,
    modality: str | None,
    batches: int | None,
    batch_size: int,
    device: str,
    json_path: Path | None,
) -> None:
    """Re-estimate the BatchNorm statistics of SOURCE (training form) on the unlabeled inputs DATA; write --out.

    DATA are files, folders (the modality's files, recursively) or glob patterns. The output loads with unilk.load
    and re-parameterizes like any training-form file.
    """
    import json

    from unilk.atomic import atomic_file
    from unilk.extract import list_inputs, modality_extensions
    from unilk.loading import read_model_file

    try:
        found = read_model_file(source)
        modality = modality or found.modality
        if modality is None:
            raise ConfigError(f"{found.describe()} names no modality; pass --modality")
        paths = [item.path for text in data for item in list_inputs(text, extensions=modality_extensions(modality))]
        report = calibrate_file(
            found, paths, out, modality=modality, batches=batches, batch_size=batch_size, device=device
        )
    except UnilkError as err:
        raise CommandError(str(err), err) from err
    click.echo(f"{'layer':<48} {'channels':>8} {'mean shift':>10} {'log std ratio':>13}")
    for layer in report.layers:
        click.echo(
            f"{layer.name:<48} {layer.channels:>8} {_format_shift(layer.mean_shift):>10} "
            f"{_format_shift(layer.log_std_ratio):>13}"
        )
    summary = report.summary
    click.echo(
        f"{summary['layers']} BatchNorm layers on {summary['samples']} maps ({summary['batches']} batches): mean shift "
        f"{summary['mean_shift_mean']:.3f} (max {summary['mean_shift_max']:.3f}), log std ratio "
        f"{summary['log_std_ratio_mean']:.3f} (max {summary['log_std_ratio_max']:.3f}); wrote {out}"
    )
    if json_path is not None:
        with atomic_file(json_path) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
