"""Audio datasets in their published layouts: Speech Commands v2, ESC-50 and AudioSet-style clip lists.

Layouts read (``root`` is the folder the archive unpacks to):

* Speech Commands v2 (Warden 2018): ``root/<word>/<speaker>_nohash_<n>.wav``, ``root/validation_list.txt`` and
  ``root/testing_list.txt`` (paths relative to ``root``); training is every clip in neither list, as in
  torchaudio's ``SPEECHCOMMANDS``. ``_background_noise_`` holds noise, not a class.
* ESC-50 (Piczak 2015): ``root/meta/esc50.csv`` (``filename, fold, target, category, esc10, src_file, take``) and
  ``root/audio/{fold}-{clip}-{take}-{target}.wav``; 5 folds for cross-validation.
* AudioSet: ``class_labels_indices.csv`` (``index, mid, display_name``) with either the published segment lists
  (``{balanced_train,unbalanced_train,eval}_segments.csv``: ``YTID, start_seconds, end_seconds, positive_labels``) or
  AST's JSON datafiles (``{"data": [{"wav": path, "labels": "/m/a,/m/b"}]}``). Targets are multi-hot.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from unilk.datasets.base import (
    Sample,
    SampleDataset,
    Transform,
    canonical_split,
    multi_hot,
    read_csv_table,
    read_lines,
    require_dir,
    require_file,
)
from unilk.errors import ConfigError, InputError

__all__ = [
    "AudioSet",
    "AudioSetJSON",
    "ESC50",
    "SPEECH_COMMANDS_V2_CLASSES",
    "SpeechCommands",
    "balanced_sample_weights",
    "read_audioset_labels",
]

logger = logging.getLogger(__name__)

#: the 35 words of Speech Commands v2, sorted (their index is the class id when ``classes`` is passed).
SPEECH_COMMANDS_V2_CLASSES: tuple[str, ...] = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go", "happy",
    "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six", "stop",
    "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)  # fmt: skip

_ESC50_NAME = re.compile(r"^(\d)-(\w+)-([A-Za-z])-(\d+)\.wav$")


class SpeechCommands(SampleDataset):
    """Speech Commands v2 with the canonical splits from ``validation_list.txt`` and ``testing_list.txt``.

    Args:
        root: folder holding the word folders and the two list files.
        split: ``train`` | ``val`` | ``test`` (aliases ``training``, ``validation``, ``testing``).
        transform: applied to the wav path (e.g. an ``AudioAdapter``).
        classes: fixed label order, e.g. :data:`SPEECH_COMMANDS_V2_CLASSES` (every word folder must be in it);
            None uses the sorted word folders found.

    Items: ``{"id": "<word>/<file>.wav", "input", "target": int, "speaker": str}``.

    Raises:
        InputError: a list file or a listed clip is missing, or a word folder is not in ``classes``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        root = require_dir(Path(root), "Speech Commands")
        split = canonical_split(split, ("train", "val", "test"), type(self).__name__)
        words = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
        if not words:
            raise InputError(f"{root}: no word folders found; expected Speech Commands' <word>/*.wav layout")
        classes = list(classes) if classes is not None else words
        unknown = sorted(set(words) - set(classes))
        if unknown:
            raise InputError(f"{root}: word folder(s) {unknown} are not in the class list {classes}; pass classes=None")
        listed = {
            "val": read_lines(root / "validation_list.txt", "Speech Commands validation list"),
            "test": read_lines(root / "testing_list.txt", "Speech Commands testing list"),
        }
        for name, rel_paths in listed.items():
            for rel in rel_paths:
                require_file(root / rel, f"clip listed in the {name} list")
        if split == "train":
            held_out = set(listed["val"]) | set(listed["test"])
            rels = [f"{w}/{p.name}" for w in words for p in sorted((root / w).glob("*.wav"))]
            rels = [r for r in rels if r not in held_out]
        else:
            rels = listed[split]
        index = {name: i for i, name in enumerate(classes)}
        samples = []
        for rel in rels:
            word = rel.split("/")[0]
            if word not in index:
                raise InputError(f"{root / rel}: word {word!r} is not a class; expected one of {classes}")
            samples.append(Sample(rel, root / rel, index[word], {"speaker": Path(rel).name.split("_")[0]}))
        super().__init__(samples, transform, classes)


class ESC50(SampleDataset):
    """ESC-50 with its 5 predefined folds (report 5-fold cross-validation: ``test_fold`` = 1..5).

    Args:
        root: folder holding ``meta/esc50.csv`` and ``audio/``.
        split: ``train`` (every fold but ``test_fold``), ``test`` (``test_fold``) or ``all``.
        test_fold: the held-out fold, 1..5.
        transform: applied to the wav path.

    Items: ``{"id": filename, "input", "target": int, "fold": int}``; ``classes`` are the categories by target.

    Raises:
        InputError: the csv or a clip is missing, a file name disagrees with its fold/target row, or the targets
            are not 0..K-1 with one category each.
    """

    def __init__(
        self, root: str | Path, split: str = "train", test_fold: int = 1, transform: Transform | None = None
    ) -> None:
        root = require_dir(Path(root), "ESC-50")
        split = canonical_split(split, ("train", "test", "all"), type(self).__name__)
        if test_fold not in range(1, 6):
            raise ConfigError(f"ESC50: test_fold={test_fold!r}; expected 1, 2, 3, 4 or 5")
        csv_path = root / "meta" / "esc50.csv"
        rows = read_csv_table(csv_path, ("filename", "fold", "target", "category"), "ESC-50 metadata")
        names: dict[int, str] = {}
        samples = []
        for row in rows:
            match = _ESC50_NAME.match(row["filename"])
            try:
                fold, target = int(row["fold"]), int(row["target"])
            except ValueError as err:
                raise InputError(f"{csv_path}: row {row}: fold/target are not integers ({err})") from err
            if match is None or int(match.group(1)) != fold or int(match.group(4)) != target:
                raise InputError(
                    f"{csv_path}: file name {row['filename']!r} does not match fold={fold}, target={target}; "
                    "expected {fold}-{clip}-{take}-{target}.wav"
                )
            if names.setdefault(target, row["category"]) != row["category"]:
                raise InputError(f"{csv_path}: target {target} is named both {names[target]!r} and {row['category']!r}")
            path = require_file(root / "audio" / row["filename"], "ESC-50 clip listed in meta/esc50.csv")
            keep = split == "all" or (fold == test_fold) == (split == "test")
            if keep:
                samples.append(Sample(row["filename"], path, target, {"fold": fold}))
        if sorted(names) != list(range(len(names))):
            raise InputError(f"{csv_path}: targets {sorted(names)} are not 0..{len(names) - 1}")
        super().__init__(samples, transform, [names[i] for i in range(len(names))])


def read_audioset_labels(label_csv: str | Path) -> tuple[list[str], list[str]]:
    """Read ``class_labels_indices.csv``.

    Returns:
        ``(mids, display_names)``, index = class id.

    Raises:
        InputError: the file is missing, lacks a column, or the indices are not 0..K-1 in order.
    """
    path = Path(label_csv)
    rows = read_csv_table(path, ("index", "mid", "display_name"), "AudioSet class list")
    if [r["index"] for r in rows] != [str(i) for i in range(len(rows))]:
        raise InputError(f"{path}: the index column must run 0..{len(rows) - 1} in order")
    return [r["mid"] for r in rows], [r["display_name"] for r in rows]


class AudioSet(SampleDataset):
    """AudioSet-style multi-label clips (targets are multi-hot float tensors; evaluate with mAP).

    Args:
        root: folder with ``class_labels_indices.csv``, the segment lists ``<split>_segments.csv`` and the clips
            ``audio/<split>/<filename>``.
        split: ``balanced_train`` | ``unbalanced_train`` | ``eval``.
        transform: applied to the clip path.
        filename: template of a clip's file name, with ``{ytid}``, ``{start}`` and ``{end}`` (seconds as written).

    Items: ``{"id": ytid, "input", "target": Tensor[K] multi-hot}``; ``classes`` are display names, ``mids`` the ids.

    Raises:
        InputError: a file or clip is missing, a line is malformed, or a label MID is not in the class list.
    """

    SPLITS = ("balanced_train", "unbalanced_train", "eval")

    def __init__(
        self,
        root: str | Path,
        split: str = "balanced_train",
        transform: Transform | None = None,
        filename: str = "{ytid}.wav",
    ) -> None:
        root = require_dir(Path(root), "AudioSet")
        if split not in self.SPLITS:
            raise ConfigError(f"AudioSet: unknown split {split!r}; expected one of {list(self.SPLITS)}")
        mids, names = read_audioset_labels(root / "class_labels_indices.csv")
        seg_csv = require_file(root / f"{split}_segments.csv", "AudioSet segment list")
        entries = []
        with seg_csv.open(newline="") as f:
            for lineno, row in enumerate(csv.reader(f, skipinitialspace=True), start=1):
                if not row or row[0].startswith("#"):
                    continue
                if len(row) != 4:
                    raise InputError(
                        f"{seg_csv}:{lineno}: {len(row)} cells; expected YTID, start_seconds, end_seconds, "
                        '"positive_labels"'
                    )
                ytid, start, end, labels = row
                rel = Path("audio") / split / filename.format(ytid=ytid, start=start, end=end)
                entries.append((ytid, root / rel, labels, f"{seg_csv}:{lineno}"))
        self.mids = mids
        super().__init__(_multilabel_samples(entries, mids), transform, names)


class AudioSetJSON(SampleDataset):
    """Multi-label clips listed in an AST-style JSON datafile ``{"data": [{"wav": path, "labels": "/m/a,/m/b"}]}``.

    Speech Commands and ESC-50 converted by the AST / UniRepLKNet recipes use this format too.

    Args:
        datafile: the JSON file; relative ``wav`` paths are resolved against its folder.
        label_csv: ``class_labels_indices.csv``.
        transform: applied to the clip path.

    Items: ``{"id": wav as written, "input", "target": Tensor[K] multi-hot}``; ``classes`` are display names.

    Raises:
        InputError: the datafile or a clip is missing, an entry lacks ``wav``/``labels``, or a MID is unknown.
    """

    def __init__(self, datafile: str | Path, label_csv: str | Path, transform: Transform | None = None) -> None:
        path = require_file(Path(datafile), "AST JSON datafile")
        mids, names = read_audioset_labels(label_csv)
        try:
            data = json.loads(path.read_text())["data"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise InputError(
                f"{path}: not an AST datafile ({err}); expected {{'data': [{{'wav', 'labels'}}]}}"
            ) from err
        entries = []
        for i, entry in enumerate(data):
            if not isinstance(entry, dict) or "wav" not in entry or "labels" not in entry:
                raise InputError(f"{path}: entry {i} is {entry!r}; expected a dict with 'wav' and 'labels'")
            wav = Path(entry["wav"])
            wav = wav if wav.is_absolute() else path.parent / wav
            entries.append((str(entry["wav"]), wav, entry["labels"], f"{path} entry {i}"))
        self.mids = mids
        super().__init__(_multilabel_samples(entries, mids), transform, names)


def balanced_sample_weights(targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-clip weights for AST's balanced sampling of AudioSet (use with ``WeightedRandomSampler``).

    A label seen c times weighs 1000 / (c + 0.01) (AST's ``gen_weight_file``); a clip weighs the sum over its labels,
    so clips of rare labels are drawn more often.

    Args:
        targets: multi-hot Tensor[K] per clip (``dataset.targets``).

    Returns:
        float64 Tensor[N].
    """
    hot = torch.stack(list(targets)).to(torch.float64)  # (N, K)
    label_weight = 1000.0 / (hot.sum(0) + 0.01)
    return hot @ label_weight


def _multilabel_samples(entries: list[tuple[str, Path, str, str]], mids: list[str]) -> list[Sample]:
    """Turn (id, path, "mid,mid", where) entries into samples with multi-hot targets, checking files and MIDs."""
    index = {mid: i for i, mid in enumerate(mids)}
    samples = []
    for sample_id, path, labels, where in entries:
        codes = [m.strip() for m in labels.split(",") if m.strip()]
        unknown = [m for m in codes if m not in index]
        if not codes or unknown:
            raise InputError(f"{where}: labels {labels!r} hold no or unknown MID(s) {unknown}; see the class list")
        require_file(path, f"clip of {where}")
        samples.append(Sample(sample_id, path, multi_hot((index[m] for m in codes), len(mids))))
    return samples
