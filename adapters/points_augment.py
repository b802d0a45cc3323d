"""Training augmentations of PointNet++ / DGCNN (also in UniRepLKNet's point code), batched over Tensor[B, N, 3].

All randomness comes from a passed ``torch.Generator``. Apply them after :func:`~unilk.adapters.points.normalize_points`
and before :func:`~unilk.adapters.points.project_depth` (which clamps to the unit cube).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["jitter", "point_dropout", "rotate_up", "scale_shift"]


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def scale_shift(
    points: Tensor,
    generator: torch.Generator | None = None,
    *,
    scale: tuple[float, float] = (0.8, 1.25),
    shift: float = 0.1,
    anisotropic: bool = False,
) -> Tensor:
    """Random scale and shift per cloud.

    PointNet++: isotropic scale U(0.8, 1.25), shift U(-0.1, 0.1); DGCNN: ``anisotropic=True``, scale (2/3, 3/2),
    shift 0.2.

    Args:
        points: Tensor[B, N, 3].
        generator: randomness.
        scale: (low, high) of the scale factor.
        shift: half-range of the per-axis shift.
        anisotropic: one factor per axis instead of one per cloud.

    Returns:
        Tensor[B, N, 3].
    """
    batch = points.shape[0]
    factors = _uniform((batch, 1, 3 if anisotropic else 1), *scale, generator)
    offsets = _uniform((batch, 1, 3), -shift, shift, generator)
    return points * factors + offsets


def jitter(
    points: Tensor, generator: torch.Generator | None = None, *, sigma: float = 0.01, clip: float = 0.05
) -> Tensor:
    """Add clipped Gaussian noise N(0, sigma²) ∈ [-clip, clip] to every coordinate. Tensor[B, N, 3] -> same."""
    noise = (torch.randn(points.shape, generator=generator) * sigma).clamp_(-clip, clip)
    return points + noise


def rotate_up(points: Tensor, generator: torch.Generator | None = None, *, up_axis: int = 1) -> Tensor:
    """Rotate each cloud by a uniform angle in [0, 2π) about the up axis (y for ModelNet, z for ScanNet-like data).

    Args:
        points: Tensor[B, N, 3].
        generator: randomness.
        up_axis: 0, 1 or 2.

    Returns:
        Tensor[B, N, 3].
    """
    if up_axis not in (0, 1, 2):
        raise ValueError(f"rotate_up: up_axis {up_axis!r}, expected 0, 1 or 2")
    angle = _uniform((points.shape[0],), 0.0, 2 * math.pi, generator)
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b = [axis for axis in range(3) if axis != up_axis]  # the plane that rotates
    rot = torch.zeros(points.shape[0], 3, 3)
    rot[:, up_axis, up_axis] = 1.0
    rot[:, a, a], rot[:, a, b], rot[:, b, a], rot[:, b, b] = cos, -sin, sin, cos
    return points @ rot.transpose(1, 2).to(points.dtype)  # (B, N, 3) row vectors: p' = R p


def point_dropout(points: Tensor, generator: torch.Generator | None = None, *, max_ratio: float = 0.875) -> Tensor:
    """PointNet++'s random input dropout: per cloud a ratio r ~ U(0, max_ratio); each point is dropped with
    probability r and replaced by the cloud's first point (so N stays fixed).

    Returns:
        Tensor[B, N, 3].
    """
    batch, count, _ = points.shape
    ratio = _uniform((batch, 1), 0.0, max_ratio, generator)
    drop = torch.rand((batch, count), generator=generator) <= ratio
    drop[:, 0] = False  # the first point is the replacement, keep it
    return torch.where(drop.unsqueeze(-1), points[:, :1].expand_as(points), points)
