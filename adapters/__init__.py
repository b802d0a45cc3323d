"""Modality adapters: raw audio, point clouds, video, time series and images -> C×H×W maps.

Every adapter has a frozen config dataclass (``from_dict`` / ``to_dict`` / YAML, unknown keys rejected, stored in
checkpoints), ``in_chans``, ``__call__(sample) -> Tensor[C, H, W]`` and ``collate(list) -> Tensor[N, C, H, W]``.
Exceptions to the one-map rule, by design: ``AudioAdapter.chunks`` (Tensor[K, 1, H, W] for ``length_policy='chunk'``),
``VideoAdapter.views`` (test-time clips × crops) and ``SeriesAdapter`` (returns the window Tensor[L, D]; the learned
:class:`SeriesEmbedding` stem makes the map).

Build one by name with :func:`build_adapter`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from unilk.adapters.audio import AUDIO_PRESETS, AudioAdapter, AudioConfig, AudioMaps
from unilk.adapters.config import AdapterConfig
from unilk.adapters.image import ImageAdapter, ImageConfig
from unilk.adapters.points import PointsAdapter, PointsConfig
from unilk.adapters.series import SeriesAdapter, SeriesConfig, SeriesEmbedding, StandardScaler
from unilk.adapters.video import VideoAdapter, VideoConfig
from unilk.errors import ConfigError

__all__ = [
    "ADAPTERS",
    "AUDIO_PRESETS",
    "AdapterConfig",
    "AudioAdapter",
    "AudioConfig",
    "AudioMaps",
    "ImageAdapter",
    "ImageConfig",
    "PointsAdapter",
    "PointsConfig",
    "SeriesAdapter",
    "SeriesConfig",
    "SeriesEmbedding",
    "StandardScaler",
    "VideoAdapter",
    "VideoConfig",
    "build_adapter",
    "config_from_dict",
]

#: modality -> (config class, adapter class)
ADAPTERS: dict[str, tuple[type[AdapterConfig], type]] = {
    "audio": (AudioConfig, AudioAdapter),
    "points": (PointsConfig, PointsAdapter),
    "video": (VideoConfig, VideoAdapter),
    "series": (SeriesConfig, SeriesAdapter),
    "image": (ImageConfig, ImageAdapter),
}


def config_from_dict(data: Mapping[str, Any]) -> AdapterConfig:
    """Rebuild any adapter config from ``to_dict()`` output (its ``"modality"`` key picks the class).

    Raises:
        ConfigError: no or an unknown modality, or a bad field.
    """
    modality = data.get("modality")
    if modality not in ADAPTERS:
        raise ConfigError(f"adapter config: modality {modality!r}; expected one of {sorted(ADAPTERS)}")
    return ADAPTERS[modality][0].from_dict(data)


def build_adapter(modality: str, config: AdapterConfig | Mapping[str, Any] | None = None) -> Any:
    """Build the adapter of a modality.

    Args:
        modality: ``audio``, ``points``, ``video``, ``series`` or ``image``.
        config: the modality's config, a mapping of its fields (unknown keys raise), or None for the defaults.

    Returns:
        The adapter (``AudioAdapter``, ``PointsAdapter``, ...).

    Raises:
        ConfigError: unknown modality, a config of another modality, or a bad field.
    """
    if modality not in ADAPTERS:
        raise ConfigError(f"build_adapter: modality {modality!r}; expected one of {sorted(ADAPTERS)}")
    config_cls, adapter_cls = ADAPTERS[modality]
    if config is None:
        config = config_cls()
    elif isinstance(config, Mapping):
        config = config_cls.from_dict(config)
    elif not isinstance(config, config_cls):
        raise ConfigError(
            f"build_adapter({modality!r}): got a {type(config).__name__}, expected a {config_cls.__name__} or a dict"
        )
    return adapter_cls(config)
