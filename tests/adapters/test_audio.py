"""Audio adapter: real files, tone placement in both layouts, length policies and bad inputs."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from adapter_media import tone, write_pyav_audio, write_sound

from unilk.adapters import AudioAdapter, AudioConfig, build_adapter
from unilk.adapters.audio import fit_length, make_chunks
from unilk.adapters.audio_stats import fbank_mean_std
from unilk.errors import ConfigError, InputError

TONE_HZ = 1000.0
TONE_START_S, TONE_STOP_S = 0.3, 0.7


def expected_mel_bin(freq_hz: float, num_bins: int = 128, low_hz: float = 20.0, high_hz: float = 8000.0) -> int:
    """The HTK-mel filter whose centre is nearest to ``freq_hz`` (Kaldi: centres evenly spaced on the mel scale)."""
    mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)  # noqa: E731
    step = (mel(high_hz) - mel(low_hz)) / (num_bins + 1)
    centres = [mel(low_hz) + (i + 1) * step for i in range(num_bins)]
    return int(np.argmin([abs(c - mel(freq_hz)) for c in centres]))


def tone_frames(num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices fully inside / fully outside the tone (25 ms windows every 10 ms)."""
    starts = np.arange(num_frames) * 0.010
    inside = (starts >= TONE_START_S) & (starts + 0.025 <= TONE_STOP_S)
    outside = (starts + 0.025 <= TONE_START_S) | (starts >= TONE_STOP_S)
    return np.nonzero(inside)[0], np.nonzero(outside)[0]


def check_tone(map_: torch.Tensor, layout: str, valid_frames: int) -> None:
    """The tone's energy is in the expected mel bin, inside its time span only."""
    fbank = map_[0] if layout == "time_freq" else map_[0].T  # -> (T, F)
    inside, outside = tone_frames(valid_frames)
    target = expected_mel_bin(TONE_HZ)
    peak_bins = fbank[inside].argmax(dim=1)
    assert (peak_bins - target).abs().max() <= 1
    energy = fbank[:valid_frames, target]
    assert energy[inside].min() > energy[outside].max() + 1.0  # ≥ 1 normalised unit = 2·std ≈ 11 nepers


@pytest.mark.parametrize("layout", ["time_freq", "freq_time"])
@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_tone_lands_in_right_bin_and_span(tmp_path: Path, layout: str, ext: str) -> None:
    path = write_sound(tmp_path / f"tone.{ext}", tone(TONE_HZ, 1.0, TONE_START_S, TONE_STOP_S))
    adapter = AudioAdapter(AudioConfig.preset("speechcommands", layout=layout))
    out = adapter(path)
    torch.testing.assert_close(adapter(path.read_bytes()), out)  # encoded bytes decode the same way
    assert out.dtype == torch.float32
    assert out.shape == (1, 128, 128)  # 128 frames × 128 bins either way
    check_tone(out, layout, valid_frames=98)  # 1 + (16000 - 400) // 160


def test_layouts_are_transposes_on_a_non_square_map(tmp_path: Path) -> None:
    path = write_sound(tmp_path / "tone.wav", tone(TONE_HZ, 1.0, TONE_START_S, TONE_STOP_S))
    time_freq = AudioAdapter(AudioConfig(target_frames=100))(path)
    freq_time = AudioAdapter(AudioConfig(target_frames=100, layout="freq_time"))(path)
    assert time_freq.shape == (1, 100, 128)
    assert freq_time.shape == (1, 128, 100)
    torch.testing.assert_close(freq_time[0], time_freq[0].T)


@pytest.mark.parametrize(("ext", "codec"), [("mp3", "mp3"), ("m4a", "aac"), ("mp4", "aac")])
def test_compressed_audio_via_pyav(tmp_path: Path, ext: str, codec: str) -> None:
    path = write_pyav_audio(tmp_path / f"tone.{ext}", tone(TONE_HZ, 1.0, TONE_START_S, TONE_STOP_S), codec=codec)
    out = AudioAdapter(AudioConfig.preset("speechcommands"))(path)
    # lossy codecs add encoder delay, so only the bin is checked here
    assert (out[0, 35:60].argmax(dim=1) - expected_mel_bin(TONE_HZ)).abs().max() <= 1


def test_ogg_stereo_and_resampling(tmp_path: Path) -> None:
    ogg = write_sound(tmp_path / "tone.ogg", tone(TONE_HZ, 1.0, TONE_START_S, TONE_STOP_S))
    out = AudioAdapter(AudioConfig.preset("speechcommands"))(ogg)
    assert (out[0, 35:60].argmax(dim=1) - expected_mel_bin(TONE_HZ)).abs().max() <= 1
    # a 44.1 kHz stereo file with the tone on one channel: mono mix-down + resampling keep the bin
    stereo = np.stack([tone(TONE_HZ, 1.0, rate=44100), np.zeros(44100, np.float32)], axis=1)
    out = AudioAdapter(AudioConfig.preset("speechcommands"))(write_sound(tmp_path / "st.wav", stereo, 44100))
    assert (out[0, 5:90].argmax(dim=1) - expected_mel_bin(TONE_HZ)).abs().max() <= 1


def test_waveform_inputs_and_normalisation() -> None:
    wave = torch.from_numpy(tone(TONE_HZ, 1.0))
    cfg = AudioConfig.preset("speechcommands")
    raw = AudioAdapter(cfg.replace(mean=None, std=None))(wave)
    normed = AudioAdapter(cfg)(wave)
    torch.testing.assert_close(normed, (raw - cfg.mean) / (2 * cfg.std))
    # int16 PCM is scaled to [-1, 1)
    pcm = (tone(TONE_HZ, 1.0) * 32768).round().astype(np.int16)
    torch.testing.assert_close(AudioAdapter(cfg).waveform(pcm), wave, atol=1 / 32768, rtol=0)
    # (waveform, rate) tuples are resampled; a tensor is taken to be at the configured rate
    assert AudioAdapter(cfg)((tone(TONE_HZ, 1.0, rate=8000), 8000)).shape == (1, 128, 128)


def test_length_policies() -> None:
    fbank = torch.arange(5.0).repeat_interleave(2).view(5, 2)  # 5 frames, 2 bins
    assert torch.equal(fit_length(fbank, 8, "pad")[5:], torch.zeros(3, 2))
    assert torch.equal(fit_length(fbank, 3, "pad"), fbank[:3])
    assert torch.equal(fit_length(fbank, 12, "repeat")[:, 0], torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1.0]))
    with pytest.raises(InputError, match="length_policy='crop'"):
        fit_length(fbank, 8, "crop")
    chunks = make_chunks(fbank, 2)
    assert chunks.shape == (3, 2, 2)
    assert torch.equal(chunks[2, 1], torch.zeros(2))


def test_chunk_policy_returns_several_maps_and_call_refuses() -> None:
    adapter = AudioAdapter(AudioConfig(target_frames=40, length_policy="chunk"))
    wave = torch.from_numpy(tone(TONE_HZ, 1.0))
    result = adapter.process(wave)
    assert result.maps.shape == (3, 1, 40, 128)  # 98 frames -> ceil(98 / 40) chunks
    assert (result.num_frames, result.policy) == (98, "chunk")
    with pytest.raises(ConfigError, match="chunks"):
        adapter(wave)
    maps, index = AudioAdapter.collate_chunks([result.maps, adapter.chunks(wave[:8000])])
    assert maps.shape == (5, 1, 40, 128)
    assert index.tolist() == [0, 0, 0, 1, 1]
    # the other policies give K = 1 through the same method
    pad = AudioAdapter(AudioConfig(target_frames=128)).process(wave)
    assert pad.maps.shape == (1, 1, 128, 128)
    assert pad.policy == "pad"


def test_librosa_frontend_puts_the_tone_in_the_same_place() -> None:
    adapter = AudioAdapter(AudioConfig(target_frames=98, frontend="librosa", mean=None, std=None))
    out = adapter(torch.from_numpy(tone(TONE_HZ, 1.0, TONE_START_S, TONE_STOP_S)))
    assert out.shape == (1, 98, 128)
    check_tone(out, "time_freq", valid_frames=98)


def test_collate_and_build_adapter() -> None:
    adapter = build_adapter("audio", {"target_frames": 64})
    batch = adapter.collate([adapter(torch.randn(8000)), adapter(torch.randn(16000))])
    assert batch.shape == (2, 1, 64, 128)
    assert adapter.in_chans == 1


def test_dataset_stats_tool(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from unilk.adapters.audio_stats import audio_stats

    paths = [write_sound(tmp_path / f"{i}.wav", tone(500.0 * (i + 1), 0.5)) for i in range(2)]
    mean, std, used = fbank_mean_std(paths, progress=False)
    adapter = AudioAdapter(AudioConfig(mean=None, std=None))
    frames = torch.cat([adapter.process(p).maps[0, 0, :48] for p in paths])  # 48 real frames per 0.5 s clip
    assert used == 2
    assert mean == pytest.approx(frames.mean().item(), rel=1e-6)  # rel=1e-4 let a bias of clips/values pass
    assert std == pytest.approx(frames.std(unbiased=False).item(), rel=1e-6)
    assert fbank_mean_std([paths[0]] * 3, progress=False)[0] == pytest.approx(
        fbank_mean_std(paths[:1], progress=False)[0]
    )
    result = CliRunner().invoke(audio_stats, [*map(str, paths), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"mean: {mean:.7g}" in result.output
    (tmp_path / "notes.txt").write_text("not audio")  # a folder's other files are left out
    for source in (str(tmp_path), str(tmp_path / "*.wav")):
        result = CliRunner().invoke(audio_stats, [source, "--no-progress"])
        assert result.exit_code == 0, result.output
        assert f"mean: {mean:.7g}" in result.output
        assert "clips: 2/2" in result.output
    missing = CliRunner().invoke(audio_stats, [str(tmp_path / "nowhere"), "--no-progress"])
    assert missing.exit_code == 2
    assert "nowhere" in missing.output


# ----------------------------------------------------------------------------------------------- bad inputs


def test_empty_truncated_and_mislabelled_files(tmp_path: Path) -> None:
    adapter = AudioAdapter()
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        adapter(empty)
    good = write_sound(tmp_path / "good.wav", tone(TONE_HZ, 1.0)).read_bytes()
    (tmp_path / "trunc.wav").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="truncated"):
        adapter(tmp_path / "trunc.wav")
    flac = write_sound(tmp_path / "good.flac", np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)
    (tmp_path / "trunc.flac").write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    with pytest.raises(InputError, match=r"trunc.flac"):
        adapter(tmp_path / "trunc.flac")
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(InputError, match="cannot decode"):
        adapter(tmp_path / "noise.wav")
    (tmp_path / "clip.txt").write_bytes(good)
    with pytest.raises(InputError, match="extension"):
        adapter(tmp_path / "clip.txt")


def test_mp3_named_wav_is_decoded_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mp3 = write_pyav_audio(tmp_path / "tone.mp3", tone(TONE_HZ, 1.0))
    renamed = tmp_path / "tone.wav"
    renamed.write_bytes(mp3.read_bytes())
    with caplog.at_level(logging.WARNING):
        assert AudioAdapter(AudioConfig(target_frames=98))(renamed).shape == (1, 98, 128)
    assert "MP3" in caplog.text


def test_zero_length_short_nan_and_silent_audio(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    adapter = AudioAdapter()
    with pytest.raises(InputError, match="non-empty"):
        adapter(torch.zeros(0))
    with pytest.raises(InputError, match="analysis"):
        adapter(torch.randn(399))  # one 25 ms window is 400 samples
    zero_file = write_sound(tmp_path / "zero.wav", np.zeros(0, np.float32))
    with pytest.raises(InputError):
        adapter(zero_file)
    bad = torch.randn(16000)
    bad[7] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        adapter(bad)
    silent = write_sound(tmp_path / "silent.wav", np.zeros(16000, np.float32))
    with caplog.at_level(logging.WARNING):
        out = adapter(silent)
    assert "silent" in caplog.text
    assert torch.isfinite(out).all()
    with pytest.raises(InputError, match="silent"):
        AudioAdapter(AudioConfig(silence_policy="error"))(silent)
