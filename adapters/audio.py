"""Audio adapter: a waveform or audio file -> a normalised log-mel map Tensor[1, H, W].

The front end is AST's (which UniRepLKNet's audio code copies): mono mix-down, resampling to 16 kHz, mean-removed
waveform, Kaldi fbank (128 bins, 25 ms hanning window, 10 ms shift, htk_compat, no dither, no energy), a fixed number
of frames, then ``(x - mean) / (2 * std)``.

Layouts: ``time_freq`` puts time on H (the paper: "H = T, W = F") and is the default; ``freq_time`` puts frequency on
H, which is what the official code feeds the network (it transposes), and is the layout official weights expect.

Length policies (``length_policy``), for a clip whose frame count differs from ``target_frames``:

* ``pad``: zero-pad the fbank at the end / crop the end (AST; the default).
* ``crop``: like ``pad`` for long clips; a short clip is an :class:`InputError` (nothing is silently padded).
* ``repeat``: tile a short clip until it is long enough; crop a long one.
* ``chunk``: cut the clip into ``ceil(T / target_frames)`` consecutive maps, the last one zero-padded. Use
  :meth:`AudioAdapter.chunks`, which returns ``Tensor[K, 1, H, W]``; ``__call__`` refuses this policy because it must
  return one map. ``chunks`` also works for the other policies (K = 1), so callers that pool over chunks need no branch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from unilk.adapters.common import stack_maps
from unilk.adapters.config import AdapterConfig, check_choice, check_positive
from unilk.adapters.io import DEFAULT_RATE_RANGE, AudioLimits, PathLike, load_audio, sample_name
from unilk.errors import ConfigError, InputError
from unilk.once import log_once

__all__ = [
    "AUDIO_PRESETS",
    "AudioAdapter",
    "AudioConfig",
    "AudioMaps",
    "fit_length",
    "kaldi_fbank",
    "librosa_fbank",
    "make_chunks",
    "normalize_fbank",
    "prepare_waveform",
    "resample",
    "waveform_to_fbank",
]

logger = logging.getLogger(__name__)

#: dataset statistics of the (un-normalised) fbank and the frame count of the AST recipes.
AUDIO_PRESETS: dict[str, dict[str, float | int]] = {
    "audioset": {"mean": -4.2677393, "std": 4.5689974, "target_frames": 1024},
    "speechcommands": {"mean": -6.845978, "std": 5.5654526, "target_frames": 128},
    "esc50": {"mean": -6.6268077, "std": 5.358466, "target_frames": 512},
}

AudioSample = PathLike | bytes | np.ndarray | Tensor | tuple[Any, int]

#: seconds read beyond the last frame a map needs, so the resampler's edge never reaches a used frame.
_RESAMPLE_MARGIN_S = 0.1


@dataclasses.dataclass(frozen=True)
class AudioConfig(AdapterConfig):
    """How a waveform becomes a map. Field names are YAML keys and CLI flags.

    Attributes:
        sample_rate: rate the waveform is resampled to, Hz.
        num_mel_bins: mel bins F.
        frame_length_ms: analysis window, ms.
        frame_shift_ms: hop between frames, ms.
        target_frames: frames T of one map (128 for 1 s Speech Commands, 1024 for 10 s AudioSet).
        length_policy: ``pad`` | ``crop`` | ``repeat`` | ``chunk`` (see the module docstring).
        layout: ``time_freq`` (map 1×T×F, the paper) or ``freq_time`` (1×F×T, the official code).
        mean: dataset mean of the fbank; None skips normalisation.
        std: dataset std of the fbank (the map is divided by 2·std, AST's convention).
        frontend: ``kaldi`` (torchaudio.compliance.kaldi.fbank) or ``librosa`` (librosa HTK mel, log power).
        silence_policy: ``warn`` (an all-zero clip gives the constant floor map and a warning) or ``error``.
        min_sample_rate: lowest sample rate accepted from a file or a ``(waveform, rate)`` pair, Hz; outside the range
            the sample is an :class:`InputError` (a header declaring 1 Hz is damage, not audio).
        max_sample_rate: highest sample rate accepted, Hz.
        max_seconds: longest clip read under ``length_policy='chunk'``; a longer one is an :class:`InputError`. The
            other policies read only the seconds their map needs, so any length is fine there.
    """

    modality = "audio"

    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    target_frames: int = 1024
    length_policy: str = "pad"
    layout: str = "time_freq"
    mean: float | None = AUDIO_PRESETS["audioset"]["mean"]
    std: float | None = AUDIO_PRESETS["audioset"]["std"]
    frontend: str = "kaldi"
    silence_policy: str = "warn"
    min_sample_rate: int = DEFAULT_RATE_RANGE[0]
    max_sample_rate: int = DEFAULT_RATE_RANGE[1]
    max_seconds: float = 600.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in (
            "sample_rate",
            "num_mel_bins",
            "frame_length_ms",
            "frame_shift_ms",
            "target_frames",
            "min_sample_rate",
            "max_sample_rate",
            "max_seconds",
        ):
            check_positive(owner, name, getattr(self, name))
        check_choice(owner, "length_policy", self.length_policy, ("pad", "crop", "repeat", "chunk"))
        check_choice(owner, "layout", self.layout, ("time_freq", "freq_time"))
        check_choice(owner, "frontend", self.frontend, ("kaldi", "librosa"))
        check_choice(owner, "silence_policy", self.silence_policy, ("warn", "error"))
        check_positive(owner, "std", self.std, allow_none=True)
        if (self.mean is None) != (self.std is None):
            raise ConfigError(f"{owner}: mean={self.mean!r} and std={self.std!r}; set both or neither")
        if not self.min_sample_rate <= self.sample_rate <= self.max_sample_rate:
            raise ConfigError(
                f"{owner}: sample_rate={self.sample_rate} is outside min_sample_rate={self.min_sample_rate} .. "
                f"max_sample_rate={self.max_sample_rate}; expected the range to contain it"
            )

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> AudioConfig:
        """A config with a dataset's statistics and frame count (``audioset``, ``speechcommands``, ``esc50``).

        Raises:
            ConfigError: for an unknown preset name.
        """
        if name not in AUDIO_PRESETS:
            raise ConfigError(f"AudioConfig.preset: got {name!r}, expected one of {sorted(AUDIO_PRESETS)}")
        return cls.from_dict({**AUDIO_PRESETS[name], **overrides})

    @property
    def window_samples(self) -> int:
        """Samples in one analysis window at ``sample_rate``."""
        return int(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def seconds_read(self) -> float:
        """Seconds of a clip the adapter reads: what ``target_frames`` frames span (plus a margin that keeps the
        resampler's edge out of them), or ``max_seconds`` under ``chunk``."""
        if self.length_policy == "chunk":
            return self.max_seconds
        shift = int(self.sample_rate * self.frame_shift_ms / 1000)
        return (self.window_samples + (self.target_frames - 1) * shift) / self.sample_rate + _RESAMPLE_MARGIN_S


# ----------------------------------------------------------------------------------------------- pure functions

#: largest torchaudio sinc kernel (new/g × orig/g entries for rates with gcd g); beyond it (rates such as 7919 Hz,
#: whose kernel would take gigabytes) soxr's polyphase resampler is used, whose memory does not depend on the ratio.
_MAX_SINC_KERNEL = 1 << 20


#: source samples per piece when a long waveform is resampled piecewise (bounded temporary memory).
_RESAMPLE_PIECE = 1 << 22


def resample(wave: Tensor, orig: int, new: int) -> Tensor:
    """Resample a mono waveform Tensor[S] from ``orig`` to ``new`` Hz with bounded memory.

    torchaudio's windowed-sinc resampler (what AST uses) for the usual rate pairs, applied piece by piece with enough
    context on each side that the result equals one call on the whole clip (every output sample depends only on
    nearby inputs); soxr (HQ) when the pair's kernel would be larger than ``_MAX_SINC_KERNEL`` entries.
    """
    if orig == new:
        return wave
    g = math.gcd(orig, new)
    orig_g, new_g = orig // g, new // g
    if orig_g * new_g > _MAX_SINC_KERNEL:
        import soxr

        resampled = soxr.resample(wave.numpy(), orig, new, quality="HQ")
        return torch.from_numpy(np.ascontiguousarray(resampled, dtype=np.float32))
    import torchaudio.functional as AF

    count = wave.shape[0]
    if count <= 2 * _RESAMPLE_PIECE:
        return AF.resample(wave, orig, new)
    # torchaudio's kernel reaches `width` inputs (in units of the reduced rate) to each side of an output sample
    width = math.ceil(6 * orig_g / (min(orig_g, new_g) * 0.99))
    context = orig_g * (math.ceil(width / orig_g) + 2)
    piece = orig_g * (_RESAMPLE_PIECE // orig_g)  # a whole number of kernel periods: pieces start on the output grid
    total = math.ceil(new_g * count / orig_g)
    parts = []
    for start in range(0, count, piece):
        low, high = max(0, start - context), min(count, start + piece + context)
        out = AF.resample(wave[low:high], orig, new)
        offset = (start - low) // orig_g * new_g
        parts.append(out[offset : offset + piece // orig_g * new_g])
    return torch.cat(parts)[:total]


def prepare_waveform(waveform: Tensor, sample_rate: int, target_rate: int) -> Tensor:
    """Mix down to mono and resample.

    Args:
        waveform: Tensor[S] or Tensor[channels, S], float.
        sample_rate: rate of ``waveform``, Hz.
        target_rate: rate wanted, Hz.

    Returns:
        Tensor[S'] float32 mono at ``target_rate``.
    """
    wave = waveform.to(torch.float32)
    if wave.dim() == 2:
        wave = wave[0] if wave.shape[0] == 1 else wave.mean(dim=0)  # one channel: a view, not a copy
    return resample(wave, sample_rate, target_rate)


def kaldi_fbank(waveform: Tensor, cfg: AudioConfig) -> Tensor:
    """Kaldi-compatible log-mel filter bank of a mono waveform, AST settings.

    Args:
        waveform: Tensor[S] mono float at ``cfg.sample_rate``; must hold at least one window.
        cfg: the audio config.

    Returns:
        Tensor[T, F] with T = 1 + (S - window) // shift and F = ``cfg.num_mel_bins``.
    """
    wave = waveform - waveform.mean()  # AST removes the DC offset (of the whole clip) before the fbank
    return _by_pieces(wave, cfg, _kaldi_fbank_centred)


def _kaldi_fbank_centred(wave: Tensor, cfg: AudioConfig) -> Tensor:
    from torchaudio.compliance import kaldi

    return kaldi.fbank(
        wave.unsqueeze(0),
        htk_compat=True,
        sample_frequency=cfg.sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=cfg.num_mel_bins,
        dither=0.0,
        frame_length=cfg.frame_length_ms,
        frame_shift=cfg.frame_shift_ms,
    )


def librosa_fbank(waveform: Tensor, cfg: AudioConfig) -> Tensor:
    """librosa's HTK mel power spectrogram in log scale, framed like :func:`kaldi_fbank` (no centring).

    Not numerically equal to the Kaldi front end (different window, FFT size and mel normalisation); a model must be
    trained with the front end it is used with.

    Args:
        waveform: Tensor[S] mono float at ``cfg.sample_rate``.
        cfg: the audio config.

    Returns:
        Tensor[T, F], same T as :func:`kaldi_fbank`.
    """
    # librosa reads n_fft samples per frame (its window of `win` samples is zero-padded to n_fft)
    reach = 1 << (cfg.window_samples - 1).bit_length()
    return _by_pieces(waveform - waveform.mean(), cfg, _librosa_fbank_centred, reach)


def _librosa_fbank_centred(wave: Tensor, cfg: AudioConfig) -> Tensor:
    import librosa

    win = cfg.window_samples
    hop = int(cfg.sample_rate * cfg.frame_shift_ms / 1000)
    y = wave.numpy()
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=cfg.sample_rate,
        n_fft=1 << (win - 1).bit_length(),
        win_length=win,
        hop_length=hop,
        window="hann",
        center=False,
        power=2.0,
        n_mels=cfg.num_mel_bins,
        htk=True,
        norm=None,
    )
    # librosa pads frames to n_fft; keep the frames whose window of `win` samples fits, like Kaldi.
    frames = 1 + (y.shape[0] - win) // hop
    return torch.from_numpy(np.log(np.maximum(mel[:, :frames], np.finfo(np.float32).eps)).T.astype(np.float32))


#: frames computed per call of a front end; a long clip is done in pieces so the front end's temporaries stay small.
_FBANK_PIECE = 4096


def _by_pieces(wave: Tensor, cfg: AudioConfig, frontend: Any, reach: int | None = None) -> Tensor:
    """Run a per-frame front end on consecutive pieces of ``_FBANK_PIECE`` frames and concatenate them.

    Frame i reads samples [i·shift, i·shift + reach) (reach: the window, or the FFT size that a front end pads the
    window to) and every step after the DC removal is per frame, so the result equals one call on the whole clip.
    """
    shift = int(cfg.sample_rate * cfg.frame_shift_ms / 1000)
    window = cfg.window_samples
    reach = reach or window
    frames = 1 + (wave.shape[0] - window) // shift if wave.shape[0] >= window else 0
    if frames <= _FBANK_PIECE:
        return frontend(wave, cfg)
    pieces = []
    for first in range(0, frames, _FBANK_PIECE):
        last = min(frames, first + _FBANK_PIECE)  # frames [first, last)
        piece = frontend(wave[first * shift : (last - 1) * shift + reach], cfg)
        pieces.append(piece[: last - first])
    return torch.cat(pieces)


def waveform_to_fbank(waveform: Tensor, cfg: AudioConfig) -> Tensor:
    """Run the configured front end. Tensor[S] -> Tensor[T, F]."""
    if cfg.frontend == "kaldi":
        return kaldi_fbank(waveform, cfg)
    elif cfg.frontend == "librosa":
        return librosa_fbank(waveform, cfg)
    else:
        raise ConfigError(f"AudioConfig.frontend: got {cfg.frontend!r}, expected 'kaldi' or 'librosa'")


def fit_length(fbank: Tensor, target_frames: int, policy: str) -> Tensor:
    """Bring a fbank to exactly ``target_frames`` frames.

    Args:
        fbank: Tensor[T, F].
        target_frames: frames wanted.
        policy: ``pad`` (zero-pad or crop the end), ``crop`` (crop the end; shorter is an error), ``repeat`` (tile,
            then crop).

    Returns:
        Tensor[target_frames, F].

    Raises:
        InputError: ``crop`` with a clip shorter than ``target_frames``.
    """
    frames = fbank.shape[0]
    if frames >= target_frames:
        return fbank[:target_frames]
    if policy == "pad":
        return torch.nn.functional.pad(fbank, (0, 0, 0, target_frames - frames))
    elif policy == "repeat":
        return fbank.repeat(math.ceil(target_frames / frames), 1)[:target_frames]
    elif policy == "crop":
        raise InputError(
            f"clip has {frames} frames, fewer than target_frames={target_frames} under length_policy='crop'; "
            "use 'pad' or 'repeat' for short clips"
        )
    else:
        raise ConfigError(f"length policy: got {policy!r}, expected 'pad', 'crop' or 'repeat'")


def make_chunks(fbank: Tensor, target_frames: int) -> Tensor:
    """Cut a fbank into consecutive chunks of ``target_frames``; the last one is zero-padded.

    Args:
        fbank: Tensor[T, F].
        target_frames: frames per chunk.

    Returns:
        Tensor[K, target_frames, F] with K = ceil(T / target_frames).
    """
    count = math.ceil(fbank.shape[0] / target_frames)
    padded = torch.nn.functional.pad(fbank, (0, 0, 0, count * target_frames - fbank.shape[0]))
    return padded.reshape(count, target_frames, fbank.shape[1])  # (K, T, F)


def normalize_fbank(fbank: Tensor, mean: float | None, std: float | None) -> Tensor:
    """AST's normalisation ``(x - mean) / (2 * std)``; identity when ``mean`` is None."""
    if mean is None or std is None:
        return fbank
    return (fbank - mean) / (2.0 * std)


# ------------------------------------------------------------------------------------------------------ adapter


def _all_finite(wave: Tensor, piece: int = 1 << 22) -> bool:
    """Whether every sample is finite, checked piece by piece (``torch.isfinite`` on a whole long clip allocates
    several times its size)."""
    flat = wave.reshape(-1)
    return all(bool(torch.isfinite(flat[i : i + piece]).all()) for i in range(0, flat.numel(), piece))


class AudioMaps(NamedTuple):
    """Maps of one clip and what was done to it.

    Attributes:
        maps: Tensor[K, 1, H, W] (K = 1 unless the policy is ``chunk``).
        num_frames: fbank frames of the clip before fitting to ``target_frames``; a clip longer than the map is cut
            before resampling (to :attr:`AudioConfig.seconds_read`), so for it this counts only the frames read.
        policy: the length policy applied: ``none`` (exact length), ``pad``, ``crop``, ``repeat`` or ``chunk``.
    """

    maps: Tensor
    num_frames: int
    policy: str


class AudioAdapter:
    """Turns audio files or waveforms into normalised log-mel maps.

    A sample is a path, encoded bytes, a waveform array/tensor at ``config.sample_rate`` ([S] or [channels, S]), or a
    ``(waveform, sample_rate)`` tuple.

    Example:
        >>> adapter = AudioAdapter(AudioConfig.preset("speechcommands"))
        >>> adapter(torch.randn(16000)).shape
        torch.Size([1, 128, 128])
    """

    in_chans = 1

    def __init__(self, config: AudioConfig | None = None) -> None:
        self.config = config or AudioConfig()

    def waveform(self, sample: AudioSample) -> Tensor:
        """Decode and validate a sample; return the mono waveform Tensor[S] at ``config.sample_rate``.

        Only the seconds the map needs are decoded and resampled (:attr:`AudioConfig.seconds_read`), so memory follows
        ``target_frames``, not the length or the rate the file declares.

        Raises:
            InputError: undecodable, a sample rate outside the configured range, zero-length, shorter than one window,
                longer than ``max_seconds`` under ``chunk``, NaN/inf, a [samples, channels] array, or silent under
                ``silence_policy='error'``.
        """
        cfg = self.config
        name = sample_name(sample[0] if isinstance(sample, tuple) else sample)
        limits = AudioLimits((cfg.min_sample_rate, cfg.max_sample_rate), cfg.seconds_read, mono=True)
        if isinstance(sample, tuple):
            data, rate = sample
        elif isinstance(sample, (np.ndarray, Tensor)):
            data, rate = sample, cfg.sample_rate
        else:
            data, rate = load_audio(sample, limits)
        rate = int(rate)
        if not cfg.min_sample_rate <= rate <= cfg.max_sample_rate:
            raise InputError(
                f"{name}: sample rate {rate} Hz is outside the accepted {cfg.min_sample_rate}-{cfg.max_sample_rate} "
                "Hz; pass the waveform's true rate, or widen AudioConfig.min_sample_rate/max_sample_rate"
            )
        array = data.numpy() if isinstance(data, Tensor) else np.asarray(data)
        if array.ndim not in (1, 2) or array.size == 0:
            raise InputError(f"{name}: waveform has shape {array.shape}; expected a non-empty [S] or [C, S]")
        if array.ndim == 2 and array.shape[0] > array.shape[1]:
            raise InputError(
                f"{name}: waveform has shape {array.shape}, more channels than samples; expected [C, S]. Fix: pass "
                "the transpose (soundfile and most readers give [S, C])"
            )
        if not (np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)) or array.dtype == np.bool_:
            raise InputError(f"{name}: waveform of dtype {array.dtype}; expected real numbers (float or PCM integers)")
        array = array[..., : limits.max_frames(rate)]  # cut before resampling: memory follows the map, not the clip
        if cfg.length_policy == "chunk" and array.shape[-1] > cfg.max_seconds * rate:
            raise InputError(
                f"{name}: clip is longer than max_seconds={cfg.max_seconds} s under length_policy='chunk'; "
                "raise AudioConfig.max_seconds, or pick 'pad'/'crop' to use its start only"
            )
        if np.issubdtype(array.dtype, np.integer):  # PCM integers (e.g. int16) -> [-1, 1)
            array = array.astype(np.float32) / float(-np.iinfo(array.dtype).min)
        wave = torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32))
        if not _all_finite(wave):
            raise InputError(f"{name}: waveform contains NaN or inf; expected finite samples")
        wave = prepare_waveform(wave, rate, cfg.sample_rate)
        if wave.shape[0] < cfg.window_samples:
            raise InputError(
                f"{name}: clip has {wave.shape[0]} samples at {cfg.sample_rate} Hz, fewer than one analysis "
                f"window ({cfg.window_samples}); pass a clip of at least {cfg.frame_length_ms} ms"
            )
        if not wave.any():
            if cfg.silence_policy == "error":
                raise InputError(f"{name}: clip is silent (all samples are 0); expected audible audio")
            message = "%s: clip is silent (all samples are 0); its map is the constant log floor"
            log_once(logger, "silent clip", message, name)
        return wave

    def process(self, sample: AudioSample) -> AudioMaps:
        """Decode a sample and make its map(s) under the configured policy.

        Returns:
            :class:`AudioMaps` with ``maps`` Tensor[K, 1, H, W].
        """
        cfg = self.config
        fbank = waveform_to_fbank(self.waveform(sample), cfg)  # (T, F)
        frames = fbank.shape[0]
        if cfg.length_policy == "chunk":
            stack = make_chunks(fbank, cfg.target_frames)  # (K, T, F)
            applied = "chunk"
        else:
            stack = fit_length(fbank, cfg.target_frames, cfg.length_policy).unsqueeze(0)
            applied = (
                cfg.length_policy if frames < cfg.target_frames else "crop" if frames > cfg.target_frames else "none"
            )
        stack = normalize_fbank(stack, cfg.mean, cfg.std)
        if cfg.layout == "freq_time":
            stack = stack.transpose(1, 2)  # (K, F, T), the official code's layout
        elif cfg.layout == "time_freq":
            pass  # (K, T, F), the paper's layout
        else:
            raise ConfigError(f"AudioConfig.layout: got {cfg.layout!r}, expected 'time_freq' or 'freq_time'")
        return AudioMaps(stack.unsqueeze(1).contiguous(), frames, applied)

    def __call__(self, sample: AudioSample) -> Tensor:
        """Make one map.

        Returns:
            Tensor[1, T, F] (``time_freq``) or Tensor[1, F, T] (``freq_time``), float32.

        Raises:
            ConfigError: under ``length_policy='chunk'`` (use :meth:`chunks`).
            InputError: a bad sample (see :meth:`waveform`).
        """
        if self.config.length_policy == "chunk":
            raise ConfigError(
                "AudioAdapter: length_policy='chunk' makes several maps per clip; call adapter.chunks(sample), "
                "which returns Tensor[K, 1, H, W], or pick 'pad', 'crop' or 'repeat'"
            )
        return self.process(sample).maps[0]

    def chunks(self, sample: AudioSample) -> Tensor:
        """Make all maps of a clip: Tensor[K, 1, H, W] (K = 1 unless ``length_policy='chunk'``)."""
        return self.process(sample).maps

    def collate(self, maps: list[Tensor]) -> Tensor:
        """Stack maps of equal shape: list of Tensor[1, H, W] -> Tensor[N, 1, H, W]."""
        return stack_maps(maps, "audio")

    @staticmethod
    def collate_chunks(chunk_stacks: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Concatenate the chunks of several clips for one forward pass.

        Args:
            chunk_stacks: per clip a Tensor[K_i, 1, H, W].

        Returns:
            ``(maps, clip_index)``: Tensor[sum K_i, 1, H, W] and int64 Tensor[sum K_i] giving the clip of each map
            (use it to average the embeddings of one clip, e.g. with ``index_add_``).
        """
        maps = torch.cat(chunk_stacks)
        counts = torch.tensor([c.shape[0] for c in chunk_stacks])
        index = torch.repeat_interleave(torch.arange(len(chunk_stacks)), counts)
        return maps, index
