"""Video adapter: a video file or frame array -> one tiled image Tensor[3, rows·S, cols·S].

Pipeline: sample ``num_frames`` frame indices (a dense clip of stride ``frame_stride`` as in VideoMAE, or spread
uniformly over the video), decode them, resize the short side to ``short_side``, crop ``crop_size``, scale to [0, 1],
normalise, then tile the T frames into one image. Evaluation takes the centre clip and crop (or, with
:meth:`VideoAdapter.views`, several clips × left/centre/right crops); passing a ``generator`` takes a random clip and
crop for training. Tilings:

* ``grid`` (default): a rows×cols mosaic, frame t in cell (t // cols, t % cols); 16 frames of 224² give 3×896×896.
* ``official``: the official code's raw reshape of the (C, T, H, W) clip to (C, rows·H, cols·W) (spec §5.3): not a
  mosaic: each frame becomes a band of H/cols output rows, each output row holding cols consecutive rows of that
  frame side by side. Kept exact because official weights expect it.

A video with fewer frames than a clip needs follows ``short_video_policy``: ``repeat_last`` (clamp the indices to
the last frame, with a warning) or ``error`` (InputError). A video with no frame is always an InputError.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from unilk.adapters.common import stack_maps
from unilk.adapters.config import AdapterConfig, check_choice, check_positive
from unilk.adapters.io import PathLike, VideoSource, open_video, sample_name
from unilk.errors import ConfigError, InputError
from unilk.once import log_once

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VideoAdapter",
    "VideoConfig",
    "central_part",
    "crop_frames",
    "normalize_frames",
    "random_crop_frames",
    "random_frame_indices",
    "resize_short_side",
    "sample_frame_indices",
    "tile_grid",
    "tile_official",
]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VideoSample = PathLike | np.ndarray | Tensor


@dataclasses.dataclass(frozen=True)
class VideoConfig(AdapterConfig):
    """How a video becomes one tiled image.

    Attributes:
        num_frames: frames T per clip.
        sampling: ``dense`` (T frames ``frame_stride`` apart; VideoMAE/Kinetics: stride 4) or ``uniform`` (T frames
            spread over the whole video).
        frame_stride: stride of a dense clip, in frames.
        short_side: the short side is resized to this many pixels (bilinear, antialiased).
        crop_size: side S of the square crop.
        mean: per-channel mean after scaling to [0, 1].
        std: per-channel std.
        layout: ``grid`` (mosaic) or ``official`` (raw reshape).
        grid_rows: rows of the tiling; None means a square √T × √T (T must then be a square).
        grid_cols: columns of the tiling; rows·cols must equal T.
        short_video_policy: ``repeat_last`` (warn) or ``error``.
        test_clips: clips per video at test time (:meth:`VideoAdapter.views`).
        test_crops: spatial crops per clip at test time: 1 (centre) or 3 (left/top, centre, right/bottom).
        max_pixels: largest frame accepted (width × height, read from the header before decoding); the default takes
            4K (4096 × 2160) and refuses 8K, whose decoder alone holds about 1 GB.
    """

    modality = "video"

    num_frames: int = 16
    sampling: str = "dense"
    frame_stride: int = 4
    short_side: int = 224
    crop_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    layout: str = "grid"
    grid_rows: int | None = None
    grid_cols: int | None = None
    short_video_policy: str = "repeat_last"
    test_clips: int = 5
    test_crops: int = 3
    max_pixels: int = 10_000_000

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("num_frames", "frame_stride", "short_side", "crop_size", "test_clips", "max_pixels"):
            check_positive(owner, name, getattr(self, name))
        check_positive(owner, "grid_rows", self.grid_rows, allow_none=True)
        check_positive(owner, "grid_cols", self.grid_cols, allow_none=True)
        check_choice(owner, "sampling", self.sampling, ("dense", "uniform"))
        check_choice(owner, "layout", self.layout, ("grid", "official"))
        check_choice(owner, "short_video_policy", self.short_video_policy, ("repeat_last", "error"))
        check_choice(owner, "test_crops", self.test_crops, (1, 3))
        if self.crop_size > self.short_side:
            raise ConfigError(f"{owner}: crop_size={self.crop_size} > short_side={self.short_side}; crop ≤ short side")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"{owner}: mean={self.mean}, std={self.std}; expected 3 values each, std > 0")
        rows, cols = self.grid
        if rows * cols != self.num_frames:
            raise ConfigError(
                f"{owner}: grid {rows}×{cols} holds {rows * cols} frames but num_frames={self.num_frames}; "
                "set grid_rows and grid_cols with grid_rows·grid_cols = num_frames"
            )

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the tiling."""
        if self.grid_rows is not None and self.grid_cols is not None:
            return self.grid_rows, self.grid_cols
        if self.grid_rows is not None or self.grid_cols is not None:
            raise ConfigError(f"VideoConfig: set both grid_rows and grid_cols, got {self.grid_rows}, {self.grid_cols}")
        side = math.isqrt(self.num_frames)
        if side * side != self.num_frames:
            raise ConfigError(
                f"VideoConfig: num_frames={self.num_frames} is not a square; set grid_rows and grid_cols explicitly"
            )
        return side, side

    @property
    def clip_span(self) -> int:
        """Frames a dense clip spans (the video length needed without repeating frames)."""
        return (self.num_frames - 1) * self.frame_stride + 1 if self.sampling == "dense" else self.num_frames


# ----------------------------------------------------------------------------------------------- pure functions


def sample_frame_indices(num_video_frames: int, cfg: VideoConfig, clip: int = 0, num_clips: int = 1) -> np.ndarray:
    """Frame indices of clip ``clip`` out of ``num_clips`` evenly spaced clips (one clip: the centred one).

    Args:
        num_video_frames: frames in the video (≥ 1).
        cfg: the video config (``sampling``, ``num_frames``, ``frame_stride``).
        clip: which clip, in [0, num_clips).
        num_clips: clips spread over the video.

    Returns:
        int64 array [T]. Indices may exceed the video only when it is shorter than the clip (the caller applies the
        short-video policy by clamping).
    """
    if cfg.sampling == "dense":
        room = max(num_video_frames - cfg.clip_span, 0)
        start = round(room * (clip + 0.5) / num_clips) if num_clips > 1 else room // 2
        return start + np.arange(cfg.num_frames, dtype=np.int64) * cfg.frame_stride
    elif cfg.sampling == "uniform":
        # segment-based: T equal segments, clip k takes the point at fraction (k + 0.5) / num_clips of each segment
        offset = (clip + 0.5) / num_clips
        positions = (np.arange(cfg.num_frames) + offset) * num_video_frames / cfg.num_frames
        return np.minimum(positions.astype(np.int64), num_video_frames - 1)
    else:
        raise ConfigError(f"VideoConfig.sampling: got {cfg.sampling!r}, expected 'dense' or 'uniform'")


def random_frame_indices(num_video_frames: int, cfg: VideoConfig, generator: torch.Generator) -> np.ndarray:
    """Training-time frame indices: a dense clip at a uniform random start, or one uniform random frame per segment.

    Args:
        num_video_frames: frames in the video (≥ 1).
        cfg: the video config.
        generator: randomness.

    Returns:
        int64 array [T] (may exceed the video when it is shorter than the clip; the caller clamps).
    """
    if cfg.sampling == "dense":
        room = max(num_video_frames - cfg.clip_span, 0)
        start = int(torch.randint(0, room + 1, (1,), generator=generator))
        return start + np.arange(cfg.num_frames, dtype=np.int64) * cfg.frame_stride
    elif cfg.sampling == "uniform":
        offsets = torch.rand(cfg.num_frames, generator=generator, dtype=torch.float64).numpy()
        positions = (np.arange(cfg.num_frames) + offsets) * num_video_frames / cfg.num_frames
        return np.minimum(positions.astype(np.int64), num_video_frames - 1)
    else:
        raise ConfigError(f"VideoConfig.sampling: got {cfg.sampling!r}, expected 'dense' or 'uniform'")


#: most bytes of decoded, not yet resized frames held at once.
_READ_BYTES = 64 * 2**20

#: frames longer than this many times their short side are cut to their central part before resizing.
_MAX_ASPECT = 16


def central_part(frames: Tensor, max_aspect: float) -> Tensor:
    """Cut the long side of frames to at most ``max_aspect`` × the short side, keeping the centre.

    A 2 × 4096 video resized so its short side is 224 would be 224 × 458752 pixels per frame (5 GB for a 2 KB file);
    every crop of the frames an adapter takes lies in such a central part for any ordinary aspect ratio.

    Tensor[T, C, H, W] -> Tensor[T, C, H', W'] (a view).
    """
    height, width = frames.shape[-2:]
    longest = math.ceil(max_aspect * min(height, width))
    if height > longest:
        frames = frames[..., (height - longest) // 2 : (height - longest) // 2 + longest, :]
    if width > longest:
        frames = frames[..., (width - longest) // 2 : (width - longest) // 2 + longest]
    return frames


def resize_short_side(frames: Tensor, short_side: int) -> Tensor:
    """Resize so the short side is ``short_side``, keeping the aspect ratio (bilinear, antialiased).

    Tensor[T, C, H, W] (uint8 or float) -> Tensor[T, C, H', W'] of the same dtype.
    """
    height, width = frames.shape[-2:]
    scale = short_side / min(height, width)
    size = (max(short_side, round(height * scale)), max(short_side, round(width * scale)))
    if size == (height, width):
        return frames
    return F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True)


def crop_frames(frames: Tensor, size: int, position: str = "center") -> Tensor:
    """Square crop along the long side at ``start``, ``center`` or ``end``; centred on the short side.

    Args:
        frames: Tensor[T, C, H, W] with min(H, W) ≥ size.
        size: crop side.
        position: ``start`` (left or top), ``center`` or ``end`` (right or bottom).

    Returns:
        Tensor[T, C, size, size].
    """
    height, width = frames.shape[-2:]
    fractions = {"start": 0.0, "center": 0.5, "end": 1.0}
    if position not in fractions:
        raise ValueError(f"crop position: got {position!r}, expected one of {list(fractions)}")
    along_width = width >= height
    top = (height - size) // 2 if along_width else round((height - size) * fractions[position])
    left = round((width - size) * fractions[position]) if along_width else (width - size) // 2
    return frames[..., top : top + size, left : left + size]


def random_crop_frames(frames: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """Square crop at a uniform random position (the same for every frame). Tensor[T, C, H, W] -> [T, C, size, size]."""
    height, width = frames.shape[-2:]
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    return frames[..., top : top + size, left : left + size]


def normalize_frames(frames: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Scale uint8 to [0, 1] (float input is taken as already scaled) and normalise per channel.

    Tensor[T, 3, H, W] -> contiguous float32 Tensor[T, 3, H, W].
    """
    unit = 255.0 if frames.dtype == torch.uint8 else 1.0
    # one fused multiply-add, x · 1/(unit·std) − mean/std, on contiguous memory (crops of decoded frames are strided)
    scale = torch.tensor([1.0 / (unit * s) for s in std], dtype=torch.float32).view(1, -1, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std)], dtype=torch.float32).view(1, -1, 1, 1)
    return torch.addcmul(-shift, frames.contiguous().to(torch.float32), scale)


def tile_grid(frames: Tensor, rows: int, cols: int) -> Tensor:
    """Mosaic: frame t goes to cell (t // cols, t % cols). Tensor[T, C, H, W] -> Tensor[C, rows·H, cols·W]."""
    count = frames.shape[0]
    if count != rows * cols:
        raise ValueError(f"tile_grid: {count} frames do not fill a {rows}×{cols} grid")
    return rearrange(frames, "(r c) ch h w -> ch (r h) (c w)", r=rows, c=cols)


def tile_official(frames: Tensor, rows: int, cols: int) -> Tensor:
    """The official code's raw reshape of the clip (C, T, H, W) to (C, rows·H, cols·W).

    Tensor[T, C, H, W] -> Tensor[C, rows·H, cols·W]; T must equal rows·cols.
    """
    count, _, height, width = frames.shape
    if count != rows * cols:
        raise ValueError(f"tile_official: {count} frames do not fill {rows}×{cols}")
    # the clip's memory order (C, T, H, W) is kept and re-read as rows of cols·W pixels: frames are not kept whole
    flat = rearrange(frames, "t ch h w -> ch (t h w)")
    return rearrange(flat, "ch (y x) -> ch y x", y=rows * height, x=cols * width)


# ------------------------------------------------------------------------------------------------------ adapter


class VideoAdapter:
    """Turns a video (file path, or uint8 frames [N, H, W, 3]) into one tiled, normalised image.

    Example:
        >>> adapter = VideoAdapter(VideoConfig(num_frames=4, short_side=32, crop_size=32))
        >>> adapter(np.zeros((20, 48, 64, 3), np.uint8)).shape
        torch.Size([3, 64, 64])
    """

    in_chans = 3

    def __init__(self, config: VideoConfig | None = None, backend: str = "auto") -> None:
        self.config = config or VideoConfig()
        self.backend = backend

    def _open(self, sample: VideoSample) -> tuple[int, Any]:
        """Return (frame count, a function indices -> resized uint8 Tensor[T, 3, H', W'])."""
        name = sample_name(sample)
        if isinstance(sample, (np.ndarray, Tensor)):
            frames = torch.as_tensor(sample)
            if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
                raise InputError(
                    f"{name}: frames have shape {tuple(frames.shape)} and dtype {frames.dtype}; "
                    "expected uint8 [N, H, W, 3] (RGB)"
                )
            return frames.shape[0], lambda idx: self._prepare(frames[torch.as_tensor(idx)])
        source = open_video(sample, self.backend)
        height, width = source.frame_size or (0, 0)
        if height * width > self.config.max_pixels:
            raise InputError(
                f"{name}: the header declares {width}x{height} = {width * height} pixels per frame, above "
                f"max_pixels={self.config.max_pixels}; expected a smaller video. Fix: downscale it, or raise "
                "VideoConfig.max_pixels"
            )
        return source.num_frames, lambda idx: self._read_resized(source, idx)

    def _read_resized(self, source: VideoSource, indices: np.ndarray) -> Tensor:
        """Decode and resize frames a few at a time, so that decoded frames never hold more than ``_READ_BYTES``
        (a 100 KB 8K clip decoded whole took 4.5 GB): memory follows the model input, not the file."""
        unique, inverse = np.unique(np.asarray(indices), return_inverse=True)
        height, width = source.frame_size or (0, 0)
        per_read = max(1, _READ_BYTES // max(1, 3 * height * width)) if height else len(unique)
        parts = [self._prepare(source.get(unique[i : i + per_read])) for i in range(0, len(unique), per_read)]
        return torch.cat(parts)[torch.as_tensor(inverse.reshape(-1))]

    def _indices(
        self, name: str, count: int, clip: int, num_clips: int, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """Sample indices (random when a generator is given) and apply the short-video policy."""
        cfg = self.config
        if count == 0:
            raise InputError(f"{name}: the video has no frames; expected at least 1")
        if count < cfg.clip_span:
            message = (
                f"{name}: the video has {count} frames, fewer than the {cfg.clip_span} a clip of {cfg.num_frames} "
                f"frames ({cfg.sampling}, stride {cfg.frame_stride}) needs"
            )
            if cfg.short_video_policy == "error":
                raise InputError(message + "; use short_video_policy='repeat_last' or a smaller frame_stride")
            log_once(logger, "short video", "%s; repeating the last frame", message)
        if generator is None:
            indices = sample_frame_indices(count, cfg, clip, num_clips)
        else:
            indices = random_frame_indices(count, cfg, generator)
        return np.minimum(indices, count - 1)

    def _tile(self, frames: Tensor) -> Tensor:
        """Normalised Tensor[T, C, S, S] -> tiled Tensor[C, rows·S, cols·S]."""
        rows, cols = self.config.grid
        if self.config.layout == "grid":
            return tile_grid(frames, rows, cols)
        elif self.config.layout == "official":
            return tile_official(frames, rows, cols)
        else:
            raise ConfigError(f"VideoConfig.layout: got {self.config.layout!r}, expected 'grid' or 'official'")

    def _prepare(self, raw: Any) -> Tensor:
        """uint8 [T, H, W, 3] -> resized uint8 Tensor[T, 3, H', W'] (before cropping).

        Resizing stays in uint8 (channels-last memory, as decoded): about 10× faster than float on CPU, at the cost of
        rounding to 1/255 once, like torchvision's uint8 transforms.
        """
        frames = torch.as_tensor(np.asarray(raw) if not isinstance(raw, Tensor) else raw).permute(0, 3, 1, 2)
        return resize_short_side(central_part(frames, _MAX_ASPECT), self.config.short_side)

    def resized_frames(self, sample: VideoSample, generator: torch.Generator | None = None) -> Tensor:
        """The frames of one clip, resized but not cropped: uint8 Tensor[T, 3, H', W'] with min(H', W') = short side.

        Without a generator the centre clip; with one a random clip start (or random frame per segment).
        """
        count, read = self._open(sample)
        return read(self._indices(sample_name(sample), count, 0, 1, generator))

    def finish(self, frames: Tensor) -> Tensor:
        """Normalise and tile cropped frames: Tensor[T, 3, S, S] (uint8 or float in [0, 1]) -> Tensor[3, rows·S,
        cols·S]."""
        return self._tile(normalize_frames(frames, self.config.mean, self.config.std))

    def clip(self, sample: VideoSample, generator: torch.Generator | None = None) -> Tensor:
        """One clip, cropped and normalised, before tiling: Tensor[T, 3, S, S] float32.

        Without a generator: the centre clip with a centre crop (evaluation). With one: a random clip start (or random
        frame per segment) and a random crop position (training).
        """
        cfg = self.config
        frames = self.resized_frames(sample, generator)
        if generator is None:
            cropped = crop_frames(frames, cfg.crop_size, "center")
        else:
            cropped = random_crop_frames(frames, cfg.crop_size, generator)
        return normalize_frames(cropped, cfg.mean, cfg.std)

    def __call__(self, sample: VideoSample, generator: torch.Generator | None = None) -> Tensor:
        """Make the tiled image of one clip (centre clip and crop; random ones when ``generator`` is given).

        Returns:
            float32 Tensor[3, rows·S, cols·S] (3×896×896 by default).

        Raises:
            InputError: unreadable video, bad frame array, no frames, or too few under ``short_video_policy='error'``.
        """
        return self._tile(self.clip(sample, generator))

    def views(self, sample: VideoSample) -> Tensor:
        """Test-time views: ``test_clips`` clips × ``test_crops`` crops, each tiled.

        Returns:
            float32 Tensor[test_clips · test_crops, 3, rows·S, cols·S], clip-major (clip k, crop j at k·crops + j).
        """
        cfg = self.config
        name = sample_name(sample)
        count, read = self._open(sample)
        positions = ["center"] if cfg.test_crops == 1 else ["start", "center", "end"]
        views = []
        for k in range(cfg.test_clips):
            frames = read(self._indices(name, count, k, cfg.test_clips))
            for position in positions:
                cropped = crop_frames(frames, cfg.crop_size, position)
                views.append(self._tile(normalize_frames(cropped, cfg.mean, cfg.std)))
        return torch.stack(views)

    def collate(self, maps: list[Tensor]) -> Tensor:
        """Stack tiled images: list of Tensor[3, H, W] -> Tensor[N, 3, H, W]."""
        return stack_maps(maps, "video")
