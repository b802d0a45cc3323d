"""``--official-src``: the official model file is found, imported without side effects, built with the unilk model's
architecture and weights, and timed against it; outputs are checked equal.

The official code is not part of unilk, so these tests write stand-in "official" files into a temporary folder:
small modules in the official files' places that subclass unilk's plain build and do what the official files do
that matters here (print, register with timm, import the CUDA-only iGEMM extension at the top, re-parameterize by the
official method name).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import timm
import torch
from click.testing import CliRunner
from torch import nn

import unilk
from unilk.diagnostics.bench import bench, bench_official, format_official_table, perturb_for_check
from unilk.diagnostics.official import IGEMM_MODULE, _load_same_weights, build_official, find_official_file
from unilk.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore:.*smaller than the reach:UserWarning")

UNIREPLKNET_STANDIN = """
from timm.models.registry import register_model
from unilk.models.unireplknet import UniRepLKNet as _UniRepLKNet

print("---------------- the official files print while they build")


class UniRepLKNet(_UniRepLKNet):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.set_fast_path(False)

    def reparameterize_unireplknet(self):
        self.reparameterize()


@register_model
def unireplknet_a(**kwargs):  # the official file registers names that unilk registers too
    raise AssertionError("the official entrypoint must not replace unilk's in timm's registry")
"""

SLAK_STANDIN = f"""
import sys
sys.path.append("WHERE_YOU_CLONED_CUTLASS/examples/19_large_depthwise_conv2d_torch_extension")
from {IGEMM_MODULE} import DepthWiseConv2dImplicitGEMM
from unilk.models.slak import SLaK as _SLaK


class SLaK(_SLaK):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.set_fast_path(False)
"""


@pytest.fixture
def official_src(tmp_path: Path) -> Path:
    (tmp_path / "UniRepLKNet").mkdir()
    (tmp_path / "UniRepLKNet" / "unireplknet.py").write_text(UNIREPLKNET_STANDIN)
    (tmp_path / "SLaK" / "models").mkdir(parents=True)
    (tmp_path / "SLaK" / "models" / "SLaK.py").write_text(SLAK_STANDIN)
    return tmp_path


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def test_official_unireplknet_is_built_with_the_same_weights_without_side_effects(
    official_src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = perturb_for_check(unilk.create_model("test_unireplknet", num_classes=4))
    path_before = list(sys.path)
    official = build_official(model, [official_src])
    assert official.path == official_src / "UniRepLKNet" / "unireplknet.py"
    assert official.form == "deploy"
    assert official.module.deploy  # reparameterize_unireplknet() ran
    assert "print while they build" not in capsys.readouterr().out
    assert sys.path == path_before
    assert type(timm.create_model("unireplknet_a")).__module__ == "unilk.models.unireplknet"
    model.eval()
    unilk.reparameterize(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert _rel(model(x), official.module(x)) <= 1e-5


def test_official_slak_gets_an_igemm_stand_in_and_stays_in_train_form(official_src: Path) -> None:
    model = perturb_for_check(unilk.create_model("test_slak", num_classes=4))
    official = build_official(model, [official_src])
    assert official.form == "train"  # the official SLaK code has no deploy form for decomposed kernels
    assert not official.module.deploy
    assert any(IGEMM_MODULE in note for note in official.notes)
    assert IGEMM_MODULE not in sys.modules  # the stand-in answered the import only
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = official.module(x)
    model.eval()
    unilk.reparameterize(model)
    row = bench_official(model, official.module, batch=2, image_size=64, repeats=1, min_time_s=0.0)
    assert row["infer_rel_err"] <= 1e-5
    with torch.no_grad():
        assert _rel(model(x), want) <= 1e-5
    assert row["infer_ratio"] > 0
    table = format_official_table([{"model": "test_slak", "official_form": "train", "form": "deploy", "run": "eager",
                                    "batch": 2, **row}])  # fmt: skip
    assert "| test_slak | train | deploy | eager | 2 |" in table


def test_missing_official_file_names_where_it_looked(tmp_path: Path) -> None:
    model = unilk.create_model("test_replknet", num_classes=4)
    with pytest.raises(ConfigError, match=r"no official RepLKNet file found; looked for .*replknet\.py"):
        find_official_file(model, [tmp_path])
    with pytest.raises(ConfigError, match="training form"):
        build_official(unilk.reparameterize(model), [tmp_path])


def test_weights_whose_names_differ_load_by_position_and_other_mismatches_fail() -> None:
    source = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    renamed = nn.Module()
    renamed.first, renamed.second = nn.Linear(3, 4), nn.Linear(4, 2)
    notes: list[str] = []
    _load_same_weights(renamed, source.state_dict(), notes)
    assert torch.equal(renamed.second.weight, source[1].weight)
    assert "4 keys differ in name only" in notes[0]
    other = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))
    with pytest.raises(ConfigError, match="does not match the unilk model's weights"):
        _load_same_weights(other, source.state_dict(), [])


def test_cli_times_against_the_official_source(official_src: Path) -> None:
    args = ["models", "test_unireplknet", "test_slak", "--batch", "1", "--image-size", "32", "--repeats", "1",
            "--eager-only", "--threads", "1", "--official-src", str(official_src)]  # fmt: skip
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    assert "| test_unireplknet | deploy | deploy | eager | 1 |" in result.output
    assert "| test_slak | train | deploy | eager | 1 |" in result.output
    assert f"note: official test_slak: {IGEMM_MODULE}" in result.output
    missing = CliRunner().invoke(bench, ["models", "test_replknet", "--official-src", str(official_src)])
    assert missing.exit_code != 0
    assert "no official RepLKNet file found" in missing.output
