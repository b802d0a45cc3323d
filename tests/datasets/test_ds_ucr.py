"""UCR / UEA archive files (.ts, .arff, .tsv): formats, variable lengths, missing values, labels and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unilk.datasets import SeriesClassification, UCRArchive, build_dataset
from unilk.datasets.ucr import fill_missing, read_archive_file
from unilk.errors import ConfigError, InputError

TS_HEADER = "# a comment\n@problemName Toy\n@timeStamps false\n@univariate {uni}\n@classLabel true b a\n@data\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def write_ts_pair(root: Path, train: str, test: str, univariate: bool = True) -> Path:
    header = TS_HEADER.format(uni=str(univariate).lower())
    write(root / "Toy_TRAIN.ts", header + train)
    write(root / "Toy_TEST.ts", header + test)
    return root


def test_ts_univariate_variable_length_and_declared_class_order(tmp_path: Path) -> None:
    write_ts_pair(tmp_path, "1,2,3,4:a\n5,6:b\n\n7,8,9:a\n", "1,1:b\n")
    train = UCRArchive(tmp_path, "train")
    assert train.classes == ["b", "a"]  # the order of '@classLabel', not sorted
    assert [s.source.shape for s in train.samples] == [(4, 1), (2, 1), (3, 1)]
    assert train.targets == [1, 0, 1]
    np.testing.assert_array_equal(train.samples[2].source[:, 0], [7, 8, 9])
    item = train[1]
    assert item["id"] == "Toy_TRAIN:1"
    assert item["target"] == 0
    assert len(UCRArchive(tmp_path, "test")) == 1
    assert train.name == "Toy"


def test_ts_multivariate_and_timestamps(tmp_path: Path) -> None:
    write_ts_pair(tmp_path, "1,2,3:10,20,30:a\n4,5:40,50:b\n", "0,0:0,0:a\n", univariate=False)
    case = UCRArchive(tmp_path, "train").samples[0].source
    np.testing.assert_array_equal(case, [[1, 10], [2, 20], [3, 30]])
    stamped = write(
        tmp_path / "stamped.ts",
        "@problemName S\n@timeStamps true\n@classLabel true x y\n@data\n"
        "(2007-01-01 00:00:00,1.5),(2007-01-01 00:01:00,2.5):(2007-01-01 00:00:00,7),(2007-01-01 00:01:00,8):y\n",
    )
    split = read_archive_file(stamped)
    np.testing.assert_array_equal(split.series[0], [[1.5, 7], [2.5, 8]])
    assert split.labels == ["y"]


def test_arff_univariate_and_relational(tmp_path: Path) -> None:
    uni = (
        "% comment\n@relation Toy\n@attribute att1 numeric\n@attribute att2 numeric\n@attribute att3 numeric\n"
        "@attribute target {'up',down}\n@data\n1,2,3,up\n3,?,1,down\n"
    )
    write(tmp_path / "Toy_TRAIN.arff", uni)
    write(tmp_path / "Toy_TEST.arff", uni)
    train = UCRArchive(tmp_path, "train")
    assert train.classes == ["up", "down"]
    assert train.targets == [0, 1]
    np.testing.assert_array_equal(train.samples[1].source[:, 0], [3, 2, 1])  # '?' interpolated
    multi = (
        "@relation M\n@attribute relationalAtt relational\n@attribute d0 numeric\n@attribute d1 numeric\n"
        "@end relationalAtt\n@attribute activity {Walk,Run}\n@data\n'1,2,3\\n4,5,6',Run\n'7,8\\n9,10',Walk\n"
    )
    split = read_archive_file(write(tmp_path / "M_TRAIN.arff", multi))
    np.testing.assert_array_equal(split.series[0], [[1, 4], [2, 5], [3, 6]])
    assert split.series[1].shape == (2, 2)
    assert split.labels == ["Run", "Walk"]
    assert split.classes == ["Walk", "Run"]


def test_tsv_labels_as_written_and_nan_padding(tmp_path: Path) -> None:
    write(tmp_path / "Toy_TRAIN.tsv", "1\t0.5\t0.6\t0.7\n-1\t1\t2\tNaN\n10\t3\tNaN\t5\n")
    write(tmp_path / "Toy_TEST.tsv", "2\t1\t1\t1\n")
    train = UCRArchive(tmp_path, "train")
    # labels of both splits, numeric order; kept as written
    assert train.classes == ["-1", "1", "2", "10"]
    assert train.targets == [1, 0, 3]
    assert train.samples[1].source.shape == (2, 1)  # trailing NaN = a shorter series
    np.testing.assert_array_equal(train.samples[2].source[:, 0], [3, 4, 5])  # an inner NaN is interpolated
    assert UCRArchive(tmp_path, "test").classes == train.classes


def test_missing_policy() -> None:
    values = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, 5.0], [np.nan, np.nan]])
    filled = fill_missing(values, "f:3")
    # the all-missing last step is padding; ends take the nearest observation, inner gaps are interpolated
    np.testing.assert_array_equal(filled, [[2, 1], [2, 3], [2, 5]])
    with pytest.raises(InputError, match=r"f:3: 3 missing value\(s\) \(first at step 0, dimension 0\)"):
        fill_missing(values, "f:3", "error")
    with pytest.raises(InputError, match="dimension 1 has no observed value"):
        fill_missing(np.array([[1.0, np.nan], [2.0, np.nan]]), "f:3")
    with pytest.raises(InputError, match="no observed value"):
        fill_missing(np.full((3, 1), np.nan), "f:3")
    with pytest.raises(ConfigError, match="missing"):
        fill_missing(values, "f:3", "drop")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("Bad_TRAIN.ts", TS_HEADER.format(uni="true") + "1,2:a\n1,x:b\n", r"Bad_TRAIN.ts:8: 'x' is not a number"),
        ("Bad_TRAIN.ts", TS_HEADER.format(uni="true") + "1,2:a\n1,2:c\n", r"Bad_TRAIN.ts:8: label 'c' is not"),
        ("Bad_TRAIN.ts", TS_HEADER.format(uni="true") + "1,2:a\n1,2:3,4:b\n", r"Bad_TRAIN.ts:8: 2 dimension"),
        ("Bad_TRAIN.ts", TS_HEADER.format(uni="true") + "1,2\n", r"Bad_TRAIN.ts:7: no ':' before the label"),
        ("Bad_TRAIN.ts", "@problemName X\n1,2:a\n", r"Bad_TRAIN.ts:2: data before the '@data'"),
        ("Bad_TRAIN.ts", "@classLabel false\n@data\n1,2\n", r"Bad_TRAIN.ts:1: '@classLabel false'"),
        ("Bad_TRAIN.ts", "@classLabel true a\n", r"Bad_TRAIN.ts: no '@data' line"),
        ("Bad_TRAIN.ts", TS_HEADER.format(uni="true"), r"Bad_TRAIN.ts: no cases"),
        ("Bad_TRAIN.arff", "@relation R\n@attribute a numeric\n@attribute c {x}\n@data\n1,2,x\n", r"arff:5: 2 values"),
        ("Bad_TRAIN.arff", "@relation R\n@attribute a numeric\n@attribute c real\n@data\n1,2\n", r"arff:3: the class"),
        ("Bad_TRAIN.tsv", "1\t2\t3\n4\n", r"Bad_TRAIN.tsv:2: no tab-separated values"),
        ("Bad_TRAIN.csv", "1,2\n", r"Bad_TRAIN.csv: unknown archive format"),
        ("Bad_TRAIN.tsv", "", r"Bad_TRAIN.tsv: archive file is empty"),
    ],
)
def test_bad_files_name_the_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(InputError, match=message):
        read_archive_file(path)


def test_missing_values_in_a_dataset_name_the_line(tmp_path: Path) -> None:
    write(tmp_path / "Gap_TRAIN.tsv", "1\t2\t3\n2\tNaN\tNaN\n")
    write(tmp_path / "Gap_TEST.tsv", "1\t2\t?\t4\n")
    with pytest.raises(InputError, match=r"Gap_TRAIN.tsv:2: the case has no observed value"):
        UCRArchive(tmp_path, "train")
    np.testing.assert_array_equal(UCRArchive(tmp_path, "test").samples[0].source[:, 0], [2, 3, 4])
    with pytest.raises(InputError, match=r"Gap_TEST.tsv:1: 1 missing value"):
        UCRArchive(tmp_path, "test", missing="error")


def test_archive_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no NAME_TRAIN / NAME_TEST archive files"):
        UCRArchive(tmp_path)
    write_ts_pair(tmp_path, "1,2:a\n", "1,2:b\n")
    write(tmp_path / "Other_TRAIN.tsv", "1\t2\n")
    with pytest.raises(InputError, match=r"several problems \['Other', 'Toy'\]"):
        UCRArchive(tmp_path)
    with pytest.raises(InputError, match="needs both Other_TRAIN and Other_TEST"):
        UCRArchive(tmp_path, name="Other")
    assert len(UCRArchive(tmp_path, name="Toy")) == 1
    with pytest.raises(ConfigError, match="unknown split"):
        UCRArchive(tmp_path, "val", name="Toy")
    one = tmp_path / "one"
    one.mkdir()
    write(one / "P_TRAIN.tsv", "1\t2\t3\n")
    write(one / "P_TEST.tsv", "1\t2\n1\t2\n")
    assert len(UCRArchive(one, "test")) == 2
    write(one / "P_TEST.tsv", "1\t2:3\n")
    with pytest.raises(InputError, match=r"P_TEST.tsv:1: '2:3' is not a number"):
        UCRArchive(one, "train")


def test_series_classification_picks_the_layout(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    archive = write_ts_pair(tmp_path / "archive", "1,2,3:a\n", "1,2:b\n")
    ds = SeriesClassification(archive, "train")
    assert ds.layout == "archive"
    assert ds.classes == ["b", "a"]
    folders = tmp_path / "folders"
    for split in ("train", "test"):
        for label in ("down", "up"):
            (folders / split / label).mkdir(parents=True)
            np.save(folders / split / label / "s0.npy", np.arange(6.0).reshape(3, 2))
    ds = SeriesClassification(folders, "test", transform=lambda path: Path(path).parent.name)
    assert ds.layout == "folders"
    assert ds.classes == ["down", "up"]
    assert [item["input"] for item in ds] == ["down", "up"]
    with pytest.raises(InputError, match="neither archive files"):
        SeriesClassification(tmp_path, "train")
    assert isinstance(build_dataset("series_classification", root=archive, split="test"), SeriesClassification)
