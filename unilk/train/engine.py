"""The training engine: one loop for every modality and task.

The engine trains any ``nn.Module`` on map-style datasets whose items are dicts ``{"id", "input", "target"}``. It owns
the optimizer (timm factory, layer-wise decay), the per-update schedule, EMA, autocast (bf16 on CPU and GPU),
gradient clipping and accumulation, mixup/cutmix, label smoothing, seeding, step/time limits, DDP, SLaK dynamic
sparsity (a recipe's ``sparsity:`` section), checkpoints with exact resume, and logs (tqdm, ``log.csv``, TensorBoard,
``metrics.json``, and ``density.json`` for sparse runs).

Exact resume: checkpoints are written at update boundaries with the model, optimizer, EMA, scaler, every rank's RNG
states and the sampler position (epoch, batch). Data order is a pure function of (seed, epoch), the DataLoader draws
its worker seeds from a per-epoch generator, and the learning rate is a pure function of the step, so a resumed run
repeats the uninterrupted one (bitwise on CPU with ``train.deterministic`` and ``data.num_workers=0``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from unilk.errors import CheckpointError, ConfigError, InputError
from unilk.loader_workers import WorkerWatch
from unilk.once import log_once
from unilk.train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from unilk.train.config import Recipe
from unilk.train.distributed import (
    DistInfo,
    GlobalBatchSampler,
    all_gather_objects,
    eval_shard,
    init_distributed,
    maybe_sync_batchnorm,
)
from unilk.train.metrics import MetricAccumulator, compute_metrics, metric_names, reduce_views
from unilk.train.optim import LRSchedule, build_optimizer, effective_lr
from unilk.train.sparse import DynamicSparsity, masked_ema_update, nonzero_param_count

__all__ = ["RUN_FILES", "TrainParts", "Trainer", "check_output_dir", "seed_everything", "write_text_atomic"]

logger = logging.getLogger(__name__)
#: off a terminal, seconds between two progress lines (as unilk.progress): the first and last logged steps always
_PROGRESS_EVERY_S = 30.0


@dataclass
class TrainParts:
    """What the engine trains: built by :func:`unilk.train.build.build_parts`, or by hand in tests.

    Attributes:
        model: maps a collated input batch to outputs (logits Tensor[N, K] or forecasts Tensor[N, H, C]).
        train_set: items ``{"id", "input", "target"}``.
        eval_set: same, or None (no evaluation).
        collate_inputs: stacks a list of ``item["input"]`` into a batch (an adapter's ``collate``; default stack).
        extra_inputs: further item keys, stacked and passed to the model after the input (series: ``input_mark``).
        arch: how to rebuild ``model`` (stored in checkpoints as ``arch``); plain values only.
        adapter: adapter config dict (stored as ``adapter``).
        labels: label names (stored as ``labels``).
    """

    model: nn.Module
    train_set: Dataset
    eval_set: Dataset | None = None
    collate_inputs: Callable[[list[Any]], Tensor] = torch.stack
    extra_inputs: tuple[str, ...] = ()
    arch: dict[str, Any] = field(default_factory=dict)
    adapter: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)


#: the files and folders a training run writes into its output_dir.
RUN_FILES = ("last.pt", "best.pt", "log.csv", "metrics.json", "density.json", "data_errors.jsonl", "tb")


def check_output_dir(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an ``output_dir`` whose files a new run would overwrite.

    Raises:
        ConfigError: ``out_dir`` is a file, or holds files of an earlier run (:data:`RUN_FILES`) and neither
            ``resume`` nor ``overwrite`` is set.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output_dir: {str(out_dir)!r} is a file; expected a directory (new or of this run)")
    if resume or overwrite:
        return
    found = [name for name in RUN_FILES if (out_dir / name).exists()]
    if found:
        raise ConfigError(
            f"output_dir {str(out_dir)!r} already holds {found} of an earlier run; resume it (--resume), replace it "
            "(--overwrite) or pick another output_dir (output_dir=...)"
        )


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` under a temporary name and rename it into place (a reader never sees a partial file)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` also force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


class _Indexed(Dataset):
    """Yields ``(index, item)`` so evaluation can de-duplicate by dataset index.

    A sample that raises while it is read or adapted becomes ``(index, {"error": "Type: message"})``: it is left out
    of its batch and recorded (``data_errors.jsonl``), and the run goes on.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, dict[str, Any]]:
        try:
            return index, self.dataset[index]
        except Exception as err:  # one bad sample must not end a run; it is recorded instead
            return index, {"error": f"{type(err).__name__}: {' '.join(str(err).split())}"}


class _Batch(NamedTuple):
    """A collated batch: dataset indices Tensor[B], model inputs, targets, and the samples that failed to load."""

    indices: Tensor
    inputs: list[Tensor]
    targets: Tensor
    failed: list[tuple[int, str]]


def _merge_present(parts: list[tuple[Tensor, Any, Any]], num_samples: int) -> tuple[Tensor, Tensor]:
    """:meth:`MetricAccumulator.merge` over the samples that loaded; parts whose outputs are None only mark indices
    as covered (samples left out because they failed)."""
    covered = torch.cat([p[0] for p in parts]).sort().values
    if not torch.equal(covered, torch.arange(num_samples)):
        raise RuntimeError(f"evaluation covered {covered.numel()} samples of {num_samples}")
    present = [p for p in parts if p[1] is not None]
    if not present:
        raise InputError(f"evaluation: none of the {num_samples} samples could be read; check the dataset files")
    indices = torch.cat([p[0] for p in present])
    order = indices.argsort()
    return torch.cat([p[1] for p in present])[order], torch.cat([p[2] for p in present])[order]


@contextmanager
def _local_batch_statistics(model: nn.Module) -> Iterator[None]:
    """SyncBatchNorm layers normalise with their running statistics meanwhile: a rank with no batch cannot join their
    collectives (plain BatchNorm is per-process already and is left alone)."""
    synced = [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm) and m.training]
    if synced:
        message = "a rank had no sample to train on: SyncBatchNorm uses its running statistics for that batch"
        log_once(logger, "sync_bn without a batch", message)
    for module in synced:
        module.eval()
    try:
        yield
    finally:
        for module in synced:
            module.train()


def _describe_sample(dataset: Dataset, split: str, index: int) -> str:
    """``train sample 5 ('/data/a.wav')``: the file when the dataset lists its samples' sources (SampleDataset)."""
    samples = getattr(dataset, "samples", None)
    source = getattr(samples[index], "source", None) if isinstance(samples, list) and index < len(samples) else None
    where = f" ({os.fspath(source)!r})" if isinstance(source, (str, os.PathLike)) else ""
    return f"{split} sample {index}{where}"


def _stack_targets(targets: list[Any]) -> Tensor:
    """Class ids -> Tensor[N] long; tensors (multi-hot, forecasts) -> stacked."""
    if isinstance(targets[0], Tensor):
        return torch.stack(targets)
    return torch.as_tensor(targets)


def _fit_batch_to_train_set(recipe: Recipe, num_train: int) -> Recipe:
    """The recipe with ``data.batch_size`` lowered to the training set when the set is smaller than one update
    (``batch_size × grad_accum_steps``), so a small dataset trains instead of failing; a warning says so."""
    accum = recipe.train.grad_accum_steps
    if num_train >= recipe.data.batch_size * accum or num_train < accum:
        return recipe
    batch = num_train // accum
    logger.warning(
        "data.batch_size %d × train.grad_accum_steps %d exceeds the %d training samples; training with batch_size %d",
        recipe.data.batch_size,
        accum,
        num_train,
        batch,
    )
    return replace(recipe, data=replace(recipe.data, batch_size=batch))


class Trainer:
    """Trains ``parts`` following ``recipe``; one instance per run (per process under torchrun).

    Args:
        recipe: the validated recipe.
        parts: model and datasets (see :class:`TrainParts`).
        info: process placement; by default joins torchrun's process group if there is one.

    Example::

        trainer = Trainer(recipe, build_parts(recipe))
        summary = trainer.fit(resume=False)
        summary["metrics"]["acc"]
    """

    def __init__(self, recipe: Recipe, parts: TrainParts, info: DistInfo | None = None) -> None:
        self.recipe = recipe = _fit_batch_to_train_set(recipe, len(parts.train_set))  # type: ignore[arg-type]
        self.parts = parts
        self.info = info or init_distributed(recipe.train.device)
        self.out_dir = Path(recipe.output_dir)
        self.names = metric_names(recipe.task, len(parts.labels) or None)
        tcfg = recipe.train
        global_batch = recipe.data.batch_size * tcfg.grad_accum_steps
        self.micro_per_epoch = len(parts.train_set) // recipe.data.batch_size  # type: ignore[arg-type]
        self.steps_per_epoch = self.micro_per_epoch // tcfg.grad_accum_steps
        planned = tcfg.epochs * self.steps_per_epoch
        self.total_steps = min(planned, tcfg.max_steps) if tcfg.max_steps is not None else planned
        self.base_lr = effective_lr(recipe.optim, global_batch)
        self.failed_samples: dict[tuple[str, int], str] = {}  # (split, dataset index) -> error, left out of batches

    # ----------------------------------------------------------------------------------------------- setup
    def _setup(self, resume: bool = False) -> None:
        recipe, info = self.recipe, self.info
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"data.batch_size × train.grad_accum_steps = {recipe.data.batch_size * recipe.train.grad_accum_steps} "
                f"exceeds the {len(self.parts.train_set)} training samples; lower one of them"  # type: ignore[arg-type]
            )
        seed_everything(recipe.train.seed + info.rank, recipe.train.deterministic)
        if recipe.train.threads:
            torch.set_num_threads(recipe.train.threads)
        model = self.parts.model.to(info.device)
        model = maybe_sync_batchnorm(model, recipe.model.sync_bn, info)
        self.model = model
        self.optimizer = build_optimizer(model, recipe.optim, self.base_lr)
        self.schedule = LRSchedule(self.optimizer, recipe.sched, self.base_lr, self.total_steps, self.steps_per_epoch)
        self.ddp: nn.Module = model
        if info.enabled:
            device_ids = [info.device.index] if info.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        self.sparsity: DynamicSparsity | None = None
        if recipe.sparsity is not None:
            # Masks live on the unwrapped model (DDP shares its parameters); drawn after DDP has broadcast rank 0's
            # weights and before the EMA copies the model, so the EMA starts sparse. On resume they come from the
            # checkpoint instead.
            self.sparsity = DynamicSparsity(model, recipe.sparsity, self.total_steps)
            if not resume:
                self._init_masks()
        self.ema = None
        if recipe.train.ema:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(model, decay=recipe.train.ema_decay)
        use_scaler = recipe.train.amp and recipe.train.amp_dtype == "float16"
        if use_scaler and info.device.type != "cuda":
            raise ConfigError("train.amp_dtype: float16 autocast needs CUDA; use train.amp_dtype=bfloat16 on CPU")
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.mixup = self._build_mixup()
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best: float | None = None
        self.metrics: dict[str, float] = {}
        self._evaluated_step = -1

    def _build_mixup(self) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None:
        tcfg = self.recipe.train
        if tcfg.mixup <= 0 and tcfg.cutmix <= 0:
            return None
        if self.recipe.task not in ("classification", "multilabel"):
            raise ConfigError(f"train.mixup/cutmix: supported for classification, got task {self.recipe.task!r}")
        from timm.data import Mixup

        # multi-hot targets (AudioSet) mix as they are: timm's multi_label mode
        return Mixup(
            mixup_alpha=tcfg.mixup,
            cutmix_alpha=tcfg.cutmix,
            prob=tcfg.mixup_prob,
            switch_prob=tcfg.mixup_switch_prob,
            label_smoothing=tcfg.label_smoothing,
            num_classes=len(self.parts.labels),
            multi_label=self.recipe.task == "multilabel",
        )

    def _init_masks(self) -> None:
        """Draw the initial masks; SNIP scores one per-rank batch of the first epoch (before mixup)."""
        assert self.sparsity is not None
        # Every rank scores rank 0's batch, with the dropout/DropPath RNG forked from the seed, so the SNIP densities
        # agree across ranks (the masks are also broadcast from rank 0) and the global RNG stream is left untouched.
        sampler = GlobalBatchSampler(
            len(self.parts.train_set),  # type: ignore[arg-type]
            self.recipe.data.batch_size,
            seed=self.recipe.train.seed,
            rank=0,
            world_size=self.info.world_size,
        )
        devices = [self.info.device] if self.info.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.recipe.train.seed)
            batch = next(iter(sampler))  # augmentations draw from the forked RNG too
            _, inputs, targets, _ = self._collate([_Indexed(self.parts.train_set)[i] for i in batch])
            inputs, targets = [x.to(self.info.device) for x in inputs], targets.to(self.info.device)

            def snip_loss(scout: nn.Module) -> Tensor:
                outputs = scout(*inputs)
                if self.recipe.task == "classification" and targets.dim() == 1:
                    return F.cross_entropy(outputs.float(), targets)  # official SNIP: plain cross-entropy
                return self._loss(outputs, targets)

            self.sparsity.init_masks(snip_loss=snip_loss if self.sparsity.config.init == "snip" else None)
        logger.info("sparsity: overall density %.4f after initialisation", self.sparsity.overall_density())

    def _autocast(self) -> Any:
        tcfg = self.recipe.train
        if not tcfg.amp:
            return nullcontext()
        dtype = torch.bfloat16 if tcfg.amp_dtype == "bfloat16" else torch.float16
        return torch.autocast(device_type=self.info.device.type, dtype=dtype)

    # ------------------------------------------------------------------------------------------------ loss
    def _loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The training loss; ``targets`` are soft (N, K) after mixup."""
        recipe = self.recipe
        kind = recipe.train.loss
        if kind == "auto":
            kind = {"classification": "ce", "multilabel": "bce", "forecast": "mse"}[recipe.task]
        outputs = outputs.float()
        smoothing = recipe.train.label_smoothing
        if kind == "ce":
            if targets.dim() == 2:  # soft targets from mixup (smoothing already applied)
                return -(targets * outputs.log_softmax(-1)).sum(-1).mean()
            return F.cross_entropy(outputs, targets, label_smoothing=smoothing)
        if kind == "bce":
            if targets.dim() == 1:  # class ids, as the official Speech Commands recipe trains with BCE
                num_classes = outputs.shape[1]
                targets = F.one_hot(targets, num_classes).float() * (1 - smoothing) + smoothing / num_classes
            return F.binary_cross_entropy_with_logits(outputs, targets.float())
        if kind == "mse":
            return F.mse_loss(outputs, targets.float())
        raise ConfigError(f"train.loss: got {kind!r}, expected 'auto', 'ce', 'bce' or 'mse'")

    # ----------------------------------------------------------------------------------------------- loaders
    def _collate(self, batch: list[tuple[int, dict[str, Any]]]) -> _Batch:
        failed = [(i, item["error"]) for i, item in batch if "error" in item]
        batch = [(i, item) for i, item in batch if "error" not in item]
        if not batch:
            return _Batch(torch.zeros(0, dtype=torch.long), [], torch.zeros(0), failed)
        indices = torch.tensor([i for i, _ in batch])
        inputs = [self.parts.collate_inputs([item["input"] for _, item in batch])]
        inputs += [torch.stack([item[key] for _, item in batch]) for key in self.parts.extra_inputs]
        targets = _stack_targets([item["target"] for _, item in batch])
        return _Batch(indices, inputs, targets, failed)

    def _record_failed(self, failed: list[tuple[int, str]], split: str) -> None:
        """Log and keep the samples a batch left out (written to ``data_errors.jsonl`` at the end of the run)."""
        for index, error in failed:
            if (split, index) not in self.failed_samples:
                logger.warning("%s sample %d left out: %s", split, index, error)
                self.failed_samples[(split, index)] = error

    def _failure_record(self, split: str, index: int, error: str) -> dict[str, Any]:
        """One line of ``data_errors.jsonl``: split, index, the sample's id where the dataset names its samples, the
        error's type and its ``"Type: message"``."""
        dataset = self.parts.train_set if split == "train" else self.parts.eval_set
        samples = getattr(dataset, "samples", None)
        record: dict[str, Any] = {"split": split, "index": index}
        if isinstance(samples, Sequence) and 0 <= index < len(samples) and hasattr(samples[index], "id"):
            record["id"] = str(samples[index].id)
        return {**record, "type": error.split(":", 1)[0], "error": error}

    def _batch_sampler(self) -> GlobalBatchSampler:
        """The recipe's training sampler (``data.sampler``)."""
        data, seed, rank, world = self.recipe.data, self.recipe.train.seed, self.info.rank, self.info.world_size
        if data.sampler == "uniform":
            size = len(self.parts.train_set)  # type: ignore[arg-type]
            return GlobalBatchSampler(size, data.batch_size, seed, rank, world)
        elif data.sampler == "balanced":
            from unilk.train.samplers import BalancedBatchSampler, label_balanced_weights

            targets = getattr(self.parts.train_set, "targets", None)
            if targets is None:
                raise ConfigError(
                    f"data.sampler=balanced: {type(self.parts.train_set).__name__} does not list its targets"
                )
            weights = label_balanced_weights(targets, len(self.parts.labels))
            return BalancedBatchSampler(weights, data.batch_size, seed, rank, world)
        else:
            raise ConfigError(f"data.sampler: got {data.sampler!r}, expected 'uniform' or 'balanced'")

    def _train_loader(self, epoch: int, start_batch: int) -> tuple[DataLoader, WorkerWatch]:
        sampler = self._batch_sampler()
        sampler.set_position(epoch, start_batch)
        watch = self._watch(self.parts.train_set, "train")
        # A private generator: the loader's worker seeds must not consume the global RNG (exact resume).
        gen = torch.Generator().manual_seed(self.recipe.train.seed * 100_003 + epoch)
        loader = DataLoader(
            watch.track(_Indexed(self.parts.train_set)),
            batch_sampler=sampler,
            num_workers=self.recipe.data.num_workers,
            collate_fn=self._collate,
            generator=gen,
            worker_init_fn=watch.worker_init,
        )
        return loader, watch

    def _eval_loader(self, dataset: Dataset) -> tuple[DataLoader, WorkerWatch]:
        shard = eval_shard(len(dataset), self.info.rank, self.info.world_size)  # type: ignore[arg-type]
        watch = self._watch(dataset, "eval")
        loader = DataLoader(
            Subset(watch.track(_Indexed(dataset)), shard),
            batch_size=self.recipe.data.eval_batch_size,
            shuffle=False,
            num_workers=self.recipe.data.num_workers,
            collate_fn=self._collate,
            generator=torch.Generator().manual_seed(0),
            worker_init_fn=watch.worker_init,
        )
        return loader, watch

    def _watch(self, dataset: Dataset, split: str) -> WorkerWatch:
        """Names the sample a dying DataLoader worker was reading (its file, when the dataset lists files)."""
        return WorkerWatch(
            self.recipe.data.num_workers,
            lambda index: _describe_sample(dataset, split, index),
            fix="rerun (--resume continues from the last checkpoint)",
            workers="data.num_workers",
        )

    # ------------------------------------------------------------------------------------------------ eval
    @torch.no_grad()
    def evaluate(self, model: nn.Module | None = None, dataset: Dataset | None = None) -> dict[str, float]:
        """Metrics of ``model`` (default: the EMA if ``train.ema_eval``, else the model) on ``dataset``.

        Under DDP each rank evaluates its pad-free shard and every rank returns the same metrics, computed on the
        gathered predictions (each sample exactly once).

        Raises:
            ConfigError: no evaluation set.
        """
        dataset = dataset if dataset is not None else self.parts.eval_set
        if dataset is None:
            raise ConfigError("evaluation: no eval set; set data.eval_split to a split of the dataset")
        if model is None:
            model = self.ema.module if (self.ema is not None and self.recipe.train.ema_eval) else self.model
        was_training = model.training
        model.eval()
        acc = MetricAccumulator()
        failed: list[int] = []
        loader, watch = self._eval_loader(dataset)
        with watch.naming_deaths():
            for indices, inputs, targets, left_out in loader:
                self._record_failed(left_out, "eval")
                failed += [i for i, _ in left_out]
                if not indices.numel():
                    continue
                inputs = [x.to(self.info.device) for x in inputs]
                views = inputs[0].shape[1] if inputs[0].dim() == 5 else 0  # multi-view protocol: Tensor[N, V, C, H, W]
                if views:
                    inputs[0] = inputs[0].flatten(0, 1)
                with self._autocast():
                    outputs = model(*inputs)
                if views:
                    outputs = reduce_views(outputs.unflatten(0, (-1, views)), self.recipe.evaluation.reduce)
                acc.add(indices, outputs, targets)
        model.train(was_training)
        state = acc.state() if acc.indices else (torch.zeros(0, dtype=torch.long), None, None)
        gathered = all_gather_objects((state, failed), self.info)
        parts = [rank_state for rank_state, _ in gathered]
        left_out = {i for _, rank_failed in gathered for i in rank_failed}
        if left_out:
            logger.warning(
                "evaluation: %d of %d samples could not be read and are left out", len(left_out), len(dataset)
            )  # type: ignore[arg-type]
        # the failed samples count as covered, so the check that every sample appears exactly once still holds
        parts.append((torch.tensor(sorted(left_out), dtype=torch.long), None, None))
        outputs, targets = _merge_present(parts, len(dataset))  # type: ignore[arg-type]
        return compute_metrics(self.recipe.task, outputs, targets)

    # ------------------------------------------------------------------------------------------- checkpoints
    def _payload(self, full: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model.state_dict(),
            "arch": self.parts.arch,
            "adapter": self.parts.adapter,
            "labels": list(self.parts.labels),
            "recipe": self.recipe.to_dict(),
            "metrics": dict(self.metrics),
            "progress": {
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "best": self.best,
            },
        }
        if self.ema is not None:
            payload["ema"] = self.ema.module.state_dict()
        if self.sparsity is not None:  # in best.pt too: the masks say which zeros are structural
            payload["sparsity"] = self.sparsity.state_dict()
        if full:
            payload["optimizer"] = self.optimizer.state_dict()
            payload["scaler"] = self.scaler.state_dict()
        return payload

    def _save(self, name: str, full: bool = True) -> None:
        # Every rank's RNG is gathered (a collective: all ranks call this), rank 0 writes.
        rng = all_gather_objects(capture_rng(), self.info)
        if self.info.is_main:
            payload = self._payload(full)
            if full:
                payload["rng"] = rng
            save_checkpoint(self.out_dir / name, payload)

    def _resume(self) -> None:
        path = self.out_dir / "last.pt"
        ckpt = load_checkpoint(path)
        if ckpt["recipe"].get("model") != self.recipe.to_dict()["model"]:
            raise CheckpointError(
                f"checkpoint {str(path)!r}: its model section {ckpt['recipe'].get('model')} differs from the recipe's "
                f"{self.recipe.to_dict()['model']}; resume with the recipe it was trained with"
            )
        if "optimizer" not in ckpt or "rng" not in ckpt:
            raise CheckpointError(f"checkpoint {str(path)!r}: has no training state; it cannot be resumed")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            if "ema" not in ckpt:
                raise CheckpointError(f"checkpoint {str(path)!r}: no EMA weights but train.ema is on")
            self.ema.module.load_state_dict(ckpt["ema"])
        if self.sparsity is not None:
            if "sparsity" not in ckpt:
                raise CheckpointError(
                    f"checkpoint {str(path)!r}: no sparsity masks but the recipe has a sparsity section; resume it "
                    "with the (dense) recipe it was trained with"
                )
            self.sparsity.load_state_dict(ckpt["sparsity"])
        elif "sparsity" in ckpt:
            raise CheckpointError(
                f"checkpoint {str(path)!r}: trained with sparsity {ckpt['sparsity']['config']} but the recipe has no "
                "sparsity section; add it back to resume"
            )
        rng = ckpt["rng"]
        if len(rng) != self.info.world_size:
            raise CheckpointError(
                f"checkpoint {str(path)!r}: written by {len(rng)} processes, resumed with {self.info.world_size}; "
                "resume with the same number of processes"
            )
        restore_rng(rng[self.info.rank])
        progress = ckpt["progress"]
        self.step, self.epoch = progress["step"], progress["epoch"]
        self.batch_in_epoch, self.best = progress["batch_in_epoch"], progress["best"]
        self.metrics = dict(ckpt["metrics"])
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.batch_in_epoch)

    # ---------------------------------------------------------------------------------------------- logging
    def _open_logs(self, resumed: bool) -> None:
        self.tb = None
        if not self.info.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "log.csv"
        columns = ["step", "epoch", "lr", "loss", *(["density"] if self.sparsity is not None else []), *self.names]
        rows: list[dict[str, str]] = []
        if resumed and path.is_file():
            # Rows logged after the checkpoint by the interrupted run are dropped: they are logged again.
            with open(path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= self.step]
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        self.csv_columns = columns
        if self.recipe.log.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.step if resumed else None)

    def _log(self, row: dict[str, float]) -> None:
        if not self.info.is_main:
            return
        with open(self.out_dir / "log.csv", "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.csv_columns).writerow(row)
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("step", "epoch"):
                    self.tb.add_scalar(key, value, int(row["step"]))

    def _global_mean(self, total: float, count: int) -> float:
        """``sum(total) / sum(count)`` over the ranks (NaN when no rank counted anything)."""
        if self.info.enabled:
            tensor = torch.tensor([total, count], dtype=torch.float64, device=self.info.device)
            dist.all_reduce(tensor)
            total, count = tensor.tolist()
        return total / count if count else math.nan

    def _should_stop(self, start_time: float) -> bool:
        limit = self.recipe.train.max_minutes
        stop = limit is not None and (time.monotonic() - start_time) / 60 >= limit
        if self.info.enabled:  # rank 0's clock decides, so all ranks stop at the same step
            flag = torch.tensor([int(stop)], device=self.info.device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        return stop

    # ------------------------------------------------------------------------------------------------ train
    def fit(self, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        """Train until ``train.epochs`` / ``max_steps`` / ``max_minutes``; returns a summary.

        Args:
            resume: continue from ``<output_dir>/last.pt``.
            overwrite: replace the files of an earlier run in ``output_dir`` (otherwise they are never overwritten).

        Returns:
            ``{"step", "epoch", "completed", "minutes", "metrics", "best", "failed_samples"}``: ``epoch`` is the
            0-based epoch of the last step, as in ``log.csv``; ``failed_samples`` counts samples that could not be
            read, left out and listed in ``data_errors.jsonl``.

        Raises:
            ConfigError: ``output_dir`` is a file, or holds files of an earlier run and neither ``resume`` nor
                ``overwrite`` is set.
            CheckpointError: the checkpoint to resume from is missing or does not fit.
        """
        check_output_dir(self.out_dir, resume=resume, overwrite=overwrite)
        self._setup(resume=resume)
        if resume:
            self._resume()
        self._open_logs(resumed=resume)
        start_time = time.monotonic()
        tcfg, accum = self.recipe.train, self.recipe.train.grad_accum_steps
        every_ckpt, every_log = self.recipe.checkpoint.every_steps, self.recipe.log.every_steps
        completed = self.step >= self.total_steps
        stopped = False
        bar = None
        # a bar on a terminal; in a file or a CI log, a line now and then (at a logged step) instead of a redrawn bar
        lines = self.info.is_main and self.recipe.log.progress and not sys.stderr.isatty()
        last_line: float | None = None
        if self.info.is_main and self.recipe.log.progress and not lines:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc=self.recipe.name, unit="step")
        self.ddp.train()
        loss_sum, loss_count = 0.0, 0
        while not completed and not stopped:
            whole_epoch = self.batch_in_epoch == 0
            loader, watch = self._train_loader(self.epoch, self.batch_in_epoch)
            micro, loaded_in_epoch = 0, 0
            with watch.naming_deaths():
                for _, inputs, targets, failed in loader:
                    if self.batch_in_epoch >= self.steps_per_epoch * accum:
                        break  # leftover micro-batches that do not fill an update
                    self._record_failed(failed, "train")
                    if micro == 0:
                        lr = self.schedule.set_step(self.step)
                    counts = self._loaded_counts(len(targets))
                    loaded_in_epoch += sum(counts)
                    last_micro = micro == accum - 1
                    loss = self._train_micro(inputs, targets, counts, last_micro)
                    if loss is not None:
                        loss_sum, loss_count = loss_sum + loss * len(targets), loss_count + len(targets)
                    micro += 1
                    self.batch_in_epoch += 1
                    if not last_micro:
                        continue
                    micro = 0
                    self._update()
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss_sum / max(loss_count, 1):.4f}", lr=f"{lr:.2e}")
                    if every_log and self.step % every_log == 0:
                        row = {"step": self.step, "epoch": self._epoch_of_step(), "lr": lr}
                        row["loss"] = self._global_mean(loss_sum, loss_count)
                        now = time.monotonic()
                        waited = last_line is None or now - last_line >= _PROGRESS_EVERY_S
                        line_due = waited or self.step >= self.total_steps
                        if lines and line_due:
                            last_line = now
                            logger.info(
                                "%s: step %d/%d (epoch %d), loss %.4f, lr %.2e, %.1f min",
                                self.recipe.name,
                                self.step,
                                self.total_steps,
                                row["epoch"],
                                row["loss"],
                                lr,
                                (time.monotonic() - start_time) / 60,
                            )
                        if self.sparsity is not None:
                            row["density"] = self.sparsity.overall_density()
                        self._log(row)
                        loss_sum, loss_count = 0.0, 0
                    completed = self.step >= self.total_steps
                    stopped = not completed and self._should_stop(start_time)
                    if completed or stopped:
                        break
                    if every_ckpt and self.step % every_ckpt == 0:
                        self._save("last.pt")
            if self.batch_in_epoch >= self.steps_per_epoch * accum:
                if whole_epoch and not loaded_in_epoch:  # every rank knows every count: all stop here together
                    raise InputError(
                        f"none of the {len(self.parts.train_set)} training samples could be read in epoch "  # type: ignore[arg-type]
                        f"{self.epoch} (the first: {next(iter(self.failed_samples.values()), 'unknown error')}); "
                        "check the dataset files"
                    )
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                due = tcfg.eval_every_epochs and self.epoch % tcfg.eval_every_epochs == 0
                if due and not completed and self.parts.eval_set is not None:
                    self._evaluate_and_keep()
                if not completed and not stopped:
                    self._save("last.pt")
        if bar is not None:
            bar.close()
        if (completed or stopped) and self.parts.eval_set is not None and self._evaluated_step != self.step:
            self._evaluate_and_keep()
        self._save("last.pt")
        minutes = (time.monotonic() - start_time) / 60
        summary = {
            "step": self.step,
            "epoch": self._epoch_of_step(),  # 0-based, as in log.csv: the same step has one epoch everywhere
            "completed": completed,
            "minutes": minutes,
            "metrics": dict(self.metrics),
            "best": self.best,
        }
        failures = {
            key: error for rank in all_gather_objects(self.failed_samples, self.info) for key, error in rank.items()
        }
        summary["failed_samples"] = len(failures)
        if self.info.is_main:
            write_text_atomic(self.out_dir / "metrics.json", json.dumps(summary, indent=2))
            if failures:
                lines = [json.dumps(self._failure_record(split, i, e)) for (split, i), e in sorted(failures.items())]
                write_text_atomic(self.out_dir / "data_errors.jsonl", "".join(f"{line}\n" for line in lines))
            if self.sparsity is not None:
                self._write_density_report()
            if self.tb is not None:
                self.tb.close()
        return summary

    def _epoch_of_step(self) -> int:
        """The epoch (0-based) that trained the current step, so a step's train and eval rows in log.csv agree."""
        return max(self.step - 1, 0) // self.steps_per_epoch

    def _loaded_counts(self, loaded: int) -> list[int]:
        """How many samples of this micro-batch loaded on each rank (one small collective under DDP)."""
        if not self.info.enabled:
            return [loaded]
        mine = torch.tensor([loaded], dtype=torch.long, device=self.info.device)
        every = [torch.zeros_like(mine) for _ in range(self.info.world_size)]
        dist.all_gather(every, mine)
        return torch.cat(every).tolist()

    def _train_micro(self, inputs: list[Tensor], targets: Tensor, counts: list[int], last_micro: bool) -> float | None:
        """Forward and backward of one micro-batch; returns its mean loss, or None when no sample of it loaded here.

        Each rank's loss is weighted by its share of the samples that loaded on all ranks, so the averaged gradient
        is the mean over those samples, as one process would compute it. A rank whose every sample failed (``counts``
        holds a 0) forwards nothing: then no rank uses DDP's collectives for this micro-batch, and when it ends the
        update the gradients are averaged by hand (:meth:`_average_gradients`), so all ranks stay in lockstep.
        """
        info, accum = self.info, self.recipe.train.grad_accum_steps
        loaded, total = counts[info.rank], sum(counts)
        by_hand = info.enabled and min(counts) == 0
        loss_value = None
        if loaded:
            inputs, targets = [x.to(info.device) for x in inputs], targets.to(info.device)
            if self.mixup is not None:
                inputs[0], targets = self._mix(inputs[0], targets)
            weight = loaded * info.world_size / total  # 1.0 when every sample loaded
            if by_hand:
                net, context = self.model, _local_batch_statistics(self.model)
            else:
                net = self.ddp
                context = nullcontext() if (last_micro or not info.enabled) else self.ddp.no_sync()
            with context:
                with self._autocast():
                    outputs = net(*inputs)
                loss = self._loss(outputs, targets)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise ConfigError(
                        f"training loss is {loss_value} at step {self.step} (expected a finite value); "
                        "lower optim.lr or set train.clip_grad"
                    )
                self.scaler.scale(loss * weight / accum).backward()
        if not total:
            message = "step %d: every sample of a training batch failed to load; the batch adds nothing"
            log_once(logger, "empty batch", message, self.step)
        if last_micro and (by_hand or not total):
            self._average_gradients()
        return loss_value

    def _mix(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Mixup/cutmix. timm mixes pairs: of an odd batch (a sample failed to load) the last sample stays unmixed."""
        mixup = self.mixup
        assert mixup is not None
        if len(inputs) % 2 == 0:
            return mixup(inputs, targets)
        from timm.data.mixup import mixup_target

        alone = mixup_target(targets[-1:], mixup.num_classes, 1.0, mixup.label_smoothing, mixup.multi_label)
        if len(inputs) == 1:
            return inputs, alone
        mixed, soft = mixup(inputs[:-1], targets[:-1])
        return torch.cat([mixed, inputs[-1:]]), torch.cat([soft, alone])

    @torch.no_grad()
    def _average_gradients(self) -> None:
        """Average the gradients over the ranks by hand, as DDP would (a missing gradient counts as zero)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        for param in params:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
        if not self.info.enabled:
            return
        flat = torch.cat([param.grad.reshape(-1) for param in params])
        dist.all_reduce(flat)
        flat /= self.info.world_size
        offset = 0
        for param in params:
            param.grad.copy_(flat[offset : offset + param.numel()].view_as(param))
            offset += param.numel()

    def _update(self) -> None:
        """Clip, step the optimizer, update the EMA, advance the step counter."""
        tcfg = self.recipe.train
        if tcfg.clip_grad is not None:
            from timm.utils import dispatch_clip_grad

            self.scaler.unscale_(self.optimizer)
            dispatch_clip_grad(self.model.parameters(), tcfg.clip_grad, mode=tcfg.clip_mode)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.sparsity is not None:  # every precision mode; before zero_grad (gradient growth reads .grad)
            self.sparsity.after_optimizer_step(self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.ema is None:
            return
        if self.sparsity is not None:
            masked_ema_update(self.ema.module, self.model, self.sparsity.masks, self.recipe.train.ema_decay)
        else:
            self.ema.update(self.model, step=self.step)

    def _write_density_report(self) -> None:
        """``density.json``: overall density, dense and non-zero parameter counts, and the per-layer report."""
        assert self.sparsity is not None
        total, nonzero = nonzero_param_count(self.model)
        report = {
            "step": self.step,
            "overall_density": self.sparsity.overall_density(),
            "params": total,
            "params_nonzero": nonzero,
            "layers": [dict(row, shape=list(row["shape"])) for row in self.sparsity.density_report()],
        }
        write_text_atomic(self.out_dir / "density.json", json.dumps(report, indent=2))

    def _evaluate_and_keep(self) -> None:
        """Evaluate, log, and write ``best.pt`` when the selection metric improves."""
        self.metrics = self.evaluate()
        self._evaluated_step = self.step
        row = {"step": self.step, "epoch": self._epoch_of_step(), **self.metrics}
        self._log(row)
        key = self.recipe.checkpoint.metric
        if key not in self.metrics:
            raise ConfigError(f"checkpoint.metric: got {key!r}, expected one of {sorted(self.metrics)}")
        value = self.metrics[key]
        better = self.best is None or (
            value > self.best if self.recipe.checkpoint.metric_mode == "max" else value < self.best
        )
        if better:
            self.best = value
            self._save("best.pt", full=False)
        logger.info("step %d: %s", self.step, ", ".join(f"{k}={v:.4f}" for k, v in self.metrics.items()))
