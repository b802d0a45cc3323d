"""Writers of small real media files for the adapter tests (soundfile, PyAV, hand-written PLY).

A plain module (not a conftest) so the tests can import the helpers by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000


def tone(freq_hz: float, seconds: float, start_s: float = 0.0, stop_s: float | None = None, rate: int = SAMPLE_RATE):
    """A sine of amplitude 0.5 between ``start_s`` and ``stop_s``, silence elsewhere; float32 [S]."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq_hz * t)
    stop_s = seconds if stop_s is None else stop_s
    wave[(t < start_s) | (t >= stop_s)] = 0.0
    return wave.astype(np.float32)


def write_sound(path: Path, wave: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """wav / flac / ogg with soundfile; wave is [S] or [S, C]."""
    import soundfile as sf

    sf.write(path, wave, rate)
    return path


def write_pyav_audio(path: Path, wave: np.ndarray, rate: int = SAMPLE_RATE, codec: str = "mp3") -> Path:
    """A compressed mono audio file written by PyAV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(wave[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_mp4(path: Path, frames: np.ndarray, fps: int = 30) -> Path:
    """An H.264 mp4 from uint8 frames [T, H, W, 3] (H, W even)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def gray_frames(count: int, height: int = 48, width: int = 64, step: int = 6) -> np.ndarray:
    """Frames whose every pixel is ``step · t``: the frame index can be read back from any pixel."""
    levels = (np.arange(count) * step).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def write_ply(path: Path, points: np.ndarray, binary: bool = True) -> Path:
    """A PLY point cloud (x, y, z float32), binary little-endian or ascii."""
    header = (
        f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\nelement vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    )
    body = points.astype("<f4").tobytes() if binary else "".join(f"{x} {y} {z}\n" for x, y, z in points).encode()
    path.write_bytes(header.encode() + body)
    return path
