"""Corrformer's global weather station data (Wu et al., Nature Machine Intelligence 2023), as UniRepLKNet uses it.

Layout: ``root/{temp,wind}_global_hourly_{train,val,test}.npy`` shaped (T, stations, features) and
``root/data_time_{train,val,test}.npy`` with the T timestamps. Each split is its own file, and Corrformer does not
standardise the values. The stored values are the NCEI values ×10, so the reported MSE is divided by 100 and the MAE by
10 (:attr:`CorrformerWeather.unit_scale` = 10 tells the metrics).

Windows follow Time-Series-Library: ``input`` rows [i, i + seq_len), ``target`` rows [i + seq_len, ... + pred_len),
``target_window`` starting ``label_len`` rows before the forecast. Stations and features are flattened station-major
into D = stations × features columns, as Corrformer does before splitting D into nodes.

Station positions for the stem's station-position embedding are read, when present, from
``root/station_positions.npy`` shaped (stations, coordinates) (e.g. latitude, longitude, elevation), in the stations'
order of the data files; :attr:`CorrformerWeather.station_positions` repeats them per feature (one row per column).
Without the file the embedding learns the positions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unilk.datasets.base import ForecastWindows, Transform, canonical_split, require_dir, require_file
from unilk.datasets.tslib import time_features
from unilk.errors import ConfigError, InputError

__all__ = ["CorrformerWeather"]

logger = logging.getLogger(__name__)

_PREFIX = {"temp": "temp_global_hourly", "wind": "wind_global_hourly"}


class CorrformerWeather(ForecastWindows):
    """Global Temp / Global Wind windows.

    Args:
        root: folder of the ``.npy`` files.
        variable: ``temp`` or ``wind``.
        split: ``train`` | ``val`` | ``test``.
        seq_len, label_len, pred_len: window sizes (UniRepLKNet: 48, 24, 24).
        features: ``S`` keeps the first feature of every station (the measured variable); ``M`` keeps all.
        timeenc: 1 (``timeF``) or 0 (calendar integers) for the hourly time marks.
        allow_pickle: the published timestamp files may be object arrays, which numpy can only read by unpickling:
            set True only for files from a source you trust.
        positions: the station-coordinate file in ``root`` (optional: absent means no known positions).
        transform: applied to the input window Tensor[seq_len, D].

    Raises:
        InputError: a file is missing or corrupt, the shapes disagree, or the split is shorter than one window.
        ConfigError: an unknown variable, split or ``features``.
    """

    #: the stored values are 10 × the physical units (0.1 °C, 0.1 m/s).
    unit_scale = 10.0

    def __init__(
        self,
        root: str | Path,
        variable: str = "temp",
        split: str = "train",
        seq_len: int = 48,
        label_len: int = 24,
        pred_len: int = 24,
        features: str = "S",
        timeenc: int = 1,
        allow_pickle: bool = False,
        positions: str = "station_positions.npy",
        transform: Transform | None = None,
    ) -> None:
        root = require_dir(Path(root), "Corrformer data")
        split = canonical_split(split, ("train", "val", "test"), type(self).__name__)
        if variable not in _PREFIX:
            raise ConfigError(f"CorrformerWeather: variable={variable!r}; expected one of {sorted(_PREFIX)}")
        data_path = require_file(root / f"{_PREFIX[variable]}_{split}.npy", "Corrformer data file")
        time_path = require_file(root / f"data_time_{split}.npy", "Corrformer timestamp file")
        raw = _load_npy(data_path, allow_pickle)
        stamps = _load_npy(time_path, allow_pickle)
        if raw.ndim != 3:
            raise InputError(f"{data_path}: shape {raw.shape}; expected (T, stations, features)")
        if stamps.shape != (raw.shape[0],):
            raise InputError(f"{time_path}: shape {stamps.shape}; expected ({raw.shape[0]},) to match {data_path}")
        if features == "S":
            raw = raw[:, :, :1]
        elif features != "M":
            raise ConfigError(f"CorrformerWeather: features={features!r}; expected 'S' or 'M'")
        if raw.shape[0] < seq_len + pred_len or not 0 <= label_len <= seq_len:
            raise InputError(
                f"{data_path}: {raw.shape[0]} steps cannot hold seq_len={seq_len} + pred_len={pred_len} "
                f"(label_len={label_len} must be <= seq_len)"
            )
        try:
            timestamps = np.asarray(stamps).astype("datetime64[s]")
        except (ValueError, TypeError) as err:
            raise InputError(f"{time_path}: timestamps cannot be read as dates ({err})") from err
        self.num_stations, self.num_features = raw.shape[1], raw.shape[2]
        self.station_positions = self._read_positions(root / positions, raw.shape[1], raw.shape[2])
        self.values = torch.as_tensor(raw.reshape(raw.shape[0], -1).astype(np.float32))
        self.marks = torch.as_tensor(time_features(timestamps, "h", timeenc))
        self.seq_len, self.label_len, self.pred_len = seq_len, label_len, pred_len
        self.name, self.split, self.transform = f"{variable}_global", split, transform

    @staticmethod
    def _read_positions(path: Path, stations: int, features: int) -> np.ndarray | None:
        """Station coordinates [stations·features, k] (one row per data column), or None without the file."""
        if not path.is_file():
            logger.info("%s: not found; the station-position embedding learns the positions", path)
            return None
        coords = _load_npy(path, allow_pickle=False)
        if coords.ndim != 2 or coords.shape[0] != stations or not np.isfinite(coords).all():
            raise InputError(f"{path}: shape {coords.shape}; expected finite (stations={stations}, coordinates)")
        # columns are station-major (station s, feature f at s·features + f), so each station's row repeats
        return np.repeat(coords.astype(np.float64), features, axis=0)

    def inverse_transform(self, values: Any) -> Any:
        """Identity: Corrformer does not scale (kept so every forecasting dataset offers the same method)."""
        return values


def _load_npy(path: Path, allow_pickle: bool) -> np.ndarray:
    """np.load with errors that name the file."""
    try:
        return np.load(path, allow_pickle=allow_pickle)
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise InputError(
                f"{path}: holds Python objects; pass allow_pickle=True if you trust the file, or re-save it as "
                "a numeric / datetime64 array"
            ) from err
        raise InputError(f"{path}: not a valid .npy file ({err})") from err
    except (OSError, EOFError) as err:
        raise InputError(f"{path}: not a valid .npy file ({err})") from err
