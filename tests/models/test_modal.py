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
