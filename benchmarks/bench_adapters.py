"""Throughput of the modality adapters, each next to a reference run in the same process.

* audio: one-second 16 kHz clips -> normalised 1×128×128 maps (Speech Commands preset), from in-memory waveforms and
  from wav files; reference: torchaudio's Kaldi fbank call alone.
* points: clouds of 8192 points -> 3×224×224 depth views, batched; reference: the same render in numpy
  (``np.maximum.at``).
* video: a 640×360 H.264 file (generated here) -> 16-frame clips (dense, stride 4) -> 3×896×896 grid, with decord and
  with PyAV; reference: decoding the same 16 frames alone.

Run: ``python benchmarks/bench_adapters.py [--threads N] [--seconds S]``. Prints one line per measurement.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from unilk.adapters import AudioAdapter, AudioConfig, PointsAdapter, PointsConfig, VideoAdapter, VideoConfig
from unilk.adapters.io import open_video
from unilk.adapters.points import normalize_points, project_depth
from unilk.adapters.video import sample_frame_indices


class Rate(NamedTuple):
    """Items per wall-clock second and per CPU second of this process (all its threads).

    On a shared machine the wall rate depends on the other jobs; the CPU rate (items per second of CPU time actually
    received) is the steadier figure, and equals the wall rate of an idle machine for single-threaded work.
    """

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:8.1f}/s wall, {self.cpu:8.1f}/CPU-s"


def rate(fn: Callable[[], int], seconds: float) -> Rate:
    """Throughput of ``fn`` (which returns how many items it processed), after one warm-up call."""
    fn()
    done, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        done += fn()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return Rate(done / wall, done / max(cpu, 1e-9))


def bench_audio(tmp: Path, seconds: float) -> None:
    import soundfile as sf
    from torchaudio.compliance import kaldi

    gen = torch.Generator().manual_seed(0)
    clips = [torch.randn(16000, generator=gen) * 0.1 for _ in range(32)]
    adapter = AudioAdapter(AudioConfig.preset("speechcommands"))
    paths = []
    for i, clip in enumerate(clips[:8]):
        paths.append(tmp / f"clip{i}.wav")
        sf.write(paths[-1], clip.numpy(), 16000)

    def ours() -> int:
        adapter.collate([adapter(c) for c in clips])
        return len(clips)

    def from_files() -> int:
        adapter.collate([adapter(p) for p in paths])
        return len(paths)

    def reference() -> int:
        for c in clips:
            kaldi.fbank(c[None], htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
                        num_mel_bins=128, dither=0.0, frame_shift=10)  # fmt: skip
        return len(clips)

    ours_rate, ref_rate = rate(ours, seconds), rate(reference, seconds)
    print(f"audio front end, 1 s clips -> 1x128x128  clips: {ours_rate}  (kaldi.fbank alone {ref_rate.cpu:.1f}/CPU-s; "
          f"ratio {ours_rate.cpu / ref_rate.cpu:.2f})")  # fmt: skip
    print(f"audio wav decode + front end             clips: {rate(from_files, seconds)}")


def numpy_render(points: np.ndarray, size: int) -> np.ndarray:
    """Reference depth render of one normalised cloud [N, 3] -> [3, S, S] with numpy."""
    out = np.zeros((3, size, size), np.float32)
    cell = np.clip(((points + 1.0) * (size / 2.0)).astype(np.int64), 0, size - 1)
    value = ((points + 1.0) * 0.5).astype(np.float32)
    for axis in range(3):
        u, v = (axis + 1) % 3, (axis + 2) % 3
        np.maximum.at(out[axis], (size - 1 - cell[:, v], cell[:, u]), value[:, axis])
    return out


def bench_points(seconds: float, batch: int = 64) -> None:
    gen = torch.Generator().manual_seed(0)
    clouds = normalize_points(torch.randn(batch, 8192, 3, generator=gen))
    adapter = PointsAdapter(PointsConfig(num_points=0))
    assert np.allclose(project_depth(clouds[:1], 224)[0].numpy(), numpy_render(clouds[0].numpy(), 224))

    def ours() -> int:
        adapter.project_batch(clouds)
        return batch

    def per_cloud() -> int:
        adapter.collate([adapter(c) for c in clouds[:16]])
        return 16

    def reference() -> int:
        for c in clouds[:8].numpy():
            numpy_render(c, 224)
        return 8

    ours_rate, ref_rate = rate(ours, seconds), rate(reference, seconds)
    print(f"points projection, 8192 pts -> 3x224x224 (batch {batch})  clouds: {ours_rate}  "
          f"(numpy reference {ref_rate.cpu:.1f}/CPU-s; ratio {ours_rate.cpu / ref_rate.cpu:.1f})")  # fmt: skip
    print(f"points adapter per cloud (normalise + project)   clouds: {rate(per_cloud, seconds)}")


def write_video(path: Path, gop: int, frames: int = 300, width: int = 640, height: int = 360) -> None:
    """A 10 s 640×360 30 fps H.264 file with moving content, a keyframe at least every ``gop`` frames."""
    import av

    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(gop)}
        for t in range(frames):
            image = np.stack([(x + 4 * t) % 256, (y + 2 * t) % 256, ((x + y) // 2 + t) % 256], -1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def bench_video(tmp: Path, seconds: float, gop: int) -> None:
    path = tmp / "bench.mp4"
    write_video(path, gop)
    cfg = VideoConfig()  # 16 frames, dense stride 4, 224, grid 4×4 -> 3×896×896
    for backend in ("decord", "pyav"):
        adapter = VideoAdapter(cfg, backend=backend)

        def ours(adapter: VideoAdapter = adapter) -> int:
            adapter(path)
            return 1

        def reference(backend: str = backend) -> int:
            source = open_video(path, backend)
            source.get(sample_frame_indices(source.num_frames, cfg).tolist())
            return 1

        ours_rate, ref_rate = rate(ours, seconds), rate(reference, seconds)
        print(f"video decode + tile, 16 frames 640x360 -> 3x896x896 ({backend}, GOP {gop})  clips: {ours_rate}  "
              f"(decode alone {ref_rate.cpu:.2f}/CPU-s; ratio {ours_rate.cpu / ref_rate.cpu:.2f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    parser.add_argument("--gop", type=int, default=250, help="keyframe interval of the test video (x264 default 250)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {cpu}, {cores} cores usable, torch threads {torch.get_num_threads()}, python "
          f"{platform.python_version()}, torch {torch.__version__}, load avg {os.getloadavg()[0]:.1f}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        bench_audio(Path(tmp), args.seconds)
        bench_points(args.seconds)
        bench_video(Path(tmp), args.seconds, args.gop)


if __name__ == "__main__":
    main()
