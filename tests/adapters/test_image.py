"""Image adapter: settings from a pretrained cfg given as data, resize/crop geometry, normalisation, bad files."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from unilk.adapters import ImageAdapter, ImageConfig
from unilk.errors import InputError


def test_config_from_pretrained_cfg_dict_or_object() -> None:
    as_dict = {"input_size": (3, 64, 64), "crop_pct": 0.8, "interpolation": "bilinear", "mean": (0.5,) * 3,
               "std": (0.25,) * 3, "num_classes": 1000, "url": ""}  # fmt: skip
    cfg = ImageConfig.from_pretrained_cfg(as_dict)
    assert (cfg.input_size, cfg.crop_pct, cfg.interpolation) == ((3, 64, 64), 0.8, "bilinear")
    assert ImageConfig.from_pretrained_cfg(SimpleNamespace(**as_dict)) == cfg
    assert ImageConfig.from_pretrained_cfg(as_dict, input_size=(3, 32, 32)).input_size == (3, 32, 32)


def test_centre_crop_geometry_and_normalisation(tmp_path: Path) -> None:
    # 100×200 image: left half black, right half white, a red square in the centre
    array = np.zeros((100, 200, 3), np.uint8)
    array[:, 100:] = 255
    array[40:60, 90:110] = (255, 0, 0)
    Image.fromarray(array).save(tmp_path / "img.png")
    cfg = ImageConfig(input_size=(3, 40, 40), crop_pct=1.0, interpolation="bilinear", mean=(0.0,) * 3, std=(1.0,) * 3)
    out = ImageAdapter(cfg)(tmp_path / "img.png")
    assert out.shape == (3, 40, 40)
    assert out.dtype == torch.float32
    # the short side (100) becomes 40, the long side 80, the centre 40 columns are kept: the red square is centred
    red = (out[0] > 0.6) & (out[1] < 0.4)
    rows, cols = torch.nonzero(red, as_tuple=True)
    assert abs(rows.float().mean().item() - 19.5) < 1
    assert abs(cols.float().mean().item() - 19.5) < 1
    assert out[:, :, :5].max() < 0.05
    assert out[:, :, -5:].min() > 0.95
    normed = ImageAdapter(cfg.replace(mean=(0.5,) * 3, std=(0.25,) * 3))(array)
    torch.testing.assert_close(normed, (ImageAdapter(cfg)(array) - 0.5) / 0.25)
    assert ImageAdapter(cfg.replace(crop_mode="squash"))(array).shape == (3, 40, 40)


def test_inputs_and_collate() -> None:
    adapter = ImageAdapter(ImageConfig(input_size=(3, 32, 32)))
    pil = Image.fromarray(np.full((50, 60, 3), 128, np.uint8))
    batch = adapter.collate([adapter(pil), adapter(torch.rand(3, 40, 40))])
    assert batch.shape == (2, 3, 32, 32)


def test_bad_images(tmp_path: Path) -> None:
    adapter = ImageAdapter(ImageConfig(input_size=(3, 32, 32)))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        adapter(tmp_path / "empty.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "good.jpg")
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match=r"trunc.jpg"):
        adapter(tmp_path / "trunc.jpg")
    (tmp_path / "image.mp3").write_bytes(data)
    with pytest.raises(InputError, match="extension"):
        adapter(tmp_path / "image.mp3")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match="cannot decode"):
        adapter(tmp_path / "text.png")
