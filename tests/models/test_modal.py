"""Modal models: adapter-chosen stem and in_chans + a tiny trunk + a task head."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from unilk.errors import ConfigError
from unilk.models.modal import ModalModel, create_modal_model

SERIES = {"seq_len": 16, "label_len": 8, "pred_len": 4, "group_size": 2, "d_model": 16, "freq": "h", "dropout": 0.0}


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # intra-op threads spin against each other on the shared test machine
    yield
    torch.set_num_threads(before)


@pytest.mark.filterwarnings("ignore:UniRepLKNet")
@pytest.mark.parametrize(("modality", "chans"), [("audio", 1), ("points", 3), ("image", 3), ("video", 3)])
def test_map_modalities_classify(modality: str, chans: int) -> None:
    smoothing = {"label_smoothing": 0.1}
    model = create_modal_model(modality, "classification", "test_unireplknet", num_classes=4, head_kwargs=smoothing)
    assert model.trunk.get_submodule(model.trunk.pretrained_cfg["first_conv"]).in_channels == chans
    assert model.adapter_config["modality"] == modality
    x = torch.randn(2, chans, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 4)
    model.loss(logits, torch.tensor([0, 3])).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with pytest.raises(RuntimeError):
        model(torch.randn(2, chans + 1, 32, 32))  # the stem was built for the adapter's in_chans


@pytest.mark.filterwarnings("ignore:UniRepLKNet")
def test_multilabel_head() -> None:
    model = create_modal_model("audio", "multilabel", "test_unireplknet", num_classes=6)
    out = model(torch.randn(3, 1, 32, 32))
    assert out.shape == (3, 6)
    assert model.loss(out, torch.zeros(3, 6)).item() > 0


@pytest.mark.filterwarnings("ignore:UniRepLKNet")
def test_series_forecast_per_node() -> None:
    torch.manual_seed(0)
    model = create_modal_model("series", "forecast", "test_unireplknet", adapter_config=SERIES).eval()
    x, marks = torch.randn(2, 16, 6), torch.randn(2, 16, 4)  # 6 channels = 3 nodes of 2
    out = model(x, marks)
    assert out.shape == (2, 4, 6)
    changed = x.clone()
    changed[:, :, 2:4] += 1.0  # only node 1's channels
    diff = (model(changed, marks) - out).abs().amax(dim=(0, 1))
    assert diff[2:4].min() > 0
    assert diff[[0, 1, 4, 5]].max() == 0  # other nodes' forecasts are untouched: channels were reassembled in order
    model.train()
    model.loss(model(x, marks), torch.zeros(2, 4, 6)).backward()
    assert model.stem.token_conv.weight.grad is not None


@pytest.mark.filterwarnings("ignore:UniRepLKNet")
def test_series_classification_pools_nodes() -> None:
    model = create_modal_model("series", "classification", "test_unireplknet", num_classes=3, adapter_config=SERIES)
    assert model(torch.randn(2, 16, 4), torch.randn(2, 16, 4)).shape == (2, 3)


def test_bad_requests() -> None:
    with pytest.raises(ConfigError, match="series"):
        create_modal_model("audio", "forecast", "test_unireplknet")
    with pytest.raises(ConfigError, match="num_classes"):
        create_modal_model("image", "classification", "test_unireplknet")
    with pytest.raises(ConfigError, match="task"):
        create_modal_model("image", "segmentation", "test_unireplknet", num_classes=2)
    with pytest.raises(ConfigError, match="modality"):
        create_modal_model("text", "classification", "test_unireplknet", num_classes=2)
    with pytest.raises(ConfigError, match="in_chans"):
        create_modal_model("image", "classification", "test_unireplknet", num_classes=2, in_chans=4)
    with pytest.raises(ConfigError, match="stem"):
        ModalModel(torch.nn.Identity(), torch.nn.Identity(), modality="series", task="forecast")


@pytest.mark.filterwarnings("ignore:UniRepLKNet")
@pytest.mark.parametrize("coarse", [False, True])
def test_group_matcher_puts_stem_first_trunk_in_order_and_head_last(coarse: bool) -> None:
    from timm.models import group_parameters

    model = create_modal_model("series", "forecast", "test_unireplknet", adapter_config=SERIES)
    layer_of = group_parameters(model, model.group_matcher(coarse=coarse), reverse=True)
    assert set(layer_of) == {name for name, _ in model.named_parameters()}  # every parameter has a layer id
    trunk_of = group_parameters(model.trunk, model.trunk.group_matcher(coarse=coarse), reverse=True)
    last = max(layer_of.values())
    stem = [layer_of[name] for name, _ in model.named_parameters() if name.startswith("stem.")]
    head = [layer_of[name] for name, _ in model.named_parameters() if name.startswith("head.")]
    assert stem
    assert set(stem) == {0}
    assert head
    assert set(head) == {last}
    # inside the trunk, the wrapped matcher keeps the trunk's own grouping: same partition, same order
    for a, id_a in trunk_of.items():
        for b, id_b in trunk_of.items():
            assert (layer_of[f"trunk.{a}"] < layer_of[f"trunk.{b}"]) == (id_a < id_b)
    assert layer_of["trunk.downsample_layers.0.0.weight"] == 0  # the trunk's stem shares the first group


@pytest.mark.filterwarnings("ignore:UniRepLKNet")
def test_layer_decay_uses_the_modal_group_matcher() -> None:
    from unilk.train.config import recipe_from_dict
    from unilk.train.optim import build_optimizer

    model = create_modal_model("series", "forecast", "test_unireplknet", adapter_config=SERIES)
    cfg = recipe_from_dict({"optim": {"opt": "adamw", "lr": 1e-3, "layer_decay": 0.5}}).optim
    opt = build_optimizer(model, cfg, lr=1e-3)
    scale = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    assert len(scale) == sum(1 for _ in model.parameters())
    num_layers = max(_layer_ids(model).values()) + 1
    assert {scale[id(p)] for p in model.stem.parameters()} == {0.5 ** (num_layers - 1)}
    assert {scale[id(p)] for p in model.head.parameters()} == {1.0}


def _layer_ids(model: ModalModel) -> dict[str, int]:
    """Parameter name -> layer id under the model's own matcher."""
    from timm.models import group_parameters

    return group_parameters(model, model.group_matcher(), reverse=True)
