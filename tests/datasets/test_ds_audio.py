"""Audio loaders on small trees in the published layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.utils.data
from ds_helpers import touch, write_wav

from unilk.adapters.io import load_audio
from unilk.datasets import (
    ESC50,
    SPEECH_COMMANDS_V2_CLASSES,
    AudioSet,
    AudioSetJSON,
    SpeechCommands,
    balanced_sample_weights,
)
from unilk.errors import ConfigError, InputError


@pytest.fixture
def sc_root(tmp_path: Path) -> Path:
    """yes: 4 clips, no: 3 clips, a noise folder; one val and one test clip."""
    for i in range(4):
        write_wav(tmp_path / "yes" / f"aa{i:06d}_nohash_0.wav")
    for i in range(3):
        write_wav(tmp_path / "no" / f"bb{i:06d}_nohash_1.wav")
    write_wav(tmp_path / "_background_noise_" / "white_noise.wav")
    touch(tmp_path / "validation_list.txt", "yes/aa000000_nohash_0.wav\n")
    touch(tmp_path / "testing_list.txt", "no/bb000002_nohash_1.wav\nyes/aa000003_nohash_0.wav\n")
    return tmp_path


def test_speech_commands_splits_and_labels(sc_root: Path) -> None:
    train = SpeechCommands(sc_root, "training")
    val, test = SpeechCommands(sc_root, "validation"), SpeechCommands(sc_root, "test")
    assert (len(train), len(val), len(test)) == (4, 1, 2)
    assert train.classes == ["no", "yes"]
    assert [s["target"] for s in train] == [0, 0, 1, 1]
    assert {s["id"] for s in train}.isdisjoint({s["id"] for s in test})
    item = val[0]
    assert item["id"] == "yes/aa000000_nohash_0.wav"
    assert item["target"] == 1
    assert item["speaker"] == "aa000000"
    assert item["input"] == str(sc_root / "yes" / "aa000000_nohash_0.wav")


def test_speech_commands_fixed_class_list(sc_root: Path) -> None:
    ds = SpeechCommands(sc_root, "train", classes=SPEECH_COMMANDS_V2_CLASSES)
    assert len(ds.classes) == 35
    assert [ds.classes[t] for t in ds.targets] == ["no", "no", "yes", "yes"]
    with pytest.raises(InputError, match=r"yes"):
        SpeechCommands(sc_root, "train", classes=["no", "up"])


def test_speech_commands_missing_and_corrupt(sc_root: Path) -> None:
    corrupt = sc_root / "no" / "bb000000_nohash_1.wav"
    corrupt.write_bytes(b"RIFF\x00\x10\x00\x00WAVEfmt ")
    ds = SpeechCommands(sc_root, "train", transform=load_audio)
    with pytest.raises(InputError, match=r"bb000000_nohash_1.wav"):
        ds[0]
    touch(sc_root / "testing_list.txt", "no/missing_nohash_0.wav\n")
    with pytest.raises(InputError, match=r"missing_nohash_0.wav"):
        SpeechCommands(sc_root, "train")
    with pytest.raises(ConfigError, match=r"split"):
        SpeechCommands(sc_root, "dev")


def _esc50_tree(root: Path, rows: list[tuple[str, int, int, str]]) -> Path:
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    for name, fold, target, category in rows:
        write_wav(root / "audio" / name)
        lines.append(f"{name},{fold},{target},{category},False,{name.split('-')[1]},A")
    touch(root / "meta" / "esc50.csv", "\n".join(lines) + "\n")
    return root


def test_esc50_folds(tmp_path: Path) -> None:
    rows = [(f"{f}-10{f}{t}-A-{t}.wav", f, t, ["dog", "rain"][t]) for f in range(1, 6) for t in range(2)]
    root = _esc50_tree(tmp_path, rows)
    for fold in range(1, 6):
        train, test = ESC50(root, "train", test_fold=fold), ESC50(root, "test", test_fold=fold)
        assert (len(train), len(test)) == (8, 2)
        assert {s["fold"] for s in test} == {fold}
        assert fold not in {s["fold"] for s in train}
    assert len(ESC50(root, "all")) == 10
    assert ESC50(root).classes == ["dog", "rain"]
    assert sorted(ESC50(root, "test", test_fold=3).targets) == [0, 1]
    with pytest.raises(ConfigError):
        ESC50(root, test_fold=6)


def test_esc50_errors(tmp_path: Path) -> None:
    root = _esc50_tree(tmp_path / "a", [("1-100-A-0.wav", 1, 0, "dog"), ("2-101-A-0.wav", 2, 0, "dog")])
    (root / "audio" / "2-101-A-0.wav").unlink()
    with pytest.raises(InputError, match=r"2-101-A-0.wav"):
        ESC50(root)
    bad = _esc50_tree(tmp_path / "b", [("1-100-A-0.wav", 2, 0, "dog")])  # name says fold 1, row says fold 2
    with pytest.raises(InputError, match=r"does not match"):
        ESC50(bad)
    touch(bad / "meta" / "esc50.csv", "filename,fold,category\n1-100-A-0.wav,1,dog\n")
    with pytest.raises(InputError, match=r"target"):
        ESC50(bad)


def _audioset_tree(root: Path) -> Path:
    touch(root / "class_labels_indices.csv", 'index,mid,display_name\n0,/m/a,"Speech"\n1,/m/b,"Dog, bark"\n')
    touch(
        root / "eval_segments.csv",
        "# Segments csv created Sun Mar  5 10:54:25 2017\n# num_ytids=2\n# YTID, start_seconds, end_seconds, "
        'positive_labels\nclip1, 30.000, 40.000, "/m/a,/m/b"\nclip2, 0.000, 10.000, "/m/b"\n',
    )
    write_wav(root / "audio" / "eval" / "clip1.wav")
    write_wav(root / "audio" / "eval" / "clip2.wav")
    return root


def test_audioset_segments(tmp_path: Path) -> None:
    ds = AudioSet(_audioset_tree(tmp_path), "eval")
    assert len(ds) == 2
    assert ds.classes == ["Speech", "Dog, bark"]
    assert ds.mids == ["/m/a", "/m/b"]
    assert torch.equal(ds[0]["target"], torch.tensor([1.0, 1.0]))
    assert torch.equal(ds[1]["target"], torch.tensor([0.0, 1.0]))
    assert ds[1]["id"] == "clip2"


def test_audioset_errors(tmp_path: Path) -> None:
    root = _audioset_tree(tmp_path)
    (root / "audio" / "eval" / "clip2.wav").unlink()
    with pytest.raises(InputError, match=r"clip2.wav"):
        AudioSet(root, "eval")
    write_wav(root / "audio" / "eval" / "clip2.wav")
    with (root / "eval_segments.csv").open("a") as f:
        f.write('clip3, 0.000, 10.000, "/m/zzz"\n')
    with pytest.raises(InputError, match=r"/m/zzz"):
        AudioSet(root, "eval")
    with pytest.raises(ConfigError, match=r"balanced_train"):
        AudioSet(root, "train")


def test_audioset_json(tmp_path: Path) -> None:
    root = _audioset_tree(tmp_path)
    data = {"data": [{"wav": "audio/eval/clip1.wav", "labels": "/m/b"}]}
    touch(root / "eval.json", json.dumps(data))
    ds = AudioSetJSON(root / "eval.json", root / "class_labels_indices.csv")
    assert len(ds) == 1
    assert torch.equal(ds[0]["target"], torch.tensor([0.0, 1.0]))
    touch(root / "bad.json", '{"data": [{"wav": "audio/eval/clip1.wav"}]}')
    with pytest.raises(InputError, match=r"bad.json"):
        AudioSetJSON(root / "bad.json", root / "class_labels_indices.csv")


def test_raw_items_collate(sc_root: Path) -> None:
    batch = next(iter(torch.utils.data.DataLoader(SpeechCommands(sc_root, "train"), batch_size=3)))
    assert batch["input"][0] == str(sc_root / "no" / "bb000000_nohash_1.wav")
    assert batch["target"].tolist() == [0, 0, 1]


def test_balanced_sample_weights() -> None:
    targets = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])]
    weights = balanced_sample_weights(targets)
    # label 0 is seen 3 times, label 1 once: the clip with the rare label weighs most
    torch.testing.assert_close(weights, torch.tensor([1000 / 3.01, 1000 / 3.01, 1000 / 3.01 + 1000 / 1.01]).double())
