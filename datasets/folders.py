"""Class-folder datasets (``root/[split/]<class>/<file>``): images, series (one CSV per sample) and any other files.

Classes are the sub-folder names in alphabetical order (torchvision's ``ImageFolder`` and pytorchvideo's Kinetics
folder mode use the same rule). Hidden files are ignored; any other file with an unexpected extension raises instead
of being skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from unilk.adapters.io import IMAGE_EXTENSIONS, SERIES_EXTENSIONS
from unilk.datasets.base import Sample, SampleDataset, Transform, require_dir
from unilk.errors import InputError

__all__ = ["ClassFolder", "ImageFolder", "SeriesFolder"]

logger = logging.getLogger(__name__)


class ClassFolder(SampleDataset):
    """Files grouped by class folder.

    Args:
        root: the dataset root.
        split: a sub-folder of ``root`` holding the class folders (e.g. ``train``, ``val``); None reads ``root``.
        extensions: accepted file extensions, lower case with the dot.
        transform: applied to the file path (an adapter).
        classes: fixed label order; every class folder must be in it. None uses the sorted folders found.

    Items: ``{"id": "<class>/<file>", "input", "target": int}``.

    Raises:
        InputError: the folder is missing or has no class folders, a folder is not in ``classes``, or a file has an
            unexpected extension.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        transform: Transform | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        base = require_dir(Path(root) / split if split else Path(root), f"{type(self).__name__} split {split!r}")
        extensions = {e.lower() for e in extensions}
        found = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found:
            raise InputError(f"{base}: no class folders found; expected <class>/<file> folders")
        classes = list(classes) if classes is not None else found
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise InputError(f"{base}: folder(s) {unknown} are not in the class list {classes}")
        samples = []
        for target, name in enumerate(classes):
            folder = base / name
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.name.startswith("."):
                    continue
                # a broken link or a folder named like a sample is a sample that fails to load (recorded, the run
                # goes on), not a reason to refuse the dataset
                if path.suffix.lower() not in extensions:
                    raise InputError(
                        f"{path}: unexpected entry in a class folder; expected files with extensions "
                        f"{sorted(extensions)}; move it out of the dataset"
                    )
                samples.append(Sample(f"{name}/{path.name}", path, target))
        super().__init__(samples, transform, classes)


class ImageFolder(ClassFolder):
    """Images in class folders (``root/[split/]<class>/<image>``); see :class:`ClassFolder`."""

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        transform: Transform | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        super().__init__(root, split, IMAGE_EXTENSIONS, transform, classes)


class SeriesFolder(ClassFolder):
    """Series to classify, one ``.csv``/``.npy``/``.npz`` file per sample in class folders; see :class:`ClassFolder`."""

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        transform: Transform | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        super().__init__(root, split, SERIES_EXTENSIONS, transform, classes)
