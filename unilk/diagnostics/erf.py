"""Effective receptive field (ERF), exactly as the RepLKNet and SLaK papers define and measure it.

Method (RepLKNet ``erf/visualize_erf.py`` and ``erf/analyze_erf.py``, reused unchanged by SLaK):

1. The model runs in eval mode. Its output is the **last-stage feature map before pooling** ``F`` (N×C×h×w).
2. The scalar ``s = Σ_c ReLU(F[:, c, h // 2, w // 2])`` (the ReLU'd centre pixel summed over channels) is
   differentiated with respect to the input; the gradient is ReLU'd (positive contributions only) and summed over
   the input channels, giving one H×W map per input.
3. The maps are averaged over the inputs (an input whose map holds a NaN is skipped, as the official script does).
4. Analysis: ``A = log10(map + 1)`` then ``A / max(A)`` (SLaK's figure skips the log: ``log=False``). For a threshold
   ``t``, the side is ``2i + 1`` for the smallest ``i ≥ 1`` whose centred ``(2i+1)×(2i+1)`` square holds more than
   ``t · ΣA``, and the high-contribution area ratio is ``r(t) = (2i+1)² / (H·W)``.

Differences from the official scripts, all deliberate:

* a threshold that no square reaches gives ``side = ratio = None`` (the official function returns None and the caller
  crashes on the tuple unpack);
* the largest square tried is the largest centred square that fits (the official loop stops one short of it, which
  only matters for odd sizes);
* inputs are processed in batches: in eval mode samples do not interact, so each sample's gradient is exactly the one
  a batch of 1 gives;
* the last-stage map is taken from ``forward_intermediates`` when the model has it (timm's contract; RepLKNet's final
  BN and UniRepLKNet's head norm are not part of it), so SLaK's pooled ``forward_features`` bug (spec A6) cannot occur.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from unilk.errors import ConfigError, InputError

__all__ = [
    "DEFAULT_THRESHOLDS",
    "AreaRatio",
    "ERFMap",
    "last_stage_map",
    "input_gradient_maps",
    "compute_erf",
    "normalize_erf",
    "area_ratios",
    "list_input_files",
    "load_input_map",
    "batched",
]

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.2, 0.3, 0.5, 0.99)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAP_SUFFIXES = (".pt", ".pth", ".npy")

FeatureFn = Callable[[nn.Module, Tensor], Tensor]


@dataclass(frozen=True)
class AreaRatio:
    """The high-contribution area at one threshold.

    Attributes:
        threshold: the fraction ``t`` of the total contribution.
        side: side ``2i + 1`` of the smallest centred square holding more than ``t`` of it; None if none does.
        ratio: ``side² / (H·W)``; None if no square reaches ``t``.
    """

    threshold: float
    side: int | None
    ratio: float | None


@dataclass(frozen=True)
class ERFMap:
    """The averaged contribution map of one model.

    Attributes:
        map: ``(H, W)`` float64 mean of the per-input maps (before the log/max normalisation).
        num_inputs: inputs averaged.
        num_skipped: inputs skipped because their map held a NaN.
    """

    map: Tensor
    num_inputs: int
    num_skipped: int


def last_stage_map(model: nn.Module, x: Tensor) -> Tensor:
    """The last-stage feature map before pooling.

    Taken from ``forward_intermediates(x, indices=1, intermediates_only=True)`` when the model has it (timm models and
    unilk trunks), else from ``forward_features``, else from ``model(x)`` (the last element of a list, as
    ``features_only`` models return).

    Args:
        model: any ``nn.Module`` with one of those forms.
        x: input ``(N, C, H, W)``.

    Returns:
        ``(N, C', h, w)``.

    Raises:
        ConfigError: if the model gives no 4-D map; pass ``feature_fn`` to ``compute_erf`` for such models.
    """
    if hasattr(model, "forward_intermediates"):
        out = model.forward_intermediates(x, indices=1, intermediates_only=True)
    elif hasattr(model, "forward_features"):
        out = model.forward_features(x)
    else:
        out = model(x)
    if isinstance(out, (list, tuple)):
        out = out[-1]
    if not isinstance(out, Tensor) or out.dim() != 4:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(
            f"{type(model).__name__} gave {got} as its last-stage output, expected an (N, C, h, w) map before pooling; "
            "pass feature_fn=lambda model, x: <the pre-pool map> to compute_erf"
        )
    return out


def input_gradient_maps(model: nn.Module, x: Tensor, feature_fn: FeatureFn | None = None) -> Tensor:
    """Per-input contribution maps: ReLU of the gradient of the ReLU-summed centre pixel, summed over channels.

    Args:
        model: the model, already in eval mode.
        x: inputs ``(N, C, H, W)``.
        feature_fn: ``fn(model, x) -> (N, C', h, w)`` pre-pool map; default ``last_stage_map``.

    Returns:
        ``(N, H, W)`` maps, one per input.
    """
    x = x.detach().clone().requires_grad_(True)
    features = (feature_fn or last_stage_map)(model, x)
    h, w = features.shape[-2:]
    # summing the per-sample scalars is exact: in eval mode each sample's gradient depends on its own scalar only
    centre = F.relu(features[:, :, h // 2, w // 2]).sum()
    (grad,) = torch.autograd.grad(centre, x)
    return F.relu(grad).sum(dim=1)


def compute_erf(
    model: nn.Module,
    batches: Iterable[Tensor],
    *,
    feature_fn: FeatureFn | None = None,
    progress: bool = True,
    total: int | None = None,
) -> ERFMap:
    """Average the contribution maps of a model over inputs.

    Args:
        model: any model giving a pre-pool last-stage map (see ``last_stage_map``); it is put in eval mode.
        batches: input batches ``(N, C, H, W)``, all with the same ``H, W``; moved to the model's device.
        feature_fn: ``fn(model, x) -> (N, C', h, w)`` for models ``last_stage_map`` cannot handle.
        progress: show a tqdm progress bar.
        total: number of batches, for the progress bar.

    Returns:
        The mean map and how many inputs were used and skipped.

    Raises:
        InputError: if the batches differ in size, or every input was skipped.
    """
    from unilk.progress import Progress

    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    acc: Tensor | None = None
    used = skipped = 0
    for batch in Progress(total, desc="ERF", unit="batch", enabled=progress).iterate(batches):
        maps = input_gradient_maps(model, batch.to(device), feature_fn).double().cpu()
        finite = ~torch.isnan(maps).flatten(1).any(dim=1)
        skipped += int((~finite).sum())
        if acc is None:
            acc = torch.zeros(maps.shape[-2:], dtype=torch.float64)
        elif acc.shape != maps.shape[-2:]:
            raise InputError(
                f"ERF input of size {tuple(maps.shape[-2:])} after inputs of size {tuple(acc.shape)}; every input "
                "must have the same height and width (resize them to one size)"
            )
        acc += maps[finite].sum(dim=0)
        used += int(finite.sum())
    if used == 0:
        raise InputError(f"no ERF input could be used ({skipped} skipped for NaN maps); give at least one valid input")
    if skipped:
        logger.warning("skipped %d input(s) whose ERF map held NaN", skipped)
    return ERFMap(map=acc / used, num_inputs=used, num_skipped=skipped)


def normalize_erf(erf_map: Tensor, log: bool = True) -> Tensor:
    """The papers' normalisation: ``log10(map + 1)`` (unless ``log=False``), then division by the maximum.

    Args:
        erf_map: ``(H, W)`` non-negative map.
        log: apply ``log10(x + 1)`` first (RepLKNet); SLaK's figure uses ``log=False``.

    Returns:
        ``(H, W)`` float64 map in ``[0, 1]`` (all zeros when the map is all zeros).
    """
    out = erf_map.double()
    if log:
        out = torch.log10(out + 1)
    peak = out.max()
    return out / peak if peak > 0 else torch.zeros_like(out)


def area_ratios(erf_map: Tensor, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, log: bool = True) -> list[AreaRatio]:
    """High-contribution area ratios ``r(t)`` of a contribution map.

    Args:
        erf_map: ``(H, W)`` map as ``compute_erf`` returns it (not yet normalised).
        thresholds: fractions ``t`` in ``(0, 1)``.
        log: apply ``log10(x + 1)`` before measuring (the papers' metric); False measures the raw map.

    Returns:
        One ``AreaRatio`` per threshold, in order; ``side``/``ratio`` are None where no centred square reaches ``t``
        (also for an all-zero map).

    Raises:
        ConfigError: if a threshold is outside ``(0, 1)``.
    """
    bad = [t for t in thresholds if not 0 < t < 1]
    if bad:
        raise ConfigError(f"ERF thresholds must lie in (0, 1), got {bad}; use e.g. 0.2 0.3 0.5 0.99")
    norm = normalize_erf(erf_map, log=log)
    height, width = norm.shape
    total = norm.sum()
    cy, cx = height // 2, width // 2
    max_i = min(cy, height - 1 - cy, cx, width - 1 - cx)
    if total <= 0 or max_i < 1:
        return [AreaRatio(t, None, None) for t in thresholds]
    # integral image: the sum of any centred square in O(1), so all squares are measured at once
    integral = F.pad(norm.cumsum(0).cumsum(1), (1, 0, 1, 0))
    i = torch.arange(1, max_i + 1)
    top, bottom, left, right = cy - i, cy + i + 1, cx - i, cx + i + 1
    square = integral[bottom, right] - integral[top, right] - integral[bottom, left] + integral[top, left]
    fraction = square / total
    out = []
    for t in thresholds:
        reached = torch.nonzero(fraction > t)
        if len(reached) == 0:
            out.append(AreaRatio(t, None, None))
            continue
        side = 2 * int(i[reached[0, 0]]) + 1
        out.append(AreaRatio(t, side, side * side / (height * width)))
    return out


def list_input_files(directory: str | Path, num: int | None = None) -> list[Path]:
    """The first ``num`` input files under a directory, in sorted path order (ImageFolder's order).

    Images (``.jpg``, ``.png``, ...) and saved maps (``.pt``/``.pth``/``.npy`` holding a ``C×H×W`` tensor, e.g. an
    adapter's output for audio, video, points or series) are found recursively.

    Args:
        directory: a directory of inputs.
        num: how many to take (all when None).

    Returns:
        Sorted file paths.

    Raises:
        InputError: if the directory does not exist or holds no input files.
    """
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"ERF input directory {str(root)!r} does not exist; pass a directory of images or maps")
    suffixes = IMAGE_SUFFIXES + MAP_SUFFIXES
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise InputError(f"{str(root)!r} holds no input files; expected images {IMAGE_SUFFIXES} or maps {MAP_SUFFIXES}")
    return files[:num] if num is not None else files


def load_input_map(
    path: str | Path,
    size: int | tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Tensor:
    """Read one ERF input as a ``C×H×W`` float tensor.

    Images are converted to RGB, resized (bicubic) to ``size`` and normalised with ``mean``/``std``, as the official
    script does (1024×1024, ImageNet mean/std). Saved maps are used as they are, resized (bilinear) only when ``size``
    is given, and never re-normalised (their adapter already did).

    Args:
        path: an image or a ``.pt``/``.pth``/``.npy`` file holding a ``(C, H, W)`` tensor.
        size: output side (or ``(H, W)``); None keeps the input's size.
        mean: per-channel mean for images.
        std: per-channel std for images.

    Returns:
        ``(C, H, W)`` float32.

    Raises:
        InputError: if the file cannot be read or is not a ``C×H×W`` map.
    """
    path = Path(path)
    hw = (size, size) if isinstance(size, int) else size
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        from PIL import Image

        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
                if hw is not None:
                    rgb = rgb.resize((hw[1], hw[0]), Image.Resampling.BICUBIC)
                data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
                x = data.reshape(rgb.height, rgb.width, 3).permute(2, 0, 1).float() / 255
        except OSError as err:
            raise InputError(f"cannot read ERF image {str(path)!r}: {err}; pass a readable image file") from err
        if mean is not None and std is not None:
            x = (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
        return x
    if suffix in MAP_SUFFIXES:
        x = _read_map(path)
        if x.dim() != 3:
            raise InputError(f"ERF map {str(path)!r} has shape {tuple(x.shape)}, expected (C, H, W)")
        if hw is not None and tuple(x.shape[-2:]) != hw:
            x = F.interpolate(x[None], size=hw, mode="bilinear", align_corners=False)[0]
        return x.float()
    raise InputError(f"ERF input {str(path)!r} has an unknown suffix; expected {IMAGE_SUFFIXES + MAP_SUFFIXES}")


def _read_map(path: Path) -> Tensor:
    """Load a saved tensor safely (numpy without pickle, torch with weights_only)."""
    try:
        if path.suffix.lower() == ".npy":
            import numpy as np

            return torch.from_numpy(np.load(path, allow_pickle=False))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as err:
        raise InputError(f"cannot read ERF map {str(path)!r}: {err}; save a (C, H, W) tensor") from err
    if not isinstance(obj, Tensor):
        raise InputError(f"ERF map {str(path)!r} holds a {type(obj).__name__}, expected a (C, H, W) tensor")
    return obj


def batched(maps: Iterable[Tensor], batch_size: int) -> Iterator[Tensor]:
    """Stack ``C×H×W`` maps into batches of at most ``batch_size``.

    Raises:
        InputError: if a map's shape differs from the first one's.
    """
    chunk: list[Tensor] = []
    first: tuple[int, ...] | None = None
    for item in maps:
        first = first or tuple(item.shape)
        if tuple(item.shape) != first:
            raise InputError(
                f"ERF input of shape {tuple(item.shape)} after inputs of shape {first}; every input must have the "
                "same shape (resize them to one size, e.g. with --size and --resize-maps)"
            )
        chunk.append(item)
        if len(chunk) == batch_size:
            yield torch.stack(chunk)
            chunk = []
    if chunk:
        yield torch.stack(chunk)
