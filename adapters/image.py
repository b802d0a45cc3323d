"""Image adapter: an image -> resized, cropped, normalised Tensor[3, H, W], following a model's pretrained cfg.

The settings come from the model's pretrained cfg passed in as data (a dict, or any object with the attributes, such
as timm's ``PretrainedCfg``), so adapters never import the model registry: ``ImageConfig.from_pretrained_cfg(cfg)``.
Eval transform as timm's: resize the short side to ``size / crop_pct``, then crop ``size`` (centre).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from unilk.adapters.common import stack_maps
from unilk.adapters.config import AdapterConfig, check_choice, check_positive
from unilk.adapters.io import DEFAULT_MAX_PIXELS, PathLike, image_to_array, load_image, sample_name
from unilk.errors import ConfigError, InputError

__all__ = ["ImageAdapter", "ImageConfig", "reduce_factor", "resize_crop"]

_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")

ImageSample = PathLike | np.ndarray | Tensor | Any  # Any: a PIL image


@dataclasses.dataclass(frozen=True)
class ImageConfig(AdapterConfig):
    """Eval-time image preprocessing.

    Attributes:
        input_size: (C, H, W) of the model input.
        crop_pct: fraction of the resized image kept by the crop (1.0: resize straight to the crop size).
        crop_mode: ``center`` (resize the short side, crop the centre) or ``squash`` (resize to H×W, no crop).
        interpolation: ``bilinear``, ``bicubic`` or ``nearest``.
        mean: per-channel mean after scaling to [0, 1].
        std: per-channel std.
        max_pixels: largest image file accepted (width × height, read from the header before decoding).
    """

    modality = "image"

    input_size: tuple[int, ...] = (3, 224, 224)
    crop_pct: float = 0.875
    crop_mode: str = "center"
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if len(self.input_size) != 3 or self.input_size[0] != 3 or min(self.input_size) <= 0:
            raise ConfigError(f"{owner}.input_size: got {self.input_size}, expected (3, H, W) with H, W > 0")
        check_positive(owner, "crop_pct", self.crop_pct)
        if self.crop_pct > 1:
            raise ConfigError(f"{owner}.crop_pct: got {self.crop_pct}, expected 0 < crop_pct ≤ 1")
        check_choice(owner, "crop_mode", self.crop_mode, ("center", "squash"))
        check_choice(owner, "interpolation", self.interpolation, _INTERPOLATIONS)
        check_positive(owner, "max_pixels", self.max_pixels)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"{owner}: mean={self.mean}, std={self.std}; expected 3 values each, std > 0")

    @classmethod
    def from_pretrained_cfg(cls, cfg: Mapping[str, Any] | Any, **overrides: Any) -> ImageConfig:
        """Take ``input_size``, ``crop_pct``, ``crop_mode``, ``interpolation``, ``mean`` and ``std`` from a model's
        pretrained cfg (a mapping, or an object with those attributes); missing entries keep the defaults and other
        entries are ignored.

        Args:
            cfg: the pretrained cfg.
            **overrides: fields to set regardless of the cfg (e.g. ``input_size=(3, 288, 288)``).
        """
        values: dict[str, Any] = {}
        for name in cls.field_names():
            value = cfg.get(name) if isinstance(cfg, Mapping) else getattr(cfg, name, None)
            if value is not None:
                values[name] = value
        if values.get("crop_mode") not in (None, "center", "squash"):
            values["crop_mode"] = "center"  # timm's 'border' and others: the centre crop is the closest we support
        return cls.from_dict({**values, **overrides})


def resize_crop(image: Tensor, cfg: ImageConfig) -> Tensor:
    """Resize and crop a float image as configured.

    Args:
        image: Tensor[3, H, W] float in [0, 1].
        cfg: the image config.

    Returns:
        Tensor[3, cfg.input_size[1], cfg.input_size[2]].
    """
    _, out_h, out_w = cfg.input_size
    kwargs: dict[str, Any] = {"mode": cfg.interpolation}
    if cfg.interpolation != "nearest":
        kwargs.update(align_corners=False, antialias=True)
    if cfg.crop_mode == "squash":
        return F.interpolate(image.unsqueeze(0), size=(out_h, out_w), **kwargs)[0].clamp_(0, 1)
    elif cfg.crop_mode == "center":
        height, width = image.shape[-2:]
        scale_h, scale_w = out_h / cfg.crop_pct, out_w / cfg.crop_pct
        scale = max(scale_h / height, scale_w / width)  # short side (w.r.t. the target aspect) to size / crop_pct
        size = (max(out_h, math.floor(height * scale)), max(out_w, math.floor(width * scale)))
        image, size = _central_part(image, size, (out_h, out_w))
        resized = F.interpolate(image.unsqueeze(0), size=size, **kwargs)[0].clamp_(0, 1)
        top, left = (size[0] - out_h) // 2, (size[1] - out_w) // 2
        return resized[:, top : top + out_h, left : left + out_w]
    else:
        raise ConfigError(f"ImageConfig.crop_mode: got {cfg.crop_mode!r}, expected 'center' or 'squash'")


#: a resized side longer than this many output sides is not made whole: only the central part the crop sees is resized.
_MAX_RESIZED_RATIO = 64


def _central_part(image: Tensor, size: tuple[int, int], out: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
    """The central part of ``image`` that a centre crop of ``out`` from its resize to ``size`` sees, and its resized
    size.

    A very elongated image (1 × 10000 pixels) resized so its short side fits would be billions of pixels, of which the
    crop keeps a few: along such a side only the crop's window, with a margin for the resize filter, is resized. The
    part keeps the image's centre (same parity of length), so the crop sees the same pixels up to a sub-pixel
    rounding. Sides within ``_MAX_RESIZED_RATIO`` crops are left whole (ordinary images are resized as before).

    Args:
        image: Tensor[C, H, W].
        size: the (H', W') the whole image would be resized to.
        out: the crop (h, w).

    Returns:
        ``(part, part_size)``: Tensor[C, h0, w0] and the (H'', W'') to resize it to.
    """
    part, part_size = image, list(size)
    for axis, (length, resized, crop) in enumerate(zip(image.shape[-2:], size, out)):
        if resized <= _MAX_RESIZED_RATIO * crop:
            continue
        per_pixel = resized / length  # resized pixels per source pixel
        margin = 3 * math.ceil(max(1.0, 1.0 / per_pixel))  # the antialiased bicubic filter's reach, and some
        keep = min(length, 2 * (math.ceil(crop / per_pixel / 2) + margin) + length % 2)
        start = (length - keep) // 2
        part = part.narrow(axis + 1, start, keep)
        part_size[axis] = max(crop, round(keep * per_pixel))
    return part, (part_size[0], part_size[1])


_INT_RANGES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def _array_to_tensor(array: np.ndarray, name: str) -> Tensor:
    """[H, W, 3] pixels (uint8, uint16 or float in [0, 1]) -> float Tensor[3, H, W] in [0, 1]."""
    if array.ndim != 3 or array.shape[2] != 3:
        raise InputError(f"{name}: array of shape {array.shape}; expected [H, W, 3] (uint8, uint16 or float in [0, 1])")
    if array.dtype in _INT_RANGES:
        scale = _INT_RANGES[array.dtype]
    elif np.issubdtype(array.dtype, np.floating):
        scale = 1.0
    else:
        raise InputError(f"{name}: array of dtype {array.dtype}; expected uint8, uint16 or float pixels")
    # copy: PIL arrays are read-only
    return torch.from_numpy(np.array(array, dtype=np.float32)).permute(2, 0, 1) / scale


def reduce_factor(size: tuple[int, int], cfg: ImageConfig) -> int:
    """Integer box-downscale factor for an image of ``size`` (W, H) that still leaves it at least twice the size the
    resize step makes of it, so the antialiased resize does the rest (1: no reduction). Memory then follows the model
    input, not the file: a 40-megapixel photo is never held as floats."""
    _, out_h, out_w = cfg.input_size
    width, height = size
    pct = cfg.crop_pct if cfg.crop_mode == "center" else 1.0
    ratio = min(width * pct / out_w, height * pct / out_h)  # original / resized, along the tighter side
    return max(1, int(ratio // 2))


class ImageAdapter:
    """Turns images (path, PIL image, uint8 array [H, W, 3] or float Tensor[3, H, W] in [0, 1]) into model inputs.

    Example:
        >>> adapter = ImageAdapter(ImageConfig.from_pretrained_cfg({"input_size": (3, 64, 64), "crop_pct": 1.0}))
        >>> adapter(np.zeros((80, 100, 3), np.uint8)).shape
        torch.Size([3, 64, 64])
    """

    in_chans = 3

    def __init__(self, config: ImageConfig | None = None) -> None:
        self.config = config or ImageConfig()

    def decode(self, sample: ImageSample) -> Tensor:
        """Decode and validate a sample, without resizing: float Tensor[3, H, W] in [0, 1].

        Raises:
            InputError: unreadable or malformed image.
        """
        return self._to_tensor(sample)

    def _to_tensor(self, sample: ImageSample) -> Tensor:
        """Decode a sample into float Tensor[3, H, W] in [0, 1].

        Pixels are scaled by their type's range: uint8 by 255, uint16 by 65535, floats taken as [0, 1].
        """
        name = sample_name(sample)
        if isinstance(sample, Tensor):
            if sample.dim() != 3 or sample.shape[0] != 3:
                raise InputError(f"{name}: expected a Tensor[3, H, W] in [0, 1]")
            image = sample.to(torch.float32)
        else:
            if isinstance(sample, np.ndarray):
                array = sample
            else:
                pil = sample if hasattr(sample, "convert") else load_image(sample, self.config.max_pixels)
                array = image_to_array(pil, name, reduce_factor(pil.size, self.config))
            image = _array_to_tensor(array, name)
        if min(image.shape[-2:]) == 0 or not torch.isfinite(image).all():
            raise InputError(f"{name}: image is empty or has NaN/inf pixels")
        if image.numel() and (image.min() < 0 or image.max() > 1):
            raise InputError(
                f"{name}: pixel values in [{float(image.min()):g}, {float(image.max()):g}]; expected [0, 1] for float "
                "images. Fix: scale the image to [0, 1] (or pass uint8/uint16 pixels)"
            )
        return image

    def __call__(self, sample: ImageSample) -> Tensor:
        """Resize, crop and normalise one image.

        Returns:
            float32 Tensor[3, H, W] with (H, W) from ``config.input_size``.

        Raises:
            InputError: unreadable or malformed image.
        """
        cfg = self.config
        image = resize_crop(self._to_tensor(sample), cfg)
        mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)
        return (image - mean) / std

    def collate(self, maps: list[Tensor]) -> Tensor:
        """Stack images: list of Tensor[3, H, W] -> Tensor[N, 3, H, W]."""
        return stack_maps(maps, "image")
