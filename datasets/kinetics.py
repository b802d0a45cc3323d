"""Kinetics-style video datasets: ``path label`` lists (VideoMAE / UniRepLKNet) and class folders (pytorchvideo).

Layouts read:

* ``list``: ``root/<split>.csv`` (or ``.txt``), one video per line, ``<path> <int label>`` separated by a space or a
  comma (VideoMAE's ``train.csv``/``val.csv``/``test.csv`` use a space). Relative paths are resolved against ``root``.
* ``folders``: ``root/<split>/<class>/<video>`` with classes in alphabetical order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from unilk.adapters.io import VIDEO_EXTENSIONS
from unilk.datasets.base import Sample, SampleDataset, Transform, canonical_split, read_lines, require_dir, require_file
from unilk.datasets.folders import ClassFolder
from unilk.errors import ConfigError, InputError

__all__ = ["Kinetics", "VideoList"]

logger = logging.getLogger(__name__)


class VideoList(SampleDataset):
    """Videos listed in a ``<path> <int label>`` file.

    Args:
        list_file: the list.
        root: folder relative paths are resolved against (default: the list's folder).
        transform: applied to the video path (a ``VideoAdapter``).
        classes: label names by index; None names them ``"0"``, ``"1"``, ... up to the largest label.

    Items: ``{"id": path as written, "input", "target": int}``.

    Raises:
        InputError: the list or a video is missing, a line is malformed, or a label is out of ``classes``.
    """

    def __init__(
        self,
        list_file: str | Path,
        root: str | Path | None = None,
        transform: Transform | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        list_file = Path(list_file)
        require_file(list_file, "video list")
        base = Path(root) if root is not None else list_file.parent
        entries = []
        for lineno, line in enumerate(read_lines(list_file, "video list"), start=1):
            parts = line.replace(",", " ").split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise InputError(f"{list_file}:{lineno}: {line!r}; expected '<path> <int label>'")
            rel, label = parts[0], int(parts[1])
            path = Path(rel) if Path(rel).is_absolute() else base / rel
            require_file(path, f"video listed at {list_file}:{lineno}")
            entries.append((rel, path, label, lineno))
        num = max((e[2] for e in entries), default=-1) + 1
        classes = list(classes) if classes is not None else [str(i) for i in range(num)]
        samples = []
        for rel, path, label, lineno in entries:
            if not 0 <= label < len(classes):
                raise InputError(f"{list_file}:{lineno}: label {label} is outside 0..{len(classes) - 1}")
            samples.append(Sample(rel, path, label))
        super().__init__(samples, transform, classes)


class Kinetics(SampleDataset):
    """Kinetics (or any action dataset laid out like it) with its ``train``/``val``/``test`` splits.

    Args:
        root: the dataset root.
        split: ``train`` | ``val`` | ``test`` (aliases accepted).
        transform: applied to the video path.
        layout: ``list`` (``root/<split>.csv|txt``), ``folders`` (``root/<split>/<class>/``) or ``auto`` (a list file
            if one exists, else folders).
        classes: label names (list layout) or fixed order (folder layout).

    Raises:
        ConfigError: an unknown layout or split.
        InputError: see :class:`VideoList` and :class:`~unilk.datasets.folders.ClassFolder`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        layout: str = "auto",
        classes: Sequence[str] | None = None,
    ) -> None:
        root = require_dir(Path(root), "Kinetics")
        split = canonical_split(split, ("train", "val", "test"), type(self).__name__)
        lists = [root / f"{split}{ext}" for ext in (".csv", ".txt") if (root / f"{split}{ext}").is_file()]
        if layout == "auto":
            layout = "list" if lists else "folders"
        if layout == "list":
            if not lists:
                raise InputError(f"{root}: no {split}.csv or {split}.txt list; expected '<path> <label>' lines")
            inner: SampleDataset = VideoList(lists[0], root, None, classes)
        elif layout == "folders":
            inner = ClassFolder(root, split, VIDEO_EXTENSIONS, None, classes)
        else:
            raise ConfigError(f"Kinetics: layout={layout!r}; expected 'auto', 'list' or 'folders'")
        self.layout = layout
        super().__init__(inner.samples, transform, inner.classes)
