"""The shared base of every loader: a list of samples, an optional transform, and loud checks on the files.

A loader reads its dataset's index (folders, split lists, csv, h5) once in ``__init__``, checks that every listed file
exists, and keeps a list of :class:`Sample`. ``__getitem__`` returns a dict ``{"id", "input", "target", ...}``; the
``input`` is ``transform(source)`` when a transform (an adapter) is given, else the raw source (a path or an array).
Nothing is ever dropped: a missing file, a malformed line or an unknown label raises
:class:`~unilk.errors.InputError` naming the file.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from unilk.errors import ConfigError, InputError

__all__ = [
    "ForecastWindows",
    "Sample",
    "SampleDataset",
    "canonical_split",
    "multi_hot",
    "read_csv_table",
    "read_lines",
    "require_dir",
    "require_file",
]

logger = logging.getLogger(__name__)

Transform = Callable[[Any], Any]

#: split aliases -> the canonical name used by every loader.
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
    "eval": "test",
}


@dataclass(frozen=True)
class Sample:
    """One item of a dataset before decoding.

    Attributes:
        id: a stable identifier (usually the path relative to the dataset root).
        source: what the transform receives: a file path (passed on as str), or an array for datasets stored in one
            file (h5).
        target: int class index, or a float tensor (multi-hot labels).
        extra: more keys copied into the item dict (e.g. ``"fold"``).
    """

    id: str
    source: Any
    target: Any
    extra: dict[str, Any] = field(default_factory=dict)


class SampleDataset(Dataset):
    """A map-style dataset over a list of :class:`Sample`.

    Args:
        samples: the samples, in a deterministic order.
        transform: callable applied to ``sample.source`` (an adapter); None keeps the raw source.
        classes: label names, index = class id (None for datasets without classes).

    Items are dicts ``{"id": str, "input": transform(source) | source, "target": int | Tensor, **extra}``.
    """

    def __init__(
        self, samples: Sequence[Sample], transform: Transform | None = None, classes: Sequence[str] | None = None
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.classes = list(classes) if classes is not None else None

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Map of label name -> class index."""
        if self.classes is None:
            raise ConfigError(f"{type(self).__name__}: this dataset has no classes")
        return {name: i for i, name in enumerate(self.classes)}

    @property
    def targets(self) -> list[Any]:
        """The target of every sample, in order (no decoding)."""
        return [s.target for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        # paths leave as str so that torch's default_collate can batch raw items
        source = str(sample.source) if isinstance(sample.source, Path) else sample.source
        value = self.transform(source) if self.transform is not None else source
        return {"id": sample.id, "input": value, "target": sample.target, **sample.extra}

    def __repr__(self) -> str:
        n_cls = "" if self.classes is None else f", classes={len(self.classes)}"
        return f"{type(self).__name__}(samples={len(self)}{n_cls})"


def canonical_split(split: str, valid: Iterable[str], owner: str) -> str:
    """Map a split name or alias (``training``, ``validation``, ``testing``, ``eval``) to its canonical name.

    Args:
        split: the name given by the user.
        valid: canonical names the dataset has (a subset of ``train``, ``val``, ``test``, ``all``).
        owner: the dataset class, named in the error.

    Returns:
        The canonical split name.

    Raises:
        ConfigError: the split is unknown for this dataset.
    """
    valid = list(valid)
    name = _SPLIT_ALIASES.get(split, split)
    if name not in valid:
        raise ConfigError(f"{owner}: unknown split {split!r}; expected one of {valid}")
    return name


def require_file(path: Path, what: str, fix: str = "check the dataset download is complete") -> Path:
    """Return ``path`` if it is an existing, non-empty file, else raise InputError naming it.

    Args:
        path: the file.
        what: what the file is, for the message (e.g. ``"ESC-50 metadata"``).
        fix: how to fix it.
    """
    if not path.is_file():
        raise InputError(f"{path}: {what} not found; {fix}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: {what} is empty (0 bytes); {fix}")
    return path


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a directory, else raise InputError naming it."""
    if not path.is_dir():
        raise InputError(f"{path}: {what} directory not found; pass the dataset root that contains it")
    return path


def read_lines(path: Path, what: str) -> list[str]:
    """Read the non-blank, stripped lines of a text file that must exist (it may be empty)."""
    if not path.is_file():
        raise InputError(f"{path}: {what} not found; check the dataset download is complete")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_csv_table(path: Path, required: Sequence[str], what: str) -> list[dict[str, str]]:
    """Read a CSV with a header row and check it has the required columns and complete rows.

    Args:
        path: the CSV file.
        required: column names that must be present.
        what: what the file is, for messages.

    Returns:
        One dict per data row, keyed by column name (values stripped).

    Raises:
        InputError: the file is missing or empty, a column is missing, or a row has the wrong number of cells.
    """
    require_file(path, what)
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path}: {what} lacks column(s) {missing}; got columns {header}, expected {list(required)}")
    table = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise InputError(
                f"{path}:{lineno}: row has {len(row)} cells, the header has {len(header)}; fix or re-download the file"
            )
        table.append({k: v.strip() for k, v in zip(header, row)})
    return table


def multi_hot(indices: Iterable[int], num_classes: int) -> torch.Tensor:
    """A float32 multi-hot vector Tensor[num_classes] with ones at ``indices``."""
    target = torch.zeros(num_classes, dtype=torch.float32)
    target[list(indices)] = 1.0
    return target


class ForecastWindows(Dataset):
    """Sliding forecast windows over a ``(T, D)`` series with time marks (TSLib's ``seq/label/pred_len`` indexing).

    Subclasses set ``values`` ``(T, D)``, ``marks`` ``(T, F)``, ``seq_len``, ``label_len``, ``pred_len``, ``name``,
    ``split``, ``transform`` and, to forecast a subset of channels, ``target_channels``.

    Item ``i``: ``input`` = ``values[i : i + seq_len]`` (through ``transform``), ``target`` = the next ``pred_len``
    steps of the target channels, ``target_window`` = the last ``label_len`` input steps plus the target steps (the
    decoder window), with the matching marks.
    """

    values: torch.Tensor
    marks: torch.Tensor
    seq_len: int
    label_len: int
    pred_len: int
    name: str
    split: str
    transform: Transform | None
    target_channels: Any = slice(None)

    def __len__(self) -> int:
        return len(self.values) - self.seq_len - self.pred_len + 1

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range 0..{len(self) - 1}")
        s_end = index + self.seq_len
        r_begin, r_end = s_end - self.label_len, s_end + self.pred_len
        window = self.values[index:s_end]
        return {
            "id": f"{self.name}:{self.split}:{index}",
            "input": self.transform(window) if self.transform is not None else window,
            "target": self.values[s_end:r_end, self.target_channels],
            "input_mark": self.marks[index:s_end],
            "target_window": self.values[r_begin:r_end],
            "target_window_mark": self.marks[r_begin:r_end],
        }
