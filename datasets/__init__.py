"""Dataset loaders in the published layouts, with canonical splits, and small synthetic datasets (``synthetic``).

Every loader is a map-style ``torch.utils.data.Dataset`` whose items are dicts with ``"id"`` (str), ``"input"``
(``transform(source)`` when a transform, usually an adapter, is given; else the raw source, e.g. the file path) and
``"target"`` (int class, float multi-hot tensor, or forecast tensor). Class datasets expose ``classes``.
A missing or malformed file raises :class:`~unilk.errors.InputError` naming it; no sample is silently dropped.
"""

from unilk.datasets import synthetic
from unilk.datasets.audio import (
    ESC50,
    SPEECH_COMMANDS_V2_CLASSES,
    AudioSet,
    AudioSetJSON,
    SpeechCommands,
    balanced_sample_weights,
)
from unilk.datasets.base import Sample, SampleDataset, canonical_split
from unilk.datasets.corrformer import CorrformerWeather
from unilk.datasets.folders import ClassFolder, ImageFolder, SeriesFolder
from unilk.datasets.kinetics import Kinetics, VideoList
from unilk.datasets.modelnet import ModelNet40, ModelNet40H5, ModelNet40Resampled
from unilk.datasets.registry import DATASETS, build_dataset
from unilk.datasets.scanobjectnn import SCANOBJECTNN_CLASSES, ScanObjectNN
from unilk.datasets.tslib import TSLibDataset, time_features
from unilk.datasets.ucr import SeriesClassification, UCRArchive

__all__ = [
    "DATASETS",
    "SCANOBJECTNN_CLASSES",
    "SPEECH_COMMANDS_V2_CLASSES",
    "ESC50",
    "AudioSet",
    "AudioSetJSON",
    "ClassFolder",
    "CorrformerWeather",
    "ImageFolder",
    "Kinetics",
    "ModelNet40",
    "ModelNet40H5",
    "ModelNet40Resampled",
    "Sample",
    "SampleDataset",
    "ScanObjectNN",
    "SeriesClassification",
    "SeriesFolder",
    "SpeechCommands",
    "TSLibDataset",
    "UCRArchive",
    "VideoList",
    "balanced_sample_weights",
    "build_dataset",
    "canonical_split",
    "synthetic",
    "time_features",
]
