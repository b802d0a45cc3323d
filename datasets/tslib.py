"""Time-Series-Library (thuml) forecasting datasets: ETTh1/2, ETTm1/2 and ``custom`` CSVs, with their splits.

Conventions kept from Time-Series-Library so that numbers compare:

* A CSV has a ``date`` column first; for ``custom`` the target column (default ``OT``) is moved last.
* Splits: ETTh uses fixed 12/4/4 months of 30×24 hourly rows (ETTm: ×4, 15-min rows); ``custom`` uses 70/10/20 %.
  The val and test windows start ``seq_len`` rows before their split border, so the first forecast starts at it.
* ``features``: ``M`` (all columns in, all out), ``S`` (target in, target out), ``MS`` (all in, target out).
* ``scale=True`` standardises with mean/std fitted on the train rows only; ``TSLibDataset.inverse_transform`` undoes
  it for outputs.
* ``timeenc=1`` gives ``timeF`` features in [-0.5, 0.5] (for ``freq='h'``: hour, weekday, day of month, day of year);
  ``timeenc=0`` gives calendar integers (month, day, weekday, hour[, minute // 15]).

An item is a dict: ``input`` [seq_len, D_in] (or ``transform(input)``), ``target`` [pred_len, D_out] (scaled when
``scale``), ``input_mark`` [seq_len, F], ``target_window`` [label_len + pred_len, D_in] (TSLib's ``seq_y``, whose first
``label_len`` rows are the decoder context) and ``target_window_mark``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unilk.adapters.io import load_series
from unilk.adapters.series import StandardScaler
from unilk.adapters.series import time_features as series_time_features
from unilk.datasets.base import ForecastWindows, Transform, canonical_split, require_file
from unilk.errors import ConfigError, InputError

__all__ = ["TSLibDataset", "split_borders", "time_features"]

logger = logging.getLogger(__name__)

_MONTH_ROWS = {"h": 30 * 24, "t": 30 * 24 * 4}
_SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}


def time_features(timestamps: np.ndarray, freq: str = "h", timeenc: int = 1) -> np.ndarray:
    """Time covariates of timestamps, as in Time-Series-Library.

    Args:
        timestamps: datetime64 array [T].
        freq: ``h`` (hourly), ``t``/``min`` (minutely) or ``d`` (daily); with ``timeenc=1`` any frequency of
            :data:`unilk.adapters.series.TIME_FEATURES`.
        timeenc: 1 for ``timeF`` features in [-0.5, 0.5] (computed by the series adapter, so that training data and
            adapter inputs agree); 0 for calendar integers.

    Returns:
        float32 array [T, F]; for ``h``: F = 4 (hour, weekday, day, day of year / month, day, weekday, hour).

    Raises:
        ConfigError: an unknown ``freq`` or ``timeenc``.
    """
    freq = "t" if freq == "min" else freq
    if timeenc == 1:
        return series_time_features(timestamps, freq)
    elif timeenc != 0:
        raise ConfigError(f"time_features: timeenc={timeenc!r}; expected 0 (calendar) or 1 (timeF)")
    ts = np.asarray(timestamps).astype("datetime64[m]")
    days = ts.astype("datetime64[D]")
    fields = {
        "month": (days.astype("datetime64[M]") - days.astype("datetime64[Y]")).astype(int) + 1,
        "day": (days - days.astype("datetime64[M]")).astype(int) + 1,
        "weekday": (days.astype(int) + 3) % 7,  # 1970-01-01 was a Thursday; Monday = 0 as in pandas
        "hour": (ts.astype("datetime64[h]") - days).astype(int),
        "minute": (ts - ts.astype("datetime64[h]")).astype(int) // 15,
    }
    order = {"h": ["month", "day", "weekday", "hour"], "t": ["month", "day", "weekday", "hour", "minute"]}
    order["d"] = ["month", "day", "weekday"]
    if freq not in order:
        raise ConfigError(f"time_features: freq={freq!r} with timeenc=0; expected 'h', 't', 'min' or 'd'")
    return np.stack([fields[k] for k in order[freq]], axis=1).astype(np.float32)


def split_borders(kind: str, num_rows: int, seq_len: int) -> tuple[list[int], list[int]]:
    """Start and end rows of the train / val / test windows.

    Args:
        kind: ``ETTh``, ``ETTm`` or ``custom``.
        num_rows: rows in the file.
        seq_len: input length (val and test start ``seq_len`` rows before their border).

    Returns:
        ``(starts, ends)``, three ints each.
    """
    if kind in ("ETTh", "ETTm"):
        month = _MONTH_ROWS["h" if kind == "ETTh" else "t"]
        ends = [12 * month, 16 * month, 20 * month]
        return [0, ends[0] - seq_len, ends[1] - seq_len], ends
    elif kind == "custom":
        num_train, num_test = int(num_rows * 0.7), int(num_rows * 0.2)
        num_val = num_rows - num_train - num_test
        return [0, num_train - seq_len, num_rows - num_test - seq_len], [num_train, num_train + num_val, num_rows]
    else:
        raise ConfigError(f"split_borders: kind={kind!r}; expected 'ETTh', 'ETTm' or 'custom'")


class TSLibDataset(ForecastWindows):
    """Sliding forecasting windows over a Time-Series-Library CSV.

    Args:
        path: the CSV (``ETTh1.csv``, ``ETTm2.csv``, ``weather.csv``, ...).
        split: ``train`` | ``val`` | ``test``.
        seq_len: input length L.
        label_len: decoder context length (rows of ``target_window`` before the forecast).
        pred_len: forecast horizon H.
        features: ``M`` | ``S`` | ``MS``.
        target: the target column.
        scale: standardise with train statistics.
        timeenc: 1 (``timeF``) or 0 (calendar integers).
        freq: ``h`` or ``t``; None picks ``t`` for ETTm files and ``h`` otherwise.
        kind: ``ETTh`` | ``ETTm`` | ``custom``; None infers it from the file name (``ETTh*``, ``ETTm*``, else custom).
        transform: applied to the input window Tensor[L, D_in] (e.g. a ``SeriesAdapter``).

    Attributes:
        columns: the input column names in order (target last); ``target_channels``: the output columns' indices.
        scaler: the fitted ``unilk.adapters.StandardScaler`` (over the input columns), or None when ``scale=False``.

    Raises:
        InputError: the file is missing or malformed, lacks the target column or is too short for the split.
        ConfigError: a bad split, ``features``, ``kind`` or window size.
    """

    def __init__(
        self,
        path: str | Path,
        split: str = "train",
        seq_len: int = 96,
        label_len: int = 48,
        pred_len: int = 96,
        features: str = "M",
        target: str = "OT",
        scale: bool = True,
        timeenc: int = 1,
        freq: str | None = None,
        kind: str | None = None,
        transform: Transform | None = None,
    ) -> None:
        path = require_file(Path(path), "time-series CSV")
        split = canonical_split(split, ("train", "val", "test"), type(self).__name__)
        if min(seq_len, pred_len) < 1 or not 0 <= label_len <= seq_len:
            raise ConfigError(
                f"TSLibDataset: seq_len={seq_len}, label_len={label_len}, pred_len={pred_len}; "
                "expected seq_len, pred_len >= 1 and 0 <= label_len <= seq_len"
            )
        if kind is None:
            kind = "ETTh" if path.name.startswith("ETTh") else "ETTm" if path.name.startswith("ETTm") else "custom"
        freq = freq or ("t" if kind == "ETTm" else "h")
        data = load_series(path)
        if data.timestamps is None:
            raise InputError(f"{path}: no 'date' first column; Time-Series-Library CSVs start with 'date'")
        columns = list(data.columns)
        if target not in columns:
            raise InputError(f"{path}: target column {target!r} not found; columns are {columns}")
        order = [c for c in columns if c != target] + [target]
        values = data.values[:, [columns.index(c) for c in order]].astype(np.float64)
        if features == "S":
            values, order = values[:, -1:], [target]
        elif features not in ("M", "MS"):
            raise ConfigError(f"TSLibDataset: features={features!r}; expected 'M', 'S' or 'MS'")
        starts, ends = split_borders(kind, len(values), seq_len)
        i = _SPLIT_INDEX[split]
        if ends[i] > len(values) or starts[i] < 0 or ends[i] - starts[i] < seq_len + pred_len:
            raise InputError(
                f"{path}: {len(values)} rows cannot hold the {kind} {split} split (rows {starts[i]}..{ends[i]}) "
                f"with seq_len={seq_len}, pred_len={pred_len}; use a longer file or shorter windows"
            )
        self.scaler = StandardScaler().fit(values[starts[0] : ends[0]]) if scale else None
        if self.scaler is not None:
            values = self.scaler.transform(values)
        self.values = torch.as_tensor(values[starts[i] : ends[i]], dtype=torch.float32)
        self.marks = torch.as_tensor(time_features(data.timestamps[starts[i] : ends[i]], freq, timeenc))
        self.columns = order
        self.target_channels = [len(order) - 1] if features == "MS" else list(range(len(order)))
        self.seq_len, self.label_len, self.pred_len = seq_len, label_len, pred_len
        self.name, self.split, self.transform = path.stem, split, transform

    def inverse_transform(self, values: Any) -> Any:
        """Map scaled outputs [..., D_out] back to the file's units (identity when ``scale=False``)."""
        if self.scaler is None:
            return values
        ch = self.target_channels
        return StandardScaler(self.scaler.mean[ch], self.scaler.std[ch]).inverse_transform(values)
