"""Time-series classification archives in the UCR / UEA formats: ``NAME_TRAIN.ts`` / ``NAME_TEST.ts`` (also ``.arff``
and ``.tsv``), univariate or multivariate, of equal or variable length, with the archive's own train / test split.

Formats read (one split per file):

* ``.ts`` (sktime / aeon): ``#`` (or ``%``) comments, ``@`` header lines (``@classLabel true <labels>`` declares the
  classes in order, ``@timeStamps true`` marks ``(time,value)`` tuples), then one case per line after ``@data``:
  dimensions separated by ``:``, values by ``,``, the label last.
* ``.arff`` (Weka): ``%`` comments; univariate files list one numeric ``@attribute`` per step; multivariate files have
  one ``relational`` attribute whose quoted value holds the dimensions separated by ``\\n``. The last attribute is the
  nominal class ``{a,b,c}``, which gives the class order.
* ``.tsv`` (UCR 2018): no header; each line is ``label<TAB>v1<TAB>v2 ...``; shorter series are padded with ``NaN``.
  The classes are the labels of both split files, in numeric order when they are all numbers, else in text order.

Labels stay as written (``"1"``, ``"-1"``, ``"Walking"``); the class index is the label's position in the class list.

Variable lengths and missing values (``?``, ``NaN``): trailing steps missing in every dimension are the padding of a
shorter series and are removed, so a case keeps its own length (dimensions of one case that differ in length are padded
the same way). With ``missing="interpolate"`` (the default) any other missing value is filled by linear interpolation
along time within its dimension, and missing steps at either end take the nearest observed value; a dimension with no
observed value at all is an error. With ``missing="error"`` any missing value is an error. Errors are
:class:`~unilk.errors.InputError` naming the file and line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unilk.adapters.io import SERIES_EXTENSIONS
from unilk.datasets.base import Sample, SampleDataset, Transform, canonical_split, require_dir, require_file
from unilk.datasets.folders import ClassFolder
from unilk.errors import ConfigError, InputError

__all__ = [
    "ARCHIVE_FORMATS",
    "ArchiveSplit",
    "SeriesClassification",
    "UCRArchive",
    "fill_missing",
    "find_archive",
    "read_archive_file",
]

logger = logging.getLogger(__name__)

#: archive file formats, in the order they are preferred when a problem ships several.
ARCHIVE_FORMATS = (".ts", ".arff", ".tsv")
MISSING_POLICIES = ("interpolate", "error")
_SPLIT_SUFFIX = {"train": "TRAIN", "test": "TEST"}
_TIMESTAMPED_VALUE = re.compile(r"\(([^,()]*),([^()]*)\)")


@dataclass(frozen=True)
class ArchiveSplit:
    """One split file, parsed.

    Attributes:
        path: the file.
        series: one float32 array [T_i, D] per case (T_i may differ; D is the same for all).
        labels: the label of each case, as written.
        lines: the 1-based line of each case in the file (for messages).
        classes: the class list the file declares (``.ts`` / ``.arff``), or None (``.tsv``).
    """

    path: Path
    series: list[np.ndarray]
    labels: list[str]
    lines: list[int]
    classes: list[str] | None


# ------------------------------------------------------------------------------------------------ missing values


def fill_missing(values: np.ndarray, where: str, policy: str = "interpolate") -> np.ndarray:
    """Drop trailing padding and fill missing values of one case (see the module doc).

    Args:
        values: float array [T, D] with NaN for missing values.
        where: ``file:line``, named in errors.
        policy: ``interpolate`` or ``error``.

    Returns:
        float32 array [T', D], T' ≤ T, without NaN.

    Raises:
        InputError: no observed step, a dimension with no observed value, or (``error``) any missing value.
        ConfigError: an unknown policy.
    """
    if policy not in MISSING_POLICIES:
        raise ConfigError(f"missing: got {policy!r}, expected one of {list(MISSING_POLICIES)}")
    observed_rows = np.nonzero(~np.isnan(values).all(axis=1))[0]
    if observed_rows.size == 0:
        raise InputError(f"{where}: the case has no observed value")
    values = values[: observed_rows[-1] + 1]
    missing = np.isnan(values)
    if not missing.any():
        return values.astype(np.float32)
    if policy == "error":
        step, dim = (int(i) for i in np.argwhere(missing)[0])
        raise InputError(
            f"{where}: {int(missing.sum())} missing value(s) (first at step {step}, dimension {dim}); use "
            "missing='interpolate' to fill them"
        )
    filled = values.astype(np.float64)
    steps = np.arange(len(values))
    for dim in np.nonzero(missing.any(axis=0))[0]:
        known = ~missing[:, dim]
        if not known.any():
            raise InputError(f"{where}: dimension {int(dim)} has no observed value; it cannot be filled")
        # np.interp holds the end values constant outside the known range: the nearest observation
        filled[:, dim] = np.interp(steps, steps[known], values[known, dim])
    return filled.astype(np.float32)


# ------------------------------------------------------------------------------------------------------ parsers


def _parse_value(text: str, where: str) -> float:
    text = text.strip()
    if text in ("?", "") or text.lower() == "nan":
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: {text[:30]!r} is not a number or a missing value ('?', 'NaN')") from None


def _stack_dimensions(dims: list[list[float]]) -> np.ndarray:
    """Dimensions of one case (lists of values) -> [T, D], shorter dimensions padded with NaN at the end."""
    length = max(len(d) for d in dims)
    out = np.full((length, len(dims)), np.nan)
    for j, dim in enumerate(dims):
        out[: len(dim), j] = dim
    return out


def _read_lines(path: Path) -> list[str]:
    require_file(path, "archive file")
    try:
        return path.read_text(encoding="utf-8", errors="strict").splitlines()
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})") from None


def _header_flag(value: str, where: str) -> bool:
    word = value.strip().lower()
    if word not in ("true", "false"):
        raise InputError(f"{where}: expected 'true' or 'false', got {value.strip()!r}")
    return word == "true"


CaseParser = Callable[[str, str], tuple[list[list[float]], str]]


def _read_cases(
    path: Path, lines: list[str], first: int, comments: tuple[str, ...], parse: CaseParser, classes: list[str] | None
) -> ArchiveSplit:
    """The cases of a split file: ``lines[first:]``, one case per line, blank and comment lines skipped.

    ``parse(line, where)`` returns a case's dimensions (lists of values) and its label; ``where`` is ``file:line``.
    Every case must have as many dimensions as the first.
    """
    series, labels, rows = [], [], []
    for lineno, raw in enumerate(lines[first:], start=first + 1):
        line = raw.strip()
        if not line or (comments and line.startswith(comments)):
            continue
        where = f"{path}:{lineno}"
        dims, label = parse(line, where)
        if series and len(dims) != series[0].shape[1]:
            raise InputError(f"{where}: {len(dims)} dimension(s), earlier cases have {series[0].shape[1]}")
        series.append(_stack_dimensions(dims))
        labels.append(label)
        rows.append(lineno)
    return ArchiveSplit(path, series, labels, rows, classes)


def _read_ts(path: Path) -> ArchiveSplit:
    lines = _read_lines(path)
    classes: list[str] | None = None
    timestamps = False
    data_start = None
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "%")):
            continue
        if not line.startswith("@"):
            raise InputError(f"{path}:{lineno}: data before the '@data' line; expected '@' header lines first")
        key, _, value = line.partition(" ")
        key = key.lower()
        where = f"{path}:{lineno}"
        if key == "@data":
            data_start = lineno
            break
        elif key == "@classlabel":
            words = value.split()
            if not words or not _header_flag(words[0], where):
                raise InputError(f"{where}: '@classLabel false': a file without class labels cannot be classified")
            classes = words[1:]
            if not classes:
                raise InputError(f"{where}: '@classLabel true' lists no classes")
        elif key == "@targetlabel":
            raise InputError(f"{where}: a regression archive ('@targetLabel'); only classification is supported")
        elif key == "@timestamps":
            timestamps = _header_flag(value, where)
        else:
            # @problemName, @univariate, @dimensions, @equalLength, @seriesLength, @missing: checked from the data
            continue
    if data_start is None:
        raise InputError(f"{path}: no '@data' line; not a .ts file")
    if classes is None:
        raise InputError(f"{path}: no '@classLabel true <labels>' header line")

    def parse(line: str, where: str) -> tuple[list[list[float]], str]:
        if timestamps:  # times hold ':' too, so dimensions split only between ')' and '('
            body, _, label = line.rpartition(":")
            fields = re.split(r"(?<=\))\s*:\s*(?=\()", body) if body else []
        else:
            *fields, label = line.split(":")
        if not fields:
            raise InputError(f"{where}: no ':' before the label; expected 'dim1:dim2:...:label'")
        if timestamps:
            dims = [[_parse_value(v, where) for _, v in _TIMESTAMPED_VALUE.findall(f)] for f in fields]
        else:
            dims = [[_parse_value(v, where) for v in f.split(",")] for f in fields]
        if any(not d for d in dims):
            raise InputError(f"{where}: a dimension has no values")
        return dims, label.strip()

    return _read_cases(path, lines, data_start, ("#", "%"), parse, classes)


def _arff_nominal(spec: str, where: str) -> list[str]:
    match = re.fullmatch(r"\{(.*)\}", spec.strip())
    if match is None:
        raise InputError(f"{where}: the class attribute must be nominal ('{{a,b,...}}'), got {spec.strip()!r}")
    return [c.strip().strip("'\"") for c in match.group(1).split(",") if c.strip()]


def _read_arff(path: Path) -> ArchiveSplit:
    lines = _read_lines(path)
    attributes: list[tuple[str, int]] = []  # (type, line) of each top-level attribute
    relational, data_start = None, None
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        words = line.split(None, 2)
        key = words[0].lower()
        if key == "@data":
            data_start = lineno
            break
        elif key == "@attribute":
            if len(words) < 3:
                raise InputError(f"{path}:{lineno}: '@attribute' needs a name and a type")
            if relational is None:
                attributes.append((words[2], lineno))
                relational = words[1] if words[2].strip().lower() == "relational" else None
        elif key == "@end":
            relational = None
        elif key == "@relation":
            continue
        else:
            raise InputError(f"{path}:{lineno}: unexpected header line {line[:40]!r}")
    if data_start is None or len(attributes) < 2:
        raise InputError(f"{path}: no '@data' line after at least two '@attribute' lines; not a .arff archive file")
    class_spec, class_line = attributes[-1]
    classes = _arff_nominal(class_spec, f"{path}:{class_line}")
    multivariate = attributes[0][0].strip().lower() == "relational"
    num_steps = len(attributes) - 1

    def parse(line: str, where: str) -> tuple[list[list[float]], str]:
        body, sep, label = line.rpartition(",")
        if not sep:
            raise InputError(f"{where}: no ',' before the label")
        if multivariate:
            quoted = body.strip()
            if len(quoted) < 2 or quoted[0] != quoted[-1] or quoted[0] not in "'\"":
                raise InputError(f"{where}: a relational value must be quoted ('dim1\\ndim2...')")
            return [[_parse_value(v, where) for v in d.split(",")] for d in quoted[1:-1].split("\\n")], _unquote(label)
        values = [_parse_value(v, where) for v in body.split(",")]
        if len(values) != num_steps:
            raise InputError(f"{where}: {len(values)} values, the header declares {num_steps}")
        return [values], _unquote(label)

    return _read_cases(path, lines, data_start, ("%",), parse, classes)


def _unquote(label: str) -> str:
    return label.strip().strip("'\"")


def _read_tsv(path: Path) -> ArchiveSplit:
    def parse(line: str, where: str) -> tuple[list[list[float]], str]:
        label, *values = line.split("\t")
        if not values:
            raise InputError(f"{where}: no tab-separated values after the label; expected 'label<TAB>v1<TAB>v2...'")
        return [[_parse_value(v, where) for v in values]], label.strip()

    return _read_cases(path, _read_lines(path), 0, (), parse, None)


def read_archive_file(path: str | Path) -> ArchiveSplit:
    """Parse one ``.ts``, ``.arff`` or ``.tsv`` split file (missing values stay NaN; see :func:`fill_missing`).

    Raises:
        InputError: a missing, empty or malformed file (the message names the file and line), no cases, or a case
            with another number of dimensions than the first (named with its line).
    """
    path = Path(path)
    readers = {".ts": _read_ts, ".arff": _read_arff, ".tsv": _read_tsv}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: unknown archive format; expected one of {list(ARCHIVE_FORMATS)}")
    split = reader(path)
    if not split.series:
        raise InputError(f"{path}: no cases after the header")
    if split.classes is not None:
        unknown = sorted(set(split.labels) - set(split.classes))
        if unknown:
            line = split.lines[split.labels.index(unknown[0])]
            raise InputError(f"{path}:{line}: label {unknown[0]!r} is not a declared class {split.classes}")
    return split


# ------------------------------------------------------------------------------------------------------ datasets


def find_archive(root: Path, name: str | None = None) -> tuple[str, dict[str, Path]]:
    """The problem name and its ``{"train": path, "test": path}`` files in ``root``.

    A problem shipped in several formats is read from the first of :data:`ARCHIVE_FORMATS` that has both splits.

    Raises:
        InputError: no archive files, several problems and no ``name``, or a problem without both splits.
    """
    found: dict[str, dict[str, dict[str, Path]]] = {}
    for path in sorted(root.iterdir()):
        stem, suffix = path.stem, path.suffix.lower()
        if not path.is_file() or suffix not in ARCHIVE_FORMATS:
            continue
        for split, tag in _SPLIT_SUFFIX.items():
            if stem.upper().endswith("_" + tag):
                found.setdefault(stem[: -len(tag) - 1], {}).setdefault(suffix, {})[split] = path
    if not found:
        raise InputError(f"{root}: no NAME_TRAIN / NAME_TEST archive files ({', '.join(ARCHIVE_FORMATS)})")
    if name is None:
        if len(found) > 1:
            raise InputError(f"{root}: several problems {sorted(found)}; pass name= to choose one")
        name = next(iter(found))
    if name not in found:
        raise InputError(f"{root}: no archive files for problem {name!r}; found {sorted(found)}")
    for suffix in ARCHIVE_FORMATS:
        files = found[name].get(suffix, {})
        if len(files) == len(_SPLIT_SUFFIX):
            return name, files
    have = sorted(str(p.name) for files in found[name].values() for p in files.values())
    raise InputError(f"{root}: problem {name!r} needs both {name}_TRAIN and {name}_TEST in one format; found {have}")


def _sort_labels(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


class UCRArchive(SampleDataset):
    """One problem of a UCR / UEA archive folder (``root/NAME_TRAIN.ts`` and ``root/NAME_TEST.ts``, or .arff / .tsv).

    Args:
        root: the folder holding the problem's files.
        split: ``train`` or ``test`` (the archive's own split).
        name: the problem name; None when ``root`` holds exactly one problem.
        missing: ``interpolate`` or ``error`` (see the module doc).
        transform: applied to each case, a float32 array [T, D] (e.g. a ``SeriesAdapter``).

    Items: ``{"id": "NAME_TRAIN:<case>", "input", "target": int}``; ``classes`` are the labels as written.

    Raises:
        InputError: missing or malformed files (named with the line), a label that is not a class, or splits with
            different numbers of dimensions.
        ConfigError: an unknown split or missing-value policy.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        name: str | None = None,
        missing: str = "interpolate",
        transform: Transform | None = None,
    ) -> None:
        root = require_dir(Path(root), "UCR/UEA archive")
        split = canonical_split(split, tuple(_SPLIT_SUFFIX), type(self).__name__)
        if missing not in MISSING_POLICIES:
            raise ConfigError(f"UCRArchive.missing: got {missing!r}, expected one of {list(MISSING_POLICIES)}")
        self.name, files = find_archive(root, name)
        parsed = read_archive_file(files[split])
        # the class list must not depend on the split read: declared by the file, else the labels of both splits
        other = read_archive_file(files["test" if split == "train" else "train"])
        classes = parsed.classes or _sort_labels(set(parsed.labels) | set(other.labels))
        if parsed.series[0].shape[1] != other.series[0].shape[1]:
            raise InputError(
                f"{files[split]}: {parsed.series[0].shape[1]} dimension(s), but {other.path} has "
                f"{other.series[0].shape[1]}"
            )
        index = {label: i for i, label in enumerate(classes)}
        samples = []
        for case, (values, label, line) in enumerate(zip(parsed.series, parsed.labels, parsed.lines)):
            where = f"{parsed.path}:{line}"
            if label not in index:
                raise InputError(f"{where}: label {label!r} is not a declared class {classes}")
            samples.append(Sample(f"{parsed.path.stem}:{case}", fill_missing(values, where, missing), index[label]))
        self.split, self.path = split, parsed.path
        super().__init__(samples, transform, classes)


class SeriesClassification(SampleDataset):
    """Series classification from either layout, chosen by what ``root`` holds.

    * an archive folder (``NAME_TRAIN.ts`` / ``NAME_TEST.ts``, or ``.arff`` / ``.tsv``): read as :class:`UCRArchive`;
    * class folders (``root/<split>/<class>/<id>.csv|.npy|.npz``): read as :class:`~unilk.datasets.SeriesFolder`.

    Args:
        root: the dataset folder.
        split: ``train`` or ``test`` (or any split folder of a class-folder layout).
        name: the archive problem (archives with several problems only).
        missing: the archive missing-value policy (class-folder files must hold no missing values).
        transform: applied to each series (a ``SeriesAdapter``).

    Attributes:
        layout: ``archive`` or ``folders``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        name: str | None = None,
        missing: str = "interpolate",
        transform: Transform | None = None,
    ) -> None:
        root = require_dir(Path(root), "series classification")
        has_archive = any(p.is_file() and p.suffix.lower() in ARCHIVE_FORMATS for p in root.iterdir())
        inner: SampleDataset
        if has_archive:
            inner = UCRArchive(root, split, name, missing, transform)
            self.layout = "archive"
        elif (root / split).is_dir():
            inner = ClassFolder(root, split, SERIES_EXTENSIONS, transform)
            self.layout = "folders"
        else:
            raise InputError(
                f"{root}: neither archive files (NAME_TRAIN.ts / NAME_TEST.ts, .arff or .tsv) nor a {split!r} folder "
                "of class folders (<split>/<class>/<id>.csv)"
            )
        super().__init__(inner.samples, transform, inner.classes)
