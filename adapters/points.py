"""Point-cloud adapter: a point cloud -> three orthographic depth views Tensor[3, S, S].

The cloud is brought to a fixed point count (random or farthest-point sampling), centred on its centroid and scaled
into the unit sphere (PointNet's ``pc_normalize``), then projected along x, y and z. This is a fixed, parameter-free
render, not the official code's learned P2P projector (spec §5.2, whose wiring is not determinable from the release).

View convention, for the view along axis ``a`` (channel ``a``): the image plane holds the two other axes in cyclic
order, (y, z) for x, (z, x) for y, (x, y) for z; the first of them runs along the columns (left to right), the
second up the rows (row 0 is the top, +1). A pixel holds ``(1 + a_max) / 2`` where ``a_max`` is the largest
coordinate along ``a`` among the points in that pixel (the surface seen by a viewer on the +a side), so values lie in
[0, 1]; a pixel with no point is 0. Everything is batched tensor ops with deterministic results.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unilk.adapters.common import stack_maps
from unilk.adapters.config import AdapterConfig, check_choice, check_positive
from unilk.adapters.io import PathLike, load_points, sample_name
from unilk.errors import ConfigError, InputError

__all__ = [
    "PointsAdapter",
    "PointsConfig",
    "farthest_point_sample",
    "normalize_points",
    "project_depth",
    "random_sample",
    "resample_points",
]

logger = logging.getLogger(__name__)

PointsSample = PathLike | np.ndarray | Tensor


@dataclasses.dataclass(frozen=True)
class PointsConfig(AdapterConfig):
    """How a point cloud becomes depth views.

    Attributes:
        num_points: points kept per cloud (8192 as in the official cache; 0 keeps every point).
        sampling: ``random`` (without replacement; repeats only when the cloud has fewer points; seeded with 0
            unless a generator is passed, so evaluation is deterministic) or ``fps`` (farthest-point from point 0,
            deterministic but O(num_points · N) sequential steps: about 0.5-5 s for 8192 of 10k points on one CPU
            core, so use it to build a cache offline, as the official ModelNet pipeline does).
        image_size: side S of each view.
        mesh_points: points sampled from a mesh file (.off/.obj/.stl) before ``sampling``.
    """

    modality = "points"

    num_points: int = 8192
    sampling: str = "random"
    image_size: int = 224
    mesh_points: int = 16384

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if isinstance(self.num_points, bool) or not isinstance(self.num_points, int) or self.num_points < 0:
            raise ConfigError(f"{owner}.num_points: got {self.num_points!r}, expected an int ≥ 0 (0 keeps every point)")
        check_choice(owner, "sampling", self.sampling, ("fps", "random"))
        check_positive(owner, "image_size", self.image_size)
        check_positive(owner, "mesh_points", self.mesh_points)


# ----------------------------------------------------------------------------------------------- pure functions


def normalize_points(points: Tensor) -> Tensor:
    """Centre on the centroid and scale so the farthest point lies on the unit sphere.

    Args:
        points: Tensor[..., N, 3].

    Returns:
        Tensor[..., N, 3]. A cloud whose points all coincide is only centred (scale 1).
    """
    # float64: float32 coordinates near its limit (3e38) overflow in the mean and the norm, which would give NaN
    wide = points.to(torch.float64)
    centred = wide - wide.mean(dim=-2, keepdim=True)
    radius = centred.norm(dim=-1).amax(dim=-1, keepdim=True).unsqueeze(-1)  # (..., 1, 1)
    return (centred / torch.where(radius > 0, radius, torch.ones_like(radius))).to(points.dtype)


def farthest_point_sample(points: Tensor, num_samples: int) -> Tensor:
    """Farthest-point sampling, batched, starting from point 0 (deterministic).

    Args:
        points: Tensor[B, N, 3].
        num_samples: M ≤ N.

    Returns:
        int64 Tensor[B, M] of indices into N.
    """
    batch, count, _ = points.shape
    chosen = torch.zeros(batch, num_samples, dtype=torch.long, device=points.device)
    nearest = torch.full((batch, count), float("inf"), device=points.device, dtype=points.dtype)
    current = torch.zeros(batch, dtype=torch.long, device=points.device)
    rows = torch.arange(batch, device=points.device)
    for i in range(num_samples):  # a loop over samples, not points: each step is one batched distance update
        chosen[:, i] = current
        dist = (points - points[rows, current].unsqueeze(1)).square().sum(-1)  # (B, N)
        nearest = torch.minimum(nearest, dist)
        current = nearest.argmax(dim=-1)
    return chosen


def random_sample(num_available: int, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
    """Random point indices: without replacement when enough points, else every point plus random repeats.

    Returns:
        int64 Tensor[num_samples].
    """
    if num_available >= num_samples:
        return torch.randperm(num_available, generator=generator)[:num_samples]
    extra = torch.randint(num_available, (num_samples - num_available,), generator=generator)
    return torch.cat([torch.arange(num_available), extra])


def resample_points(points: Tensor, num_points: int, method: str, generator: torch.Generator | None = None) -> Tensor:
    """Bring one cloud to ``num_points`` points.

    Args:
        points: Tensor[N, 3], N ≥ 1.
        num_points: points wanted (0 keeps all).
        method: ``fps`` or ``random``. A cloud with fewer points than wanted gets repeated points either way.
        generator: randomness of ``random`` (and of the repeats).

    Returns:
        Tensor[num_points, 3].
    """
    count = points.shape[0]
    if num_points == 0 or count == num_points:
        return points
    if count < num_points:
        return points[random_sample(count, num_points, generator)]
    if method == "fps":
        return points[farthest_point_sample(points.unsqueeze(0), num_points)[0]]
    elif method == "random":
        return points[random_sample(count, num_points, generator)]
    else:
        raise ValueError(f"sampling method: got {method!r}, expected 'fps' or 'random'")


def project_depth(points: Tensor, image_size: int = 224, *, chunk: int = 8) -> Tensor:
    """Render three orthographic depth views of normalised clouds (see the module docstring for the convention).

    Args:
        points: Tensor[B, N, 3] with coordinates in [-1, 1] (e.g. from :func:`normalize_points`).
        image_size: S.
        chunk: clouds rendered per scatter; a few clouds' views fit in cache (a whole batch of 64 is ~2× slower).

    Returns:
        float32 Tensor[B, 3, S, S] in [0, 1]; channel a is the view along axis a; empty pixels are 0.
    """
    size = image_size
    plane = size * size
    out = torch.zeros(points.shape[0], 3, size, size, dtype=torch.float32, device=points.device)
    for start in range(0, points.shape[0], chunk):
        pts = points[start : start + chunk].to(torch.float32).clamp(-1.0, 1.0)
        count = pts.shape[0]
        # pixel index along each axis: [-1, 1] -> {0, ..., S-1}; int32 keeps the index arithmetic cheap
        x, y, z = ((pts + 1.0) * (size / 2.0)).to(torch.int32).clamp_(0, size - 1).unbind(-1)  # each (b, N)
        base = torch.arange(count, dtype=torch.int32, device=pts.device).view(count, 1) * (3 * plane)
        flip = size - 1  # rows count down from +1
        flat = torch.stack(
            [
                base + (flip - z) * size + y,  # view along x: columns y, rows z
                base + plane + (flip - x) * size + z,  # view along y: columns z, rows x
                base + 2 * plane + (flip - y) * size + x,  # view along z: columns x, rows y
            ],
            dim=-1,
        )  # (b, N, 3), matching the value layout below
        value = (pts + 1.0) * 0.5  # (b, N, 3): value of view a is (1 + coordinate a) / 2
        # max is order-independent, so the scatter is deterministic; empty pixels keep 0 (values are ≥ 0)
        out[start : start + count].view(-1).scatter_reduce_(
            0, flat.reshape(-1).long(), value.reshape(-1), reduce="amax", include_self=True
        )
    return out


# ------------------------------------------------------------------------------------------------------ adapter


class PointsAdapter:
    """Turns point clouds (files or arrays [N, ≥3]) into three depth views Tensor[3, S, S].

    Example:
        >>> adapter = PointsAdapter(PointsConfig(num_points=1024, image_size=64))
        >>> adapter(torch.rand(2000, 3)).shape
        torch.Size([3, 64, 64])
    """

    in_chans = 3

    def __init__(self, config: PointsConfig | None = None) -> None:
        self.config = config or PointsConfig()

    def points(self, sample: PointsSample, generator: torch.Generator | None = None) -> Tensor:
        """Load, validate, resample and normalise one cloud.

        Returns:
            float32 Tensor[num_points, 3] inside the unit sphere.

        Raises:
            InputError: unreadable file, wrong shape, no points, or NaN/inf coordinates.
        """
        name = sample_name(sample)
        if isinstance(sample, (np.ndarray, Tensor)):
            data: Any = sample
        else:
            data = load_points(sample, mesh_points=self.config.mesh_points)
        array = data if isinstance(data, Tensor) else np.asarray(data)
        if isinstance(array, np.ndarray) and (not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array)):
            raise InputError(f"{name}: points of dtype {array.dtype}; expected real numbers (x, y, z columns)")
        if isinstance(array, Tensor) and (array.is_complex() or array.dtype == torch.bool):
            raise InputError(f"{name}: points of dtype {array.dtype}; expected real numbers (x, y, z columns)")
        pts = torch.as_tensor(array)
        if pts.dim() != 2 or pts.shape[1] < 3:
            raise InputError(f"{name}: points have shape {tuple(pts.shape)}; expected [N, 3] (extra columns ignored)")
        if pts.shape[0] == 0:
            raise InputError(f"{name}: the cloud has no points; expected at least 1")
        pts = pts[:, :3].to(torch.float32)  # values beyond float32's range become inf and are refused below
        if not torch.isfinite(pts).all():
            bad = int((~torch.isfinite(pts)).any(dim=1).sum())
            raise InputError(f"{name}: {bad} point(s) have NaN or inf coordinates; expected finite coordinates")
        if generator is None:  # a fixed seed: the same cloud always gives the same views
            generator = torch.Generator().manual_seed(0)
        # normalise the points that are kept, so the final cloud is centred and touches the unit sphere
        return normalize_points(resample_points(pts, self.config.num_points, self.config.sampling, generator))

    def __call__(self, sample: PointsSample, generator: torch.Generator | None = None) -> Tensor:
        """Make the three depth views of one cloud.

        Returns:
            float32 Tensor[3, S, S].
        """
        return project_depth(self.points(sample, generator).unsqueeze(0), self.config.image_size)[0]

    def project_batch(self, points: Tensor) -> Tensor:
        """Project a batch of prepared clouds (e.g. after augmentation on Tensor[B, N, 3]) -> Tensor[B, 3, S, S]."""
        return project_depth(points, self.config.image_size)

    def collate(self, maps: list[Tensor]) -> Tensor:
        """Stack views: list of Tensor[3, S, S] -> Tensor[N, 3, S, S]."""
        return stack_maps(maps, "points")
