"""Recipe -> :class:`~unilk.train.engine.TrainParts`: adapter, datasets (optionally generated) and modal model.

This is the only place where the trainer composes adapters, datasets and models; the engine itself sees an
``nn.Module`` and two datasets.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from unilk.errors import ConfigError, did_you_mean
from unilk.train.config import Recipe
from unilk.train.engine import TrainParts, seed_everything

__all__ = ["build_dataset", "build_model", "build_parts", "prepare_data_root", "validate_recipe"]

logger = logging.getLogger(__name__)

#: ``model.calibrate_bn`` re-estimates BatchNorm statistics on at most this many train batches
CALIBRATE_BATCHES = 100


def prepare_data_root(recipe: Recipe) -> Path:
    """The dataset path of the recipe; generates the synthetic dataset first when ``data.synthetic`` is set.

    Generation goes through :func:`unilk.datasets.synthetic.generate_into`: only into a new, empty or unilk-marked
    folder, once per set of generator arguments, and under DDP on rank 0 only.

    Raises:
        ConfigError: no ``data.root``, a missing root or file, an unknown generator, or a synthetic root that holds
            other files.
    """
    data = recipe.data
    if not data.root:
        raise ConfigError("data.root: empty; set it to the dataset directory (or file), e.g. data.root=/data/sc")
    root = Path(data.root)
    if data.synthetic is None:
        return _existing_data_path(root, data.file)
    from unilk.datasets import synthetic

    if data.synthetic not in synthetic.generator_names():
        raise ConfigError(f"data.synthetic: got {data.synthetic!r}, expected one of {synthetic.generator_names()}")
    rank0 = not dist.is_initialized() or dist.get_rank() == 0
    if rank0:
        synthetic.generate_into(root, data.synthetic, data.synthetic_kwargs)
    if dist.is_initialized():
        dist.barrier()
    return _existing_data_path(root, data.file)


def _existing_data_path(root: Path, file: str | None) -> Path:
    """``root`` (a directory) or ``root / file``, checked to exist.

    Raises:
        ConfigError: the path is missing, or ``root`` is a file while ``data.file`` names a file inside it.
    """
    if file:
        if not root.is_dir():
            raise ConfigError(f"data.root: {str(root)!r} is not a directory; with data.file it must hold that file")
        path = root / file
        if not path.is_file():
            raise ConfigError(f"data.file: {str(path)!r} does not exist; expected a file inside data.root")
        return path
    if not root.exists():
        raise ConfigError(f"data.root: {str(root)!r} does not exist; set it to the dataset directory")
    return root


def _dataset_class(name: str) -> type[Dataset]:
    import unilk.datasets as datasets

    cls = getattr(datasets, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        valid = sorted(n for n in datasets.__all__ if isinstance(getattr(datasets, n), type))
        hint = did_you_mean(name, valid)
        raise ConfigError(f"data.dataset: got {name!r}, {hint}expected a dataset class of unilk.datasets: {valid}")
    return cls


def build_dataset(recipe: Recipe, split: str, adapter: Any, path: Path, transform: Any = "adapter") -> Dataset:
    """One split of the recipe's dataset, transformed by ``transform`` (by default ``adapter``; None: raw sources).

    Series forecasting datasets window and scale the data themselves, so they get no transform; their window lengths
    come from the adapter config unless ``data.kwargs`` sets them. Series classification datasets get the adapter.
    """
    cls = _dataset_class(recipe.data.dataset)
    params = inspect.signature(cls).parameters
    kwargs = dict(recipe.data.kwargs)
    if recipe.modality == "series" and recipe.task == "forecast":
        for key in ("seq_len", "label_len", "pred_len"):
            if key in params and key not in kwargs:
                kwargs[key] = getattr(adapter.config, key)
    else:
        kwargs["transform"] = adapter if isinstance(transform, str) and transform == "adapter" else transform
    if "split" in params:
        kwargs["split"] = split
    return cls(path, **kwargs)


def _eval_transform(recipe: Recipe, eval_adapter: Any, augment: Any) -> Any:
    """The adapter, or the multi-view transform of the recipe's evaluation protocol (Tensor[V, C, H, W] per item)."""
    if recipe.evaluation.multiview:
        return eval_adapter.views
    if recipe.evaluation.votes > 1:
        from unilk.adapters.augment import PointsVotes

        return PointsVotes(eval_adapter, augment, recipe.evaluation.votes, recipe.evaluation.vote_seed)
    return eval_adapter


def build_model(recipe: Recipe, num_classes: int | None, adapter_config: dict[str, Any]) -> torch.nn.Module:
    """The modal model (stem + trunk + head) of the recipe."""
    from unilk.models.modal import create_modal_model

    return create_modal_model(
        recipe.modality,
        recipe.task,
        recipe.model.arch,
        num_classes=num_classes,
        adapter_config=adapter_config,
        head_kwargs=recipe.model.head_kwargs,
        pretrained=recipe.model.pretrained,
        checkpoint_path=recipe.model.checkpoint_path,
        **recipe.model.kwargs,
    )


def _calibrate_on_train(
    model: torch.nn.Module, train_set: Dataset, collate_inputs: Any, series_marks: bool, batch_size: int
) -> None:
    """``model.calibrate_bn``: BatchNorm statistics of the first ``CALIBRATE_BATCHES`` train batches (labels unused)."""
    from unilk.calibrate import calibrate_bn

    def batches() -> Any:
        for start in range(0, min(len(train_set), CALIBRATE_BATCHES * batch_size), batch_size):
            items = [train_set[i] for i in range(start, min(start + batch_size, len(train_set)))]
            inputs = [collate_inputs([item["input"] for item in items])]
            yield inputs + ([torch.stack([item["input_mark"] for item in items])] if series_marks else [])

    report = calibrate_bn(model, batches(), forward=lambda net, batch: net(*batch))
    logger.info("model.calibrate_bn: %s", report.summary)


def _fix_series_channels(train_set: Dataset, *adapters: Any) -> None:
    """``group_size`` 0 (one node of all channels): the adapters' configs get the training data's channel count D, so
    the stem is built for D channels and checkpoints record it."""
    channels = int(train_set[0]["input"].shape[-1])  # the adapter's window Tensor[seq_len, D]
    for adapter in adapters:
        adapter.config = adapter.config.with_channels(channels)
    logger.info("adapter.group_size 0: one node of all %d channels", channels)


def build_parts(recipe: Recipe, *, with_train: bool = True) -> TrainParts:
    """Adapter, datasets and model for ``recipe``.

    Args:
        recipe: the validated recipe.
        with_train: build the training split (False for ``unilk eval``: the eval split stands in for it).

    Raises:
        ConfigError: a bad dataset name, adapter field or model setting.
    """
    from unilk.adapters import build_adapter
    from unilk.adapters.augment import augment_config, build_train_transform
    from unilk.train.auto_stats import check_auto_modality, resolve_auto_stats

    path = prepare_data_root(recipe)
    fields = dict(recipe.adapter)
    if "auto" in (fields.get("mean"), fields.get("std")):
        check_auto_modality(recipe.modality)
        raw_train = build_dataset(recipe, recipe.data.train_split, None, path, transform=None)
        data_dir = path if path.is_dir() else path.parent
        fields = resolve_auto_stats(recipe.modality, fields, raw_train, data_dir, Path(recipe.output_dir) / "stats")
    adapter = build_adapter(recipe.modality, {**fields, "modality": recipe.modality})
    eval_adapter = build_adapter(recipe.modality, {**fields, **recipe.eval_adapter, "modality": recipe.modality})
    augment = augment_config(recipe.modality, recipe.augment)
    eval_set = build_dataset(
        recipe, recipe.data.eval_split, eval_adapter, path, _eval_transform(recipe, eval_adapter, augment)
    )
    if with_train:
        train_set = build_dataset(
            recipe, recipe.data.train_split, adapter, path, build_train_transform(adapter, augment)
        )
    else:
        train_set = eval_set
    series_marks = recipe.modality == "series" and adapter.config.freq != "none"
    if series_marks and recipe.task != "forecast":
        raise ConfigError(f"adapter.freq: {adapter.config.freq!r}; series {recipe.task} uses no time marks, set 'none'")
    if recipe.modality == "series" and adapter.config.group_size == 0:
        _fix_series_channels(train_set, adapter, eval_adapter)
    labels = list(getattr(train_set, "classes", []) or [])
    if recipe.task == "forecast":
        num_classes = None
    elif labels:
        num_classes = len(labels)
    else:
        raise ConfigError(f"data.dataset: {recipe.data.dataset} has no classes; task {recipe.task!r} needs them")
    adapter_config = adapter.config.to_dict()
    # the seed covers the model's initial weights too: two runs of one recipe and seed start from the same model
    seed_everything(recipe.train.seed, recipe.train.deterministic)
    model = build_model(recipe, num_classes, adapter_config)
    stations = getattr(train_set, "station_positions", None)
    if stations is not None and getattr(model.stem, "station_positions", None) is not None:
        model.stem.set_station_positions(stations)
    collate_inputs = adapter.collate if recipe.modality != "series" else torch.stack
    if recipe.model.calibrate_bn and with_train:
        _calibrate_on_train(model, train_set, collate_inputs, series_marks, recipe.data.batch_size)
    return TrainParts(
        model=model,
        train_set=train_set,
        eval_set=eval_set,
        collate_inputs=collate_inputs,
        extra_inputs=("input_mark",) if series_marks else (),
        arch={
            "builder": "unilk.models.modal.create_modal_model",
            "modality": recipe.modality,
            "task": recipe.task,
            "trunk": recipe.model.arch,
            "num_classes": num_classes,
            "kwargs": dict(recipe.model.kwargs),
            "head_kwargs": dict(recipe.model.head_kwargs),
        },
        adapter=adapter_config,
        labels=labels,
    )


def validate_recipe(recipe: Recipe, *, resume: bool = False, overwrite: bool = False) -> None:
    """Check what a run needs without building anything heavy (no model, no dataset, no data written).

    Resolves the adapter config, the dataset class, the model, optimizer and scheduler names, the device, the data
    path (or that the synthetic generator may write there) and the output directory.

    Raises:
        ConfigError: the first problem found, naming the key and the valid values.
    """
    from timm.optim import list_optimizers

    from unilk.adapters import build_adapter
    from unilk.datasets import synthetic
    from unilk.models.registry import is_model, list_models
    from unilk.train.auto_stats import AUTO, check_auto_modality
    from unilk.train.engine import check_output_dir

    for fields in (recipe.adapter, {**recipe.adapter, **recipe.eval_adapter}):
        auto = [key for key in ("mean", "std") if fields.get(key) == AUTO]
        if auto:  # computed from the training split when the run starts (unilk.train.auto_stats)
            check_auto_modality(recipe.modality)
        build_adapter(
            recipe.modality, {k: v for k, v in fields.items() if k not in auto} | {"modality": recipe.modality}
        )
    _dataset_class(recipe.data.dataset)
    if not is_model(recipe.model.arch):
        hint = did_you_mean(recipe.model.arch, list_models())
        raise ConfigError(f"model.arch: got {recipe.model.arch!r}, {hint}expected one of {list_models()}")
    if recipe.optim.opt not in list_optimizers():
        hint = did_you_mean(recipe.optim.opt, list_optimizers())
        raise ConfigError(f"optim.opt: got {recipe.optim.opt!r}, {hint}expected a timm optimizer name")
    if recipe.sched.sched not in ("cosine", "step", "constant"):
        hint = did_you_mean(recipe.sched.sched, ("cosine", "step", "constant"))
        raise ConfigError(f"sched.sched: got {recipe.sched.sched!r}, {hint}expected 'cosine', 'step' or 'constant'")
    if recipe.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: got 'cuda' but no GPU is visible; use train.device=cpu")
    data = recipe.data
    if not data.root:
        raise ConfigError("data.root: empty; set it to the dataset directory (or file), e.g. data.root=/data/sc")
    root = Path(data.root)
    if data.synthetic is None:
        _existing_data_path(root, data.file)
    elif data.synthetic not in synthetic.generator_names():
        raise ConfigError(f"data.synthetic: got {data.synthetic!r}, expected one of {synthetic.generator_names()}")
    elif root.exists() and (not root.is_dir() or (any(root.iterdir()) and not (root / synthetic.MARKER).is_file())):
        raise ConfigError(
            f"data.root: {str(root)!r} exists without {synthetic.MARKER} (the mark of a recipe's generated data); "
            "synthetic data is written only into a new or empty folder. Fix: pick another data.root, or pass "
            "data.synthetic=null to train on the files there"
        )
    check_output_dir(Path(recipe.output_dir), resume=resume, overwrite=overwrite)
