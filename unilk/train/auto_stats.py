"""``adapter.mean: auto`` / ``adapter.std: auto``: normalisation statistics computed on the training split, cached.

The statistics are computed once, at the first run, over the training split's raw inputs, and written beside the data
(``<data root>/.unilk_stats/<modality>-<fingerprint>.json``). The fingerprint hashes what the numbers depend on: the
front-end settings and every training input's id, size and modification time; any change (a clip added, a file
rewritten, another mel count) gives a new fingerprint and a new computation, so a stale cache is never read. When the
data directory is read-only the cache goes to ``<output_dir>/stats`` instead (logged).

Audio: the fbank mean and std (:func:`~unilk.adapters.audio_stats.fbank_mean_std`); image: per-channel mean and std
of the decoded pixels in [0, 1].
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unilk.errors import ConfigError, InputError

__all__ = ["AUTO", "check_auto_modality", "fingerprint", "resolve_auto_stats"]

logger = logging.getLogger(__name__)

AUTO = "auto"

#: adapter fields whose values change the statistics, per modality
_STATS_INPUTS = {
    "audio": ("sample_rate", "num_mel_bins", "frame_length_ms", "frame_shift_ms", "frontend"),
    "image": (),
}


def check_auto_modality(modality: str) -> None:
    """Raise ConfigError unless ``modality`` has dataset statistics that ``auto`` can compute."""
    if modality not in _STATS_INPUTS:
        raise ConfigError(f"adapter.mean/std: 'auto' is supported for {sorted(_STATS_INPUTS)}, not {modality!r}")


def _file_key(source: Any) -> list[Any]:
    """What identifies one input: its path, size and mtime (an in-memory array: its bytes' hash)."""
    if isinstance(source, (str, os.PathLike)):
        try:
            stat = os.stat(source)
        except OSError:  # a missing file or broken link: its absence is its key (reading it is its own error)
            return [str(source), None, None]
        return [str(source), stat.st_size, stat.st_mtime_ns]
    array = source.numpy() if isinstance(source, torch.Tensor) else np.asarray(source)
    return [hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()]


def fingerprint(modality: str, settings: Mapping[str, Any], ids: Sequence[str], sources: Sequence[Any]) -> str:
    """A hex digest of the front-end settings and every input (id, path, size, mtime)."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"modality": modality, "settings": dict(settings)}, sort_keys=True).encode())
    for sample_id, source in zip(ids, sources):
        digest.update(json.dumps([sample_id, *_file_key(source)]).encode())
    return digest.hexdigest()[:24]


def _compute(modality: str, adapter_fields: Mapping[str, Any], sources: Sequence[Any]) -> dict[str, Any]:
    if modality == "audio":
        from unilk.adapters.audio import AudioConfig
        from unilk.adapters.audio_stats import fbank_mean_std

        settings = {k: v for k, v in adapter_fields.items() if k in _STATS_INPUTS["audio"]}
        mean, std, used = fbank_mean_std(sources, AudioConfig(**settings), progress=False)
        return {"mean": mean, "std": std, "inputs_used": used}
    elif modality == "image":
        from unilk.adapters.image import ImageAdapter

        adapter = ImageAdapter()
        total = torch.zeros(3, dtype=torch.float64)
        total_sq = torch.zeros(3, dtype=torch.float64)
        count = used = 0
        for source in sources:
            try:
                pixels = adapter.decode(source).to(torch.float64).flatten(1)  # (3, H·W)
            except Exception as err:  # an unreadable image is left out (training records it too), not the run's end
                logger.warning("skipping an image in the statistics: %s", err)
                continue
            total += pixels.sum(1)
            total_sq += pixels.square().sum(1)
            count += pixels.shape[1]
            used += 1
        if count == 0:
            raise InputError("adapter.mean=auto: the training split has no readable image to compute statistics on")
        mean = total / count
        std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
        return {"mean": mean.tolist(), "std": std.tolist(), "inputs_used": used}
    else:
        raise ConfigError(f"adapter.mean/std: 'auto' is supported for audio and image, not {modality!r}")


def _write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one


def resolve_auto_stats(
    modality: str,
    adapter_fields: Mapping[str, Any],
    train_set: Any,
    data_dir: Path,
    fallback_dir: Path,
) -> dict[str, Any]:
    """Replace ``mean``/``std`` set to ``"auto"`` in the adapter fields by the training split's statistics.

    Args:
        modality: the recipe's modality.
        adapter_fields: the recipe's ``adapter`` mapping.
        train_set: the training split built without a transform (items' ``input`` is the raw source); a
            ``SampleDataset`` exposes ``samples`` so nothing is decoded twice.
        data_dir: the dataset directory; the cache goes to ``data_dir/.unilk_stats``.
        fallback_dir: where the cache goes when ``data_dir`` is not writable.

    Returns:
        The adapter fields with numbers in place of ``"auto"`` (unchanged when neither is ``"auto"``).

    Raises:
        ConfigError: ``auto`` for a modality without dataset statistics.
        InputError: no training input could be read.
    """
    wanted = [k for k in ("mean", "std") if adapter_fields.get(k) == AUTO]
    if not wanted:
        return dict(adapter_fields)
    check_auto_modality(modality)
    samples = getattr(train_set, "samples", None)
    if samples is None:
        raise ConfigError(f"adapter.{wanted[0]}=auto: {type(train_set).__name__} does not list its samples")
    ids = [s.id for s in samples]
    sources = [str(s.source) if isinstance(s.source, Path) else s.source for s in samples]
    settings = {k: adapter_fields[k] for k in _STATS_INPUTS[modality] if k in adapter_fields}
    key = fingerprint(modality, settings, ids, sources)
    name = f"{modality}-{key}.json"
    for folder in (data_dir / ".unilk_stats", fallback_dir):
        if (folder / name).is_file():
            stats = json.loads((folder / name).read_text())
            logger.info("adapter statistics from the cache %s", folder / name)
            break
    else:
        logger.info("computing adapter statistics on %d training inputs (fingerprint %s)", len(sources), key)
        stats = {**_compute(modality, adapter_fields, sources), "fingerprint": key, "settings": settings}
        try:
            _write(data_dir / ".unilk_stats" / name, stats)
        except OSError as err:
            logger.warning("cannot cache statistics beside the data (%s); caching in %s", err, fallback_dir)
            _write(fallback_dir / name, stats)
    return {**adapter_fields, **{k: stats[k] for k in wanted}}
