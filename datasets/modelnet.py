"""ModelNet40 in its three published forms.

Layouts read:

* mesh folders (``ModelNet40.zip``): ``root/<class>/{train,test}/<class>_<nnnn>.off`` (9,843 / 2,468 shapes). Other
  point formats laid out the same way (``.ply``) are read with ``extension=".ply"``.
* PointNet HDF5 (``modelnet40_ply_hdf5_2048``): ``ply_data_{train,test}<k>.h5`` holding ``data`` (N, 2048, 3) and
  ``label`` (N, 1), listed in ``{train,test}_files.txt``, with ``shape_names.txt``.
* ``modelnet40_normal_resampled``: ``modelnet40_shape_names.txt``, ``modelnet40_{train,test}.txt`` (ids such as
  ``airplane_0001``) and ``<class>/<id>.txt`` (``x,y,z,nx,ny,nz`` per line, 10,000 points).

h5 samples are float32 arrays [2048, 3]; the other forms give file paths (the points adapter reads them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unilk.datasets.base import (
    Sample,
    SampleDataset,
    Transform,
    canonical_split,
    read_lines,
    require_dir,
    require_file,
)
from unilk.errors import InputError

__all__ = [
    "ModelNet40",
    "ModelNet40H5",
    "ModelNet40Resampled",
    "h5_samples",
    "read_point_h5",
]

logger = logging.getLogger(__name__)


class ModelNet40(SampleDataset):
    """ModelNet40 (or ModelNet10) mesh folders: ``root/<class>/<split>/<file><extension>``.

    Args:
        root: folder of the class folders.
        split: ``train`` | ``test``.
        transform: applied to the file path (a ``PointsAdapter`` samples points from the mesh).
        extension: file extension of the shapes (``.off`` in the release).

    Items: ``{"id": "<class>/<split>/<file>", "input", "target": int}``.

    Raises:
        InputError: no class folders, a class folder without the split folder, or a foreign file in a split folder.
    """

    def __init__(
        self, root: str | Path, split: str = "train", transform: Transform | None = None, extension: str = ".off"
    ) -> None:
        root = require_dir(Path(root), "ModelNet40")
        split = canonical_split(split, ("train", "test"), type(self).__name__)
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise InputError(f"{root}: no class folders; expected ModelNet's <class>/{{train,test}}/*.off layout")
        samples = []
        for target, name in enumerate(classes):
            folder = require_dir(root / name / split, f"ModelNet class {name!r} {split}")
            for path in sorted(folder.iterdir()):
                if path.name.startswith("."):
                    continue
                if path.suffix.lower() != extension:
                    raise InputError(f"{path}: unexpected file in ModelNet; expected *{extension} shapes only")
                samples.append(Sample(f"{name}/{split}/{path.name}", path, target))
        super().__init__(samples, transform, classes)


def read_point_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``data`` [N, P, 3+] and ``label`` [N] or [N, 1] from a PointNet / ScanObjectNN h5 file.

    Returns:
        ``(points float32 [N, P, 3], labels int64 [N])``.

    Raises:
        InputError: the file is missing, not HDF5, lacks a key, or the shapes disagree.
    """
    import h5py

    require_file(path, "point-cloud h5 file")
    try:
        with h5py.File(path, "r") as f:
            data = np.asarray(f["data"][...], dtype=np.float32)
            label = np.asarray(f["label"][...]).reshape(-1).astype(np.int64)
    except KeyError as err:
        raise InputError(f"{path}: missing dataset {err}; expected 'data' (N, P, 3) and 'label' (N,)") from err
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err}); re-download it") from err
    if data.ndim != 3 or data.shape[2] < 3 or data.shape[0] != label.shape[0]:
        raise InputError(f"{path}: data {data.shape} and label {label.shape}; expected (N, P, 3) and (N,)")
    return np.ascontiguousarray(data[:, :, :3]), label


def h5_samples(files: Sequence[Path], root: Path, classes: Sequence[str]) -> list[Sample]:
    """Samples with ids ``<file relative to root>:<row>`` holding arrays [P, 3]; labels must index ``classes``."""
    samples = []
    for path in files:
        points, labels = read_point_h5(path)
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise InputError(f"{path}: labels span {labels.min()}..{labels.max()}; expected 0..{len(classes) - 1}")
        rel = path.relative_to(root).as_posix()
        samples += [Sample(f"{rel}:{i}", points[i], int(labels[i])) for i in range(len(labels))]
    return samples


class ModelNet40H5(SampleDataset):
    """PointNet's ``modelnet40_ply_hdf5_2048`` files.

    Args:
        root: the ``modelnet40_ply_hdf5_2048`` folder.
        split: ``train`` | ``test``.
        transform: applied to each [2048, 3] array.

    The h5 files are those named in ``<split>_files.txt`` (by base name, since the list holds the authors' paths);
    without that list, every ``ply_data_<split>*.h5`` in ``root``.

    Raises:
        InputError: ``shape_names.txt`` or a listed file is missing or corrupt, or a label is out of range.
    """

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None) -> None:
        root = require_dir(Path(root), "ModelNet40 HDF5")
        split = canonical_split(split, ("train", "test"), type(self).__name__)
        classes = read_lines(root / "shape_names.txt", "ModelNet40 shape_names.txt")
        listing = root / f"{split}_files.txt"
        if listing.is_file():
            files = [root / Path(line).name for line in read_lines(listing, "h5 file list")]
        else:
            files = sorted(root.glob(f"ply_data_{split}*.h5"))
        if not files:
            raise InputError(f"{root}: no ply_data_{split}*.h5 files and no {listing.name}")
        super().__init__(h5_samples(files, root, classes), transform, classes)


class ModelNet40Resampled(SampleDataset):
    """``modelnet40_normal_resampled`` (10,000 points with normals per shape, as text).

    Args:
        root: the ``modelnet40_normal_resampled`` folder.
        split: ``train`` | ``test``.
        transform: applied to the ``.txt`` path.
        num_classes: 40, or 10 for the ``modelnet10_*`` files in the same folder.

    Raises:
        InputError: a list file or a shape file is missing, or an id names an unknown class.
    """

    def __init__(
        self, root: str | Path, split: str = "train", transform: Transform | None = None, num_classes: int = 40
    ) -> None:
        root = require_dir(Path(root), "modelnet40_normal_resampled")
        split = canonical_split(split, ("train", "test"), type(self).__name__)
        prefix = f"modelnet{num_classes}"
        classes = read_lines(root / f"{prefix}_shape_names.txt", "shape names")
        index = {name: i for i, name in enumerate(classes)}
        samples = []
        for shape_id in read_lines(root / f"{prefix}_{split}.txt", f"{split} shape list"):
            name = shape_id.rsplit("_", 1)[0]
            if name not in index:
                raise InputError(f"{root / f'{prefix}_{split}.txt'}: id {shape_id!r} has unknown class {name!r}")
            path = require_file(root / name / f"{shape_id}.txt", f"shape listed in {prefix}_{split}.txt")
            samples.append(Sample(shape_id, path, index[name]))
        super().__init__(samples, transform, classes)
