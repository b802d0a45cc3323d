"""A DataLoader worker that dies (a decoder crash, the out-of-memory killer) is one line naming the file it read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _extract_standins import SlowLoad, embed_with, make_embed, write_inputs
from PIL import Image

from unilk.errors import WorkerDiedError
from unilk.extract import extract_items, list_inputs, read_embeddings
from unilk.loader_workers import WorkerWatch

REPO = Path(__file__).resolve().parents[1]

# Runs the unilk command with PIL's decoder crashing (SIGSEGV) on every file whose path holds $CRASH_ON: the way a
# broken native decoder takes down the worker process that runs it.
CRASHING_CLI = """
import os, signal, sys
import PIL.Image

_open = PIL.Image.open

def crashing_open(fp, *args, **kwargs):
    if os.environ["CRASH_ON"] in str(fp):
        os.kill(os.getpid(), signal.SIGSEGV)
    return _open(fp, *args, **kwargs)

PIL.Image.open = crashing_open
from unilk.cli import main

sys.argv = ["unilk", *sys.argv[1:]]
main()
"""


class CrashingLoad(SlowLoad):
    """Kills its own process with ``signum`` on the file named ``victim``."""

    def __init__(self, victim: str, signum: int) -> None:
        super().__init__()
        self.victim, self.signum = victim, signum

    def __call__(self, path: str):
        if Path(path).name == self.victim:
            os.kill(os.getpid(), self.signum)
        return super().__call__(path)


def _crashing_unilk(tmp_path: Path, crash_on: str, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "crashing_unilk.py"
    script.write_text(CRASHING_CLI)
    env = {**os.environ, "CRASH_ON": crash_on, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )


@pytest.mark.parametrize(("signum", "cause"), [(signal.SIGSEGV, "decoder crashed"), (signal.SIGKILL, "out-of-memory")])
def test_a_worker_that_dies_names_the_file_and_the_rerun_records_it(tmp_path: Path, signum: int, cause: str) -> None:
    write_inputs(tmp_path / "src", 9)
    kw = {"embed": embed_with(make_embed()), "batch_size": 2, "shard_size": 2, "progress": False, "num_workers": 2}
    crashing = CrashingLoad("x0005.npy", signum)
    with pytest.raises(WorkerDiedError) as died:
        extract_items(list_inputs(tmp_path / "src"), tmp_path / "out", load=crashing, **kw)
    message = str(died.value)
    assert "x0005.npy" in message
    assert cause in message
    assert "\n" not in message
    # the rerun goes on: the file that killed its reader is recorded as failed, not read again
    rerun = extract_items(list_inputs(tmp_path / "src"), tmp_path / "out", load=crashing, **kw)
    assert rerun.complete
    assert rerun.failed == 1
    assert [e["type"] for e in rerun.errors] == ["WorkerDiedError"]
    assert "x0005.npy: reading it killed a data-loading worker" in rerun.errors[0]["error"]
    assert sorted(read_embeddings(tmp_path / "out")[0]) == [f"x{i:04d}.npy" for i in range(9) if i != 5]
    # once the decoder is fixed, retry_failed reads it again
    fixed = extract_items(list_inputs(tmp_path / "src"), tmp_path / "out", load=SlowLoad(), retry_failed=True, **kw)
    assert fixed.failed == 0
    assert sorted(read_embeddings(tmp_path / "out")[0]) == [f"x{i:04d}.npy" for i in range(9)]


def test_a_death_outside_any_read_says_what_to_do_and_other_errors_pass_through() -> None:
    watch = WorkerWatch(2, describe=str, fix="rerun", workers="data.num_workers")
    expected = r"pid 4242\) died \(Killed\) while reading no input.*lower data\.num_workers"
    with pytest.raises(WorkerDiedError, match=expected), watch.naming_deaths():
        raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")
    with pytest.raises(RuntimeError, match=r"^something else$"), watch.naming_deaths():
        raise RuntimeError("something else")


def _one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_cli_extract_names_the_file_a_crashed_decoder_was_reading(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    for name in ("a.png", "b_crash.png", "c.png"):
        Image.new("RGB", (40, 40), (10, 200, 30)).save(tmp_path / "src" / name)
    args = ["extract", "image", "src", "--out", "out", "--model", "test_unireplknet", "--random-weights"]
    proc = _crashing_unilk(tmp_path, "b_crash", *args, "--num-workers", "1", "--no-progress")
    _one_error_line(proc, "b_crash.png", "Segmentation fault", "--retry-failed reads it again")
    rerun = _crashing_unilk(tmp_path, "b_crash", *args, "--num-workers", "1", "--no-progress")
    assert rerun.returncode == 0, rerun.stderr
    assert "done 2, failed 1" in rerun.stdout


def test_cli_train_names_the_file_and_shows_the_traceback_only_with_v(tmp_path: Path) -> None:
    args = [
        "train", "image/quick_stripes", f"output_dir={tmp_path / 'run'}", f"data.root={tmp_path / 'data'}",
        "data.synthetic_kwargs.n_per_class=4", "data.batch_size=4", "data.num_workers=1", "train.max_steps=2",
        "train.device=cpu", "log.progress=false",
    ]  # fmt: skip
    line = _one_error_line(_crashing_unilk(tmp_path, "/train/", *args), "train sample", "Segmentation fault")
    assert f"{tmp_path / 'data' / 'train'}" in line
    assert ".png" in line
    verbose = _crashing_unilk(tmp_path, "/train/", "-v", *args, "--overwrite")
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("Error: a data-loading worker")
