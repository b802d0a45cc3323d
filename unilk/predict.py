"""``unilk predict``: class names and scores (or forecasts) of a trained model for new files.

The model is anything :func:`unilk.load` reads that carries its adapter config (a ``unilk train`` run or checkpoint,
or its conversion or export): inputs are made exactly as in training. Inputs are files, folders (the modality's file
types, recursively) and glob patterns; they run in batches, and an input that cannot be read or decoded is reported
with its reason while the others go on.

Scores are softmax probabilities (classification) or per-label sigmoid probabilities (multi-label). An audio clip the
adapter cuts into several maps (its ``chunk`` policy) gets the head applied to the mean of its map embeddings, as
:class:`unilk.Encoder` averages them. Forecasts are in the scaled units the model was trained in.
"""

from __future__ import annotations

import json
import logging
import os
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import torch
from torch import Tensor

from unilk.cli import CommandError
from unilk.devices import DEVICE, resolve_device
from unilk.errors import CheckpointError, InputError, UnilkError
from unilk.once import SMALL_MAP_WARNING, expected

__all__ = ["Prediction", "predict", "predict_command"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one input, or why there is none.

    Attributes:
        id: the input's path.
        labels: the top-k label names, best first (classification and multi-label).
        scores: their probabilities.
        forecast: the forecast Tensor[H, D] as nested lists (forecasting).
        error: why the input could not be predicted (then the other fields are empty).
    """

    id: str
    labels: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    forecast: list[list[float]] | None = None
    error: str | None = None


def _expand(inputs: Sequence[str], modality: str) -> Iterator[tuple[str, str | None, str | None]]:
    """``(input id, path, None)`` for every file the inputs name; ``(input, None, reason)`` for one that names none."""
    from unilk.extract import list_inputs, modality_extensions

    for text in inputs:
        if Path(text).is_file():
            yield text, text, None
            continue
        try:
            items = list_inputs(text, extensions=modality_extensions(modality))
        except InputError as err:
            yield text, None, str(err)
            continue
        for item in items:
            yield item.path, item.path, None


def _scores(task: str, logits: Tensor) -> Tensor:
    if task == "classification":
        return logits.softmax(-1)
    elif task == "multilabel":
        return logits.sigmoid()
    else:
        raise CheckpointError(f"no scores for task {task!r}")


class _Runner:
    """Runs prepared inputs through a modal model in batches."""

    def __init__(self, model: Any, task: str, labels: list[str], top_k: int, device: torch.device) -> None:
        self.model, self.task, self.device = model, task, device
        self.labels = labels
        self.top_k = top_k

    @torch.inference_mode()
    def __call__(self, ids: list[str], prepared: list[Any]) -> list[Prediction]:
        model = self.model
        if prepared[0].policy == "window":  # series: the model's stem embeds the windows
            x = torch.stack([p.data for p in prepared]).to(self.device)
            marks = None if prepared[0].marks is None else torch.stack([p.marks for p in prepared]).to(self.device)
            outputs = model(x, marks).float().cpu()
        else:
            counts = [p.data.shape[0] for p in prepared]
            feats = model.forward_features(torch.cat([p.data for p in prepared]).to(self.device)).float().cpu()
            pooled = torch.stack([chunk.mean(0) for chunk in feats.split(counts)])  # one embedding per input
            outputs = model.head(pooled.to(self.device)).float().cpu()
        if self.task == "forecast":
            return [Prediction(i, forecast=out.tolist()) for i, out in zip(ids, outputs)]
        scores = _scores(self.task, outputs)
        k = min(self.top_k, scores.shape[1])
        top = scores.topk(k, dim=1)
        return [
            Prediction(i, labels=[self._name(j) for j in idx.tolist()], scores=[round(v, 6) for v in val.tolist()])
            for i, val, idx in zip(ids, top.values, top.indices)
        ]

    def _name(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else str(index)


def predict(
    source: str | os.PathLike[str],
    inputs: Sequence[str],
    *,
    top_k: int = 5,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> list[Prediction]:
    """Predict every input with a trained model.

    Args:
        source: a training run folder, a checkpoint, an export folder, ... (anything ``unilk.load`` reads that holds
            a modal model).
        inputs: files, folders and glob patterns.
        top_k: labels per input (classification and multi-label).
        batch_size: inputs per forward pass.
        device: torch device.

    Returns:
        One :class:`Prediction` per input file, in input order; failed inputs carry ``error``.

    Raises:
        CheckpointError: the source holds no modal model (a bare trunk has no adapter config or labels).
        InputError: ``top_k`` or ``batch_size`` below 1, or no inputs.
    """
    from unilk.adapters import build_adapter
    from unilk.encoding import SamplePreparer
    from unilk.loading import build, read_model_file
    from unilk.reparam import reparameterize

    if top_k < 1 or batch_size < 1:
        raise InputError(f"predict: top_k={top_k}, batch_size={batch_size}; both must be at least 1")
    if not inputs:
        raise InputError("predict: no inputs given; pass files, folders or glob patterns")
    found = read_model_file(source)
    if found.kind != "modal":
        raise CheckpointError(
            f"{found.describe()}: predict needs a trained model with its adapter config and labels (a `unilk train` "
            "run or checkpoint, or its export); embed with `unilk encode` instead"
        )
    device = resolve_device(device)
    model = reparameterize(build(found)).eval().to(device)
    modality = found.modality
    adapter = build_adapter(modality, {k: v for k, v in found.adapter.items() if k != "modality"})
    prepare = SamplePreparer(modality, adapter)
    runner = _Runner(model, found.config["arch"]["task"], found.labels, top_k, device)

    results: dict[int, Prediction] = {}
    batch_ids: list[tuple[int, str]] = []
    batch: list[Any] = []
    listed = list(_expand(inputs, modality))

    def flush() -> None:
        with expected(SMALL_MAP_WARNING):  # the trained model on its own adapter's maps: nothing to act on
            predictions = runner([i for _, i in batch_ids], batch)
        for (slot, _), prediction in zip(batch_ids, predictions):
            results[slot] = prediction
        batch_ids.clear()
        batch.clear()

    for slot, (input_id, path, reason) in enumerate(listed):
        if path is None:
            results[slot] = Prediction(input_id, error=reason)
            continue
        try:
            prepared = prepare(path)
        except Exception as err:  # decoders raise many types; each bad input is reported, the others go on
            results[slot] = Prediction(input_id, error=f"{type(err).__name__}: {err}")
            continue
        batch_ids.append((slot, input_id))
        batch.append(prepared)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return [results[slot] for slot in range(len(listed))]


def _one_line(text: str) -> str:
    """``text`` for one tab-separated line: control characters (a newline or tab in a file name) written as escapes
    (``\\n``, ``\\t``), so every input stays on its own line; ``--jsonl`` keeps the exact ids."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cc" else c for c in text)


@click.command("predict")
@click.argument("source")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--top-k", default=5, type=click.IntRange(min=1), show_default=True, help="Labels per input.")
@click.option(
    "--jsonl", "jsonl", type=click.Path(dir_okay=False, path_type=Path), help="Also write one JSON line per input."
)
@click.option(
    "--batch-size", default=32, type=click.IntRange(min=1), show_default=True, help="Inputs per forward pass."
)
@click.option("--device", default="cpu", show_default=True, type=DEVICE, help="cpu, cuda, cuda:1, ...")
def predict_command(
    source: str, inputs: tuple[str, ...], top_k: int, jsonl: Path | None, batch_size: int, device: str
) -> None:
    """Class names and scores (or forecasts) of SOURCE (a run folder or model file) for INPUTS (files, folders, globs).

    Inputs that cannot be read are reported one by one; the exit status is 1 when any failed.
    """
    from unilk.atomic import atomic_file

    if jsonl is not None and jsonl.exists():
        raise click.BadParameter(f"{str(jsonl)!r} already exists; remove it or pick another file", param_hint="--jsonl")
    try:
        results = predict(source, inputs, top_k=top_k, batch_size=batch_size, device=device)
    except UnilkError as err:
        raise CommandError(str(err), err) from err
    for result in results:
        name = _one_line(result.id)
        if result.error is not None:
            click.echo(f"{name}\terror: {_one_line(result.error)}")
        elif result.forecast is not None:
            click.echo(f"{name}\tforecast {len(result.forecast)}x{len(result.forecast[0])}")
        else:
            click.echo(f"{name}\t" + "  ".join(f"{n} {s:.4f}" for n, s in zip(result.labels, result.scores)))
    if jsonl is not None:
        with atomic_file(jsonl) as tmp:
            tmp.write_text("".join(json.dumps(asdict(r)) + "\n" for r in results))
        click.echo(f"wrote {jsonl}")
    failed = sum(r.error is not None for r in results)
    if failed:
        click.echo(f"{failed} of {len(results)} input(s) failed", err=True)
        raise SystemExit(1)
