"""Extraction to disk: input listing, sharding, atomic shards, resume after SIGKILL, exactly once under torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from _extract_standins import SlowLoad, embed_with, make_embed, write_inputs
from hypothesis import given
from hypothesis import strategies as st

import unilk
from unilk.errors import ConfigError, InputError
from unilk.extract import (
    Item,
    extract_items,
    list_inputs,
    plan_shards,
    read_embeddings,
    read_table,
    shards_of_rank,
    source_root,
)

# tiny inputs make last-stage maps smaller than the large kernels; expected here
pytestmark = [
    pytest.mark.filterwarnings("ignore:UniRepLKNet.*smaller than the reach:UserWarning"),
]

STANDINS = Path(__file__).with_name("_extract_standins.py")
REPO = Path(__file__).resolve().parents[1]


def _run_standins(src: Path, out: Path, **kw) -> object:
    return extract_items(
        list_inputs(src), out, load=SlowLoad(), embed=embed_with(make_embed()), batch_size=3, progress=False, **kw
    )


def _expected(src: Path) -> dict[str, np.ndarray]:
    """Embeddings computed directly, one file at a time, for the readable inputs."""
    model = make_embed()
    out = {}
    for item in list_inputs(src):
        try:
            x = SlowLoad()(item.path)
        except InputError:
            continue
        with torch.no_grad():
            out[item.id] = model(x[None])[0].numpy()
    return out


# ------------------------------------------------------------------------------------------------- listing inputs


def test_list_inputs_directory_glob_and_manifests(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("b.wav", "a.wav", "sub/c.wav", "notes.txt", ".hidden.wav"):
        (tmp_path / "d" / name).write_bytes(b"x")
    items = list_inputs(tmp_path / "d", extensions=[".wav"])
    assert [i.id for i in items] == ["a.wav", "b.wav", "sub/c.wav"]
    assert all(Path(i.path).is_file() for i in items)

    globbed = list_inputs(str(tmp_path / "d" / "**" / "*.wav"))
    assert [i.id for i in globbed] == ["a.wav", "b.wav", "sub/c.wav"]

    (tmp_path / "m.csv").write_text("id,path,label\nfirst,d/b.wav,1\nsecond,d/a.wav,0\n")
    csv_items = list_inputs(tmp_path / "m.csv")
    assert csv_items == [Item("first", str(tmp_path / "d/b.wav")), Item("second", str(tmp_path / "d/a.wav"))]

    rows = [{"id": "x", "path": str(tmp_path / "d/sub/c.wav")}, {"id": "y", "path": "d/a.wav"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert list_inputs(tmp_path / "m.jsonl") == [Item("x", rows[0]["path"]), Item("y", str(tmp_path / "d/a.wav"))]


def test_list_inputs_rejects_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        list_inputs(tmp_path / "missing")
    (tmp_path / "dup.csv").write_text("id,path\na,x.wav\na,y.wav\n")
    with pytest.raises(InputError, match=r"repeats ids \['a'\]"):
        list_inputs(tmp_path / "dup.csv")
    (tmp_path / "nopath.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(InputError, match=r"line 1: missing \['path'\]"):
        list_inputs(tmp_path / "nopath.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="lists no inputs"):
        list_inputs(tmp_path / "empty")


@given(n=st.integers(0, 200), size=st.integers(1, 17), world=st.integers(1, 5))
def test_shards_cover_every_item_exactly_once_across_ranks(n: int, size: int, world: int) -> None:
    shards = plan_shards(n, size)
    taken = [i for rank in range(world) for k in shards_of_rank(len(shards), rank, world) for i in shards[k]]
    assert sorted(taken) == list(range(n))


def test_bad_shard_and_rank_settings_raise() -> None:
    with pytest.raises(ConfigError, match="shard_size"):
        plan_shards(10, 0)
    with pytest.raises(ConfigError, match="rank/world_size"):
        shards_of_rank(4, 2, 2)


# ------------------------------------------------------------------------------------------------- one process


def test_extraction_records_errors_and_matches_direct_calls(tmp_path: Path) -> None:
    write_inputs(tmp_path / "src", 23, corrupt=(4, 17))
    summary = _run_standins(tmp_path / "src", tmp_path / "out", shard_size=5, write_npy=True)
    assert (summary.done, summary.failed, summary.skipped, summary.complete) == (21, 2, 0, True)
    assert summary.shards_written == 5

    ids, emb = read_embeddings(tmp_path / "out")
    expected = _expected(tmp_path / "src")
    assert ids == list(expected)  # job order, failed inputs absent
    np.testing.assert_allclose(emb, np.stack(list(expected.values())), atol=1e-6)

    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["x0004.npy", "x0017.npy"]
    assert all("cannot read" in e["error"] for e in errors)

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["num_items"], manifest["num_embeddings"], manifest["num_errors"], manifest["dim"]) == (
        23,
        21,
        2,
        4,
    )
    # the optional .npy + ids copies hold the same rows as the parquet shards
    table = pq.read_table(tmp_path / "out" / "shards" / "part-00001.parquet")
    npy = np.load(tmp_path / "out" / "shards" / "part-00001.npy")
    ids_lines = (tmp_path / "out" / "shards" / "part-00001.ids.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in ids_lines] == table.column("id").to_pylist()
    np.testing.assert_array_equal(npy, np.stack(table.column("embedding").to_pylist()).astype(np.float32))
    assert not list((tmp_path / "out").rglob(".*tmp-*"))


def test_rerun_skips_finished_shards_and_refuses_another_job(tmp_path: Path) -> None:
    write_inputs(tmp_path / "src", 12)
    _run_standins(tmp_path / "src", tmp_path / "out", shard_size=4)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "shards").iterdir()}
    again = _run_standins(tmp_path / "src", tmp_path / "out", shard_size=4)
    assert (again.done, again.failed, again.skipped, again.shards_skipped) == (0, 0, 12, 3)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "shards").iterdir()} == before
    with pytest.raises(ConfigError, match=r"another job \(differs in \['shard_size'\]\)"):
        _run_standins(tmp_path / "src", tmp_path / "out", shard_size=5)


def test_retry_failed_redoes_shards_with_errors(tmp_path: Path) -> None:
    paths = write_inputs(tmp_path / "src", 8, corrupt=(6,))
    first = _run_standins(tmp_path / "src", tmp_path / "out", shard_size=4)
    assert (first.done, first.failed) == (7, 1)
    np.save(paths[6], np.ones(6, np.float32))  # the file gets fixed
    second = _run_standins(tmp_path / "src", tmp_path / "out", shard_size=4, retry_failed=True)
    assert (second.done, second.failed, second.skipped) == (4, 0, 4)
    ids, _ = read_embeddings(tmp_path / "out")
    assert len(ids) == 8
    assert (tmp_path / "out" / "errors.jsonl").read_text() == ""


def test_a_rank_alone_writes_only_its_shards_and_no_manifest(tmp_path: Path) -> None:
    write_inputs(tmp_path / "src", 10)
    part = _run_standins(tmp_path / "src", tmp_path / "out", shard_size=3, rank=1, world_size=2)
    assert (part.done, part.complete) == (4, False)  # shards 1 and 3: items 3-5 and 9
    assert sorted(p.name for p in (tmp_path / "out" / "done").iterdir()) == ["part-00001.json", "part-00003.json"]
    assert not (tmp_path / "out" / "manifest.json").exists()
    with pytest.raises(InputError, match="not finished"):
        read_embeddings(tmp_path / "out")
    rest = _run_standins(tmp_path / "src", tmp_path / "out", shard_size=3, rank=0, world_size=2)
    assert (rest.done, rest.complete) == (6, True)
    assert read_embeddings(tmp_path / "out")[0] == [i.id for i in list_inputs(tmp_path / "src")]


def test_workers_decode_in_parallel_with_the_same_result(tmp_path: Path) -> None:
    write_inputs(tmp_path / "src", 9, corrupt=(2,))
    _run_standins(tmp_path / "src", tmp_path / "a", shard_size=4)
    _run_standins(tmp_path / "src", tmp_path / "b", shard_size=4, num_workers=2)
    ids_a, emb_a = read_embeddings(tmp_path / "a")
    ids_b, emb_b = read_embeddings(tmp_path / "b")
    assert ids_a == ids_b
    np.testing.assert_array_equal(emb_a, emb_b)


# ------------------------------------------------------------------------------------------------- incremental runs


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in [*(out / "shards").iterdir(), *(out / "done").iterdir()]}


def test_a_rerun_with_new_files_extracts_only_them_into_new_shards(tmp_path: Path) -> None:
    write_inputs(tmp_path / "src", 10)
    _run_standins(tmp_path / "src", tmp_path / "out", shard_size=4)
    before = _mtimes(tmp_path / "out")
    rng = np.random.default_rng(7)
    for i in (10, 11, 12):
        np.save(tmp_path / "src" / f"x{i:04d}.npy", rng.standard_normal(6).astype(np.float32))
    again = _run_standins(tmp_path / "src", tmp_path / "out", shard_size=4)
    assert (again.done, again.skipped, again.shards_written, again.complete) == (3, 10, 1, True)
    after = _mtimes(tmp_path / "out")
    assert {k: after[k] for k in before} == before  # nothing finished was rewritten
    assert sorted(set(after) - set(before)) == ["part-00003.json", "part-00003.parquet"]
    table = pq.read_table(tmp_path / "out" / "shards" / "part-00003.parquet")
    assert table.column("id").to_pylist() == ["x0010.npy", "x0011.npy", "x0012.npy"]
    assert set(table.column("run").to_pylist()) == {2}
    ids, emb = read_embeddings(tmp_path / "out")
    expected = _expected(tmp_path / "src")
    assert ids == list(expected)
    np.testing.assert_allclose(emb, np.stack(list(expected.values())), atol=1e-6)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(r["run"], r["num_items"], r["shards"]) for r in manifest["runs"]] == [(1, 10, [0, 1, 2]), (2, 3, [3])]
    # nothing new: nothing extracted, nothing written
    third = _run_standins(tmp_path / "src", tmp_path / "out", shard_size=4)
    assert (third.done, third.skipped) == (0, 13)
    assert not (tmp_path / "out" / "runs" / "run-00003.json").exists()


def test_a_changed_file_is_reextracted_and_its_old_row_superseded(tmp_path: Path) -> None:
    paths = write_inputs(tmp_path / "src", 8, corrupt=(5,))
    _run_standins(tmp_path / "src", tmp_path / "out", shard_size=4)
    old_row = dict(zip(*read_embeddings(tmp_path / "out")))["x0002.npy"]
    before = _mtimes(tmp_path / "out")
    np.save(paths[2], np.full(6, 3.0, np.float32))  # new content
    np.save(paths[5], np.ones(6, np.float32))  # the corrupt file gets fixed
    os.utime(paths[7], ns=(1, 1))  # touched, same content: the hash says unchanged
    again = _run_standins(tmp_path / "src", tmp_path / "out", shard_size=4)
    assert (again.done, again.failed, again.skipped) == (2, 0, 6)
    assert {k: v for k, v in _mtimes(tmp_path / "out").items() if k in before} == before

    ids, emb = read_embeddings(tmp_path / "out")
    assert sorted(ids) == [p.name for p in paths]
    expected = _expected(tmp_path / "src")
    np.testing.assert_allclose(emb, np.stack([expected[i] for i in ids]), atol=1e-6)
    assert not np.allclose(dict(zip(ids, emb))["x0002.npy"], old_row)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["superseded"] == [{"by_run": 2, "file": "shards/part-00000.parquet", "id": "x0002.npy"}]
    assert (manifest["num_items"], manifest["num_embeddings"], manifest["num_errors"]) == (8, 8, 0)
    assert (tmp_path / "out" / "errors.jsonl").read_text() == ""
    full = read_table(tmp_path / "out", include_superseded=True)
    assert full.num_rows == 9
    assert sorted(zip(*[full.column(c).to_pylist() for c in ("id", "run")]))[2:4] == [
        ("x0002.npy", 1),
        ("x0002.npy", 2),
    ]


def test_an_unfinished_run_must_be_finished_before_new_inputs(tmp_path: Path) -> None:
    write_inputs(tmp_path / "src", 10)
    _run_standins(tmp_path / "src", tmp_path / "out", shard_size=3, rank=0, world_size=2)  # half the shards
    np.save(tmp_path / "src" / "x0010.npy", np.ones(6, np.float32))
    with pytest.raises(ConfigError, match="run 1 is unfinished and lists other inputs"):
        _run_standins(tmp_path / "src", tmp_path / "out", shard_size=3)


def test_shards_carry_paths_modality_policy_and_float16_on_request(tmp_path: Path) -> None:
    from unilk.extract import extract

    write_audio_set(tmp_path / "src" / "sub", 3, corrupt=())
    kw = dict(model=MODEL, pretrained=False, device="cpu", shard_size=2, batch_size=4, num_workers=0, progress=False)
    extract("audio", tmp_path / "src", tmp_path / "f32", adapter=AUDIO, **kw)
    extract("audio", tmp_path / "src", tmp_path / "f16", adapter=AUDIO, embedding_dtype="float16", **kw)
    t32, t16 = read_table(tmp_path / "f32"), read_table(tmp_path / "f16")
    assert t32.column("path").to_pylist() == ["sub/clip0000.wav", "sub/clip0001.wav", "sub/clip0002.wav"]
    assert set(t32.column("modality").to_pylist()) == {"audio"}
    assert set(t32.column("num_maps").to_pylist()) == {1}
    assert set(t32.column("policy").to_pylist()) <= {"none", "pad", "crop"}
    for table, value_type in ((t32, pa.float32()), (t16, pa.float16())):
        kind = table.schema.field("embedding").type
        assert (pa.types.is_fixed_size_list(kind), kind.list_size, kind.value_type) == (True, 64, value_type)
    e32, e16 = read_embeddings(tmp_path / "f32")[1], read_embeddings(tmp_path / "f16")[1]
    np.testing.assert_allclose(e16, e32, rtol=1e-3, atol=1e-3)
    meta = json.loads(t32.schema.metadata[b"unilk"])
    assert (meta["job"]["model"], meta["job"]["adapter"]["num_mel_bins"], meta["unilk_version"]) == (
        MODEL, AUDIO["num_mel_bins"], unilk.__version__,
    )  # fmt: skip
    assert len(meta["weights_sha256"]) == 1
    assert source_root(tmp_path / "src" / "**" / "*.wav") == str(tmp_path / "src")
    with pytest.raises(ConfigError, match="another job"):  # a different dtype is a different job
        extract("audio", tmp_path / "src", tmp_path / "f32", adapter=AUDIO, embedding_dtype="float16", **kw)


# ------------------------------------------------------------------------------------------------- processes


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_sigkill_midway_then_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    write_inputs(tmp_path / "src", 40, corrupt=(11,))
    out = tmp_path / "killed"
    cmd = [sys.executable, str(STANDINS), str(tmp_path / "src"), str(out), "--delay", "0.05", "--shard-size", "4"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list((out / "done").glob("*.json"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = len(list((out / "done").glob("*.json")))
    assert 3 <= committed < 10, "the kill should land midway"
    # nothing partial is visible: every parquet present is a complete, readable file
    for shard in (out / "shards").glob("*.parquet"):
        pq.read_table(shard)
    assert not (out / "manifest.json").exists()

    rerun = subprocess.run([*cmd[:-4], "--shard-size", "4"], env=_env(), capture_output=True, text=True, check=True)
    assert f"skipped={committed * 4}" in rerun.stdout
    _run_standins(tmp_path / "src", tmp_path / "clean", shard_size=4)
    ids_k, emb_k = read_embeddings(out)
    ids_c, emb_c = read_embeddings(tmp_path / "clean")
    assert ids_k == ids_c
    assert len(set(ids_k)) == len(ids_k) == 39
    np.testing.assert_array_equal(emb_k, emb_c)
    assert (out / "errors.jsonl").read_text() == (tmp_path / "clean" / "errors.jsonl").read_text()


def test_two_processes_under_torchrun_write_each_id_exactly_once(tmp_path: Path) -> None:
    write_inputs(tmp_path / "src", 21, corrupt=(5,))
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    cmd += [str(STANDINS), str(tmp_path / "src"), str(out), "--shard-size", "4"]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    # both ranks report the totals over the group
    assert run.stdout.count("done=20 failed=1 skipped=0 complete=True") == 2, run.stdout
    _run_standins(tmp_path / "src", tmp_path / "single", shard_size=4)
    ids_d, emb_d = read_embeddings(out)
    ids_s, emb_s = read_embeddings(tmp_path / "single")
    assert ids_d == ids_s
    assert len(set(ids_d)) == len(ids_d) == 20
    np.testing.assert_array_equal(emb_d, emb_s)


# -------------------------------------------------------------------------------------------- real audio, tiny trunk

MODEL = "test_unireplknet"
AUDIO = {"num_mel_bins": 32, "target_frames": 48}
CLI = "from unilk.extract_cli import extract_command; extract_command()"


def write_audio_set(root: Path, n: int, corrupt: tuple[int, ...]) -> list[Path]:
    """``n`` short wav clips; the ``corrupt`` ones are garbage, truncated, or empty (in turn)."""
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        path = root / f"clip{i:04d}.wav"
        wave = 0.2 * np.sin(2 * np.pi * (200 + 7 * i) * np.arange(8000) / 16000) + 0.01 * rng.standard_normal(8000)
        sf.write(path, wave.astype(np.float32), 16000)
        if i in corrupt:
            kind = corrupt.index(i) % 3
            if kind == 0:
                path.write_bytes(b"this is not audio" * 10)
            elif kind == 1:
                path.write_bytes(path.read_bytes()[:200])  # the header promises 8000 samples
            else:
                path.write_bytes(b"")
        paths.append(path)
    return paths


def _cli_args(src: Path, out: Path, shard_size: int, workers: int = 1) -> list[str]:
    args = [
        "audio",
        str(src),
        "--out",
        str(out),
        "--model",
        MODEL,
        "--random-weights",
        "--device",
        "cpu",
        "--no-progress",
    ]
    args += ["--shard-size", str(shard_size), "--num-workers", str(workers), "--batch-size", "4"]
    return args + [f"--adapter={k}={v}" for k, v in AUDIO.items()]


def test_audio_extraction_records_corrupt_files_and_matches_encode(tmp_path: Path) -> None:
    from unilk.encoding import Encoder
    from unilk.extract import extract

    paths = write_audio_set(tmp_path / "src", 40, corrupt=(3, 20, 38))
    summary = extract(
        "audio", tmp_path / "src", tmp_path / "out", model=MODEL, pretrained=False, adapter=AUDIO, device="cpu",
        shard_size=8, batch_size=4, num_workers=2, progress=False,
    )  # fmt: skip
    assert (summary.done, summary.failed, summary.skipped, summary.complete) == (37, 3, 0, True)
    ids, emb = read_embeddings(tmp_path / "out")
    good = [p for i, p in enumerate(paths) if i not in (3, 20, 38)]
    assert ids == [p.name for p in good]
    errors = summary.errors
    assert [e["id"] for e in errors] == ["clip0003.wav", "clip0020.wav", "clip0038.wav"]
    assert all(e["path"] in e["error"] or Path(e["path"]).name in e["error"] for e in errors)
    # the same numbers as the in-memory API, file by file
    encoder = Encoder(MODEL, pretrained=False, adapters={"audio": AUDIO}, device="cpu")
    direct = torch.cat([encoder.encode(audio=str(p))["audio"].embeddings for p in good[:6]])
    np.testing.assert_allclose(emb[:6], direct.numpy(), atol=1e-5, rtol=0)


def test_cli_extract_prints_the_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from unilk.extract_cli import extract_command

    write_audio_set(tmp_path / "src", 6, corrupt=(2,))
    result = CliRunner().invoke(extract_command, _cli_args(tmp_path / "src", tmp_path / "out", 4, workers=0))
    assert result.exit_code == 0, result.output
    assert "done 5, failed 1, skipped 0" in result.output
    again = CliRunner().invoke(extract_command, _cli_args(tmp_path / "src", tmp_path / "out", 4, workers=0))
    assert "done 0, failed 0, skipped 6" in again.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed: `import ray` fails
    ray = CliRunner().invoke(extract_command, [*_cli_args(tmp_path / "src", tmp_path / "r", 4), "--engine", "ray"])
    assert ray.exit_code != 0
    assert "pip install 'unilk[ray]'" in ray.output
    assert not (tmp_path / "r").exists()  # refused before writing anything


@pytest.mark.slow
def test_acceptance_200_audio_files_kill_resume_and_torchrun(tmp_path: Path) -> None:
    """200 clips, 3 corrupt: 197 + 3; SIGKILL midway + rerun = uninterrupted; torchrun x2 = one process."""
    write_audio_set(tmp_path / "src", 200, corrupt=(17, 101, 188))
    py = [sys.executable, "-c", CLI]

    clean = subprocess.run([*py, *_cli_args(tmp_path / "src", tmp_path / "clean", 10, 2)], env=_env(), text=True,
                           capture_output=True, check=True)  # fmt: skip
    assert "done 197, failed 3, skipped 0" in clean.stdout
    ids_c, emb_c = read_embeddings(tmp_path / "clean")
    assert len(ids_c) == len(set(ids_c)) == 197

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*py, *_cli_args(tmp_path / "src", killed, 10, 2)], env=_env(), stdout=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while len(list((killed / "done").glob("*.json"))) < 5 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = len(list((killed / "done").glob("*.json")))
    assert 5 <= committed < 20
    for shard in (killed / "shards").glob("*.parquet"):
        pq.read_table(shard)  # every visible shard file is whole
    rerun = subprocess.run([*py, *_cli_args(tmp_path / "src", killed, 10, 2)], env=_env(), text=True,
                           capture_output=True, check=True)  # fmt: skip
    assert f"skipped {committed * 10}" in rerun.stdout
    ids_k, emb_k = read_embeddings(killed)
    assert ids_k == ids_c
    np.testing.assert_array_equal(emb_k, emb_c)

    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "--no-python"]
    run = subprocess.run([*cmd, *py, *_cli_args(tmp_path / "src", ddp, 10, 1)], env=_env(), text=True,
                         capture_output=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "done 197, failed 3, skipped 0" in run.stdout
    ids_d, emb_d = read_embeddings(ddp)
    assert ids_d == ids_c
    np.testing.assert_allclose(emb_d, emb_c, atol=1e-6, rtol=0)
    for out in (killed, ddp):
        assert (out / "errors.jsonl").read_text() == (tmp_path / "clean" / "errors.jsonl").read_text()
