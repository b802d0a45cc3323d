"""Odd and hostile inputs to encode and extract: batches never abort, no silent wrong answers, nothing misaligned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from unilk.encoding import Encoder, Maps
from unilk.errors import ConfigError, InputError
from unilk.extract import Item, extract, extract_items, list_inputs, read_embeddings

pytestmark = [
    pytest.mark.filterwarnings("ignore:UniRepLKNet.*smaller than the reach:UserWarning"),
]

MODEL = "test_unireplknet"
POINTS = {"num_points": 64, "image_size": 32}
AUDIO = {"num_mel_bins": 32, "target_frames": 48}


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(MODEL, pretrained=False, adapters={"audio": AUDIO, "points": POINTS}, device="cpu")


def _cloud(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((100, 3)).astype(np.float32)


def _points_dir(root: Path, count: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        np.save(root / f"c{i}.npy", _cloud(i))
    return root


# ------------------------------------------------------------------------------------------------------------ encode


def test_ambiguous_arrays_are_refused_with_how_to_say_which(encoder: Encoder) -> None:
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    stacked = np.stack([wave] * 8)
    with pytest.raises(InputError, match=r"8 clips, one clip with 8 channels.*layout='BT'"):
        encoder.encode(audio=stacked)
    assert encoder.encode(audio=list(stacked))["audio"].embeddings.shape[0] == 8
    assert encoder.encode(audio=stacked, layout="BT")["audio"].embeddings.shape[0] == 8
    assert encoder.encode(audio=(stacked, 16000))["audio"].embeddings.shape[0] == 1  # a pair is one 8-channel clip
    # a batch dimension is unambiguous where a sample has a fixed rank: points [B, N, 3]
    assert encoder.encode(points=np.stack([_cloud(i) for i in range(4)]))["points"].embeddings.shape[0] == 4


def test_record_mode_keeps_going_and_names_each_failure(encoder: Encoder, tmp_path: Path) -> None:
    np.save(tmp_path / "words.npy", np.array([["a", "b", "c"]] * 10))
    np.save(tmp_path / "good.npy", _cloud(0))
    out = encoder.encode(points=[str(tmp_path / "words.npy"), str(tmp_path / "good.npy")], on_error="record")
    enc = out["points"]
    assert enc.ids == [str(tmp_path / "good.npy")]
    assert enc.embeddings.shape[0] == 1
    assert [(e["id"], e["type"]) for e in enc.errors] == [(str(tmp_path / "words.npy"), "InputError")]
    assert "dtype <U1" in enc.errors[0]["error"]
    with pytest.raises(InputError, match="dtype <U1"):
        encoder.encode(points=[str(tmp_path / "words.npy")])  # the default still raises


def test_non_finite_maps_are_input_errors_and_never_embedded(encoder: Encoder) -> None:
    maps = torch.zeros(2, 1, 48, 32)
    maps[1, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN or inf"):
        encoder.encode(audio=Maps(maps))
    out = encoder.encode(audio=Maps(maps), on_error="record")["audio"]
    assert out.ids == ["audio[0]"]
    assert torch.isfinite(out.embeddings).all()
    assert out.errors[0]["id"] == "audio[1]"


def test_bad_devices_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="device: got 'tpu'"):
        Encoder(MODEL, pretrained=False, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            Encoder(MODEL, pretrained=False, device="cuda")


# ----------------------------------------------------------------------------------------------------------- extract


def _load_npy(path: str) -> np.ndarray:
    return np.load(path, allow_pickle=False).astype(np.float32)


def _embed_mean(samples: list[np.ndarray]) -> np.ndarray:
    return np.stack([s.mean(axis=0) for s in samples])


def test_any_loader_exception_is_that_inputs_error_and_reruns_go_on(tmp_path: Path) -> None:
    src = _points_dir(tmp_path / "src", 5)
    np.save(src / "c2.npy", np.array([["x", "y", "z"]] * 4))  # a string-dtype array: a raw ValueError when cast
    items = list_inputs(src)
    summary = extract_items(items, tmp_path / "out", load=_load_npy, embed=_embed_mean, shard_size=2, progress=False)
    assert (summary.done, summary.failed, summary.complete) == (4, 1, True)
    (error,) = summary.errors
    assert (error["id"], error["type"]) == ("c2.npy", "ValueError")
    assert "c2.npy" in error["error"]  # the message names the file
    ids, _ = read_embeddings(tmp_path / "out")
    assert ids == ["c0.npy", "c1.npy", "c3.npy", "c4.npy"]
    again = extract_items(items, tmp_path / "out", load=_load_npy, embed=_embed_mean, shard_size=2, progress=False)
    assert (again.skipped, again.complete) == (5, True)  # the rerun does not abort on the same file


def test_non_finite_embeddings_are_recorded_and_never_written(tmp_path: Path) -> None:
    src = _points_dir(tmp_path / "src", 4)
    np.save(src / "c1.npy", np.full((5, 3), 3e38, np.float32))  # finite input, but its mean overflows to inf

    def embed_sum(samples: list[np.ndarray]) -> np.ndarray:
        return np.stack([s.sum(axis=0, dtype=np.float32) for s in samples])

    summary = extract_items(list_inputs(src), tmp_path / "out", load=_load_npy, embed=embed_sum, progress=False)
    assert (summary.done, summary.failed) == (3, 1)
    assert summary.errors[0]["id"] == "c1.npy"
    assert "NaN or inf" in summary.errors[0]["error"]
    ids, emb = read_embeddings(tmp_path / "out")
    assert ids == ["c0.npy", "c2.npy", "c3.npy"]
    assert np.isfinite(emb).all()


def test_rows_that_overflow_float16_storage_are_recorded_and_never_written(tmp_path: Path) -> None:
    src = _points_dir(tmp_path / "src", 3)
    np.save(src / "c1.npy", np.full((5, 3), 1e5, np.float32))  # a finite float32 mean beyond float16's 65504

    kw = {"load": _load_npy, "embed": _embed_mean, "embedding_dtype": "float16", "progress": False}
    summary = extract_items(list_inputs(src), tmp_path / "out", **kw)
    assert (summary.done, summary.failed) == (2, 1)
    assert (summary.errors[0]["id"], summary.errors[0]["type"]) == ("c1.npy", "InputError")
    assert "float16 range" in summary.errors[0]["error"]
    ids, emb = read_embeddings(tmp_path / "out")
    assert ids == ["c0.npy", "c2.npy"]
    assert np.isfinite(emb).all()


def test_non_utf8_file_names_round_trip_exactly(tmp_path: Path) -> None:
    src = _points_dir(tmp_path / "src", 2)
    odd = os.fsdecode(b"caf\xe9-\xff.npy")  # Latin-1 bytes: not valid UTF-8
    np.save(src / odd, _cloud(7))
    items = list_inputs(src)
    assert odd in {item.id for item in items}
    summary = extract_items(items, tmp_path / "out", load=_load_npy, embed=_embed_mean, write_npy=True, progress=False)
    assert (summary.done, summary.failed, summary.complete) == (3, 0, True)
    ids, _ = read_embeddings(tmp_path / "out")
    assert ids == [item.id for item in items]  # exactly the listed ids, surrogate escapes included
    table = pq.read_table(tmp_path / "out" / "shards" / "part-00000.parquet")
    assert "caf\\xe9-\\xff.npy" in table.column("id").to_pylist()  # readable text for other tools
    assert os.fsencode(odd) in table.column("id_bytes").to_pylist()


def test_sidecar_ids_cannot_be_shifted_by_any_character(tmp_path: Path) -> None:
    src = _points_dir(tmp_path / "src", 3)
    manifest = tmp_path / "inputs.jsonl"
    odd_ids = ["plain", "two\nlines", 'quote"\r\u2028tab\t']
    manifest.write_text(
        "".join(json.dumps({"id": i, "path": str(src / f"c{k}.npy")}) + "\n" for k, i in enumerate(odd_ids))
    )
    items = list_inputs(manifest)
    extract_items(items, tmp_path / "out", load=_load_npy, embed=_embed_mean, write_npy=True, progress=False)
    lines = (tmp_path / "out" / "shards" / "part-00000.ids.jsonl").read_text().split("\n")[:-1]
    rows = np.load(tmp_path / "out" / "shards" / "part-00000.npy")
    assert [json.loads(line) for line in lines] == odd_ids
    assert len(lines) == rows.shape[0] == 3
    np.testing.assert_allclose(rows[1], _cloud(1).mean(axis=0), rtol=1e-6)


def test_stale_temporary_files_are_removed_on_resume(tmp_path: Path) -> None:
    src = _points_dir(tmp_path / "src", 4)
    items = list_inputs(src)
    extract_items(items, tmp_path / "out", load=_load_npy, embed=_embed_mean, shard_size=2, progress=False)
    stale = [tmp_path / "out" / "shards" / ".part-00001.parquet.tmp-0123456789ab", tmp_path / "out" / ".job.json.tmp-x"]
    for path in stale:
        path.write_bytes(b"partial")
    extract_items(items, tmp_path / "out", load=_load_npy, embed=_embed_mean, shard_size=2, progress=False)
    assert not any(path.exists() for path in stale)


def test_out_inside_the_source_is_excluded_and_bad_model_options_write_nothing(tmp_path: Path) -> None:
    src = _points_dir(tmp_path / "src", 3)
    out = src / "features"
    kwargs = {
        "model": MODEL,
        "pretrained": False,
        "adapter": POINTS,
        "device": "cpu",
        "progress": False,
        "num_workers": 0,
    }
    with pytest.raises(ConfigError, match="depthz"):
        extract("points", src, out, model_kwargs={"depthz": [1, 1, 1, 1]}, **kwargs)
    assert not (out / "job.json").exists()
    first = extract("points", src, out, **kwargs)  # the corrected rerun is not refused
    assert (first.done, first.complete) == (3, True)
    np.save(out / "stray.npy", _cloud(9))  # a points file inside --out: never an input
    second = extract("points", src, out, **kwargs)
    assert (second.skipped, second.done) == (3, 0)
    ids, _ = read_embeddings(out)
    assert ids == ["c0.npy", "c1.npy", "c2.npy"]


def test_symlink_loops_and_dangling_links_are_that_inputs_error(tmp_path: Path) -> None:
    src = _points_dir(tmp_path / "src", 2)
    os.symlink(src / "loop_b.npy", src / "loop_a.npy")
    os.symlink(src / "loop_a.npy", src / "loop_b.npy")
    os.symlink(src / "gone.npy", src / "dangling.npy")
    summary = extract(
        "points", src, tmp_path / "out", model=MODEL, pretrained=False, adapter=POINTS, device="cpu", progress=False,
        num_workers=0,
    )  # fmt: skip
    assert (summary.done, summary.failed, summary.complete) == (2, 3, True)
    assert sorted((e["id"], e["type"]) for e in summary.errors) == [
        ("dangling.npy", "InputError"), ("loop_a.npy", "InputError"), ("loop_b.npy", "InputError"),
    ]  # fmt: skip


def test_pipes_and_devices_named_like_inputs_are_errors_not_hangs(tmp_path: Path) -> None:
    src = _points_dir(tmp_path / "src", 1)
    os.mkfifo(src / "pipe.npy")  # hashing it for the incremental state blocked the job forever
    os.symlink("/dev/zero", src / "zeros.npy")
    (src / "folder.npy").mkdir()
    summary = extract(
        "points", src, tmp_path / "out", model=MODEL, pretrained=False, adapter=POINTS, device="cpu", progress=False,
        num_workers=0,
    )  # fmt: skip
    assert (summary.done, summary.failed) == (1, 2)  # a folder is not listed
    errors = {e["id"]: e["error"] for e in summary.errors}
    assert "not a regular file" in errors["pipe.npy"]
    assert "not a regular file" in errors["zeros.npy"]


def test_manifest_paths_that_are_not_utf8_keep_their_bytes(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.npy")
    np.save(tmp_path / name, _cloud(0))
    manifest = tmp_path / "list.csv"  # a latin-1 manifest: a UnicodeDecodeError traceback before
    manifest.write_bytes(b"id,path\n\xe9t\xe9," + os.fsencode(tmp_path / name) + b"\n")
    items = list_inputs(manifest)
    assert [os.fsencode(i.path) for i in items] == [os.fsencode(tmp_path / name)]
    summary = extract_items(items, tmp_path / "out", load=_load_npy, embed=_embed_mean, progress=False)
    assert (summary.done, summary.failed) == (1, 0)
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_bytes(b'{"id": "a", "path": "' + os.fsencode(tmp_path / name) + b'"}\n')
    assert [os.fsencode(i.path) for i in list_inputs(jsonl)] == [os.fsencode(tmp_path / name)]


def _unilk(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unilk", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    src = _points_dir(tmp_path / "src", 1)
    bad_device = _unilk("extract", "points", str(src), "--out", str(tmp_path / "o"), "--device", "tpu", cwd=tmp_path)
    assert bad_device.returncode == 2  # a ConfigError, found when the command line is parsed
    assert "Traceback" not in bad_device.stderr
    assert [line for line in bad_device.stderr.splitlines() if line.strip()] == [
        next(line for line in bad_device.stderr.splitlines() if "device: got 'tpu'" in line)
    ]
    assert not (tmp_path / "o" / "job.json").exists()


def test_disk_full_is_one_line_with_exit_code_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from unilk import cli

    src = _points_dir(tmp_path / "src", 1)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "feats.npz"))

    monkeypatch.setattr(np, "savez", full_disk)
    argv = [
        "unilk",
        "encode",
        str(src / "c0.npy"),
        "--model",
        MODEL,
        "--random-weights",
        "--device",
        "cpu",
        "--out",
        "feats.npz",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"Error: [Errno 28] No space left on device: '{tmp_path / 'feats.npz'}'"


def test_items_with_surrogates_fingerprint_and_record(tmp_path: Path) -> None:
    odd = os.fsdecode(b"\xfe.npy")
    path = tmp_path / odd
    np.save(path, np.array([["a", "b", "c"]]))
    summary = extract_items([Item(odd, str(path))], tmp_path / "out", load=_load_npy, embed=_embed_mean, progress=False)
    assert (summary.failed, summary.complete) == (1, True)
    assert summary.errors[0]["id"] == odd


def test_training_checkpoint_with_nan_weights_is_refused(tmp_path: Path) -> None:
    from unilk.errors import CheckpointError
    from unilk.loading import read_model_file
    from unilk.train.checkpoint import FORMAT

    arch = {"builder": "unilk.models.modal.create_modal_model", "modality": "audio", "task": "classification"}
    weights = {"trunk.stem.weight": torch.tensor([1.0, float("nan")]), "head.bias": torch.zeros(2)}
    torch.save({"format": FORMAT, "arch": {**arch, "trunk": MODEL}, "model": weights}, tmp_path / "diverged.pt")
    with pytest.raises(CheckpointError, match=r"NaN or inf values, e\.g\. \['trunk\.stem\.weight'\]"):
        read_model_file(tmp_path / "diverged.pt")
