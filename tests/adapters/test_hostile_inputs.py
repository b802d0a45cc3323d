"""Odd and hostile inputs to the adapters: bounded memory, no silent wrong answers, clear errors."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from adapter_media import gray_frames, write_mp4
from PIL import Image

from unilk.adapters import (
    AudioAdapter,
    AudioConfig,
    ImageAdapter,
    ImageConfig,
    PointsAdapter,
    PointsConfig,
    SeriesAdapter,
    SeriesConfig,
    VideoAdapter,
    VideoConfig,
)
from unilk.adapters.audio import resample
from unilk.adapters.image import resize_crop
from unilk.adapters.io import load_image, load_points, load_series, open_video
from unilk.errors import ConfigError, InputError

PEAK_LIMIT_MB = 1536  # the bound: 1.5 GB for any input file under 1 MB

# Runs in a fresh interpreter: adapts each file and reports its outcome and the process's peak resident memory.
_PEAK_SCRIPT = """
import json, sys
from unilk.adapters import build_adapter
results = []
for modality, path, config in json.loads(sys.argv[1]):
    adapter = build_adapter(modality, config)
    try:
        out = adapter.chunks(path) if modality == "audio" else adapter(path)
        results.append(["ok", list(out.shape)])
    except Exception as err:
        results.append([type(err).__name__, str(err)])
# VmHWM belongs to this program's memory map; ru_maxrss would also count the forking parent (Linux keeps it across exec)
with open("/proc/self/status") as status:
    peak_mb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
print(json.dumps({"results": results, "peak_mb": peak_mb}))
"""


def _peak_run(jobs: list[tuple[str, str, dict]]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, json.dumps(jobs)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _wav_declaring_rate(path: Path, rate: int, samples: int = 8000) -> Path:
    """A valid 16-bit PCM wav whose header then claims ``rate`` Hz (what a damaged or hostile file does)."""
    import soundfile as sf

    sf.write(path, (np.random.default_rng(0).random(samples) * 0.1).astype(np.float32), 8000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    fmt = data.find(b"fmt ")
    struct.pack_into("<I", data, fmt + 12, rate)  # sample rate
    struct.pack_into("<I", data, fmt + 16, rate * 2)  # byte rate
    path.write_bytes(bytes(data))
    return path


def _hostile_files(tmp_path: Path) -> dict[str, Path]:
    import soundfile as sf

    files = {
        "one_hz": _wav_declaring_rate(tmp_path / "one_hz.wav", 1),
        "huge_png": tmp_path / "huge.png",
        "cap_png": tmp_path / "cap.png",
        "prime_rate": tmp_path / "prime.wav",
        "many_channels": tmp_path / "channels.flac",
        "strip_png": tmp_path / "strip.png",
    }
    Image.new("RGB", (10000, 1), (10, 200, 30)).save(files["strip_png"])
    files["strip_mp4"] = write_mp4(tmp_path / "strip.mp4", gray_frames(16, height=2, width=4096))
    Image.new("L", (12000, 12000)).save(files["huge_png"], optimize=True)
    Image.new("RGB", (8000, 5000), (90, 120, 200)).save(files["cap_png"])  # 40 Mpx: at the default cap, decoded
    rng = np.random.default_rng(1)
    sf.write(files["prime_rate"], (rng.random(7919 * 60) * 0.1).astype(np.float32), 7919, subtype="PCM_16")
    sf.write(files["many_channels"], np.zeros((192000 * 30, 8), np.int16), 192000, subtype="PCM_16")
    return files


def test_hostile_files_stay_under_the_memory_bound(tmp_path: Path) -> None:
    files = _hostile_files(tmp_path)
    assert all(p.stat().st_size < 1_000_000 for p in files.values())
    jobs = [
        ("audio", str(files["one_hz"]), {}),
        ("image", str(files["huge_png"]), {}),
        ("image", str(files["cap_png"]), {}),
        ("audio", str(files["prime_rate"]), {}),
        ("audio", str(files["many_channels"]), {}),
        ("audio", str(files["many_channels"]), {"length_policy": "chunk", "target_frames": 512}),
        ("image", str(files["strip_png"]), {}),
        ("video", str(files["strip_mp4"]), {}),
    ]
    # one fresh interpreter per file: the bound is per input, and one process's allocator keeps what earlier files used
    reports = [_peak_run([job]) for job in jobs]
    results = [report["results"][0] for report in reports]
    assert results[0][0] == "InputError"
    assert "1 Hz" in results[0][1]
    assert results[1][0] == "InputError"
    assert "144000000 pixels, above max_pixels" in results[1][1]
    assert results[2] == ["ok", [3, 224, 224]]
    assert results[3] == ["ok", [1, 1, 1024, 128]]
    assert results[4] == ["ok", [1, 1, 1024, 128]]
    assert results[5] == ["ok", [6, 1, 512, 128]]  # 30 s -> 2999 frames -> 6 chunks of 512
    assert results[6] == ["ok", [3, 224, 224]]  # 1 × 10000 pixels: its short side to 256 would be 2.56 G pixels
    assert results[7] == ["ok", [3, 896, 896]]  # 2 × 4096 frames: 224 × 458752 each once resized (5.3 GB)
    peaks = {job[1].rsplit("/", 1)[-1]: report["peak_mb"] for job, report in zip(jobs, reports)}
    assert max(peaks.values()) <= PEAK_LIMIT_MB, peaks


@pytest.mark.slow
def test_longest_chunked_clip_at_the_highest_rate_stays_under_the_memory_bound(tmp_path: Path) -> None:
    """The worst case the defaults allow: a silent FLAC of just under max_seconds at max_sample_rate (≈ 360 KB)."""
    import soundfile as sf

    path = tmp_path / "long.flac"
    sf.write(path, np.zeros(192000 * 599, np.int16), 192000, subtype="PCM_16")
    assert path.stat().st_size < 1_000_000
    report = _peak_run([("audio", str(path), {"length_policy": "chunk"})])
    assert report["results"] == [["ok", [59, 1, 1024, 128]]]
    assert report["peak_mb"] <= PEAK_LIMIT_MB, report


# ------------------------------------------------------------------------------------------------------------ audio


def test_sample_rate_outside_the_range_is_an_error_for_files_and_pairs(tmp_path: Path) -> None:
    adapter = AudioAdapter(AudioConfig.preset("speechcommands"))
    with pytest.raises(InputError, match=r"1 Hz.*outside the accepted 1000-192000 Hz"):
        adapter(_wav_declaring_rate(tmp_path / "a.wav", 1))
    with pytest.raises(InputError, match=r"outside the accepted 1000-192000 Hz"):
        adapter(_wav_declaring_rate(tmp_path / "b.wav", 4_000_000).read_bytes())
    with pytest.raises(InputError, match="sample rate 50 Hz"):
        adapter((np.zeros(16000, np.float32), 50))
    # the range is configurable
    wide = AudioAdapter(AudioConfig.preset("speechcommands", min_sample_rate=500))
    assert wide((np.random.default_rng(0).random(800).astype(np.float32), 800)).shape == (1, 128, 128)
    with pytest.raises(ConfigError, match="sample_rate=16000 is outside"):
        AudioConfig(min_sample_rate=20000)


def test_long_clip_is_cut_before_resampling_and_gives_the_map_of_its_start() -> None:
    rate = 44100
    rng = np.random.default_rng(0)
    long = (rng.standard_normal(rate * 120) * 0.1).astype(np.float32)
    cfg = AudioConfig.preset("speechcommands")
    adapter = AudioAdapter(cfg)
    result = adapter.process((long, rate))
    assert result.policy == "crop"
    # the map of the first seconds_read seconds is the map of the whole clip (which is cropped to its start anyway)
    head = long[: int(np.ceil(cfg.seconds_read * rate)) + 1]
    torch.testing.assert_close(result.maps, adapter.process((head, rate)).maps)


def test_piecewise_resampling_equals_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchaudio.functional as AF

    import unilk.adapters.audio as audio

    monkeypatch.setattr(audio, "_RESAMPLE_PIECE", 3000)
    wave = torch.randn(20011)
    for orig, new in [(44100, 16000), (8000, 16000), (22050, 16000), (192000, 16000)]:
        torch.testing.assert_close(resample(wave, orig, new), AF.resample(wave, orig, new), atol=1e-5, rtol=0)


def test_prime_sample_rate_is_resampled_and_keeps_the_tone() -> None:
    rate = 7919  # gcd with 16000 is 1: torchaudio's kernel would need 16000 × 7919 entries
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out = resample(torch.from_numpy(tone), rate, 16000)
    assert out.shape[0] == pytest.approx(16000, abs=2)
    spectrum = torch.fft.rfft(out[2000:14000]).abs()
    peak_hz = spectrum.argmax().item() * 16000 / 12000
    assert abs(peak_hz - 1000) < 5


def test_chunk_policy_refuses_a_clip_longer_than_max_seconds() -> None:
    adapter = AudioAdapter(AudioConfig(length_policy="chunk", max_seconds=2.0))
    assert adapter.chunks(np.zeros(16000 * 2, np.float32) + 0.1).shape[0] == 1
    with pytest.raises(InputError, match=r"longer than max_seconds=2\.0"):
        adapter.chunks(np.zeros(16000 * 3, np.float32) + 0.1)


def test_waveform_arrays_that_cannot_be_audio_are_refused() -> None:
    adapter = AudioAdapter(AudioConfig.preset("speechcommands"))
    with pytest.raises(InputError, match=r"more channels than samples.*transpose"):
        adapter(np.zeros((16000, 2), np.float32))  # soundfile's [S, C] layout
    with pytest.raises(InputError, match="dtype <U"):
        adapter(np.array(["a", "b"] * 400))
    with pytest.raises(InputError, match="NaN or inf"):
        adapter(np.full(16000, np.inf, np.float32))


# ------------------------------------------------------------------------------------------------------------ image


def _gradient() -> np.ndarray:
    y, x = np.mgrid[0:64, 0:80]
    return ((x * 3 + y * 2) % 256).astype(np.uint8)


def test_sixteen_bit_and_float_images_map_like_their_eight_bit_twin(tmp_path: Path) -> None:
    grey8 = _gradient()
    Image.fromarray(grey8).save(tmp_path / "g8.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # v·257/65535 = v/255 exactly
    Image.fromarray(grey8.astype(np.float32) / 255).save(tmp_path / "f32.tif")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "g16.tif")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    adapter = ImageAdapter(ImageConfig(input_size=(3, 48, 48), crop_pct=1.0))
    reference = adapter(tmp_path / "g8.png")
    for name in ("g16.png", "f32.tif", "g16.tif"):
        torch.testing.assert_close(adapter(tmp_path / name), reference, atol=1e-5, rtol=0, msg=name)
    # in-memory arrays follow the same rule
    rgb8 = np.repeat(grey8[:, :, None], 3, axis=2)
    torch.testing.assert_close(adapter(rgb8.astype(np.uint16) * 257), reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(adapter(rgb8.astype(np.float32) / 255), reference, atol=1e-5, rtol=0)


def test_float_images_outside_the_unit_range_and_bad_arrays_are_refused(tmp_path: Path) -> None:
    Image.fromarray(np.full((16, 16), 3.5, np.float32)).save(tmp_path / "hdr.tif")
    adapter = ImageAdapter(ImageConfig(input_size=(3, 32, 32), crop_pct=1.0))
    with pytest.raises(InputError, match=r"hdr\.tif: float image with values in \[3\.5, 3\.5\]; expected \[0, 1\]"):
        adapter(tmp_path / "hdr.tif")
    with pytest.raises(InputError, match=r"expected \[0, 1\]"):
        adapter(np.full((16, 16, 3), 2.0, np.float32))
    with pytest.raises(InputError, match="dtype int64"):
        adapter(np.zeros((16, 16, 3), np.int64))


def test_pixel_cap_is_read_from_the_header_and_configurable(tmp_path: Path) -> None:
    Image.new("RGB", (300, 200)).save(tmp_path / "a.png")
    with pytest.raises(InputError, match=r"300x200 = 60000 pixels, above max_pixels=50000"):
        ImageAdapter(ImageConfig(max_pixels=50_000))(tmp_path / "a.png")
    assert ImageAdapter(ImageConfig(max_pixels=60_000))(tmp_path / "a.png").shape == (3, 224, 224)


def test_huge_image_is_box_reduced_first_and_matches_the_direct_resize() -> None:
    y, x = np.mgrid[0:2000, 0:3000] / 1000.0
    channels = [np.sin(2 * x + 1) * np.cos(3 * y), np.sin(x * y), np.cos(x - 2 * y)]
    smooth = (np.stack(channels, axis=2) * 120 + 128).astype(np.uint8)  # 2000×3000, detail far above the output's
    cfg = ImageConfig(input_size=(3, 64, 64), crop_pct=1.0)
    reduced = ImageAdapter(cfg)(Image.fromarray(smooth))  # PIL input: reduced by an integer factor first
    direct = ImageAdapter(cfg)(smooth)  # array input: resized directly
    # the reduced pixels are rounded to uint8 again: a mean difference of about 1.5 grey levels (normalised units)
    assert (reduced - direct).abs().mean() < 0.04


def test_exif_orientation_is_applied_as_a_viewer_shows_the_photo(tmp_path: Path) -> None:
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:, :30] = 255  # left half white, as stored
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display" (a phone held upright)
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path / "phone.jpg")
    assert upright.size == (40, 60)  # W × H: portrait
    pixels = np.asarray(upright)[:, :, 0].astype(int)
    assert pixels[:25].min() > 200  # the white half is now on top
    assert pixels[-25:].max() < 50


def test_very_elongated_image_resizes_only_what_the_crop_sees_and_matches_the_whole_resize() -> None:
    x = np.linspace(0, 6, 3000)
    smooth = np.stack([np.sin(x), np.cos(2 * x), np.sin(3 * x + 1)], axis=1) * 0.45 + 0.5
    strip = torch.from_numpy(np.broadcast_to(smooth.T[:, None, :], (3, 4, 3000)).astype(np.float32))  # 4 × 3000 px
    cfg = ImageConfig(input_size=(3, 32, 32))
    part = resize_crop(strip, cfg)  # resized whole: 36 × 27428 pixels; here only the central part
    whole = F.interpolate(strip[None], size=(36, 27428), mode="bicubic", antialias=True)[0].clamp(0, 1)[:, 2:34]
    whole = whole[:, :, (27428 - 32) // 2 :][:, :, :32]
    assert part.shape == (3, 32, 32)
    assert (part - whole).abs().max() < 2e-3  # the same pixels up to a sub-pixel rounding of the centre
    for shape in ((1, 300), (300, 1)):  # 1-pixel-wide images either way
        out = resize_crop(torch.full((3, *shape), 0.25), cfg)
        assert out.shape == (3, 32, 32)
        torch.testing.assert_close(out, torch.full((3, 32, 32), 0.25))


# ------------------------------------------------------------------------------------------------------------ video


def test_frames_decord_cannot_copy_are_decoded_with_pyav(tmp_path: Path) -> None:
    pytest.importorskip("decord")
    path = write_mp4(tmp_path / "tiny.mp4", gray_frames(6, height=2, width=2, step=40))  # decord: "size must match"
    video = open_video(path)
    assert video.backend == "decord"
    frames = video.get([0, 5, 2])
    assert frames.shape == (3, 2, 2, 3)
    np.testing.assert_allclose(frames[:, 0, 0, 0], [0, 200, 80], atol=6)  # each frame's own level, in index order
    with pytest.raises(InputError, match=r"tiny\.mp4: cannot decode frames"):
        open_video(path, backend="decord").get([0])  # asked for decord alone: no fallback


def test_video_frames_are_read_a_few_at_a_time_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import unilk.adapters.video as video_module

    frames = gray_frames(12, height=48, width=64, step=20)
    frames[:, :, :32] //= 2  # left half darker: a crop position shows
    path = write_mp4(tmp_path / "clip.mp4", frames)
    adapter = VideoAdapter(VideoConfig(num_frames=4, frame_stride=2, short_side=32, crop_size=32, test_clips=2))
    whole_clip, whole_views = adapter(path), adapter.views(path)
    monkeypatch.setattr(video_module, "_READ_BYTES", 3 * 48 * 64 * 2)  # two frames per read
    torch.testing.assert_close(adapter(path), whole_clip, atol=0, rtol=0)
    torch.testing.assert_close(adapter.views(path), whole_views, atol=0, rtol=0)


def test_video_frame_cap_is_read_from_the_header_and_configurable(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "clip.mp4", gray_frames(4, height=48, width=64))
    small = VideoConfig(num_frames=4, short_side=32, crop_size=32, max_pixels=3000)
    with pytest.raises(InputError, match=r"clip\.mp4: the header declares 64x48 = 3072 pixels per frame, above max_p"):
        VideoAdapter(small)(path)
    assert VideoAdapter(small.replace(max_pixels=3072))(path).shape == (3, 64, 64)


# ----------------------------------------------------------------------------------------------------------- points


def test_points_near_the_float32_limit_give_the_views_of_the_scaled_cloud() -> None:
    rng = np.random.default_rng(0)
    cloud = rng.standard_normal((500, 3)).astype(np.float32)
    adapter = PointsAdapter(PointsConfig(num_points=256, image_size=32))
    huge = adapter(cloud * np.float32(8e37))  # coordinates up to ≈ 3e38: the float32 mean and norm overflow
    assert torch.isfinite(huge).all()
    torch.testing.assert_close(huge, adapter(cloud), atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="NaN or inf"):
        adapter(cloud.astype(np.float64) * 1e300)  # beyond float32's range


def test_mesh_faces_must_name_existing_vertices_with_finite_coordinates(tmp_path: Path) -> None:
    vertices = "0 0 0\n1 0 0\n0 1 0\n"
    (tmp_path / "negative.off").write_text(f"OFF\n3 1 0\n{vertices}3 0 1 -1\n")  # numpy read -1 as the last vertex
    (tmp_path / "beyond.off").write_text(f"OFF\n3 1 0\n{vertices}3 0 1 3\n")
    (tmp_path / "nan.off").write_text("OFF\n3 1 0\nnan 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")  # was "no surface"
    (tmp_path / "header.off").write_text("OFF\n")
    for name, reason in [
        ("negative.off", "vertex -1, outside the 3 vertices"), ("beyond.off", "vertex 3, outside the 3 vertices"),
        ("nan.off", "1 vertices have NaN or inf"), ("header.off", "no vertex, face and edge counts"),
    ]:  # fmt: skip
        with pytest.raises(InputError, match=rf"{name}: .*{reason}"):
            load_points(tmp_path / name)


def test_ascii_xyz_and_pts_clouds_are_read_line_by_line_and_never_skip_a_line(tmp_path: Path) -> None:
    cloud = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.savetxt(tmp_path / "shapenet.pts", cloud)  # no count line (ShapeNet part): open3d read it as empty
    (tmp_path / "leica.pts").write_text("4\n" + "".join(f"{x} {y} {z} 7 1 2 3\n" for x, y, z in cloud))
    np.savetxt(tmp_path / "comma.xyz", cloud, delimiter=",")
    for name in ("shapenet.pts", "leica.pts", "comma.xyz"):
        np.testing.assert_array_equal(load_points(tmp_path / name), cloud, err_msg=name)
    (tmp_path / "short.pts").write_text("5\n1 2 3\n")
    (tmp_path / "bad_line.xyz").write_text("1 2 3\nfoo bar baz\n4 5 6\n")  # open3d dropped the line silently
    np.savetxt(tmp_path / "flat.xyz", cloud[:, :2])  # open3d: "no points"
    for name, reason in [
        ("short.pts", "declares 5 points, the file holds 1"),
        ("bad_line.xyz", "'foo'"),
        ("flat.xyz", r"shape \(4, 2\)"),
    ]:
        with pytest.raises(InputError, match=rf"{name}: .*{reason}"):
            load_points(tmp_path / name)
    (tmp_path / "none.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                                       "property float z\nend_header\n")  # fmt: skip
    with pytest.raises(InputError, match=r"none\.ply: the cloud has no points"):
        PointsAdapter(PointsConfig(num_points=16, image_size=16))(tmp_path / "none.ply")


def test_string_and_complex_point_arrays_are_input_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "words.npy", np.array([["a", "b", "c"]] * 10))
    with pytest.raises(InputError, match=r"words\.npy: points of dtype <U1"):
        load_points(tmp_path / "words.npy")
    adapter = PointsAdapter(PointsConfig(num_points=16, image_size=16))
    with pytest.raises(InputError, match="points of dtype"):
        adapter(np.ones((10, 3), np.complex64))


# ----------------------------------------------------------------------------------------------------------- series


def test_series_of_strings_complex_numbers_or_beyond_float32_are_input_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "words.npy", np.array([["a", "b"]] * 10))
    np.save(tmp_path / "complex.npy", np.ones((10, 2), np.complex64))  # the imaginary part was silently dropped
    np.save(tmp_path / "huge.npy", np.full((10, 2), 1e300))  # became inf, reported as "NaN or inf"
    (tmp_path / "huge.csv").write_text("a,b\n1e39,1\n2,3\n")
    for name, reason in [
        ("words.npy", "dtype <U1"), ("complex.npy", "dtype complex64"), ("huge.npy", r"20 value\(s\) beyond float32"),
        ("huge.csv", r"1 value\(s\) beyond float32's range .* e\.g\. 1e\+39"),
    ]:  # fmt: skip
        with pytest.raises(InputError, match=rf"{name}: .*{reason}"):
            load_series(tmp_path / name)
    adapter = SeriesAdapter(SeriesConfig(group_size=1, d_model=8))
    with pytest.raises(InputError, match="dtype <U1"):
        adapter(np.array(["1", "2"]))
    assert adapter(torch.ones(30, dtype=torch.bfloat16)).shape == (48, 1)


def test_series_csv_with_a_byte_order_mark_and_blank_lines_and_npz_timestamps_per_step(tmp_path: Path) -> None:
    text = "date,a\n2020-01-01 00:00:00,1\n\n2020-01-01 01:00:00,2\n\n"
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())  # as spreadsheet programs write it
    data = load_series(tmp_path / "bom.csv")
    assert data.columns == ("a",)
    assert data.values.tolist() == [[1.0], [2.0]]
    assert data.timestamps is not None
    assert str(data.timestamps[1]) == "2020-01-01T01:00:00"
    np.savez(tmp_path / "short.npz", values=np.zeros((10, 2)), timestamps=np.arange(4).astype("datetime64[s]"))
    with pytest.raises(InputError, match=r"short\.npz: 4 timestamps for 10 steps"):
        load_series(tmp_path / "short.npz")


def test_series_making_more_map_values_than_the_cap_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "wide.npy", np.zeros((4, 60000), np.float32))  # 960 KB: 5455 maps of 48 × 768 (2.4 GB)
    with pytest.raises(InputError, match=r"wide\.npy: 60000 channels make 5455 maps of 48x768 \(group_size=11\)"):
        SeriesAdapter(SeriesConfig())(tmp_path / "wide.npy")
    assert SeriesAdapter(SeriesConfig(max_map_values=2**28))(tmp_path / "wide.npy").shape == (48, 60005)
    # 3 channels: 3 maps of 4 × 2 = 24 values
    small = SeriesConfig(group_size=1, seq_len=4, label_len=0, d_model=2, max_map_values=24)
    assert SeriesAdapter(small)(np.zeros((5, 3))).shape == (4, 3)
    with pytest.raises(InputError, match="4 channels make 4 maps of 4x2"):
        SeriesAdapter(small)(np.zeros((5, 4)))
