"""Atomic outputs: a file or folder appears complete under its final name, or not at all.

The output is written under a hidden temporary name in the destination's directory (so the final rename stays on one
file system), then renamed. If the writer or a check after it raises, the temporary output is removed and nothing is
left behind. Before the rename, every file gets the mode the user's umask gives a new file (some writers, such as
safetensors, create theirs private). An existing destination is never replaced: the caller must remove it first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from unilk.errors import ConfigError

__all__ = ["atomic_dir", "atomic_file", "refuse_existing"]


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; it is put back at once
    os.umask(mask)
    return mask


def _apply_umask(path: Path) -> None:
    """Give ``path`` (a file, or a folder and the files in it) the modes that new ones get under the user's umask."""
    mask = _umask()
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    for file in files:
        file.chmod(0o666 & ~mask)
    if path.is_dir():
        path.chmod(0o777 & ~mask)


def refuse_existing(dest: str | os.PathLike[str], what: str) -> None:
    """Raise when ``dest`` exists (an empty folder excepted): call it before long work that ends in a write.

    Raises:
        ConfigError: naming ``dest``.
    """
    dest = Path(dest)
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise ConfigError(f"{what} {str(dest)!r} already exists; remove it or pick another output path")


@contextlib.contextmanager
def atomic_file(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``dest``, on an exception removed.

    Raises:
        ConfigError: ``dest`` already exists.
    """
    dest = Path(dest)
    refuse_existing(dest, "output file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}{dest.suffix}")
    try:
        yield tmp
        _apply_umask(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder to fill; on success it is renamed to ``dest``, on an exception removed.

    An empty ``dest`` folder is replaced; any other existing ``dest`` is refused.

    Raises:
        ConfigError: ``dest`` already exists and is not an empty folder.
    """
    dest = Path(dest)
    refuse_existing(dest, "output folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a killed earlier run of this process id
    tmp.mkdir()
    try:
        yield tmp
        _apply_umask(tmp)
        if dest.is_dir():
            dest.rmdir()  # empty (checked above)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
