"""Datasets by name, for recipes: ``build_dataset("speech_commands", root=..., split="train", transform=adapter)``."""

from __future__ import annotations

import inspect
from typing import Any

from torch.utils.data import Dataset

from unilk.datasets.audio import ESC50, AudioSet, AudioSetJSON, SpeechCommands
from unilk.datasets.base import Transform
from unilk.datasets.corrformer import CorrformerWeather
from unilk.datasets.folders import ClassFolder, ImageFolder, SeriesFolder
from unilk.datasets.kinetics import Kinetics, VideoList
from unilk.datasets.modelnet import ModelNet40, ModelNet40H5, ModelNet40Resampled
from unilk.datasets.scanobjectnn import ScanObjectNN
from unilk.datasets.tslib import TSLibDataset
from unilk.datasets.ucr import SeriesClassification, UCRArchive
from unilk.errors import ConfigError, did_you_mean, unknown_keys_error

__all__ = ["DATASETS", "build_dataset"]

#: recipe name -> loader class.
DATASETS: dict[str, type[Dataset]] = {
    "speech_commands": SpeechCommands,
    "esc50": ESC50,
    "audioset": AudioSet,
    "audioset_json": AudioSetJSON,
    "kinetics": Kinetics,
    "video_list": VideoList,
    "modelnet40": ModelNet40,
    "modelnet40_h5": ModelNet40H5,
    "modelnet40_resampled": ModelNet40Resampled,
    "scanobjectnn": ScanObjectNN,
    "tslib": TSLibDataset,
    "corrformer": CorrformerWeather,
    "image_folder": ImageFolder,
    "series_folder": SeriesFolder,
    "ucr_archive": UCRArchive,
    "series_classification": SeriesClassification,
    "class_folder": ClassFolder,
}


def build_dataset(name: str, transform: Transform | None = None, **kwargs: Any) -> Dataset:
    """Build a loader by its recipe name.

    Args:
        name: a key of :data:`DATASETS`.
        transform: the adapter (or any callable) applied to each sample.
        **kwargs: the loader's arguments (``root``, ``split``, ...).

    Returns:
        The dataset.

    Raises:
        ConfigError: an unknown name, or an argument the loader does not take (the valid ones are listed).
    """
    if name not in DATASETS:
        hint = did_you_mean(name, DATASETS)
        raise ConfigError(f"build_dataset: unknown dataset {name!r}; {hint}expected one of {sorted(DATASETS)}")
    cls = DATASETS[name]
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "transform")]
    unknown = set(kwargs) - set(valid)
    if unknown:
        raise unknown_keys_error(f"dataset {name!r}", unknown, valid)
    return cls(transform=transform, **kwargs)
