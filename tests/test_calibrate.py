"""BatchNorm recalibration: source data leaves outputs unchanged, shifted data moves the statistics to the target's,
and the written file loads with unilk.load and re-parameterizes exactly."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import unilk
from unilk.calibrate import batchnorm_layers, calibrate_bn
from unilk.cli import cli
from unilk.errors import ConfigError, InputError
from unilk.reparam import reparameterize

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # tiny maps are smaller than the largest kernel


def _trunk() -> torch.nn.Module:
    torch.manual_seed(0)
    # layer scale 1 (a trained trunk's order), not the 1e-6 of a fresh one: the blocks, and so their BatchNorms, count
    return unilk.create_model("test_unireplknet", num_classes=0, layer_scale_init_value=1.0).eval()


def _batches(seed: int, count: int, gain: float = 1.0, offset: float = 0.0, size: int = 16) -> list[list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(size, 3, 32, 32, generator=generator) * gain + offset] for _ in range(count)]


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().forward_head(model.forward_features(x), pre_logits=True)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_source_data_leaves_outputs_unchanged_within_noise_and_shifted_data_changes_them() -> None:
    x = _batches(99, 1, size=8)[0][0]
    noise, moved = {}, {}
    for count in (4, 16):  # batches of 16 samples
        source = _trunk()
        calibrate_bn(source, _batches(0, count))  # the trunk's statistics are now those of the source distribution
        before = _outputs(source, x)
        again = copy.deepcopy(source)
        same = calibrate_bn(again, _batches(1, count))  # fresh samples of the same distribution
        shifted = copy.deepcopy(source)
        report = calibrate_bn(shifted, _batches(1, count, gain=3.0, offset=2.0))
        noise[count] = _relative(_outputs(again, x), before)
        moved[count] = _relative(_outputs(shifted, x), before)
        assert report.summary["mean_shift_max"] > 3 * same.summary["mean_shift_max"]
    # on source data the change is estimation noise: 4x the samples, about half the change (1/sqrt(n)) ...
    assert noise[16] < noise[4] / 1.5
    # ... while a real shift moves the outputs by the same large amount whatever the sample count
    assert moved[16] > 4 * noise[16]
    assert moved[16] > 0.7 * moved[4]


def test_statistics_become_the_targets_cumulative_average() -> None:
    model = _trunk()
    layers = batchnorm_layers(model)
    assert layers
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in layers}
    for name, bn in layers.items():  # measure each BatchNorm's input statistics independently, per batch
        bn.register_forward_pre_hook(
            lambda _m, args, name=name: seen[name].append((args[0].mean((0, 2, 3)), args[0].var((0, 2, 3))))
        )
    weights = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith(("running_mean", "running_var"))}
    momentum = {name: bn.momentum for name, bn in layers.items()}
    batches = _batches(3, 3, gain=2.5, offset=-1.0)
    calibrate_bn(model, batches)
    for name, bn in layers.items():
        assert len(seen[name]) == len(batches)
        mean = torch.stack([m for m, _ in seen[name]]).mean(0)
        var = torch.stack([v for _, v in seen[name]]).mean(0)
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var, var, rtol=1e-4, atol=1e-5)
        assert bn.momentum == momentum[name]
    after = {k: v for k, v in model.state_dict().items() if k in weights and not k.endswith("num_batches_tracked")}
    assert all(torch.equal(after[k], weights[k]) for k in after)  # only the statistics changed
    assert not model.training


def test_refuses_deploy_form_and_empty_input() -> None:
    model = _trunk()
    with pytest.raises(InputError, match="no input batch"):
        calibrate_bn(model, [])
    with pytest.raises(ConfigError, match="training form"):
        calibrate_bn(reparameterize(model), _batches(0, 1))


def test_empty_input_keeps_the_old_statistics() -> None:
    model = _trunk()
    calibrate_bn(model, _batches(0, 1))
    old = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    with pytest.raises(InputError):
        calibrate_bn(model, [])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in old.items())


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    """A tiny image classifier checkpoint (training form) and a folder of shifted (bright, low-contrast) images."""
    from PIL import Image

    from unilk.models.modal import create_modal_model
    from unilk.train.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("calibrate")
    rng = np.random.default_rng(0)
    (root / "target").mkdir()
    for i in range(12):
        pixels = rng.normal(200, 10, (32, 32, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / "target" / f"{i}.png")
    adapter = {"modality": "image", "input_size": [3, 32, 32]}
    torch.manual_seed(0)
    kwargs = {"layer_scale_init_value": 1.0}
    model = create_modal_model(
        "image", "classification", "test_unireplknet", num_classes=3, adapter_config=adapter, **kwargs
    )
    arch = {"builder": "unilk.models.modal.create_modal_model", "modality": "image", "task": "classification",
            "trunk": "test_unireplknet", "num_classes": 3, "kwargs": kwargs, "head_kwargs": {}}  # fmt: skip
    checkpoint = save_checkpoint(root / "best.pt", {"model": model.state_dict(), "arch": arch, "adapter": adapter})
    return {"root": root, "checkpoint": checkpoint}


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_calibrate_command_writes_a_file_that_loads_and_reparameterizes_exactly(image_model, suffix) -> None:
    root = image_model["root"]
    out = root / f"calibrated{suffix}"
    report = root / f"report{suffix}.json"
    args = ["calibrate", str(image_model["checkpoint"]), str(root / "target"), "--out", str(out), "--batch-size", "4"]
    result = CliRunner().invoke(cli, [*args, "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "BatchNorm layers on 12 maps (3 batches)" in result.output
    summary = json.loads(report.read_text())["summary"]
    assert summary["mean_shift_max"] > 0.01  # from the fresh statistics (mean 0, variance 1)
    original = unilk.load(image_model["checkpoint"])
    calibrated = unilk.load(out)
    assert calibrated.unilk_config["calibration"]["samples"] == 12
    assert not calibrated.unilk_config["deploy"]
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        train_form = calibrated(x)
        assert _relative(train_form, original(x)) > 1e-3  # the statistics moved
        deployed = unilk.load(out, deploy=True)(x)
    assert float((deployed - train_form).abs().max() / train_form.abs().max()) < 1e-5
    again = CliRunner().invoke(cli, args)  # an existing output is never replaced
    assert again.exit_code != 0
    assert "already exists" in again.output


def test_calibrate_refuses_a_deploy_form_file(image_model, tmp_path) -> None:
    from unilk.calibrate import calibrate_file
    from unilk.diagnostics.convert import convert_checkpoint

    deploy = tmp_path / "deploy.safetensors"
    convert_checkpoint(str(image_model["checkpoint"]), deploy, deploy=True, atol=1e-4)
    with pytest.raises(ConfigError, match="training-form"):
        calibrate_file(deploy, [str(p) for p in (image_model["root"] / "target").iterdir()], tmp_path / "x.pth")
    assert not (tmp_path / "x.pth").exists()


def test_recipe_calibrate_bn_sets_statistics_from_the_train_split(tmp_path) -> None:
    from unilk.train.build import build_parts
    from unilk.train.config import load_recipe

    overrides = [f"output_dir={tmp_path}/run", f"data.root={tmp_path}/data", "data.synthetic_kwargs.n_per_class=4",
                 "data.batch_size=4"]  # fmt: skip
    plain = build_parts(load_recipe("image/quick_stripes", overrides)).model
    parts = build_parts(load_recipe("image/quick_stripes", [*overrides, "model.calibrate_bn=true"]))
    fresh = batchnorm_layers(plain)
    calibrated = batchnorm_layers(parts.model)
    assert all(torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean)) for bn in fresh.values())
    # every BatchNorm now holds the statistics of the train images (the same seed built both models)
    assert all(not torch.equal(bn.running_mean, fresh[name].running_mean) for name, bn in calibrated.items())
    x = torch.stack([parts.train_set[i]["input"] for i in range(len(parts.train_set))])
    reference = copy.deepcopy(plain)
    calibrate_bn(reference, [[x[i : i + 4]] for i in range(0, len(x), 4)], forward=lambda net, batch: net(*batch))
    for name, bn in calibrated.items():
        torch.testing.assert_close(bn.running_mean, batchnorm_layers(reference)[name].running_mean)
    with pytest.raises(Exception, match="calibrate_bnn"):
        load_recipe("image/quick_stripes", [*overrides, "model.calibrate_bnn=true"])


def test_calibrate_refuses_a_trunk_whose_channels_do_not_fit_the_modality(tmp_path) -> None:
    from unilk.calibrate import calibrate_file
    from unilk.diagnostics.convert import save_checkpoint

    trunk = tmp_path / "trunk.safetensors"
    config = {"kind": "trunk", "model": "test_unireplknet", "num_classes": 0, "in_chans": 3, "deploy": False}
    save_checkpoint(_trunk().state_dict(), trunk, config, "safetensors")
    with pytest.raises(ConfigError, match="3-channel maps, but the audio adapter makes 1-channel"):
        calibrate_file(trunk, ["a.wav"], tmp_path / "out.pth", modality="audio")
    with pytest.raises(ConfigError, match="names no modality"):
        calibrate_file(trunk, ["a.png"], tmp_path / "out.pth")
