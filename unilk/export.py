"""``unilk export``: a trained model in deploy form, as a folder the Hugging Face hub takes as is, or as ONNX.

The model (anything :func:`unilk.load` reads) is re-parameterized (SLaK's sparse masks were folded in when it was
read) and written as:

* ``folder``: ``config.json`` (architecture and its arguments, adapter config, labels, task, unilk version, source
  recipe and metrics), ``model.safetensors`` (the same config in its metadata) and ``README.md`` (a model card);
* ``safetensors``: ``model.safetensors`` alone (self-describing through its metadata);
* ``onnx``: ``model.onnx`` with a dynamic batch axis, ``config.json`` and ``README.md``.

Every export is checked before it appears: the written weights are read back with ``unilk.load`` (or the graph run
with onnxruntime) and compared with the source model on a seeded input. The output is written in a temporary folder
and renamed only when the check passes, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch
from torch import Tensor

from unilk.cli import CommandError
from unilk.errors import CheckpointError, ConfigError, UnilkError

__all__ = ["EXPORT_FORMATS", "ExportReport", "export_command", "export_model", "model_card"]

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("folder", "safetensors", "onnx")
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class ExportReport:
    """What ``export_model`` wrote and how closely it matches the source model.

    Attributes:
        out: the output folder.
        files: the files written, by name.
        config: the exported config.
        max_rel_diff: max |source output − exported output| / max |source output| on the check input.
        input_shape: shape of the check input (its first tensor).
    """

    out: Path
    files: list[str]
    config: dict[str, Any]
    max_rel_diff: float
    input_shape: tuple[int, ...]


def _rel_diff(reference: Tensor, other: Tensor) -> float:
    return float((reference - other).abs().max() / reference.abs().max().clamp_min(1e-12))


def _export_config(found: Any, inputs: Sequence[Tensor]) -> dict[str, Any]:
    from unilk.hub import file_sha256
    from unilk.loading import FORMAT
    from unilk.version import __version__

    config = {
        **found.config,
        "format": FORMAT,
        "deploy": True,
        "input_size": list(inputs[0].shape[1:]),
        "unilk_version": __version__,
        "source": found.path.name,
        "source_sha256": file_sha256(found.path),
        "architecture": found.architecture,  # timm's config.json field
    }
    if found.kind == "trunk":  # timm can rebuild a trunk export from config.json alone
        config["model_args"] = {**found.config.get("model_kwargs", {}), "deploy": True}
    return config


def model_card(config: dict[str, Any]) -> str:
    """The ``README.md`` of an export: what the model is, how it was trained and how to use it.

    Args:
        config: the exported config.

    Returns:
        Markdown text with the Hugging Face front matter.
    """
    recipe = config.get("recipe") or {}
    name = recipe.get("name") or config["architecture"]
    lines = ["---", "library_name: unilk", "tags:", "- unilk", "- large-kernel-convnet"]
    if config["kind"] == "modal":
        lines.append(f"- {config['arch']['modality']}")
    lines += ["---", "", f"# {name}", ""]
    if config["kind"] == "modal":
        arch = config["arch"]
        article = "An" if arch["modality"][0] in "aeiou" else "A"
        lines.append(
            f"{article} {arch['modality']} {arch['task']} model: a `{arch['trunk']}` trunk with a {arch['task']} "
            f"head, in deploy form (re-parameterized), exported by unilk {config['unilk_version']}."
        )
    else:
        lines.append(f"A `{config['architecture']}` trunk in deploy form, exported by unilk {config['unilk_version']}.")
    lines += ["", "## Use", "", "```python", "import unilk", ""]
    lines += ['model = unilk.load("hf-hub:ORG/NAME")  # or the local folder']
    if config["kind"] == "modal":
        lines += ["print(model.labels)", "```", "", "or from the shell: `unilk predict hf-hub:ORG/NAME FILES...`"]
    else:
        lines += ["```"]
    if config.get("labels"):
        lines += ["", f"## Labels ({len(config['labels'])})", "", ", ".join(f"`{label}`" for label in config["labels"])]
    if recipe:
        source = recipe.get("source")
        lines += ["", "## Training", "", f"Recipe `{recipe.get('name')}`" + (f" ({source})" if source else "") + "."]
    if config.get("metrics"):
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {value:.4g} |" for key, value in config["metrics"].items()]
    lines += ["", f"Source file `{config['source']}` (sha256 `{config['source_sha256']}`).", ""]
    return "\n".join(lines)


def _write_weights(state: dict[str, Tensor], path: Path, config: dict[str, Any]) -> None:
    from unilk.diagnostics.convert import save_checkpoint

    save_checkpoint(state, path, config, "safetensors")


def _write_onnx(
    model: torch.nn.Module, inputs: tuple[Tensor, ...], path: Path, check: tuple[Tensor, ...], reference: Tensor
) -> float:
    """Export ``model`` to ONNX with a dynamic batch axis; run the graph with onnxruntime on ``check`` (another batch
    size than ``inputs``) and return its relative difference from ``reference``."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ConfigError("ONNX export needs onnx and onnxruntime: pip install 'unilk[onnx]'") from err

    names = ["input", "marks"][: len(inputs)]
    torch.onnx.export(
        model,
        inputs,
        str(path),
        input_names=names,
        output_names=["output"],
        dynamic_axes={**{name: {0: "batch"} for name in names}, "output": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {name: x.numpy() for name, x in zip(names, check)})
    return _rel_diff(reference, torch.from_numpy(outputs[0]))


@torch.no_grad()
def export_model(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    fmt: str = "folder",
    input_size: Sequence[int] | None = None,
    rtol: float = 1e-5,
    onnx_rtol: float = 1e-4,
    seed: int = 0,
) -> ExportReport:
    """Export a model in deploy form (see the module docstring for what each format writes).

    Args:
        source: a training run folder, a checkpoint, or any file ``unilk.load`` reads.
        out: the output folder; it must not exist or be empty.
        fmt: ``"folder"``, ``"safetensors"`` or ``"onnx"``.
        input_size: ``(C, H, W)`` of the check input (default: the adapter's map shape, or the trunk cfg's).
        rtol: largest accepted max |difference| / max |output| between the source and the exported weights.
        onnx_rtol: the same for the ONNX graph run by onnxruntime.
        seed: seed of the check input.

    Returns:
        The report.

    Raises:
        ConfigError: an unknown format, or ``out`` exists.
        CheckpointError: the source cannot be read, or the check fails (nothing is written).
    """
    from unilk.atomic import atomic_dir, refuse_existing
    from unilk.loading import CONFIG_FILE, WEIGHTS_FILE, build, example_inputs, read_model_file
    from unilk.reparam import reparameterize

    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format {fmt!r} is not supported; expected one of {list(EXPORT_FORMATS)}")
    out = Path(out)
    refuse_existing(out, "output folder")
    found = read_model_file(source)
    model = build(found)
    inputs = example_inputs(found, batch=2, input_size=tuple(input_size) if input_size else None, seed=seed)
    reference = model(*inputs)
    deployed = reparameterize(model, inplace=False).eval()
    config = _export_config(found, inputs)
    with atomic_dir(out) as tmp:
        if fmt == "onnx":
            check = example_inputs(found, batch=3, input_size=tuple(input_size) if input_size else None, seed=seed + 1)
            difference = _write_onnx(deployed, inputs, tmp / ONNX_FILE, check, model(*check))
            limit = onnx_rtol
        elif fmt in ("folder", "safetensors"):
            _write_weights(deployed.state_dict(), tmp / WEIGHTS_FILE, config)
            difference = _rel_diff(reference, build(read_model_file(tmp / WEIGHTS_FILE))(*inputs))
            limit = rtol
        else:
            raise ConfigError(f"export format {fmt!r} is not supported; expected one of {list(EXPORT_FORMATS)}")
        if not difference <= limit:  # also catches NaN
            raise CheckpointError(
                f"exporting {found.describe()}: the {fmt} export differs from the source by {difference:.3g} "
                f"(relative), more than {limit:g}; nothing was written"
            )
        if fmt in ("folder", "onnx"):
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
            (tmp / "README.md").write_text(model_card(config))
        files = sorted(p.name for p in tmp.iterdir())
    logger.info("exported %s to %s (%s, relative difference %.3g)", found.source, out, fmt, difference)
    return ExportReport(out, files, config, difference, tuple(inputs[0].shape))


@click.command("export")
@click.argument("source")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder (new or empty).")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="folder", show_default=True)
@click.option(
    "--input-size",
    nargs=3,
    type=click.IntRange(min=1),
    default=None,
    help="C H W of the check input (default: adapter's).",
)
@click.option("--rtol", default=1e-5, show_default=True, help="Largest relative difference the weights check accepts.")
def export_command(source: str, out: Path, fmt: str, input_size: tuple[int, int, int] | None, rtol: float) -> None:
    """Export SOURCE (a training run folder or any model file) in deploy form to the folder --out.

    The folder (config.json, model.safetensors, README.md) uploads to the Hugging Face hub as is and loads with
    unilk.load("hf-hub:org/name"); --format onnx writes model.onnx with a dynamic batch axis instead.
    """
    try:
        report = export_model(source, out, fmt=fmt, input_size=input_size, rtol=rtol)
    except UnilkError as err:
        raise CommandError(str(err), err) from err
    click.echo(f"wrote {report.out}: {', '.join(report.files)}")
    click.echo(
        f"check on a random {'x'.join(map(str, report.input_shape))} input: max relative difference "
        f"{report.max_rel_diff:.3g}"
    )
