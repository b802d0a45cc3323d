"""Time-series adapter: length and normalisation policies (:class:`SeriesAdapter`) and the learned stem
(:class:`SeriesEmbedding`).

Following Corrformer as used by UniRepLKNet (spec §5.4): the D channels of a series are split into nodes of
``group_size`` consecutive channels (stations); every node is one sample. A node's window (L, group_size) is embedded
by a circular token Conv1d (k = 3, no bias), plus a fixed sinusoidal position embedding, a linear embedding of calendar
time features (optional) and Corrformer's station-position embedding (optional: a Linear over the standardised
coordinates of the node's stations), then dropout, giving (L, d_model); its row-major flattening is reshaped into a
1×H×W map with H·W = L·d_model (square when L·d_model is a square, e.g. 48·768 = 192², else the factor pair closest
to square). With ``revin`` the stem normalises each window by its own statistics (Corrformer's per-window
normalisation with a per-channel affine) and :meth:`SeriesEmbedding.restore` maps forecasts back; with ``batch_norm``
it first standardises each channel by statistics learned over the training data (for classification: the scale of the
data stops mattering, the levels of a series stay). ``group_size`` 0 puts all channels in one node, so the token
convolution mixes them.

Unlike the other adapters the map is made by a learned module: :class:`SeriesAdapter` fits a series to ``seq_len``
steps (``length``: resample, pad or truncate), normalises it (``norm``: per series, a fitted scaler, or none) and
returns Tensor[L, D]; :class:`SeriesEmbedding` (the stem of a modal model) turns a batch of windows into maps.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
from typing import Any

import numpy as np
import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from unilk.adapters.config import AdapterConfig, check_choice, check_positive
from unilk.adapters.io import PathLike, SeriesData, load_series, sample_name, series_float32
from unilk.errors import ConfigError, InputError

__all__ = [
    "TIME_FEATURES",
    "SeriesAdapter",
    "SeriesConfig",
    "SeriesEmbedding",
    "StandardScaler",
    "crop_series",
    "instance_normalize",
    "map_shape",
    "resample",
    "sinusoidal_positions",
    "time_features",
]

logger = logging.getLogger(__name__)

#: calendar features per sampling frequency (Informer / Time-Series-Library ``timeF`` convention)
TIME_FEATURES: dict[str, tuple[str, ...]] = {
    "s": ("second", "minute", "hour", "day_of_week", "day_of_month", "day_of_year"),
    "t": ("minute", "hour", "day_of_week", "day_of_month", "day_of_year"),
    "h": ("hour", "day_of_week", "day_of_month", "day_of_year"),
    "d": ("day_of_week", "day_of_month", "day_of_year"),
    "b": ("day_of_week", "day_of_month", "day_of_year"),
    "w": ("day_of_month", "week_of_year"),
    "m": ("month",),
}

SeriesSample = PathLike | np.ndarray | Tensor | SeriesData

NORMS = ("instance", "fitted", "none")
LENGTH_POLICIES = ("resample", "pad", "truncate")
_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class SeriesConfig(AdapterConfig):
    """Windowing, scaling and embedding of a multivariate series.

    Attributes:
        seq_len: input window L.
        label_len: steps of the decoder window that overlap the input's end (forecasting only).
        pred_len: steps to forecast (forecasting only; 0 when the config only classifies or encodes).
        group_size: channels per node (Corrformer's ``enc_in``; 11 stations for Global Temp). A series whose channel
            count D is not a multiple gets zero channels appended (after normalisation) up to the next multiple. 0:
            one node of all D channels, so the token convolution mixes them; the trainer fixes it to the training
            data's D (:meth:`with_channels`) before it builds the stem.
        d_model: embedding width D′; the map has H·W = seq_len·d_model.
        freq: sampling frequency for time features: ``s``, ``t`` (minute), ``h``, ``d``, ``b``, ``w``, ``m``, or
            ``none`` (no time features).
        dropout: dropout after the embedding sum.
        norm: how the adapter normalises a series: ``instance`` (each series by its own per-channel mean and std, no
            fitting), ``fitted`` (the :class:`StandardScaler` fitted on the training split), or ``none``.
        length: how a series becomes ``seq_len`` steps: ``resample`` (linear interpolation of the whole series),
            ``pad`` (zeros appended after normalisation; a longer series keeps its first ``seq_len`` steps) or
            ``truncate`` (the last ``seq_len`` steps; a shorter series is an error).
        revin: RevIN-style forecasting: the stem normalises each window by its own per-channel statistics, with a
            learned per-channel affine, and the forecast is mapped back to the window's scale.
        batch_norm: the stem standardises each channel of a node by statistics over the training data (a BatchNorm
            without affine: batch statistics in training, running ones at inference, kept in the weights), so the
            scale and offset of the data do not matter while the levels of a series relative to the others stay.
        shape_view: the stem also gives the token convolution each channel standardised by its own window's mean
            and std (its shape, whatever its level), next to the channel itself.
        num_nodes: nodes with a station-position embedding (Corrformer's ``node_num``); 0 for none. Then D must be
            ``num_nodes·group_size``.
        station_coords: coordinates per station (e.g. 3) of the station-position embedding.
        max_map_values: most values the maps of one series may hold (nodes × seq_len × d_model; each node is one
            map); more is an error, so memory follows this, not the file (a 1 MB file of 60000 channels made 5455
            maps of 48 × 768, 2.4 GB). The default, 2²⁴, is 455 nodes of the default size.
    """

    modality = "series"

    seq_len: int = 48
    label_len: int = 24
    pred_len: int = 24
    group_size: int = 11
    d_model: int = 768
    freq: str = "none"
    dropout: float = 0.05
    norm: str = "instance"
    length: str = "resample"
    revin: bool = False
    batch_norm: bool = False
    shape_view: bool = False
    num_nodes: int = 0
    station_coords: int = 3
    max_map_values: int = 2**24

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("seq_len", "d_model", "station_coords", "max_map_values"):
            check_positive(owner, name, getattr(self, name))
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 0:
            raise ConfigError(
                f"{owner}.group_size: got {self.group_size!r}, expected an integer ≥ 1, or 0 (all channels)"
            )
        if self.pred_len < 0 or self.num_nodes < 0:
            raise ConfigError(f"{owner}: pred_len={self.pred_len}, num_nodes={self.num_nodes}; expected both >= 0")
        if self.num_nodes and not self.group_size:
            raise ConfigError(f"{owner}: num_nodes={self.num_nodes} needs group_size ≥ 1 (stations per node), got 0")
        if not 0 <= self.label_len <= self.seq_len:
            raise ConfigError(f"{owner}.label_len: got {self.label_len}, expected 0 ≤ label_len ≤ seq_len")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{owner}.dropout: got {self.dropout}, expected a probability in [0, 1)")
        check_choice(owner, "freq", self.freq, [*TIME_FEATURES, "none"])
        check_choice(owner, "norm", self.norm, NORMS)
        check_choice(owner, "length", self.length, LENGTH_POLICIES)

    def with_channels(self, channels: int) -> SeriesConfig:
        """The config for series of ``channels`` channels: ``group_size`` 0 becomes ``channels`` (one node of them
        all); any other config is returned unchanged.

        Raises:
            ConfigError: ``channels`` < 1.
        """
        if channels < 1:
            raise ConfigError(f"{type(self).__name__}.with_channels: got {channels} channels, expected ≥ 1")
        return self.replace(group_size=channels) if self.group_size == 0 else self

    @property
    def map_shape(self) -> tuple[int, int]:
        """(H, W) of the map: H·W = seq_len·d_model."""
        return map_shape(self.seq_len * self.d_model)


# ----------------------------------------------------------------------------------------------- pure functions


def map_shape(size: int) -> tuple[int, int]:
    """The factor pair (H, W), H ≤ W, H·W = size, closest to square."""
    height = math.isqrt(size)
    while size % height:
        height -= 1
    return height, size // height


def time_features(timestamps: np.ndarray, freq: str) -> np.ndarray:
    """Calendar features scaled to [-0.5, 0.5] (the ``timeF`` encoding).

    Args:
        timestamps: datetime64 array [T].
        freq: a key of :data:`TIME_FEATURES`.

    Returns:
        float32 array [T, k] with k = len(TIME_FEATURES[freq]).
    """
    if freq not in TIME_FEATURES:
        raise ConfigError(f"time_features: freq {freq!r} unknown; expected one of {sorted(TIME_FEATURES)}")
    ts = np.asarray(timestamps).astype("datetime64[s]")
    days = ts.astype("datetime64[D]")
    months = ts.astype("datetime64[M]")
    years = ts.astype("datetime64[Y]")
    fields = {
        "second": lambda: (ts - ts.astype("datetime64[m]")).astype(np.int64) / 59.0,
        "minute": lambda: (ts.astype("datetime64[m]") - ts.astype("datetime64[h]")).astype(np.int64) / 59.0,
        "hour": lambda: (ts.astype("datetime64[h]") - days).astype(np.int64) / 23.0,
        # 1970-01-01 was a Thursday; Monday = 0
        "day_of_week": lambda: ((days.astype(np.int64) + 3) % 7) / 6.0,
        "day_of_month": lambda: (days - months).astype(np.int64) / 30.0,
        "day_of_year": lambda: (days - years).astype(np.int64) / 365.0,
        "month": lambda: (months - years).astype(np.int64) / 11.0,
        "week_of_year": lambda: (
            np.array([datetime.date.fromisoformat(str(d)).isocalendar()[1] - 1 for d in days], dtype=np.float64) / 52.0
        ),
    }
    return np.stack([fields[name]() - 0.5 for name in TIME_FEATURES[freq]], axis=-1).astype(np.float32)


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """Fixed sine/cosine position table (Transformer / Informer). Returns Tensor[length, dim]."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freqs)
    table[:, 1::2] = torch.cos(position * freqs[: dim // 2])
    return table


def instance_normalize(values: np.ndarray) -> np.ndarray:
    """Standardise each channel of one series by its own mean and std over time (a constant channel maps to 0).

    Args:
        values: array [T, D].

    Returns:
        float32 array [T, D].
    """
    values = np.asarray(values, dtype=np.float64)
    std = values.std(axis=0)
    return ((values - values.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def resample(values: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation of every channel of [T, D] to [length, D]; the first and last steps are kept."""
    steps = values.shape[0]
    if steps == length:
        return values
    if steps == 1:
        return np.repeat(values, length, axis=0)
    where = np.linspace(0.0, steps - 1, length)
    return np.stack([np.interp(where, np.arange(steps), values[:, j]) for j in range(values.shape[1])], axis=1)


def crop_series(data: SeriesData, fraction: tuple[float, float], generator: torch.Generator) -> SeriesData:
    """A random window of a series (window slicing): ``round(f·T)`` consecutive steps (at least 2, at most T), f drawn
    uniformly from ``fraction``, at a uniform start; timestamps are cut with the values.

    Args:
        data: the series, values [T, D].
        fraction: (low, high) with 0 < low ≤ high ≤ 1.
        generator: the random stream.

    Returns:
        :class:`SeriesData` with values [T', D].
    """
    steps = data.values.shape[0]
    low, high = fraction
    share = low + (high - low) * float(torch.rand((), generator=generator))
    keep = min(steps, max(2, round(share * steps)))
    start = int(torch.randint(0, steps - keep + 1, (), generator=generator))
    stamps = None if data.timestamps is None else data.timestamps[start : start + keep]
    return dataclasses.replace(data, values=data.values[start : start + keep], timestamps=stamps)


class StandardScaler:
    """Per-channel standardisation fitted on the training split, with an inverse transform.

    Attributes:
        mean: float32 array [D] (None before :meth:`fit`).
        std: float32 array [D]; a constant channel gets std 1 so it maps to 0 instead of NaN.
    """

    def __init__(self, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> None:
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)

    def fit(self, values: np.ndarray) -> StandardScaler:
        """Fit on values [T, D]; returns self."""
        values = np.asarray(values, dtype=np.float64)
        std = values.std(axis=0)
        self.mean = values.mean(axis=0).astype(np.float32)
        self.std = np.where(std > 0, std, 1.0).astype(np.float32)
        return self

    def _stats(self, like: Any) -> tuple[Any, Any]:
        if self.mean is None or self.std is None:
            raise ConfigError("StandardScaler: not fitted; call fit(train_values) or SeriesAdapter.fit_scaler first")
        if isinstance(like, Tensor):
            return torch.as_tensor(self.mean, device=like.device), torch.as_tensor(self.std, device=like.device)
        return self.mean, self.std

    def transform(self, values: Any) -> Any:
        """(values - mean) / std on the last axis; numpy or torch in, same type out."""
        mean, std = self._stats(values)
        return (values - mean) / std

    def inverse_transform(self, values: Any) -> Any:
        """values · std + mean on the last axis (e.g. to report forecasts in data units)."""
        mean, std = self._stats(values)
        return values * std + mean

    def to_dict(self) -> dict[str, list[float] | None]:
        """Statistics as lists, to store in a checkpoint."""
        return {
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StandardScaler:
        """Inverse of :meth:`to_dict`."""
        return cls(data.get("mean"), data.get("std"))


# ------------------------------------------------------------------------------------------------------- module


class SeriesEmbedding(nn.Module):
    """The learned stem: windows Tensor[B, L, D] (+ time marks) -> maps Tensor[B·n, 1, H, W], n = D / group_size.

    Node j holds channels ``j·group_size … (j+1)·group_size − 1``; maps are ordered sample-major (sample b, node j at
    b·n + j). With ``revin`` the windows are first normalised per sample and channel (:meth:`restore` maps forecasts
    back); with ``batch_norm`` each node's channels are standardised by statistics learned over the training data;
    with ``num_nodes`` every node adds the embedding of its stations' positions (:meth:`set_station_positions`).

    Args:
        config: the series config (``seq_len``, ``group_size``, ``d_model``, ``freq``, ``dropout``, ``revin``,
            ``num_nodes``, ``station_coords``).

    Example:
        >>> stem = SeriesEmbedding(SeriesConfig(seq_len=8, label_len=4, group_size=2, d_model=8, freq="none"))
        >>> stem(torch.randn(3, 8, 4)).shape
        torch.Size([6, 1, 8, 8])
    """

    def __init__(self, config: SeriesConfig) -> None:
        super().__init__()
        if config.group_size == 0:
            raise ConfigError(
                "SeriesEmbedding: group_size 0 (one node of all channels) is fixed by the data; build the stem from "
                "config.with_channels(D), or set group_size"
            )
        self.config = config
        views = 2 if config.shape_view else 1
        self.token_conv = nn.Conv1d(
            views * config.group_size, config.d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False
        )
        nn.init.kaiming_normal_(self.token_conv.weight, mode="fan_in", nonlinearity="leaky_relu")
        num_marks = 0 if config.freq == "none" else len(TIME_FEATURES[config.freq])
        self.time_linear = nn.Linear(num_marks, config.d_model, bias=False) if num_marks else None
        self.register_buffer("positions", sinusoidal_positions(config.seq_len, config.d_model), persistent=False)
        self.input_norm = nn.BatchNorm1d(config.group_size, affine=False) if config.batch_norm else None
        if config.revin:
            # one affine per channel of a node, shared by all nodes (Corrformer's affine_weight / affine_bias)
            self.revin_weight = nn.Parameter(torch.ones(config.group_size))
            self.revin_bias = nn.Parameter(torch.zeros(config.group_size))
        if config.num_nodes:
            # Corrformer's geo-position embedding: a Linear over the standardised coordinates of a node's stations.
            # Learned positions stand in until set_station_positions loads the real coordinates.
            width = config.group_size * config.station_coords
            self.station_positions = nn.Parameter(torch.empty(config.num_nodes, width))
            nn.init.xavier_uniform_(self.station_positions)
            self.station_embedding = nn.Linear(width, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.map_shape = config.map_shape

    @torch.no_grad()
    def set_station_positions(self, coords: np.ndarray | Tensor) -> None:
        """Use the stations' real coordinates (standardised over stations) and stop learning them.

        Args:
            coords: [stations, station_coords] in the channel order of the data (station s is channel s).

        Raises:
            InputError: a shape that does not match ``num_nodes·group_size`` stations, or non-finite coordinates.
        """
        cfg = self.config
        coords = np.asarray(coords, dtype=np.float64)
        expected = (cfg.num_nodes * cfg.group_size, cfg.station_coords)
        if cfg.num_nodes == 0 or coords.shape != expected or not np.isfinite(coords).all():
            raise InputError(
                f"SeriesEmbedding: station coordinates of shape {coords.shape}; expected finite values of shape "
                f"{expected} (num_nodes·group_size stations, station_coords each; num_nodes must be > 0)"
            )
        standard = StandardScaler().fit(coords).transform(coords)
        nodes = rearrange(torch.as_tensor(standard, dtype=torch.float32), "(n g) c -> n (g c)", g=cfg.group_size)
        self.station_positions.copy_(nodes)
        self.station_positions.requires_grad_(False)

    def _window_stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample, per-channel mean and std over time of Tensor[B, L, D], each Tensor[B, 1, D] (no gradient)."""
        mean = x.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + _EPS).detach()
        return mean, std

    def _affine(self, channels: int) -> tuple[Tensor, Tensor]:
        nodes = channels // self.config.group_size
        return repeat(self.revin_weight, "g -> (n g)", n=nodes), repeat(self.revin_bias, "g -> (n g)", n=nodes)

    def restore(self, forecast: Tensor, x: Tensor) -> Tensor:
        """Map a forecast Tensor[B, H, D] made from windows ``x`` Tensor[B, L, D] back to the windows' scale.

        The identity without ``revin``.
        """
        if not self.config.revin:
            return forecast
        mean, std = self._window_stats(x)
        weight, bias = self._affine(x.shape[-1])
        return (forecast - bias) / (weight + 1e-10) * std + mean

    def embed(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        """Embed windows per node.

        Args:
            x: Tensor[B, L, D] with L = seq_len, D a multiple of group_size (``num_nodes·group_size`` with station
                positions).
            marks: Tensor[B, L, k] time features (required unless ``freq='none'``).

        Returns:
            Tensor[B·n, L, d_model].

        Raises:
            InputError: wrong L or D, or missing / mis-shaped marks.
        """
        cfg = self.config
        batch, length, chans = x.shape
        if length != cfg.seq_len or chans % cfg.group_size:
            raise InputError(
                f"SeriesEmbedding: input has shape {tuple(x.shape)}; expected [B, {cfg.seq_len}, D] with D a "
                f"multiple of group_size={cfg.group_size}"
            )
        nodes = chans // cfg.group_size
        if cfg.num_nodes and nodes != cfg.num_nodes:
            raise InputError(
                f"SeriesEmbedding: {chans} channels make {nodes} nodes of {cfg.group_size}; the station-position "
                f"embedding has num_nodes={cfg.num_nodes}"
            )
        if cfg.revin:
            mean, std = self._window_stats(x)
            weight, bias = self._affine(chans)
            x = (x - mean) / std * weight + bias
        per_node = rearrange(x, "b l (n g) -> (b n) g l", g=cfg.group_size)  # one sample per node, channels first
        shape = None
        if cfg.shape_view:  # each channel by its own statistics over the window
            mean = per_node.mean(dim=-1, keepdim=True)
            shape = (per_node - mean) / torch.sqrt(per_node.var(dim=-1, keepdim=True, unbiased=False) + _EPS)
        if self.input_norm is not None:
            per_node = self.input_norm(per_node)
        if shape is not None:
            per_node = torch.cat([per_node, shape], dim=1)  # (b·n, 2·group_size, L)
        out = rearrange(self.token_conv(per_node), "bn d l -> bn l d") + self.positions
        if cfg.num_nodes:
            stations = self.station_embedding(self.station_positions)  # (n, d_model), the same at every step
            out = out + repeat(stations, "n d -> (b n) 1 d", b=batch)
        if self.time_linear is not None:
            if marks is None or marks.shape != (batch, length, self.time_linear.in_features):
                raise InputError(
                    f"SeriesEmbedding: time marks of shape {None if marks is None else tuple(marks.shape)}; expected "
                    f"[{batch}, {length}, {self.time_linear.in_features}] for freq={cfg.freq!r} (or use freq='none')"
                )
            out = out + repeat(self.time_linear(marks), "b l d -> (b n) l d", n=nodes)  # one calendar for all nodes
        return self.dropout(out)

    def forward(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        """Embed and reshape to maps: Tensor[B, L, D] -> Tensor[B·n, 1, H, W] with H·W = L·d_model."""
        flat = rearrange(self.embed(x, marks), "bn l d -> bn 1 (l d)")  # row-major: step by step
        return rearrange(flat, "bn c (h w) -> bn c h w", h=self.map_shape[0])


# ------------------------------------------------------------------------------------------------------ adapter


class SeriesAdapter:
    """Normalises series and fits them to ``seq_len`` steps for :class:`SeriesEmbedding`.

    ``__call__`` takes one series (a file, array [T] or [T, D], or :class:`SeriesData`) of any length and any channel
    count and returns Tensor[seq_len, D'] (D' = D rounded up to a multiple of ``group_size``): the ``length`` policy
    fits the steps, the ``norm`` policy scales them (``instance`` needs no fitting), and zero channels fill D'. This
    is what classification and encoding use. Forecasting datasets window the data themselves (:meth:`window` does
    the same over a whole split). ``in_chans`` is 1, the channel count of the maps the embedding makes. With ``freq``
    other than ``none`` the embedding also needs time marks: :meth:`window` returns them, and :meth:`marks` computes
    them for a series.
    """

    in_chans = 1

    def __init__(self, config: SeriesConfig | None = None, scaler: StandardScaler | None = None) -> None:
        self.config = config or SeriesConfig()
        self.scaler = scaler or StandardScaler()

    def load(self, sample: SeriesSample) -> SeriesData:
        """Read and validate a series.

        Raises:
            InputError: unreadable file, wrong shape, no steps, or NaN/inf values.
        """
        name = sample_name(sample)
        if isinstance(sample, SeriesData):
            data = sample
        elif isinstance(sample, (np.ndarray, Tensor)):
            if isinstance(sample, Tensor):  # numpy has no bfloat16
                sample = sample.detach().cpu()
                sample = (sample.float() if sample.dtype == torch.bfloat16 else sample).numpy()
            values = series_float32(sample, name)
            values = values[:, None] if values.ndim == 1 else values
            if values.ndim != 2:
                raise InputError(f"{name}: series has shape {values.shape}; expected [T] or [T, D]")
            data = SeriesData(values, tuple(f"c{i}" for i in range(values.shape[-1])), None)
        else:
            data = load_series(sample)
        if data.values.ndim != 2 or data.values.shape[0] == 0 or data.values.shape[1] == 0:
            raise InputError(f"{name}: series has shape {data.values.shape}; expected [T, D] with T, D ≥ 1")
        cfg, channels = self.config, data.values.shape[1]
        nodes = -(-channels // cfg.group_size) if cfg.group_size else 1
        if nodes * cfg.seq_len * cfg.d_model > cfg.max_map_values:
            raise InputError(
                f"{name}: {channels} channels make {nodes} maps of {cfg.seq_len}x{cfg.d_model} (group_size="
                f"{cfg.group_size}), {nodes * cfg.seq_len * cfg.d_model} values, above max_map_values="
                f"{cfg.max_map_values}; expected fewer channels. Fix: select the channels you need, raise group_size, "
                "or raise SeriesConfig.max_map_values"
            )
        bad = ~np.isfinite(data.values)
        if bad.any():
            rows = np.nonzero(bad.any(axis=1))[0]
            raise InputError(
                f"{name}: {int(bad.sum())} value(s) are NaN or inf (first at step {int(rows[0])}); fill or drop them "
                "before windowing"
            )
        return data

    def fit_scaler(self, train: SeriesSample) -> StandardScaler:
        """Fit the scaler on the training split (never on validation or test data); returns it (``norm='fitted'``)."""
        self.scaler.fit(self.load(train).values)
        return self.scaler

    def normalize(self, values: np.ndarray) -> np.ndarray:
        """Apply the ``norm`` policy to one series [T, D]; returns float32 [T, D]."""
        norm = self.config.norm
        if norm == "instance":
            return instance_normalize(values)
        elif norm == "fitted":
            return np.asarray(self.scaler.transform(values), dtype=np.float32)
        elif norm == "none":
            return np.asarray(values, dtype=np.float32)
        else:
            raise ConfigError(f"SeriesAdapter: norm={norm!r}; expected one of {list(NORMS)}")

    def fit_length(self, values: np.ndarray, name: str) -> np.ndarray:
        """Apply the ``length`` policy to [T, D]: [min(T, seq_len), D] for ``pad``, [seq_len, D] otherwise.

        Raises:
            InputError: ``truncate`` with fewer than ``seq_len`` steps.
        """
        cfg = self.config
        steps = values.shape[0]
        if cfg.length == "resample":
            return resample(values, cfg.seq_len)
        elif cfg.length == "pad":
            return values[: cfg.seq_len]
        elif cfg.length == "truncate":
            if steps < cfg.seq_len:
                raise InputError(
                    f"{name}: series has {steps} steps, fewer than seq_len={cfg.seq_len}; use length='resample' or "
                    "'pad' for shorter series"
                )
            return values[-cfg.seq_len :]
        else:
            raise ConfigError(f"SeriesAdapter: length={cfg.length!r}; expected one of {list(LENGTH_POLICIES)}")

    def marks(self, data: SeriesData) -> np.ndarray | None:
        """Time features of every step (None when ``freq='none'``).

        Raises:
            InputError: marks are needed but the series has no timestamps, or the ``length`` policy moves steps (a
                series of other than ``seq_len`` steps with ``resample`` or ``pad``), so no step keeps its time.
        """
        cfg = self.config
        if cfg.freq != "none" and cfg.length != "truncate" and data.values.shape[0] != cfg.seq_len:
            raise InputError(
                f"series with {data.values.shape[0]} steps: time marks (freq={cfg.freq!r}) need length='truncate' "
                f"or exactly seq_len={cfg.seq_len} steps"
            )
        return self._all_marks(data)

    def _all_marks(self, data: SeriesData) -> np.ndarray | None:
        if self.config.freq == "none":
            return None
        if data.timestamps is None:
            raise InputError(
                f"series with columns {data.columns[:3]}...: no timestamps but freq={self.config.freq!r} needs them; "
                "add a 'date' column or set freq='none'"
            )
        return time_features(data.timestamps, self.config.freq)

    def num_windows(self, data: SeriesData) -> int:
        """Number of (input, target) windows in a split."""
        cfg = self.config
        return max(data.values.shape[0] - cfg.seq_len - cfg.pred_len + 1, 0)

    def window(self, data: SeriesData, index: int) -> dict[str, Tensor]:
        """Window ``index`` of a split (Time-Series-Library layout).

        With ``norm='fitted'`` the split is scaled by the fitted scaler; with ``instance`` both windows are scaled by
        the input window's own statistics (so the target is in the scale the model sees).

        Returns:
            ``{"x": [seq_len, D], "y": [label_len + pred_len, D], "x_mark": [seq_len, k], "y_mark": [...]}``, scaled
            float32 tensors; the mark keys are absent when ``freq='none'``. ``y`` starts ``label_len`` steps before
            the end of ``x``.
        """
        cfg = self.config
        if not 0 <= index < self.num_windows(data):
            raise InputError(f"window {index} out of range; the split has {self.num_windows(data)} windows")
        marks = self._all_marks(data)
        x_end = index + cfg.seq_len
        y_start, y_end = x_end - cfg.label_len, x_end + cfg.pred_len
        values = data.values.astype(np.float32)
        if cfg.norm == "fitted":
            values = self.normalize(values)
        elif cfg.norm == "instance":
            stats = StandardScaler().fit(values[index:x_end])
            values = stats.transform(values)
        out = {"x": torch.from_numpy(values[index:x_end]), "y": torch.from_numpy(values[y_start:y_end])}
        if marks is not None:
            out["x_mark"] = torch.from_numpy(marks[index:x_end])
            out["y_mark"] = torch.from_numpy(marks[y_start:y_end])
        return out

    def __call__(self, sample: SeriesSample) -> Tensor:
        """One series fitted to the model: Tensor[seq_len, D'] float32 (see the class doc).

        Raises:
            InputError: a bad series (see :meth:`load`) or one the ``length`` policy cannot fit.
        """
        cfg = self.config
        data = self.load(sample)
        values = self.normalize(self.fit_length(data.values, sample_name(sample)))
        missing_steps = cfg.seq_len - values.shape[0]
        missing_chans = -values.shape[1] % cfg.group_size if cfg.group_size else 0
        # zeros after normalisation: a padded step or channel sits at the series' mean
        values = np.pad(values, ((0, missing_steps), (0, missing_chans)))
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))

    def collate(self, windows: list[Tensor]) -> Tensor:
        """Stack windows: list of Tensor[L, D] -> Tensor[N, L, D] (the input of :class:`SeriesEmbedding`)."""
        shapes = {tuple(w.shape) for w in windows}
        if len(shapes) != 1:
            raise InputError(f"series: cannot collate windows of shapes {sorted(shapes)}; expected one shape")
        return torch.stack(windows)
