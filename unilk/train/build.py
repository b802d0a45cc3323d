"""Recipe -> :class:`~unilk.train.engine.TrainParts`: adapter, datasets (optionally generated) and modal model.

This is the only place where the trainer composes adapters, datasets and models; the engine itself sees an
``nn.Module`` and two datasets.
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from unilk.errors import ConfigError
from unilk.train.config import Recipe
from unilk.train.engine import TrainParts

__all__ = ["build_dataset", "build_model", "build_parts", "prepare_data_root"]

logger = logging.getLogger(__name__)

_MARKER = ".unilk_synthetic.json"


def prepare_data_root(recipe: Recipe) -> Path:
    """The dataset path of the recipe; generates the synthetic dataset first when ``data.synthetic`` is set.

    Generation happens once (a marker file records the generator's result) and, under DDP, on rank 0 only.

    Raises:
        ConfigError: no ``data.root``, or an unknown generator.
    """
    data = recipe.data
    if not data.root:
        raise ConfigError("data.root: empty; set it to the dataset directory (or file), e.g. data.root=/data/sc")
    root = Path(data.root)
    if data.synthetic is None:
        return root / data.file if data.file else root
    from unilk.datasets import synthetic

    generator = getattr(synthetic, data.synthetic, None) if data.synthetic.startswith("make_") else None
    if generator is None:
        valid = sorted(n for n in dir(synthetic) if n.startswith("make_"))
        raise ConfigError(f"data.synthetic: got {data.synthetic!r}, expected one of {valid}")
    marker = root / _MARKER
    rank0 = not dist.is_initialized() or dist.get_rank() == 0
    if rank0 and not marker.is_file():
        logger.info("generating synthetic dataset %s in %s", data.synthetic, root)
        made = Path(generator(root, **data.synthetic_kwargs))
        marker.write_text(json.dumps({"generator": data.synthetic, "path": str(made.resolve())}))
    if dist.is_initialized():
        dist.barrier()
    made = Path(json.loads(marker.read_text())["path"])
    return made / data.file if data.file else made


def _dataset_class(name: str) -> type[Dataset]:
    import unilk.datasets as datasets

    cls = getattr(datasets, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        valid = sorted(n for n in datasets.__all__ if isinstance(getattr(datasets, n), type))
        raise ConfigError(f"data.dataset: got {name!r}, expected a dataset class of unilk.datasets: {valid}")
    return cls


def build_dataset(recipe: Recipe, split: str, adapter: Any, path: Path, transform: Any = "adapter") -> Dataset:
    """One split of the recipe's dataset, transformed by ``transform`` (by default ``adapter``; None: raw sources).

    Series datasets window and scale the data themselves, so they get no transform; their window lengths come from
    the adapter config unless ``data.kwargs`` sets them.
    """
    cls = _dataset_class(recipe.data.dataset)
    params = inspect.signature(cls).parameters
    kwargs = dict(recipe.data.kwargs)
    if recipe.modality == "series":
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
    labels = list(getattr(train_set, "classes", []) or [])
    if recipe.task == "forecast":
        num_classes = None
    elif labels:
        num_classes = len(labels)
    else:
        raise ConfigError(f"data.dataset: {recipe.data.dataset} has no classes; task {recipe.task!r} needs them")
    adapter_config = adapter.config.to_dict()
    model = build_model(recipe, num_classes, adapter_config)
    series_marks = recipe.modality == "series" and adapter.config.freq != "none"
    return TrainParts(
        model=model,
        train_set=train_set,
        eval_set=eval_set,
        collate_inputs=adapter.collate if recipe.modality != "series" else torch.stack,
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
