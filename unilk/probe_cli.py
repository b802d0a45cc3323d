"""``unilk probe``: k-NN and linear-probe scores of a frozen trunk on a dataset's train and eval splits.

The data is any dataset the loaders read with train/eval splits: class folders (``root/train/<class>/...`` and
``root/val`` or ``root/test``, the default), or a registered loader by name (``--dataset esc50``, ``speech_commands``,
``modelnet40``, ``kinetics``, ...; ``--dataset-arg test_fold=2``). Embeddings are made by :class:`unilk.Encoder` (the
model's own adapter config when it has one) and cached, keyed by the model file's sha256, the data's fingerprint
(ids, sizes and modification times) and the settings, so a second probe of the same pair only fits the probes.
The math lives in :mod:`unilk.probe`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from torch import Tensor

from unilk.cli import CommandError
from unilk.devices import DEVICE
from unilk.errors import ConfigError, InputError, UnilkError, did_you_mean

__all__ = ["SplitEmbeddings", "embed_split", "probe_command", "run_probe"]

logger = logging.getLogger(__name__)

METHODS = ("knn", "linear", "both")
CACHE_ENV = "UNILK_CACHE_DIR"
_EVAL_SPLITS = ("val", "test")
#: the modality of each registered loader's samples
_DATASET_MODALITY = {
    "speech_commands": "audio", "esc50": "audio", "audioset": "audio", "audioset_json": "audio",
    "kinetics": "video", "video_list": "video", "modelnet40": "points", "modelnet40_h5": "points",
    "modelnet40_resampled": "points", "scanobjectnn": "points", "image_folder": "image", "series_folder": "series",
}  # fmt: skip


@dataclass(frozen=True)
class SplitEmbeddings:
    """The embeddings of one split.

    Attributes:
        ids: sample ids, in dataset order (failed samples left out).
        embeddings: Tensor[N, D].
        targets: Tensor[N] class indices or Tensor[N, K] multi-hot.
        errors: ``{"id", "type", "error"}`` of the samples that could not be embedded.
    """

    ids: list[str]
    embeddings: Tensor
    targets: Tensor
    errors: list[dict[str, str]]


def default_cache_dir() -> Path:
    """``$UNILK_CACHE_DIR/probe``, else ``~/.cache/unilk/probe``."""
    base = os.environ.get(CACHE_ENV)
    return Path(base) / "probe" if base else Path.home() / ".cache" / "unilk" / "probe"


def _class_folders(root: Path, split: str, modality: str) -> Any:
    from unilk.datasets import ClassFolder
    from unilk.extract import modality_extensions

    return ClassFolder(root, split, extensions=modality_extensions(modality))


def check_dataset_name(dataset: str | None) -> None:
    """Refuse a ``--dataset`` that names no registered loader, with the closest names.

    Raises:
        ConfigError: an unknown name.
    """
    from unilk.datasets import DATASETS

    if dataset is not None and dataset not in DATASETS:
        raise ConfigError(
            f"--dataset: got {dataset!r}; {did_you_mean(dataset, DATASETS)}expected one of {sorted(DATASETS)}"
        )


def open_split(data: str, dataset: str | None, split: str | None, modality: str, kwargs: dict[str, Any]) -> Any:
    """The loader of one split (``split=None``: the eval split, ``val`` if the data has one, else ``test``)."""
    from unilk.datasets import build_dataset

    check_dataset_name(dataset)  # a misspelt name, not a missing split: say so first
    candidates = (split,) if split is not None else _EVAL_SPLITS
    last: Exception | None = None
    for name in candidates:
        try:
            if dataset is None:
                return _class_folders(Path(data), name, modality)
            return build_dataset(dataset, root=data, split=name, **kwargs)
        except (ConfigError, InputError) as err:
            last = err
    assert last is not None
    raise InputError(f"probe data {data!r}: no eval split among {list(candidates)} ({last})") from last


def _fingerprint(samples: list[Any]) -> str:
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(sample.id.encode())
        source = sample.source
        if isinstance(source, (str, Path)):
            stat = Path(source).stat()
            digest.update(f"{source}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        else:
            digest.update(np.ascontiguousarray(np.asarray(source)).tobytes())
        target = sample.target
        digest.update(repr(target.tolist() if isinstance(target, Tensor) else target).encode())
    return digest.hexdigest()


def _targets(values: list[Any]) -> Tensor:
    if values and isinstance(values[0], Tensor):
        return torch.stack(values).float()
    return torch.tensor(values, dtype=torch.long)


def embed_split(encoder: Any, modality: str, loader: Any, cache: Path | None, key: dict[str, Any]) -> SplitEmbeddings:
    """Embed one split with ``encoder`` (or read it from ``cache``); failed samples are recorded, not dropped."""
    from unilk.atomic import atomic_file

    samples = list(loader.samples)
    if not samples:
        raise InputError(f"probe: the {key['split']} split is empty")
    digest = hashlib.sha256(json.dumps({**key, "data": _fingerprint(samples)}, sort_keys=True).encode()).hexdigest()
    path = None if cache is None else cache / f"{digest[:32]}.pt"
    if path is not None and path.is_file():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        logger.info("probe: %s embeddings from the cache %s", key["split"], path)
        return SplitEmbeddings(stored["ids"], stored["embeddings"], stored["targets"], stored["errors"])
    sources = {s.id: str(s.source) if isinstance(s.source, Path) else s.source for s in samples}
    encoding = encoder.encode_modality(modality, sources, on_error="record")
    by_id = {s.id: s.target for s in samples}
    result = SplitEmbeddings(
        encoding.ids, encoding.embeddings, _targets([by_id[i] for i in encoding.ids]), encoding.errors
    )
    if not result.ids:
        raise InputError(f"probe: no sample of the {key['split']} split could be embedded, e.g. {result.errors[:1]}")
    if path is not None:
        with atomic_file(path) as tmp:
            torch.save({"ids": result.ids, "embeddings": result.embeddings, "targets": result.targets,
                        "errors": result.errors}, tmp)  # fmt: skip
    return result


def run_probe(
    source: str,
    data: str,
    *,
    modality: str | None = None,
    method: str = "both",
    dataset: str | None = None,
    dataset_kwargs: dict[str, Any] | None = None,
    train_split: str = "train",
    eval_split: str | None = None,
    k: int = 20,
    temperature: float = 0.07,
    seed: int = 0,
    calibrate: bool = False,
    calibrate_batches: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    device: str = "cpu",
) -> dict[str, Any]:
    """Embed the train and eval splits of ``data`` with the frozen model ``source`` and score the probes.

    Args:
        source: anything :func:`unilk.load` reads.
        data: the dataset root.
        modality: the data's modality (default: the model's own, else the dataset's).
        method: ``"knn"``, ``"linear"`` or ``"both"``.
        dataset: a registered loader name (:data:`unilk.datasets.DATASETS`); None reads class folders.
        dataset_kwargs: more loader arguments.
        train_split: the split the probes are fitted on.
        eval_split: the split they are scored on (default ``val`` if present, else ``test``).
        k: k-NN neighbours.
        temperature: k-NN vote temperature.
        seed: seed of the linear probe's held-out split.
        calibrate: first re-estimate the BatchNorm statistics on the train split's inputs (labels unused).
        calibrate_batches: at most this many batches for that (None: the whole train split).
        cache_dir: where embeddings (and calibrated models) are cached; None disables the cache.
        batch_size: maps per forward pass.
        device: where to run the model.

    Returns:
        A JSON-ready dict: ``metric`` (``top1`` or ``mAP``), per method its score (``knn``, ``linear``), the chosen
        ``l2`` and held-out scores, sample counts, embedding errors and (with ``calibrate``) the calibration summary.
    """
    import tempfile

    from unilk.encoding import Encoder
    from unilk.hub import file_sha256
    from unilk.loading import read_model_file
    from unilk.probe import is_multilabel, knn_scores, linear_probe, score
    from unilk.version import __version__

    if method not in METHODS:
        raise ConfigError(f"probe method {method!r}; expected one of {list(METHODS)}")
    found = read_model_file(source)
    modality = modality or found.modality or _DATASET_MODALITY.get(dataset or "")
    if modality is None:
        raise ConfigError(f"probe: {found.describe()} names no modality; pass --modality")
    kwargs = dict(dataset_kwargs or {})
    train_set = open_split(data, dataset, train_split, modality, kwargs)
    eval_set = open_split(data, dataset, eval_split, modality, kwargs)
    result: dict[str, Any] = {"model": str(source), "data": str(data), "modality": modality}
    model_file: Any = found
    model_sha = file_sha256(found.path)
    with tempfile.TemporaryDirectory(prefix="unilk-probe-") as scratch:  # the calibrated model without a cache
        if calibrate:
            folder = Path(cache_dir) if cache_dir is not None else Path(scratch)
            model_file, result["calibration"] = _calibrated(found, train_set, modality, calibrate_batches, folder,
                                                            model_sha, device)  # fmt: skip
            model_sha = result["calibration"]["sha256"]
        encoder = Encoder(checkpoint=model_file, batch_size=batch_size, device=device)  # reads the file into memory
    key = {"model": model_sha, "modality": modality, "dataset": dataset, "kwargs": kwargs, "adapter": found.adapter,
           "unilk": __version__}  # fmt: skip
    cache = None if cache_dir is None else Path(cache_dir)
    train = embed_split(encoder, modality, train_set, cache, {**key, "split": train_split})
    test = embed_split(encoder, modality, eval_set, cache, {**key, "split": eval_split or "eval"})
    classes = getattr(train_set, "classes", None)
    num_classes = len(classes) if classes else int(max(train.targets.max(), test.targets.max())) + 1
    multilabel = is_multilabel(train.targets)
    result.update(metric="mAP" if multilabel else "top1", train=len(train.ids), eval=len(test.ids),
                  dim=int(train.embeddings.shape[1]), errors=train.errors + test.errors)  # fmt: skip
    if method in ("knn", "both"):
        votes = knn_scores(train.embeddings, train.targets, test.embeddings, num_classes, k=k, temperature=temperature)
        result["knn"] = score(votes, test.targets)
        result["knn_settings"] = {"k": k, "temperature": temperature}
    if method in ("linear", "both"):
        logits, probe, held_out = linear_probe(train.embeddings, train.targets, test.embeddings, num_classes, seed=seed)
        result["linear"] = score(logits, test.targets)
        result["linear_settings"] = {"l2": probe.l2, "held_out": {f"{k:g}": v for k, v in held_out.items()}}
    return result


def _calibrated(
    found: Any, train_set: Any, modality: str, batches: int | None, folder: Path, model_sha: str, device: str
) -> tuple[str, dict[str, Any]]:
    """A calibrated copy of the model (BatchNorm statistics of the train split's inputs), written to ``folder``."""
    from unilk.calibrate import calibrate_file
    from unilk.hub import file_sha256

    samples = [str(s.source) if isinstance(s.source, Path) else s.source for s in train_set.samples]
    tag = hashlib.sha256(f"{model_sha}|{_fingerprint(list(train_set.samples))}|{batches}".encode()).hexdigest()[:32]
    path = folder / f"calibrated-{tag}.safetensors"
    summary: dict[str, Any] = {}
    if not path.is_file():
        report = calibrate_file(found, samples, path, modality=modality, batches=batches, device=device)
        summary = report.summary
    else:
        from unilk.loading import read_model_file

        summary = dict(read_model_file(path).config.get("calibration") or {})
    return str(path), {**summary, "file": str(path), "sha256": file_sha256(path)}


def _parse_kwargs(pairs: tuple[str, ...]) -> dict[str, Any]:
    import yaml

    kwargs = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--dataset-arg")
        kwargs[name] = yaml.safe_load(value)
    return kwargs


@click.command("probe")
@click.argument("source")
@click.argument("data")
@click.option("--modality", default=None, help="Modality of DATA (default: the model's own, else the dataset's).")
@click.option("--method", type=click.Choice(METHODS), default="both", show_default=True)
@click.option(
    "--dataset", default=None, help="A registered loader (esc50, speech_commands, ...); default: class folders."
)
@click.option("--dataset-arg", "dataset_args", multiple=True, help="KEY=VALUE argument of the loader (repeatable).")
@click.option("--train-split", default="train", show_default=True)
@click.option("--eval-split", default=None, help="Default: val if the data has one, else test.")
@click.option("--k", "k", type=click.IntRange(min=1), default=20, show_default=True, help="k-NN neighbours.")
@click.option("--temperature", type=float, default=0.07, show_default=True, help="k-NN vote temperature.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the linear probe's held-out split.")
@click.option("--calibrate", is_flag=True, help="Re-estimate BatchNorm statistics on the train inputs first.")
@click.option(
    "--calibrate-batches", type=click.IntRange(min=1), default=None, help="Batches for --calibrate (default: all)."
)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help=f"Default: ${CACHE_ENV}/probe.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write cached embeddings.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--device", default="cpu", show_default=True, type=DEVICE, help="cpu, cuda, cuda:1, ...")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the result as JSON.")
def probe_command(
    source: str,
    data: str,
    modality: str | None,
    method: str,
    dataset: str | None,
    dataset_args: tuple[str, ...],
    train_split: str,
    eval_split: str | None,
    k: int,
    temperature: float,
    seed: int,
    calibrate: bool,
    calibrate_batches: int | None,
    cache_dir: Path | None,
    no_cache: bool,
    batch_size: int,
    device: str,
    json_path: Path | None,
) -> None:
    """Score the frozen model SOURCE on DATA with DINO's weighted k-NN and a linear probe (top-1, or mAP).

    Embeddings of the train and eval splits are cached; the probes are fitted on train and scored on eval.
    """
    from unilk.atomic import atomic_file, refuse_existing

    try:
        check_dataset_name(dataset)  # before the model is read and anything embedded
        if json_path is not None:
            refuse_existing(json_path, "--json file")
        result = run_probe(
            source, data, modality=modality, method=method, dataset=dataset, dataset_kwargs=_parse_kwargs(dataset_args),
            train_split=train_split, eval_split=eval_split, k=k, temperature=temperature, seed=seed,
            calibrate=calibrate, calibrate_batches=calibrate_batches,
            cache_dir=None if no_cache else (cache_dir or default_cache_dir()), batch_size=batch_size, device=device,
        )  # fmt: skip
    except UnilkError as err:
        raise CommandError(str(err), err) from err
    click.echo(f"{result['train']} train and {result['eval']} eval samples, {result['dim']}-d embeddings")
    if "calibration" in result:
        cal = result["calibration"]
        click.echo(f"calibrated {cal.get('layers')} BatchNorm layers (mean shift {cal.get('mean_shift_mean', 0):.3f})")
    if "knn" in result:
        click.echo(f"k-NN (k={k}, T={temperature:g}) {result['metric']}: {100 * result['knn']:.2f}")
    if "linear" in result:
        l2 = result["linear_settings"]["l2"]
        click.echo(f"linear probe (l2={l2:g}) {result['metric']}: {100 * result['linear']:.2f}")
    for record in result["errors"]:
        click.echo(f"failed: {record['id']}: {record['error']}", err=True)
    if json_path is not None:
        with atomic_file(json_path) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    if result["errors"]:
        raise SystemExit(1)
