"""Kinetics-style lists and class folders (videos, images, series)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ds_helpers import touch

from unilk.adapters.io import load_image, open_video
from unilk.datasets import ClassFolder, ImageFolder, Kinetics, SeriesFolder, VideoList, build_dataset
from unilk.errors import ConfigError, InputError


@pytest.fixture
def kinetics_root(tmp_path: Path) -> Path:
    """Folders train/{abseiling,archery}/*.mp4 (2 + 1), val/abseiling/*.mp4 (1) and VideoMAE-style lists."""
    for rel in ("train/abseiling/a1.mp4", "train/abseiling/a2.mp4", "train/archery/b1.mp4", "val/abseiling/a3.mp4"):
        touch(tmp_path / rel, "not really a video")
    touch(tmp_path / "lists" / "train.csv", "train/abseiling/a1.mp4 0\ntrain/archery/b1.mp4 1\n")
    touch(tmp_path / "lists" / "val.csv", "val/abseiling/a3.mp4,0\n")
    return tmp_path


def test_kinetics_folders(kinetics_root: Path) -> None:
    train = Kinetics(kinetics_root, "train")
    assert train.layout == "folders"
    assert train.classes == ["abseiling", "archery"]
    assert [s["id"] for s in train] == ["abseiling/a1.mp4", "abseiling/a2.mp4", "archery/b1.mp4"]
    assert train.targets == [0, 0, 1]
    assert len(Kinetics(kinetics_root, "validation")) == 1
    with pytest.raises(InputError, match=r"test"):
        Kinetics(kinetics_root, "test")


def test_kinetics_lists(kinetics_root: Path) -> None:
    (kinetics_root / "train.csv").write_text((kinetics_root / "lists" / "train.csv").read_text())
    ds = Kinetics(kinetics_root, "train", classes=["abseiling", "archery"])
    assert ds.layout == "list"
    assert len(ds) == 2
    assert ds.targets == [0, 1]
    assert ds[1]["input"] == str(kinetics_root / "train/archery/b1.mp4")
    val = VideoList(kinetics_root / "lists" / "val.csv", root=kinetics_root)
    assert val.classes == ["0"]
    assert val[0]["id"] == "val/abseiling/a3.mp4"
    with pytest.raises(ConfigError, match=r"layout"):
        Kinetics(kinetics_root, "train", layout="frames")


def test_video_list_errors(kinetics_root: Path) -> None:
    touch(kinetics_root / "bad.csv", "train/abseiling/a1.mp4\n")
    with pytest.raises(InputError, match=r"bad.csv:1"):
        VideoList(kinetics_root / "bad.csv", kinetics_root)
    touch(kinetics_root / "missing.csv", "train/abseiling/a9.mp4 0\n")
    with pytest.raises(InputError, match=r"a9.mp4"):
        VideoList(kinetics_root / "missing.csv", kinetics_root)
    touch(kinetics_root / "range.csv", "train/abseiling/a1.mp4 3\n")
    with pytest.raises(InputError, match=r"outside"):
        VideoList(kinetics_root / "range.csv", kinetics_root, classes=["a", "b"])
    corrupt = Kinetics(kinetics_root, "val", transform=lambda p: open_video(p, backend="pyav"))
    with pytest.raises(InputError, match=r"a3.mp4"):
        corrupt[0]


def test_class_folders(tmp_path: Path) -> None:
    for rel in ("train/cat/1.png", "train/cat/2.jpg", "train/dog/3.png", "train/.DS_Store"):
        touch(tmp_path / rel)
    ds = ImageFolder(tmp_path, "train", transform=load_image)
    assert len(ds) == 3
    assert ds.classes == ["cat", "dog"]
    assert ds.targets == [0, 0, 1]
    with pytest.raises(InputError, match=r"1.png"):
        ds[0]  # a text file named .png is reported, not skipped
    os.symlink(tmp_path / "gone.png", tmp_path / "train" / "dog" / "4.png")  # dangling: a sample that fails to load
    (tmp_path / "train" / "dog" / "5.png").mkdir()
    ds = ImageFolder(tmp_path, "train", transform=load_image)
    assert [s.id for s in ds.samples][-2:] == ["dog/4.png", "dog/5.png"]
    for index in (3, 4):
        with pytest.raises(InputError, match=r"no such image file|is a directory"):
            ds[index]
    touch(tmp_path / "train" / "dog" / "notes.txt")
    with pytest.raises(InputError, match=r"notes.txt"):
        ImageFolder(tmp_path, "train")
    touch(tmp_path / "series" / "up" / "a.csv", "date,v\n2020-01-01 00:00:00,1\n")
    assert SeriesFolder(tmp_path / "series").targets == [0]
    assert len(ClassFolder(tmp_path / "series", extensions={".csv"}, classes=["down", "up"])) == 1
    with pytest.raises(InputError, match=r"no class folders"):
        ImageFolder(tmp_path / "series" / "up")


def test_build_dataset_by_name(kinetics_root: Path) -> None:
    ds = build_dataset("kinetics", root=kinetics_root, split="train", layout="folders")
    assert isinstance(ds, Kinetics)
    assert len(ds) == 3
    with pytest.raises(ConfigError, match="layout"):
        build_dataset("kinetics", root=kinetics_root, layuot="folders")
    with pytest.raises(ConfigError, match="speech_commands"):
        build_dataset("kinetic", root=kinetics_root)
