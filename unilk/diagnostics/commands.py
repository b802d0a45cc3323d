"""The ``unilk erf``, ``unilk info``, ``unilk convert`` and ``unilk plot`` commands.

They parse arguments, call ``unilk.diagnostics`` and print the results; the work lives in the library modules.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from unilk.cli import CommandError
from unilk.devices import DEVICE, META_DEVICE
from unilk.errors import UnilkError

__all__ = ["erf", "info", "convert", "plot"]


def _report_errors(fn: Callable[..., None]) -> Callable[..., None]:
    """Show unilk's own errors (bad input, config or checkpoint) as one-line CLI errors instead of tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except UnilkError as err:
            raise CommandError(str(err), err) from err

    return wrapper


def _parse_model_spec(spec: str) -> tuple[str | None, str | None]:
    """``name``, ``name=checkpoint``, or a model file (path or ``hf-hub:`` id) -> (name, checkpoint)."""
    from unilk.loading import HF_PREFIX

    if spec.startswith(HF_PREFIX) or Path(spec).exists():
        return None, spec
    name, sep, checkpoint = spec.partition("=")
    return name, (checkpoint if sep else None)


def _erf_model(spec: str, pretrained: bool, in_chans: int) -> tuple[Any, dict[str, Any]]:
    """The trunk ``spec`` names, built for ``in_chans``-channel inputs, and its normalisation (mean, std).

    A model file goes through ``unilk.load``'s reader; of a modal model the trunk is measured, with its adapter's
    normalisation.

    Raises:
        InputError: a modal model whose trunk takes another number of channels than the inputs have.
    """
    from unilk.diagnostics.info import build_any_model
    from unilk.errors import InputError
    from unilk.loading import build, read_model_file

    name, checkpoint = _parse_model_spec(spec)
    if checkpoint is None:
        model = build_any_model(name, pretrained=pretrained, in_chans=in_chans)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        return model, {"mean": cfg.get("mean"), "std": cfg.get("std")}
    found = read_model_file(checkpoint, model=name)
    if found.kind == "trunk":
        same = found.config.get("in_chans") in (None, in_chans)
        model = build(found) if same else build(found, in_chans=in_chans)  # a different stem is adapted (timm's rule)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        return model, {"mean": cfg.get("mean"), "std": cfg.get("std")}
    if found.modality == "series":
        raise InputError(f"{found.describe()}: the ERF is measured on maps; a series model takes windows")
    trunk = build(found).trunk
    wanted = _first_conv_chans(trunk)
    if wanted != in_chans:
        raise InputError(f"{found.describe()} takes {wanted}-channel maps; the inputs have {in_chans} channels")
    return trunk, {"mean": found.adapter.get("mean"), "std": found.adapter.get("std")}


def _first_conv_chans(model: Any) -> int:
    """Input channels of a model's first convolution."""
    import torch.nn as nn

    return next(m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def _parse_thresholds(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError as err:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of fractions, e.g. 0.2,0.3,0.5,0.99") from err
    if not values or not all(0 < t < 1 for t in values):
        raise click.BadParameter(f"{text!r}: each threshold must lie in (0, 1), e.g. 0.2,0.3,0.5,0.99")
    return values


@click.command()
@click.argument("models", nargs=-1, required=True)
@click.option(
    "--images",
    "images",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory of inputs: images, or .pt/.npy C×H×W maps (any modality's adapter output).",
)
@click.option(
    "--num",
    default=50,
    type=click.IntRange(min=1),
    show_default=True,
    help="Inputs to average over (the first N in sorted order).",
)
@click.option(
    "--size",
    default=1024,
    show_default=True,
    help="Resize images to SIZE×SIZE (the papers use 1024). Maps keep their size unless --resize-maps.",
)
@click.option("--resize-maps", is_flag=True, help="Also resize .pt/.npy maps to SIZE×SIZE.")
@click.option(
    "--batch-size", default=1, type=click.IntRange(min=1), show_default=True, help="Inputs per forward/backward pass."
)
@click.option("--thresholds", default="0.2,0.3,0.5,0.99", show_default=True, help="Fractions t of r(t).")
@click.option("--no-log", is_flag=True, help="Skip log10(x+1) before max-normalising (SLaK's figure).")
@click.option("--pretrained", is_flag=True, help="Load each model's released weights (downloads them).")
@click.option(
    "--out",
    default="erf.png",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output PNG (heatmaps side by side with their r(t) tables).",
)
@click.option(
    "--save-maps",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also save each model's raw mean map as <dir>/<model>.npy.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the r(t) table as JSON.")
@click.option("--seed", default=0, show_default=True, help="Seed of the initialisation of models without weights.")
@click.option(
    "--device", default="cpu", show_default=True, type=DEVICE, help="Device to run the models on (cpu, cuda, ...)."
)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@_report_errors
def erf(
    models: tuple[str, ...],
    images: Path,
    num: int,
    size: int,
    resize_maps: bool,
    batch_size: int,
    thresholds: str,
    no_log: bool,
    pretrained: bool,
    out: Path,
    save_maps: Path | None,
    as_json: bool,
    seed: int,
    device: str,
    no_progress: bool,
) -> None:
    """Effective receptive field of MODELS on the inputs.

    Each of MODELS is a unilk or timm name, NAME=CHECKPOINT, or a model file alone (a `unilk train` checkpoint, an
    export, a converted or official file, hf-hub:org/name); of a trained modal model the trunk is measured.

    The method of the RepLKNet and SLaK papers: the ReLU-summed centre pixel of the pre-pool last-stage map,
    ReLU of its input gradient, averaged over the inputs, log10(x+1) and max normalisation, and the
    high-contribution area ratio r(t).
    """
    import numpy as np
    import torch

    from unilk.diagnostics.erf import area_ratios, batched, compute_erf, list_input_files, load_input_map, normalize_erf
    from unilk.diagnostics.plot import plot_erf

    ts = _parse_thresholds(thresholds)
    files = list_input_files(images, num)
    is_image = [p.suffix.lower() not in (".pt", ".pth", ".npy") for p in files]
    in_chans = int(load_input_map(files[0], size=size if is_image[0] else None).shape[0])
    maps, ratios, table = {}, {}, {}
    built = {}
    for spec in models:  # every model is built (and every file read) before the first one is measured
        torch.manual_seed(seed)  # randomly initialised models give the same figure on every run
        built[spec] = _erf_model(spec, pretrained, in_chans)
    for spec, (model, norm) in built.items():
        model = model.to(device)
        mean, std = norm["mean"], norm["std"]
        inputs = (
            load_input_map(p, size=size if img or resize_maps else None, mean=mean, std=std)
            for p, img in zip(files, is_image)
        )
        result = compute_erf(model, batched(inputs, batch_size), progress=not no_progress,
                             total=-(-len(files) // batch_size))  # fmt: skip
        maps[spec] = normalize_erf(result.map, log=not no_log)
        ratios[spec] = area_ratios(result.map, ts, log=not no_log)
        table[spec] = {"inputs": result.num_inputs, "skipped": result.num_skipped,
                       "ratios": [asdict(r) for r in ratios[spec]]}  # fmt: skip
        if save_maps is not None:
            save_maps.mkdir(parents=True, exist_ok=True)
            name, checkpoint = _parse_model_spec(spec)
            np.save(save_maps / f"{name or Path(checkpoint or spec).stem}.npy", result.map.numpy())
    plot_erf(maps, out, ratios)
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    header = "model".ljust(32) + "".join(f"r({t:.0%})".rjust(16) for t in ts)
    click.echo(header)
    for spec, rows in ratios.items():
        cells = "".join(
            ("not reached" if r.ratio is None else f"{100 * r.ratio:.2f}% ({r.side})").rjust(16) for r in rows
        )
        click.echo(spec.ljust(32) + cells)
    click.echo(f"averaged over {len(files)} input(s); figure written to {out}")


@click.command()
@click.argument("model")
@click.option(
    "--input-size", nargs=3, type=click.IntRange(min=1), default=None, help="C H W (default: the model's input size)."
)
@click.option(
    "--device",
    default="meta",
    show_default=True,
    type=META_DEVICE,
    help="Where to build and run; 'meta' needs no memory or weights.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_report_errors
def info(model: str, input_size: tuple[int, int, int] | None, device: str, as_json: bool) -> None:
    """Parameters (train and deploy form), MACs, stage shapes, oversized kernels and feature_info of MODEL."""
    from unilk.diagnostics.info import format_info, model_info

    report = model_info(model, input_size, device=device)
    if as_json:
        data = asdict(report)
        data["oversized_kernels"] = [dict(asdict(r), extent=r.extent) for r in report.oversized_kernels]
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(format_info(report))


@click.command()
@click.argument("checkpoint")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output file (new).")
@click.option("--model", default=None, help="Architecture (default: inferred from the checkpoint's keys and shapes).")
@click.option(
    "--model-args",
    default=None,
    help="Constructor keywords as JSON for a configuration that is not a registered variant, e.g. '{\"dims\": [...]}'.",
)
@click.option("--deploy", is_flag=True, help="Write the re-parameterized inference form.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["safetensors", "pth"]),
    default=None,
    help="Output format (default: from the --out suffix).",
)
@click.option(
    "--input-size",
    nargs=3,
    type=click.IntRange(min=1),
    default=None,
    help="C H W of the check input (default: model's).",
)
@click.option("--atol", default=1e-4, show_default=True, help="Largest output difference the check accepts.")
@_report_errors
def convert(
    checkpoint: str,
    out: Path,
    model: str | None,
    model_args: str | None,
    deploy: bool,
    fmt: str | None,
    input_size: tuple[int, int, int] | None,
    atol: float,
) -> None:
    """Convert CHECKPOINT (an official .pth, a `unilk train` checkpoint, an export, ...) to a unilk file.

    The output is safetensors or .pth with the config embedded; it is written only if the equivalence check passes.
    """
    from unilk.diagnostics.convert import convert_checkpoint

    try:
        model_kwargs = json.loads(model_args) if model_args else None
    except json.JSONDecodeError as err:
        raise click.BadParameter(f"not valid JSON: {err}", param_hint="--model-args") from err
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise click.BadParameter("expected a JSON object of keywords", param_hint="--model-args")
    report = convert_checkpoint(
        checkpoint, out, model=model, model_kwargs=model_kwargs, deploy=deploy, fmt=fmt, input_size=input_size,
        atol=atol,
    )  # fmt: skip
    cfg = report.config
    what = cfg["model"] if cfg["kind"] == "trunk" else f"{cfg['arch']['modality']} {cfg['arch']['task']} model"
    click.echo(f"wrote {report.out} ({what}, {'deploy' if cfg['deploy'] else 'train'} form, "
               f"{report.num_tensors} tensors)")  # fmt: skip
    click.echo(f"config: {json.dumps(cfg)}")
    click.echo(f"check on a random {'x'.join(map(str, report.input_shape))} input (|output| max "
               f"{report.output_absmax:.4g}):")  # fmt: skip
    if report.max_abs_deploy is not None:
        click.echo(f"  train form vs deploy form: max abs diff {report.max_abs_deploy:.3g}")
    click.echo(f"  converted model vs file read back: max abs diff {report.max_abs_roundtrip:.3g}")
    click.echo(f"equivalence check passed (atol {atol:g})")


#: figure files ``unilk plot --out`` writes (matplotlib picks the format from the suffix)
_FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


@click.command()
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Output PNG (default: curves.png next to the log).",
)
@_report_errors
def plot(run: Path, out: Path | None) -> None:
    """Training curves (loss, metrics, learning rate) of RUN (a run directory or its CSV log) into a PNG."""
    from unilk.diagnostics.plot import find_run_log, plot_training_curves

    if out is not None and out.suffix.lower() not in _FIGURE_SUFFIXES:
        raise click.BadParameter(f"got {str(out)!r}; expected one of {', '.join(_FIGURE_SUFFIXES)}", param_hint="--out")
    log = find_run_log(run)
    path = plot_training_curves(log, out or log.parent / "curves.png")
    click.echo(f"wrote {path}")
