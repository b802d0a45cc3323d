"""The encode input contract: every form a user may hold, turned into ``[(id, sample)]`` the adapters read.

One table (docs/getting-started.md, "What encode takes") and this one code path:

=========  ==========================================================  ==========================================
modality   one sample                                                   a batch (one array)
=========  ==========================================================  ==========================================
image      PIL image; ``[H, W]``, ``[H, W, C]`` or ``[C, H, W]``        ``[N, H, W, C]`` or ``[N, C, H, W]``
audio      ``[T]``; ``[C, T]`` / ``[T, C]`` with ``layout=``;           ``[B, T]`` with ``layout="BT"``
           ``(waveform, sample_rate)``
points     ``[N, 3+]``; ``[3+, N]`` with ``layout="CN"``                  ``[B, N, 3+]``; ``[B, 3+, N]`` with ``"BCN"``
series     ``[T]``, ``[T, D]``                                          ``[B, T, D]``
video      ``[T, H, W, C]``; ``[T, C, H, W]`` with ``layout="TCHW"``     ``[B, T, H, W, C]``; ``[B, T, C, H, W]``
=========  ==========================================================  ==========================================

Images have C in (1, 3); pixels are uint8, uint16 or float in [0, 1]. Arrays are numpy arrays or torch tensors (any
device and float dtype). Every modality also takes a path, a directory or glob, a list, a ``{id: sample}`` mapping,
the ``bytes`` of one encoded file, and :class:`unilk.Maps`. A shape that could mean two things is refused with the
``layout=`` that settles it: nothing is guessed.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from unilk.errors import InputError

__all__ = ["LAYOUTS", "name_inputs"]

#: per modality the layouts ``layout=`` may name (letters: N/B batch, C channels, H/W pixels, T time, D features).
LAYOUTS: dict[str, tuple[str, ...]] = {
    "image": ("HW", "HWC", "CHW", "NHWC", "NCHW"),
    "audio": ("T", "CT", "TC", "BT", "BCT", "BTC"),
    "points": ("NC", "CN", "BNC", "BCN"),
    "series": ("T", "TD", "BTD"),
    "video": ("THWC", "TCHW", "BTHWC", "BTCHW"),
}
_IMAGE_CHANNELS = (1, 3)


def name_inputs(modality: str, inputs: Any, layout: str | None = None) -> list[tuple[str, Any]]:
    """Turn every accepted input form into ``[(id, sample)]``; directories keep the modality's file types only.

    Args:
        modality: one of ``unilk.encoding.MODALITIES``.
        inputs: what the user passed for this modality (see the module table).
        layout: how to read an array whose shape is ambiguous (one of :data:`LAYOUTS` ``[modality]``).

    Returns:
        ``[(id, sample)]``: paths keep their path as id, in-memory samples are ``"<modality>[i]"``.

    Raises:
        InputError: an unknown form, an unknown layout, no inputs, or an array whose shape does not say what it
            holds.
    """
    if layout is not None and layout not in LAYOUTS[modality]:
        raise InputError(f"encode layout: got {layout!r} for {modality}; expected one of {list(LAYOUTS[modality])}")
    named = _name_inputs(modality, inputs, layout)
    if not named:  # an empty list, mapping or batch array: an empty result would pass for one
        raise InputError(
            f"encode({modality}=...): the {type(inputs).__name__} holds no inputs; expected at least one sample"
        )
    return named


def _name_inputs(modality: str, inputs: Any, layout: str | None) -> list[tuple[str, Any]]:
    from unilk.encoding import Maps
    from unilk.extract import list_inputs, modality_extensions

    if isinstance(inputs, Maps):
        maps = inputs.tensor if inputs.tensor.dim() == 4 else inputs.tensor.unsqueeze(0)
        return [(f"{modality}[{i}]", Maps(m)) for i, m in enumerate(maps)]
    if isinstance(inputs, (bytes, bytearray, memoryview)):
        return [(f"{modality}[0]", _from_bytes(modality, bytes(inputs)))]
    if isinstance(inputs, (str, os.PathLike)):
        path = Path(inputs)
        if path.is_file():
            return [(str(path), str(path))]
        return [(item.path, item.path) for item in list_inputs(inputs, extensions=modality_extensions(modality))]
    if _is_pil(inputs):
        return [(f"{modality}[0]", _one(modality, inputs, layout))]
    if isinstance(inputs, Mapping):
        return [(str(k), _one(modality, v, layout)) for k, v in inputs.items()]
    if isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[1], numbers.Integral):
        return [(f"{modality}[0]", _one(modality, inputs, layout))]  # one (waveform, sample_rate) pair
    if isinstance(inputs, (np.ndarray, Tensor)):
        return [(f"{modality}[{i}]", s) for i, s in enumerate(split_array(modality, inputs, layout))]
    if isinstance(inputs, Sequence) and not isinstance(inputs, str):
        return [
            (str(x), str(x)) if isinstance(x, (str, os.PathLike)) else (f"{modality}[{i}]", _one(modality, x, layout))
            for i, x in enumerate(inputs)
        ]
    raise InputError(
        f"encode({modality}=...): got {type(inputs).__name__}; expected a path, directory, glob, bytes, list of "
        "samples, {id: sample} mapping, array/tensor, or unilk.Maps (docs/getting-started.md, 'What encode takes')"
    )


def _from_bytes(modality: str, data: bytes) -> Any:
    """The encoded bytes of one file: audio decodes them itself, an image is opened with PIL (size checked first).

    Raises:
        InputError: bytes for a modality that reads files only, or image bytes that are not an image.
    """
    if modality == "audio":
        return data
    if modality == "image":
        import io as _io

        from PIL import Image

        from unilk.adapters.io import DEFAULT_MAX_PIXELS

        try:
            image = Image.open(_io.BytesIO(data))
        except Exception as err:  # PIL raises several types for bad data
            raise InputError(f"<{len(data)} bytes>: cannot decode image ({err}); expected an encoded image") from err
        width, height = image.size
        if width * height > DEFAULT_MAX_PIXELS:
            raise InputError(
                f"<{len(data)} bytes>: {width}x{height} pixels, above max_pixels={DEFAULT_MAX_PIXELS}; downscale it"
            )
        return image
    raise InputError(
        f"encode({modality}=bytes): encoded bytes are read for audio and images; for {modality}, write them to a "
        "file and pass its path"
    )


def _is_pil(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "convert")


def _to_numpy(array: np.ndarray | Tensor) -> np.ndarray:
    """A tensor on any device and of any float dtype -> numpy (bf16/fp16 as float32); numpy passes through."""
    if isinstance(array, np.ndarray):
        return array
    tensor = array.detach().cpu()
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy()


def _one(modality: str, sample: Any, layout: str | None) -> Any:
    """One element of a list or mapping: an array must be exactly one sample; other forms pass through."""
    if isinstance(sample, tuple) and len(sample) == 2 and isinstance(sample[1], numbers.Integral):
        if modality != "audio":
            raise InputError(f"encode({modality}=...): (array, sample_rate) pairs are for audio only")
        shape = tuple(getattr(sample[0], "shape", np.shape(sample[0])))
        if layout is None and len(shape) == 2 and 1 < shape[0] < shape[1]:
            layout = "CT"  # one clip (a pair has one rate), fewer channels than frames: [C, T]
        elif layout is None and len(shape) == 2 and shape[0] > shape[1] > 1:
            raise InputError(
                f"encode(audio=(array of shape {shape}, rate)): more channels than frames as [C, T]; is it "
                "soundfile's [frames, channels]? Fix: pass layout='TC'"
            )
        samples = split_array("audio", np.asarray(sample[0]) if isinstance(sample[0], list) else sample[0], layout)
        if len(samples) != 1:
            raise InputError(f"encode(audio=(array, rate)): the array holds {len(samples)} clips; expected one")
        return (samples[0], int(sample[1]))
    if _is_pil(sample) and modality == "image":
        return sample
    if isinstance(sample, (bytes, bytearray, memoryview)):
        return _from_bytes(modality, bytes(sample))
    if isinstance(sample, (np.ndarray, Tensor)):
        samples = split_array(modality, sample, layout)
        if len(samples) != 1:
            raise InputError(
                f"encode({modality}=[...]): a list element of shape {tuple(sample.shape)} holds {len(samples)} "
                f"samples; expected one per element. Fix: pass the batch array itself, not inside a list"
            )
        return samples[0]
    if isinstance(sample, (str, os.PathLike)) or _is_sample_object(modality, sample):
        return sample
    hint = " ((waveform, sample_rate) pairs need an integer rate)" if modality == "audio" else ""
    raise InputError(
        f"encode({modality}=[...]): an element of type {type(sample).__name__}; expected a path, an array/tensor or "
        f"bytes per element{hint}. Fix: pass one sample as an array (np.asarray(...)), not as a list"
    )


def _is_sample_object(modality: str, sample: Any) -> bool:
    """Objects an adapter reads as one sample besides paths, arrays and bytes: ready maps, a PIL image, a series."""
    from unilk.adapters.io import SeriesData
    from unilk.encoding import Maps

    return (
        isinstance(sample, Maps)
        or (modality == "image" and _is_pil(sample))
        or (modality == "series" and isinstance(sample, SeriesData))
    )


def split_array(modality: str, array: np.ndarray | Tensor, layout: str | None = None) -> list[Any]:
    """One array -> its samples, each in the layout the modality's adapter reads.

    Images become ``[H, W, C]`` numpy arrays (dtype kept, so uint8 is scaled by 255), audio ``[C, T]`` arrays, the
    rest stay as given (one sample per leading index for a batch).

    Raises:
        InputError: a shape that fits no layout of the modality, or several (with the ``layout=`` to pass).
    """
    shape = tuple(array.shape)
    layout = layout or _infer_layout(modality, shape)
    expected = len(layout)
    if len(shape) != expected:
        raise InputError(f"encode({modality}=array of shape {shape}): layout {layout!r} needs {expected} dimensions")
    if modality == "image":
        return _split_images(_to_numpy(array), layout)
    if modality == "audio":
        data = _to_numpy(array)
        if layout == "T":
            return [data[None]]
        if layout == "CT":
            return [data]
        if layout == "TC":
            return [data.T]
        if layout == "BT":
            return [row[None] for row in data]
        if layout == "BCT":
            return list(data)
        if layout == "BTC":
            return [clip.T for clip in data]
        raise InputError(f"encode layout: got {layout!r} for audio; expected one of {list(LAYOUTS['audio'])}")
    if layout in ("TCHW", "BTCHW"):  # torchvision's read_video(output_format="TCHW"): frames channels-last
        frames = array.permute(*range(array.dim() - 3), -2, -1, -3) if isinstance(array, Tensor) else None
        frames = frames if frames is not None else np.moveaxis(array, -3, -1)
        return [frames] if layout == "TCHW" else list(frames)
    if layout == "CN":
        return [array.transpose(-1, -2) if isinstance(array, Tensor) else array.T]
    if layout == "BCN":
        return [cloud.transpose(-1, -2) if isinstance(cloud, Tensor) else cloud.T for cloud in array]
    if layout in ("BNC", "BTD", "BTHWC"):
        return list(array)
    if layout in ("NC", "T", "TD", "THWC"):
        return [array]
    raise InputError(f"encode layout: got {layout!r} for {modality}; expected one of {list(LAYOUTS[modality])}")


def _infer_layout(modality: str, shape: tuple[int, ...]) -> str:
    """The one layout a shape can have, or an InputError naming the ``layout=`` choices when it has several."""
    ndim = len(shape)
    by_ndim = {layout: len(layout) for layout in LAYOUTS[modality]}
    if modality == "image":
        if ndim == 2:
            return "HW"
        if ndim in (3, 4):
            first, last = shape[-3] in _IMAGE_CHANNELS, shape[-1] in _IMAGE_CHANNELS
            hwc, chw = ("HWC", "CHW") if ndim == 3 else ("NHWC", "NCHW")
            if first and last:
                raise InputError(
                    f"encode(image=array of shape {shape}): ambiguous: channels first or last? Fix: pass "
                    f"layout={chw!r} or layout={hwc!r}"
                )
            if first or last:
                return chw if first else hwc
            raise InputError(
                f"encode(image=array of shape {shape}): no axis of size 1 or 3 at either end; expected "
                f"{'[H, W, C] or [C, H, W]' if ndim == 3 else '[N, H, W, C] or [N, C, H, W]'} with C in (1, 3). Fix: "
                "drop an alpha channel (array[..., :3]) or convert the image to RGB"
            )
    elif modality == "audio":
        if ndim == 1:
            return "T"
        if ndim == 2 and shape[0] == 1:
            return "CT"
        if ndim == 2:
            raise InputError(
                f"encode(audio=array of shape {shape}): ambiguous: {shape[0]} clips, one clip with {shape[0]} "
                f"channels, or {shape[1]} channels of {shape[0]} frames (soundfile's layout)? Fix: pass layout='BT' "
                "(clips), 'CT' (channels first) or 'TC' (frames, channels)"
            )
        if ndim == 3 and shape[1] == 1:
            return "BCT"
        if ndim == 3:
            raise InputError(
                f"encode(audio=array of shape {shape}): ambiguous: [B, C, T] or [B, T, C]? Fix: pass layout='BCT' "
                "or layout='BTC'"
            )
    elif modality == "video" and ndim in (4, 5):
        if shape[-1] not in _IMAGE_CHANNELS and shape[-3] in _IMAGE_CHANNELS:  # torchvision's TCHW
            channels_first = "TCHW" if ndim == 4 else "BTCHW"
            raise InputError(
                f"encode(video=array of shape {shape}): channels first? expected frames as [..., H, W, C]. Fix: pass "
                f"layout={channels_first!r} (torchvision's output_format='TCHW'), or move the channels last"
            )
        return "THWC" if ndim == 4 else "BTHWC"
    elif modality == "points" and ndim in (2, 3):
        if shape[-1] > shape[-2]:  # fewer points than columns: PointNet's channels-first [3, N] more likely
            channels_first, rows = ("CN", "NC") if ndim == 2 else ("BCN", "BNC")
            raise InputError(
                f"encode(points=array of shape {shape}): more columns than points; is it channels first "
                f"([{'B, ' if ndim == 3 else ''}3+, N], as PointNet takes)? Fix: pass layout={channels_first!r} "
                f"(or layout={rows!r} if it really is {shape[-2]} points of {shape[-1]} values)"
            )
        return "NC" if ndim == 2 else "BNC"
    else:
        matches = [layout for layout, n in by_ndim.items() if n == ndim]
        if len(matches) == 1:
            return matches[0]
    raise InputError(
        f"encode({modality}=array of shape {shape}): {ndim} dimensions fit no {modality} layout; expected one of "
        f"{', '.join('[' + ', '.join(layout) + ']' for layout in LAYOUTS[modality])}"
    )


def _split_images(data: np.ndarray, layout: str) -> list[np.ndarray]:
    """Image arrays in any layout -> ``[H, W, 3]`` arrays (grey repeated to three channels, as PIL's RGB does)."""
    if layout == "HW":
        images = [data[:, :, None]]
    elif layout == "HWC":
        images = [data]
    elif layout == "CHW":
        images = [np.moveaxis(data, 0, -1)]
    elif layout == "NHWC":
        images = list(data)
    elif layout == "NCHW":
        images = list(np.moveaxis(data, 1, -1))
    else:
        raise InputError(f"encode layout: got {layout!r} for image; expected one of {list(LAYOUTS['image'])}")
    out = []
    for image in images:
        if image.shape[-1] not in _IMAGE_CHANNELS:
            raise InputError(f"encode(image=...): {image.shape[-1]} channels; expected 1 or 3 (RGB)")
        out.append(np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image)
    return out
