"""ScanObjectNN (Uy et al. 2019) h5 files.

Layout: ``root/<split dir>/{training,test}_<variant>.h5`` with ``data`` (N, 2048, 3) and ``label`` (N,). The default
is PB_T50_RS, ``main_split/{training,test}_objectdataset_augmentedrot_scale75.h5``, 15 classes. Samples are float32
arrays [2048, 3].
"""

from __future__ import annotations

from pathlib import Path

from unilk.datasets.base import SampleDataset, Transform, canonical_split, require_dir
from unilk.datasets.modelnet import h5_samples

__all__ = ["SCANOBJECTNN_CLASSES", "ScanObjectNN"]

#: ScanObjectNN's 15 categories in label order.
SCANOBJECTNN_CLASSES: tuple[str, ...] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed", "pillow", "sink",
    "sofa", "toilet",
)  # fmt: skip


class ScanObjectNN(SampleDataset):
    """ScanObjectNN h5 files (default PB_T50_RS, the hardest variant that papers report).

    Args:
        root: the folder holding ``main_split/`` (and the other variant folders).
        split: ``train`` | ``test``.
        transform: applied to each [2048, 3] array.
        variant: file-name suffix: ``objectdataset_augmentedrot_scale75`` (PB_T50_RS), ``objectdataset`` (OBJ_BG with
            ``main_split``, OBJ_ONLY with ``main_split_nobg``), ...
        split_dir: ``main_split`` or ``main_split_nobg``.

    Raises:
        InputError: the h5 file is missing or corrupt, or a label is not 0..14.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        variant: str = "objectdataset_augmentedrot_scale75",
        split_dir: str = "main_split",
    ) -> None:
        root = require_dir(Path(root), "ScanObjectNN")
        split = canonical_split(split, ("train", "test"), type(self).__name__)
        prefix = "training" if split == "train" else "test"
        path = root / split_dir / f"{prefix}_{variant}.h5"
        super().__init__(h5_samples([path], root, SCANOBJECTNN_CLASSES), transform, SCANOBJECTNN_CLASSES)
