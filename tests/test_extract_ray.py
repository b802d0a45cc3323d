"""The Ray Data engine on a local cluster: same output as the torch engine, and exactly once through killed processes.

One local cluster (2 CPUs, no dashboard) serves the whole module; its workers find the stand-ins through PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from _extract_standins import SlowLoad, embed_sum, embed_with, load_raw, make_embed, write_inputs
from click.testing import CliRunner

from unilk.extract import extract, extract_items, list_inputs, read_embeddings, read_table
from unilk.extract_cli import extract_command

ray = pytest.importorskip("ray", reason="the Ray engine needs the optional ray package (pip install 'unilk[ray]')")

pytestmark = [
    pytest.mark.filterwarnings("ignore:UniRepLKNet.*smaller than the reach:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # Ray Data's own, about its own settings
]

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
STANDINS = TESTS / "_extract_standins.py"


@pytest.fixture(scope="module")
def cluster() -> str:
    """A local Ray cluster for the module; returns its address (for drivers started in subprocesses)."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "RAY_USAGE_STATS_ENABLED")}
    # workers inherit the raylet's environment: they need the stand-ins importable to unpickle them
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO), *filter(None, [saved["PYTHONPATH"]])])
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no network
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _standins(src: Path, out: Path, engine: str, pid_dir: Path | None = None, delay: float = 0.0):
    return extract_items(
        list_inputs(src),
        out,
        load=SlowLoad(delay, None if pid_dir is None else str(pid_dir)),
        embed=embed_with(make_embed(), None if pid_dir is None else str(pid_dir)),
        shard_size=4,
        batch_size=2,
        progress=False,
        engine=engine,
    )


def _pids(pid_dir: Path, role: str) -> set[int]:
    return {int(p.name.split("-")[1]) for p in pid_dir.glob(f"{role}-*")}


def _same_output(a: Path, b: Path) -> None:
    ids_a, emb_a = read_embeddings(a)
    ids_b, emb_b = read_embeddings(b)
    assert ids_a == ids_b
    assert len(set(ids_a)) == len(ids_a)
    np.testing.assert_allclose(emb_a, emb_b, atol=1e-6, rtol=0)
    assert (a / "errors.jsonl").read_text() == (b / "errors.jsonl").read_text()


# ------------------------------------------------------------------------------------------- a real trunk, 240 images


def _write_images(root: Path, n: int, corrupt: tuple[int, ...]) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for i in range(n):
        path = root / ("a" if i % 2 else "b") / f"img{i:04d}.png"
        if i in corrupt:
            path.write_bytes(b"not a png")
        else:
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)


def test_ray_engine_writes_what_the_torch_engine_writes_also_incrementally(cluster: str, tmp_path: Path) -> None:
    _write_images(tmp_path / "src", 200, corrupt=(7, 150))
    kw = dict(
        model="test_unireplknet", pretrained=False, adapter={"input_size": [3, 32, 32]}, device="cpu", shard_size=32
    )
    kw |= dict(batch_size=16, num_workers=0, progress=False)
    torch_run = extract("image", tmp_path / "src", tmp_path / "torch", engine="torch", **kw)
    assert (torch_run.done, torch_run.failed) == (198, 2)
    args = ["image", str(tmp_path / "src"), "--out", str(tmp_path / "ray"), "--engine", "ray", "--ray-address", cluster]
    args += ["--model", "test_unireplknet", "--random-weights", "--adapter", "input_size=[3,32,32]"]
    args += ["--device", "cpu", "--no-progress"]
    ray_run = CliRunner().invoke(extract_command, [*args, "--shard-size", "32", "--batch-size", "16"])
    assert ray_run.exit_code == 0, ray_run.output
    assert "done 198, failed 2, skipped 0" in ray_run.output
    _same_output(tmp_path / "torch", tmp_path / "ray")
    t, r = read_table(tmp_path / "torch"), read_table(tmp_path / "ray")
    for column in ("id", "path", "modality", "policy", "num_maps", "sha256", "run"):
        assert t.column(column).to_pylist() == r.column(column).to_pylist(), column
    assert r.column("path").to_pylist()[:2] == ["a/img0001.png", "a/img0003.png"]  # relative to the source
    # the actor ran the same weights as the torch engine's process
    weights = [json.loads((tmp_path / d / "manifest.json").read_text())["weights_sha256"] for d in ("torch", "ray")]
    assert weights[0] == weights[1]
    assert len(weights[0]) == 1

    # incremental: one changed image, one fixed, two new; the rest is left alone by both engines
    _write_images(tmp_path / "more", 204, corrupt=())
    for name in ("a/img0007.png", "b/img0200.png", "a/img0201.png"):  # 7 was corrupt
        (tmp_path / "src" / name).write_bytes((tmp_path / "more" / name).read_bytes())
    (tmp_path / "src" / "a" / "img0003.png").write_bytes((tmp_path / "more" / "b" / "img0202.png").read_bytes())
    torch_again = extract("image", tmp_path / "src", tmp_path / "torch", engine="torch", **kw)
    ray_again = extract("image", tmp_path / "src", tmp_path / "ray", engine="ray", **kw)
    assert (ray_again.done, ray_again.failed, ray_again.skipped) == (torch_again.done, 0, 198) == (4, 0, 198)
    _same_output(tmp_path / "torch", tmp_path / "ray")
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert [row["id"] for row in manifest["superseded"]] == ["a/img0003.png"]


# ------------------------------------------------------------------------------------------- odd and hostile inputs


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_ray_engine_records_error_types_odd_names_and_non_finite_rows(cluster: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(5)
    odd = os.fsdecode(b"caf\xe9-\xff.npy")  # Latin-1 bytes: not valid UTF-8
    for name in ("a.npy", "b.npy", "c.npy", odd):
        np.save(src / name, rng.standard_normal((5, 3)).astype(np.float32))
    np.save(src / "words.npy", np.array([["x", "y", "z"]] * 4))  # a plain ValueError in the loader
    np.save(src / "huge.npy", np.full((5, 3), 3e38, np.float32))  # finite input, but its sum overflows to inf
    runs = {}
    for engine in ("torch", "ray"):
        kw = dict(load=load_raw, embed=embed_sum, shard_size=2, batch_size=2, progress=False, engine=engine)
        runs[engine] = extract_items(list_inputs(src), tmp_path / engine, **kw)
    assert (runs["ray"].done, runs["ray"].failed, runs["ray"].complete) == (4, 2, True)
    _same_output(tmp_path / "torch", tmp_path / "ray")
    errors = {e["id"]: e for e in runs["ray"].errors}
    assert {i: e["type"] for i, e in errors.items()} == {"huge.npy": "InputError", "words.npy": "ValueError"}
    assert "NaN or inf" in errors["huge.npy"]["error"]
    assert "words.npy" in errors["words.npy"]["error"]
    ids, emb = read_embeddings(tmp_path / "ray")
    assert ids == ["a.npy", "b.npy", "c.npy", odd]  # the exact listed ids, surrogate escapes included
    assert np.isfinite(emb).all()
    table = read_table(tmp_path / "ray")
    assert "caf\\xe9-\\xff.npy" in table.column("id").to_pylist()
    assert os.fsencode(odd) in table.column("id_bytes").to_pylist()


# ------------------------------------------------------------------------------------------- killed processes


def test_a_worker_killed_midway_loses_and_duplicates_nothing(cluster: str, tmp_path: Path) -> None:
    write_inputs(tmp_path / "src", 48, corrupt=(9,))
    pids = tmp_path / "pids"
    pids.mkdir()
    killed: list[int] = []

    def kill_midway() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((tmp_path / "ray" / "done").glob("*.json")):
            time.sleep(0.05)
        for role in ("embed", "load"):  # the actor holding the model, and a worker of the load tasks
            pid = min(_pids(pids, role) - {os.getpid()})
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_midway)
    killer.start()
    summary = _standins(tmp_path / "src", tmp_path / "ray", "ray", pid_dir=pids, delay=0.1)
    killer.join()
    assert len(killed) == 2
    assert 0 < summary.shards_written == 12
    assert (summary.done, summary.failed, summary.complete) == (47, 1, True)
    # the work went on in new processes after the kills
    assert _pids(pids, "embed") - set(killed), "the actor was restarted"
    _standins(tmp_path / "src", tmp_path / "torch", "torch")
    _same_output(tmp_path / "torch", tmp_path / "ray")


@pytest.mark.slow  # two more drivers and actors to start (a minute or two on 2 busy CPUs); the resume code is the
# torch engine's, which test_extract.py kills by default
def test_a_killed_driver_resumes_to_the_same_output(cluster: str, tmp_path: Path) -> None:
    write_inputs(tmp_path / "src", 40, corrupt=(13,))
    out = tmp_path / "killed"
    cmd = [sys.executable, str(STANDINS), str(tmp_path / "src"), str(out), "--engine", "ray", "--shard-size", "4"]
    env = {**os.environ, "RAY_ADDRESS": cluster}
    proc = subprocess.Popen([*cmd, "--delay", "0.15"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while len(list((out / "done").glob("*.json"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = len(list((out / "done").glob("*.json")))
    assert 2 <= committed < 10, "the kill should land midway"
    for shard in (out / "shards").glob("*.parquet"):
        pq.read_table(shard)  # every visible shard file is whole
    assert not (out / "manifest.json").exists()

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"skipped={committed * 4}" in rerun.stdout
    assert "complete=True" in rerun.stdout
    _standins(tmp_path / "src", tmp_path / "torch", "torch")
    _same_output(tmp_path / "torch", out)
