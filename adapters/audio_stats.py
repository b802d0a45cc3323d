"""Dataset statistics of the audio front end: the mean and std that normalise the fbank, ``(x − mean) / (2·std)``.

Statistics are taken over every frame and bin of the un-normalised, unpadded fbank of each clip (padding frames would
pull the mean towards 0). The CLI command is ``unilk audio-stats FILE...``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sized
from pathlib import Path

import click
import torch

from unilk.adapters.audio import AudioAdapter, AudioConfig, AudioSample, waveform_to_fbank
from unilk.errors import InputError
from unilk.progress import Progress

__all__ = ["audio_stats", "fbank_mean_std"]

logger = logging.getLogger(__name__)


def fbank_mean_std(
    samples: Iterable[AudioSample], config: AudioConfig | None = None, *, progress: bool = True
) -> tuple[float, float, int]:
    """Mean and std of the fbank over a dataset.

    Args:
        samples: paths, bytes or waveforms (anything :class:`AudioAdapter` takes).
        config: front-end settings (``mean``/``std``/``target_frames`` are ignored).
        progress: show progress (a bar on a terminal, else a line now and then).

    Returns:
        ``(mean, std, clips_used)``. Bad clips are logged and counted out, not silently dropped.

    Raises:
        InputError: no clip could be read.
    """
    adapter = AudioAdapter(config or AudioConfig())
    total = torch.zeros((), dtype=torch.float64)
    total_sq = torch.zeros((), dtype=torch.float64)
    count = used = 0
    size = len(samples) if isinstance(samples, Sized) else None  # not `total`: that is the running sum
    for sample in Progress(size, desc="fbank stats", unit="clip", enabled=progress).iterate(samples):
        try:
            fbank = waveform_to_fbank(adapter.waveform(sample), adapter.config).to(torch.float64)
        except Exception as err:  # any failure to read one clip leaves it out, whatever the decoder raised
            logger.warning("skipping a clip in the statistics: %s", err)
            continue
        total += fbank.sum()
        total_sq += fbank.square().sum()
        count += fbank.numel()
        used += 1
    if used == 0:
        raise InputError("fbank_mean_std: no readable clip; pass at least one valid audio file")
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return float(mean), float(std), used


@click.command("audio-stats")
@click.argument("sources", nargs=-1, required=True)
@click.option("--sample-rate", default=16000, show_default=True, help="Rate the clips are resampled to (Hz).")
@click.option("--num-mel-bins", default=128, show_default=True, help="Mel bins of the fbank.")
@click.option("--frontend", type=click.Choice(["kaldi", "librosa"]), default="kaldi", show_default=True)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def audio_stats(
    sources: tuple[str, ...], sample_rate: int, num_mel_bins: int, frontend: str, no_progress: bool
) -> None:
    """Print the fbank mean and std of SOURCES (audio files, folders or globs), for the adapter's `mean` and `std`."""
    files = _audio_files(sources)
    config = AudioConfig(sample_rate=sample_rate, num_mel_bins=num_mel_bins, frontend=frontend)
    mean, std, used = fbank_mean_std(files, config, progress=not no_progress)
    click.echo(f"mean: {mean:.7g}\nstd: {std:.7g}\nclips: {used}/{len(files)}")


def _audio_files(sources: tuple[str, ...]) -> list[Path]:
    """Files, folders (their audio files, recursively, sorted) and glob patterns -> the audio files, in order."""
    from unilk.adapters.io import AUDIO_EXTENSIONS
    from unilk.extract import list_inputs

    files: list[Path] = []
    for source in sources:
        try:
            files.extend(Path(item.path) for item in list_inputs(source, extensions=sorted(AUDIO_EXTENSIONS)))
        except InputError as err:
            raise click.BadParameter(str(err), param_hint="SOURCES") from err
    return files
