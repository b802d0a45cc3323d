"""Each warning once per cause per process: repeats of a cause go to debug level (log records) or nowhere (warnings)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import unilk
from unilk.adapters import build_adapter


def test_the_kernel_reach_warning_is_told_once_whatever_the_model_or_call_site() -> None:
    x = torch.randn(1, 3, 64, 48)  # a 2x2 last-stage map for 13x13 kernels
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")  # Python's own per-location registry is out of the way: this counts ours
        for _ in range(2):
            model = unilk.create_model("test_unireplknet").eval()  # a new model each time, as encode() builds one
            model(x)
            model.forward_features(x)
        unilk.create_model("test_unireplknet").eval()(torch.randn(1, 3, 32, 32))  # another cause: a 1x1 map
    told = [str(w.message) for w in caught if "smaller than the reach" in str(w.message)]
    assert len(told) == 2
    assert "(2, 2)" in told[0]
    assert "(1, 1)" in told[1]


def test_a_silent_clip_warns_once_and_later_ones_go_to_debug(caplog: pytest.LogCaptureFixture) -> None:
    adapter = build_adapter("audio")
    silence = (np.zeros(16000, np.float32), 16000)
    with caplog.at_level(logging.DEBUG, logger="unilk.adapters.audio"):
        for _ in range(3):
            adapter(silence)
    silent = [r for r in caplog.records if "clip is silent" in r.getMessage()]
    assert [r.levelno for r in silent] == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_an_adaptation_is_logged_once_per_cause(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    weights = tmp_path / "rgb.pth"
    torch.save(unilk.create_model("test_unireplknet").state_dict(), weights)
    with caplog.at_level(logging.DEBUG, logger="unilk.hub"):
        for _ in range(2):
            unilk.create_model("test_unireplknet", in_chans=1, checkpoint_path=str(weights))
    adapted = [r for r in caplog.records if "to 1 input channels" in r.getMessage()]
    assert [r.levelno for r in adapted] == [logging.INFO, logging.DEBUG]


def _small_map_warnings(run: Callable[[], object]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught if "smaller than the reach" in str(w.message)]


def test_no_small_map_warning_where_the_user_chose_no_map(tmp_path: Path) -> None:
    """A shipped recipe as shipped, and a trained model on its own maps, say nothing; a changed adapter does."""
    from click.testing import CliRunner

    from unilk.train.commands import eval_command, train_command

    args = [
        "image/quick_stripes", f"output_dir={tmp_path / 'run'}", f"data.root={tmp_path / 'data'}", "train.device=cpu",
        "data.synthetic_kwargs.n_per_class=4", "data.batch_size=4", "train.max_steps=1", "log.progress=false",
    ]  # fmt: skip
    runner = CliRunner()
    assert _small_map_warnings(lambda: runner.invoke(train_command, args, catch_exceptions=False)) == []
    assert _small_map_warnings(lambda: runner.invoke(eval_command, [str(tmp_path / "run")])) == []
    image = np.full((32, 32, 3), 200, np.uint8)
    trained = unilk.Encoder(checkpoint=tmp_path / "run" / "best.pt", device="cpu")
    assert _small_map_warnings(lambda: trained.encode(image=image)) == []
    changed = [*args[:1], f"output_dir={tmp_path / 'other'}", *args[2:], "adapter.crop_pct=0.9"]
    told = _small_map_warnings(lambda: runner.invoke(train_command, changed, catch_exceptions=False))
    assert len(told) == 1  # the user changed the maps: the warning is for them
