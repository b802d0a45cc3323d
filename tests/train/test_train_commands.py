"""`unilk train` and `unilk eval` end to end on a tiny synthetic image recipe."""

from __future__ import annotations

import json

from click.testing import CliRunner

from unilk.train.checkpoint import load_checkpoint
from unilk.train.commands import eval_command, train_command


def test_train_then_eval(tmp_path):
    run = tmp_path / "run"
    overrides = [
        f"output_dir={run}",
        f"data.root={tmp_path / 'data'}",
        "data.synthetic_kwargs.n_per_class=4",
        "data.batch_size=4",
        "train.max_steps=2",
        "train.device=cpu",
        "log.progress=false",
    ]
    runner = CliRunner()
    checked = runner.invoke(train_command, ["image/quick_stripes", *overrides, "--validate-only"])
    assert checked.exit_code == 0, checked.output
    assert "max_steps: 2" in checked.output
    result = runner.invoke(train_command, ["image/quick_stripes", *overrides])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["step"] == 2
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["arch"]["trunk"] == "test_unireplknet"
    assert ckpt["adapter"]["modality"] == "image"
    assert ckpt["labels"] == ["checker", "diagonal", "horizontal", "vertical"]
    evaluated = runner.invoke(eval_command, [str(run), "--checkpoint", "last.pt"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert metrics["acc"] == summary["metrics"]["acc"]
    bad = runner.invoke(train_command, ["image/quick_stripes", *overrides, "optim.lrr=1"])
    assert bad.exit_code != 0
    assert "valid keys" in str(bad.exception)
