"""`unilk convert` refuses NaN/inf weights and leaves nothing at OUT when its check fails."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from unilk.diagnostics.commands import convert as convert_command
from unilk.diagnostics.convert import convert_checkpoint
from unilk.errors import CheckpointError
from unilk.models.registry import create_model


def test_nan_or_inf_weights_are_refused_and_nothing_is_written(tmp_path) -> None:
    state = create_model("test_unireplknet").state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    for bad in (float("nan"), float("inf")):
        state[name].view(-1)[0] = bad
        torch.save(state, tmp_path / "broken.pth")
        with pytest.raises(CheckpointError, match=rf"NaN or inf values, e\.g\. \['{name}'\]"):
            convert_checkpoint(tmp_path / "broken.pth", tmp_path / "out.safetensors", model="test_unireplknet")
        assert list(tmp_path.iterdir()) == [tmp_path / "broken.pth"]


def test_a_failed_check_leaves_nothing_at_out(tmp_path) -> None:
    torch.save(create_model("test_unireplknet").state_dict(), tmp_path / "tiny.pth")
    out = tmp_path / "tiny.safetensors"
    args = [str(tmp_path / "tiny.pth"), "--out", str(out), "--model", "test_unireplknet", "--input-size", "3", "64"]
    result = CliRunner().invoke(convert_command, [*args, "64", "--atol", "-1"])  # no difference can pass atol -1
    assert result.exit_code != 0
    assert "the check failed" in result.output
    assert "nothing was written" in result.output
    assert list(tmp_path.iterdir()) == [tmp_path / "tiny.pth"]  # no output, no temporary file
    passed = CliRunner().invoke(convert_command, [*args, "64"])
    assert passed.exit_code == 0, passed.output
    assert out.is_file()
