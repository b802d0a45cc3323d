"""Hostile training setups: data safety, nothing overwritten, one-line config errors, reproducible runs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from unilk.datasets import synthetic
from unilk.datasets.base import Sample
from unilk.errors import ConfigError
from unilk.train.build import validate_recipe
from unilk.train.commands import train_command
from unilk.train.config import load_recipe

pytestmark = pytest.mark.filterwarnings("ignore:UniRepLKNet.*smaller than the reach:UserWarning")

RECIPE = "image/quick_stripes"


def _overrides(tmp_path: Path, run: str = "run", data: str = "data") -> list[str]:
    return [
        f"output_dir={tmp_path / run}",
        f"data.root={tmp_path / data}",
        "data.synthetic_kwargs.n_per_class=4",
        "data.batch_size=4",
        "train.max_steps=3",
        "train.device=cpu",
        "train.max_minutes=null",
        "log.progress=false",
        "log.every_steps=1",
    ]


def _unilk(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unilk", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def _one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    for needle in needles:
        assert needle in lines[0]


def test_yaml_errors_and_python_tags_are_one_line_config_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("name: x\nmodel: {arch: [unclosed\n")
    _one_line_error(_unilk("train", "broken.yaml", "--validate-only", cwd=tmp_path), 2, "not valid YAML", "line")
    (tmp_path / "evil.yaml").write_text("name: !!python/object/apply:os.system ['touch pwned']\n")
    _one_line_error(_unilk("train", "evil.yaml", "--validate-only", cwd=tmp_path), 2, "not valid YAML")
    assert not (tmp_path / "pwned").exists()


def test_bad_paths_and_ranges_are_config_errors_before_anything_is_built(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a directory")
    cases = {
        "output_dir=": "output_dir: got ''",
        f"output_dir={tmp_path / 'a_file'}": "is a file",
        "data.num_workers=-1": "data.num_workers: got -1",
        "train.threads=-1": "train.threads: got -1",
        "model.arch=unireplknet_q": "model.arch: got 'unireplknet_q'",
        "optim.opt=adamz": "optim.opt: got 'adamz'",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            validate_recipe(load_recipe(RECIPE, [*_overrides(tmp_path), override]))
    with pytest.raises(ConfigError, match=r"data\.root: .* is not a directory"):
        validate_recipe(
            load_recipe("series/quick_forecast", [f"data.root={tmp_path / 'a_file'}", "data.synthetic=null"])
        )
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no GPU is visible"):
            validate_recipe(load_recipe(RECIPE, [*_overrides(tmp_path), "train.device=cuda"]))
    # --validate-only writes nothing: no synthetic data, no output_dir
    checked = CliRunner().invoke(train_command, [RECIPE, *_overrides(tmp_path), "--validate-only"])
    assert checked.exit_code == 0, checked.output
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "run").exists()


def test_synthetic_data_is_never_written_into_a_users_folder(tmp_path: Path) -> None:
    mine = tmp_path / "my_photos"
    (mine / "cats").mkdir(parents=True)
    (mine / "cats" / "tom.png").write_bytes(b"precious")
    before = sorted(p.relative_to(mine) for p in mine.rglob("*"))
    result = CliRunner().invoke(train_command, [RECIPE, *_overrides(tmp_path, data="my_photos")])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "exists without .unilk_synthetic.json" in str(result.exception)
    assert "data.synthetic=null" in str(result.exception)
    assert sorted(p.relative_to(mine) for p in mine.rglob("*")) == before
    with pytest.raises(ConfigError, match="did not write"):
        synthetic.generate_into(mine, "make_image_folder", {"n_per_class": 2})
    assert sorted(p.relative_to(mine) for p in mine.rglob("*")) == before


def test_synthetic_data_is_reused_and_regenerated_when_its_arguments_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "stripes"
    synthetic.generate_into(root, "make_image_folder", {"n_per_class": 2, "size": 16, "seed": 0})
    first = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    stamp = (root / synthetic.MARKER).stat().st_mtime_ns
    synthetic.generate_into(root, "make_image_folder", {"n_per_class": 2, "size": 16, "seed": 0})
    assert (root / synthetic.MARKER).stat().st_mtime_ns == stamp  # same arguments: reused untouched
    with caplog.at_level(logging.WARNING, logger="unilk.datasets.synthetic"):
        synthetic.generate_into(root, "make_image_folder", {"n_per_class": 3, "size": 16, "seed": 0})
    assert "regenerating" in caplog.text
    second = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    assert len(second) == len(first) * 3 // 2  # 3 images per class and split instead of 2, no stale files left


def test_run_files_are_never_overwritten_unless_resuming_or_asked(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"mine": true}')
    (run / "notes.txt").write_text("keep me")
    runner = CliRunner()
    refused = runner.invoke(train_command, [RECIPE, *_overrides(tmp_path)])
    assert isinstance(refused.exception, ConfigError)
    assert "metrics.json" in str(refused.exception)
    assert "--overwrite" in str(refused.exception)
    assert (run / "metrics.json").read_text() == '{"mine": true}'
    done = runner.invoke(train_command, [RECIPE, *_overrides(tmp_path), "--overwrite"])
    assert done.exit_code == 0, done.output
    assert (run / "notes.txt").read_text() == "keep me"  # not a run file: never touched
    assert not list(run.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_two_cpu_runs_of_one_recipe_and_seed_log_the_same(tmp_path: Path) -> None:
    runner = CliRunner()
    logs = []
    for run in ("a", "b"):
        extra = ["train.deterministic=true", "data.num_workers=0"]
        result = runner.invoke(train_command, [RECIPE, *_overrides(tmp_path, run=run), *extra])
        assert result.exit_code == 0, result.output
        logs.append((tmp_path / run / "log.csv").read_text())
    assert len(logs[0].splitlines()) >= 4  # header + a row per step
    assert logs[0] == logs[1]
    other = runner.invoke(train_command, [RECIPE, *_overrides(tmp_path, run="c"), "train.seed=1"])
    assert other.exit_code == 0, other.output
    assert (tmp_path / "c" / "log.csv").read_text() != logs[0]  # the seed matters


def test_train_threads_sets_the_runs_intra_op_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    result = CliRunner().invoke(train_command, [RECIPE, *_overrides(tmp_path), "train.threads=1"])
    assert result.exit_code == 0, result.output
    assert calls == [1]
    calls.clear()
    result = CliRunner().invoke(train_command, [RECIPE, *_overrides(tmp_path, run="default"), "train.threads=0"])
    assert result.exit_code == 0, result.output
    assert calls == []  # 0 (the field's default; the quick recipe itself asks for 1): PyTorch's own choice


class _SomeUnreadable(torch.utils.data.Dataset):
    """A dataset whose listed samples raise when read, as a corrupt file does."""

    def __init__(self, dataset: torch.utils.data.Dataset, bad: set[int]) -> None:
        self.dataset, self.bad = dataset, bad
        self.classes = dataset.classes
        self.samples = [Sample(f"sample{i}.wav", None, 0) for i in range(len(dataset))]  # as folder datasets name them

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        if index in self.bad:
            raise ValueError(f"sample{index}.wav: cannot decode")
        return self.dataset[index]


def test_unreadable_training_and_eval_samples_are_recorded_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    from _train_tiny import tiny_parts, tiny_recipe

    from unilk.train.engine import Trainer

    parts = tiny_parts()
    parts.train_set = _SomeUnreadable(parts.train_set, {3, 40})
    parts.eval_set = _SomeUnreadable(parts.eval_set, {5})
    with caplog.at_level(logging.WARNING, logger="unilk.train.engine"):
        summary = Trainer(tiny_recipe(str(tmp_path / "run")), parts).fit()
    assert summary["completed"]
    assert summary["failed_samples"] == 3
    assert 0.0 <= summary["metrics"]["acc"] <= 1.0  # measured on the 28 eval samples that could be read
    assert "left out: ValueError: sample3.wav: cannot decode" in caplog.text
    rows = [json.loads(line) for line in (tmp_path / "run" / "data_errors.jsonl").read_text().splitlines()]
    assert [(r["split"], r["index"]) for r in rows] == [("eval", 5), ("train", 3), ("train", 40)]
    assert rows[0]["error"] == "ValueError: sample5.wav: cannot decode"
    assert [(r["id"], r["type"]) for r in rows] == [("sample5.wav", "ValueError")] + [
        (f"sample{i}.wav", "ValueError") for i in (3, 40)
    ]
