"""`unilk convert`: official checkpoint -> safetensors/.pth with the config embedded, train -> deploy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from unilk.diagnostics.commands import convert as convert_command
from unilk.diagnostics.convert import convert_checkpoint, infer_model_name, read_checkpoint_config
from unilk.errors import CheckpointError, ConfigError
from unilk.models.registry import create_model

# tiny models on small inputs: the trunks warn that the last-stage map is smaller than the kernels
pytestmark = pytest.mark.filterwarnings("ignore:.*last-stage map:UserWarning")

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "unireplknet_a_official.pt"
if not FIXTURE.exists():
    FIXTURE = Path("/work/shared/fixtures/unireplknet_a_official.pt")


@pytest.fixture(scope="module")
def fixture() -> dict:
    if not FIXTURE.exists():
        pytest.skip(f"shared fixture {FIXTURE} is not available")
    return torch.load(FIXTURE, weights_only=True)


def test_fixture_to_deploy_safetensors_reproduces_official_outputs(tmp_path, fixture) -> None:
    # the built-in check runs on a small input; the fixture's own 224 input is run below on the file read back
    out = tmp_path / "a_deploy.safetensors"
    report = convert_checkpoint(FIXTURE, out, model="unireplknet_a", deploy=True, input_size=(3, 64, 64))
    assert report.max_abs_deploy is not None
    assert report.max_abs_deploy < 1e-5
    assert report.max_abs_roundtrip == 0.0
    assert report.num_tensors == 156  # spec §1.2: deploy key count of A
    config = read_checkpoint_config(out)
    assert config is not None
    assert (config["model"], config["deploy"], config["num_classes"], config["in_chans"]) == (
        "unireplknet_a", True, 1000, 3
    )  # fmt: skip
    with torch.no_grad():
        model = create_model("unireplknet_a", deploy=True, checkpoint_path=out).eval()
        logits = model(fixture["input"])
    assert (logits - fixture["deploy_output"]).abs().max() <= 1e-5
    assert (logits - fixture["output"]).abs().max() <= 1e-5
    # the deploy weights equal the official re-parameterized ones
    state = model.state_dict()
    for key, value in fixture["deploy_state_dict_subset"].items():
        torch.testing.assert_close(state[key], value, rtol=1e-5, atol=1e-6)


def test_infer_model_name_and_train_form_roundtrip(tmp_path) -> None:
    model = create_model("test_unireplknet", num_classes=7, in_chans=1).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "tiny.pth")
    assert infer_model_name(model.state_dict()) == "test_unireplknet"
    deploy_state = create_model("test_unireplknet", deploy=True).state_dict()
    assert infer_model_name(deploy_state, ["test_unireplknet", "test_unireplknet_allk"]) == "test_unireplknet"
    out = tmp_path / "tiny.safetensors"
    report = convert_checkpoint(tmp_path / "tiny.pth", out, input_size=(1, 64, 64))
    assert report.config["model"] == "test_unireplknet"
    assert (report.config["num_classes"], report.config["in_chans"], report.config["deploy"]) == (7, 1, False)
    assert report.passed(0.0)
    x = torch.randn(2, 1, 64, 48)
    with torch.no_grad():
        again = create_model("test_unireplknet", num_classes=7, in_chans=1, checkpoint_path=out).eval()
        assert torch.equal(again(x), model(x))
    with pytest.raises(CheckpointError, match="--model"):
        infer_model_name({"foo.weight": torch.zeros(3)}, ["test_unireplknet"])


def test_convert_errors(tmp_path) -> None:
    model = create_model("test_unireplknet")
    torch.save(model.state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(ConfigError, match="suffix"):
        convert_checkpoint(tmp_path / "tiny.pth", tmp_path / "out.bin", model="test_unireplknet")
    with pytest.raises(CheckpointError, match="does not fit"):
        convert_checkpoint(tmp_path / "tiny.pth", tmp_path / "out.pth", model="test_unireplknet_allk")
    assert read_checkpoint_config(tmp_path / "tiny.pth") is None


def test_convert_command(tmp_path) -> None:
    model = create_model("test_unireplknet", num_classes=5)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "tiny.pth")
    out = tmp_path / "tiny_deploy.safetensors"
    args = [str(tmp_path / "tiny.pth"), "--out", str(out), "--deploy", "--model", "test_unireplknet",
            "--input-size", "3", "64", "64"]  # fmt: skip
    result = CliRunner().invoke(convert_command, args)
    assert result.exit_code == 0, result.output
    assert "train form vs deploy form: max abs diff" in result.output
    assert "equivalence check passed" in result.output
    assert read_checkpoint_config(out)["deploy"] is True
    result = CliRunner().invoke(convert_command, [*args, "--model", "test_unireplknet_allk"])
    assert result.exit_code != 0
    assert "already exists" in result.output  # a written file is never replaced
    out.unlink()
    result = CliRunner().invoke(convert_command, [*args, "--model", "test_unireplknet_allk"])
    assert result.exit_code != 0
    assert "does not fit" in result.output
    assert not out.exists()


@pytest.mark.parametrize(("fixture_name", "arch"), [("slak_small_official.pt", "slak_t"),
                                                    ("replknet_small_official.pt", "replknet_31b")])  # fmt: skip
def test_other_families_with_official_config(tmp_path, fixture_name: str, arch: str) -> None:
    import importlib

    importlib.import_module(f"unilk.models.{arch.split('_')[0]}")  # register the family
    path = FIXTURE.parent / fixture_name
    if not path.exists():
        pytest.skip(f"shared fixture {path} is not available")
    official = torch.load(path, weights_only=True)
    out = tmp_path / f"{arch}.safetensors"
    report = convert_checkpoint(path, out, model=arch, model_kwargs=official["config"], deploy=True,
                                input_size=(3, 64, 64))  # fmt: skip
    assert report.max_abs_deploy is not None
    assert report.max_abs_deploy < 1e-5
    assert report.max_abs_roundtrip == 0.0
    assert read_checkpoint_config(out)["model_kwargs"] == json.loads(json.dumps(official["config"]))
    with torch.no_grad():
        model = create_model(arch, **official["config"], deploy=True, checkpoint_path=out).eval()
        assert (model(official["input"]) - official["output"]).abs().max() <= 1e-5
    with pytest.raises(ConfigError, match="need the architecture"):
        convert_checkpoint(path, tmp_path / "x.safetensors", model_kwargs=official["config"])
