"""Checkpoint loading: a locally populated Hugging Face cache in offline mode, local files, adaptation, safety."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from unilk.errors import CheckpointError
from unilk.hub import load_state_dict_file
from unilk.models import create_model

REPO = "DingXiaoH/UniRepLKNet"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _Evil:
    """An object whose unpickling would run code."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (print, ("this must never run",))


def _populate_hf_cache(cache: Path, repo_id: str, filename: str, state: Any) -> Path:
    """Write a file where huggingface_hub's cache layout expects it (models--org--name/{refs,snapshots})."""
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    torch.save(state, snapshot / filename)
    return snapshot / filename


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "unused-default-cache"))
    return tmp_path / "hub-cache"


def test_pretrained_loads_from_the_offline_cache(offline: Path, unireplknet_a_fixture: dict[str, Any]) -> None:
    state = unireplknet_a_fixture["state_dict"]
    _populate_hf_cache(offline, REPO, "unireplknet_a_in1k_224_acc77.03.pth", {"model": state, "epoch": 299})
    model = create_model("unireplknet_a.in1k", pretrained=True, cache_dir=offline)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert model.pretrained_cfg["hf_hub_filename"] == "unireplknet_a_in1k_224_acc77.03.pth"


def test_offline_without_the_file_names_the_setting(offline: Path) -> None:
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE"):
        create_model("unireplknet_a.in1k", pretrained=True, cache_dir=offline)


def test_cfg_without_weights_refuses_pretrained() -> None:
    with pytest.raises(CheckpointError, match="no released weights"):
        create_model("test_unireplknet", pretrained=True)


def test_pretrained_cfg_overlay_points_at_another_hub_file(offline: Path, randomize: Any) -> None:
    source = randomize(create_model("test_unireplknet"))
    _populate_hf_cache(offline, "me/tiny", "tiny.pth", source.state_dict())
    overlay = dict(hf_hub_id="me/tiny", hf_hub_filename="tiny.pth")
    model = create_model("test_unireplknet", pretrained=True, cache_dir=offline, pretrained_cfg_overlay=overlay)
    assert torch.equal(model.state_dict()["head.weight"], source.state_dict()["head.weight"])


def test_pretrained_cfg_overlay_file_loads_a_local_file_through_the_filter(tmp_path: Path, randomize: Any) -> None:
    source = randomize(create_model("test_unireplknet"))
    path = tmp_path / "official-style.pth"
    torch.save({"model": {f"backbone.{k}": v for k, v in source.state_dict().items()}}, path)
    model = create_model("test_unireplknet", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.state_dict().items())


def test_safetensors_with_module_prefix_head_drop_and_gray_stem(
    tmp_path: Path, randomize: Any, caplog: pytest.LogCaptureFixture
) -> None:
    source = randomize(create_model("test_unireplknet"))
    path = tmp_path / "tiny.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in source.state_dict().items()}, str(path))
    with caplog.at_level(logging.INFO, logger="unilk.hub"):
        model = create_model("test_unireplknet", checkpoint_path=path, num_classes=10, in_chans=1)
    state, reference = model.state_dict(), source.state_dict()
    assert model.head.out_features == 10  # a fresh head
    assert torch.equal(state["stages.3.0.pwconv1.1.weight"], reference["stages.3.0.pwconv1.1.weight"])
    stem = reference["downsample_layers.0.0.weight"]
    assert torch.allclose(state["downsample_layers.0.0.weight"], stem.sum(1, keepdim=True))
    assert "dropped head.weight" in caplog.text
    assert "adapted downsample_layers.0.0.weight" in caplog.text


def test_mismatched_and_unsafe_checkpoints_are_refused(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pth"
    torch.save(create_model("test_unireplknet_allk").state_dict(), wrong)
    with pytest.raises(CheckpointError, match=r"shape mismatch|does not fit"):
        create_model("test_unireplknet", checkpoint_path=wrong)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": {"w": torch.ones(1)}, "hook": _Evil()}, unsafe)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_state_dict_file(unsafe)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict_file(tmp_path / "missing.pth")


def test_official_style_checkpoint_with_args_namespace_loads(tmp_path: Path) -> None:
    state = create_model("test_unireplknet").state_dict()
    path = tmp_path / "checkpoint-best.pth"
    torch.save({"model": state, "epoch": 3, "args": argparse.Namespace(lr=4e-3, model="test")}, path)
    loaded = load_state_dict_file(path)
    assert list(loaded) == list(state)


def test_training_checkpoint_into_an_adapted_deploy_model(tmp_path: Path, randomize: Any) -> None:
    source = randomize(create_model("test_unireplknet"))
    path = tmp_path / "train.pth"
    torch.save(source.state_dict(), path)
    deploy = create_model("test_unireplknet", checkpoint_path=path, deploy=True, in_chans=1, num_classes=3)
    expected = create_model("test_unireplknet", checkpoint_path=path, in_chans=1, num_classes=3)
    expected.reparameterize()
    state = deploy.state_dict()
    assert list(state) == list(expected.state_dict())
    for key, value in expected.state_dict().items():
        if not key.startswith("head."):  # both heads are fresh
            assert torch.allclose(state[key], value, atol=1e-6), key


def test_load_checkpoint_into_a_built_model(tmp_path: Path, randomize: Any) -> None:
    """``unilk.load_checkpoint``: the head dropped for another num_classes, the stem adapted, strict keys and shapes."""
    import unilk

    source = randomize(create_model("test_unireplknet"))
    path = tmp_path / "tiny.pth"
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    target = create_model("test_unireplknet", num_classes=5, in_chans=1)
    fresh_head = target.head.weight.clone()
    assert unilk.load_checkpoint(target, path) is target
    state, reference = target.state_dict(), source.state_dict()
    assert torch.equal(state["stages.3.0.pwconv1.1.weight"], reference["stages.3.0.pwconv1.1.weight"])
    assert torch.allclose(state["downsample_layers.0.0.weight"], reference["downsample_layers.0.0.weight"].sum(1, True))
    assert torch.equal(target.head.weight, fresh_head)  # a dropped head keeps its initialisation
    with pytest.raises(CheckpointError, match="shape mismatch"):
        unilk.load_checkpoint(create_model("test_unireplknet_allk"), path)
    renamed = tmp_path / "renamed.pth"
    torch.save({f"other.{k}": v for k, v in reference.items()}, renamed)
    with pytest.raises(CheckpointError, match="does not fit the model"):
        unilk.load_checkpoint(create_model("test_unireplknet"), renamed)
    back = unilk.load_checkpoint(create_model("test_unireplknet"), renamed, filter_fn=lambda sd, _: {
        k.removeprefix("other."): v for k, v in sd.items()
    })  # fmt: skip
    assert torch.equal(back.state_dict()["head.weight"], reference["head.weight"])
    assert unilk.load_checkpoint(create_model("test_unireplknet"), renamed, strict=False) is not None
