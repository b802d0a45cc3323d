"""Decoding raw files into arrays, with fallbacks between backends.

Backends: soundfile (wav, flac, ogg) and PyAV (compressed audio and the audio track of video files) for audio; decord
(primary) and PyAV (fallback, and where decord has no wheel) for video; built-in readers for PLY (open3d for unusual
layouts) and ASCII xyz/pts, open3d for pcd, and numpy for point clouds (meshes are sampled with our own seeded,
area-weighted sampler; OFF meshes are read without open3d); PIL for images; csv / numpy for time series.

An unreadable, empty, truncated or mislabelled file raises :class:`~unilk.errors.InputError` naming the file and the
reason. open3d and decord are imported inside the functions that use them.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unilk.errors import InputError
from unilk.once import log_once

__all__ = [
    "AUDIO_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_RATE_RANGE",
    "AudioLimits",
    "IMAGE_EXTENSIONS",
    "POINT_EXTENSIONS",
    "SERIES_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "PathLike",
    "SeriesData",
    "VideoSource",
    "load_audio",
    "image_to_array",
    "load_image",
    "load_points",
    "load_series",
    "open_video",
    "sample_mesh_surface",
    "sample_name",
    "series_float32",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

_SOUNDFILE_EXTENSIONS = {".wav", ".flac", ".ogg"}
_PYAV_AUDIO_EXTENSIONS = {".mp3", ".m4a", ".aac", ".opus", ".mp4", ".mkv", ".webm", ".mov", ".avi"}
AUDIO_EXTENSIONS = frozenset(_SOUNDFILE_EXTENSIONS | _PYAV_AUDIO_EXTENSIONS)
VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v"})
_O3D_CLOUD_EXTENSIONS = {".ply", ".pcd", ".xyz", ".pts"}
_O3D_MESH_EXTENSIONS = {".off", ".obj", ".stl"}
_NUMPY_POINT_EXTENSIONS = {".npy", ".npz", ".txt"}
POINT_EXTENSIONS = frozenset(_O3D_CLOUD_EXTENSIONS | _O3D_MESH_EXTENSIONS | _NUMPY_POINT_EXTENSIONS)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
SERIES_EXTENSIONS = frozenset({".csv", ".npy", ".npz"})


def sample_name(sample: Any) -> str:
    """A short human-readable name of a sample, for error messages."""
    if isinstance(sample, (str, os.PathLike)):
        return str(sample)
    if isinstance(sample, (bytes, bytearray)):
        return f"<{len(sample)} bytes>"
    shape = getattr(sample, "shape", None)
    if shape is not None:
        return f"<{type(sample).__name__} of shape {tuple(shape)}>"
    return f"<{type(sample).__name__}>"


def _check_file(path: PathLike, extensions: frozenset[str], kind: str) -> Path:
    """Check that ``path`` exists, is not empty and has a known extension; return it as a Path."""
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise InputError(f"{path}: is a directory; pass the path of a {kind} file")
        if path.exists():  # a FIFO, socket or device: reading it could block or never end
            raise InputError(f"{path}: not a regular file (a pipe, socket or device); pass the path of a {kind} file")
        raise InputError(f"{path}: no such {kind} file; pass the path of an existing file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes); expected an encoded {kind} file")
    if path.suffix.lower() not in extensions:
        raise InputError(
            f"{path}: extension {path.suffix!r} is not a known {kind} format; expected one of {sorted(extensions)}"
        )
    return path


# ----------------------------------------------------------------------------------------------------------- audio


def _wav_truncation(path: Path) -> str | None:
    """Return a reason if a RIFF/WAVE file is shorter than its header declares, else None."""
    with path.open("rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    riff_size = struct.unpack("<I", head[4:8])[0]
    if riff_size in (0, 0xFFFFFFFF):  # streaming writers leave the size unknown: nothing to compare against
        return None
    declared = riff_size + 8
    actual = path.stat().st_size
    if actual < declared:
        return f"the RIFF header declares {declared} bytes but the file has {actual} (truncated)"
    return None


_SOUNDFILE_FORMATS = {".wav": {"WAV", "WAVEX", "RF64"}, ".flac": {"FLAC"}, ".ogg": {"OGG"}}

#: sample rates (Hz) accepted by default; a header outside them is a damaged or hostile file, not audio to resample.
DEFAULT_RATE_RANGE = (1000, 192000)
_BLOCK_FRAMES = 1 << 16


@dataclass(frozen=True)
class AudioLimits:
    """What :func:`load_audio` may decode, checked from the header before decoding.

    Attributes:
        rate_range: accepted sample rates ``(low, high)`` in Hz, inclusive.
        max_seconds: decode at most this many seconds from the start (None: all); one more frame is read so the
            caller can tell that the clip was longer.
        mono: mix the channels down block by block while decoding, so memory does not grow with the channel count.
    """

    rate_range: tuple[int, int] = DEFAULT_RATE_RANGE
    max_seconds: float | None = None
    mono: bool = False

    def max_frames(self, rate: int) -> int | None:
        """Frames to decode at ``rate`` (one more than ``max_seconds`` holds), or None for all."""
        return None if self.max_seconds is None else math.ceil(self.max_seconds * rate) + 1


def _check_rate(rate: int, limits: AudioLimits, name: str) -> None:
    low, high = limits.rate_range
    if not low <= rate <= high:
        raise InputError(
            f"{name}: the header declares a sample rate of {rate} Hz, outside the accepted {low}-{high} Hz; the file "
            "is damaged or mislabelled. Fix: re-export it, or widen AudioConfig.min_sample_rate/max_sample_rate"
        )


def _read_soundfile(source: Path | io.BytesIO, limits: AudioLimits, name: str) -> tuple[np.ndarray, int]:
    """Decode with soundfile, block by block; returns float32 [channels, samples] and the sample rate."""
    import soundfile as sf

    with sf.SoundFile(source if isinstance(source, io.BytesIO) else str(source)) as f:
        if isinstance(source, Path):
            expected = _SOUNDFILE_FORMATS.get(source.suffix.lower(), set())
            if f.format not in expected:
                message = "%s: the content is %s, not what the extension says; decoding it anyway"
                log_once(logger, ("content", source.suffix.lower(), f.format), message, name, f.format)
        rate = int(f.samplerate)
        _check_rate(rate, limits, name)
        wanted = limits.max_frames(rate)
        channels = 1 if limits.mono else f.channels
        frames = -1 if wanted is None else min(wanted, f.frames) if f.frames > 0 else wanted
        # decoded block by block into one array (no list of blocks to concatenate: half the peak memory)
        data = np.empty((max(frames, 0), channels), np.float32) if frames >= 0 else None
        blocks, filled = [], 0
        for block in f.blocks(blocksize=_BLOCK_FRAMES, frames=frames, dtype="float32", always_2d=True):
            block = block.mean(axis=1, keepdims=True) if limits.mono else block
            if data is None:
                blocks.append(block.copy())
            else:
                data[filled : filled + len(block)] = block
            filled += len(block)
    if data is None:
        data = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)
    return np.ascontiguousarray(data[:filled].T), rate


def _read_pyav_audio(source: Path | io.BytesIO, limits: AudioLimits, name: str) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with PyAV; returns float32 [channels, samples] and the sample rate."""
    import av

    with av.open(source if isinstance(source, io.BytesIO) else str(source)) as container:
        if not container.streams.audio:
            raise ValueError("the container has no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        _check_rate(rate, limits, name)
        wanted = limits.max_frames(rate)
        # Resample to planar float at the native rate and layout: decoders emit several sample formats.
        resampler = av.AudioResampler(format="fltp", rate=rate)
        chunks: list[np.ndarray] = []
        count = 0

        def keep(frames: list[Any]) -> None:
            nonlocal count
            for out in frames:
                array = out.to_ndarray()
                chunks.append(array.mean(axis=0, keepdims=True) if limits.mono else array)
                count += array.shape[1]

        for frame in container.decode(stream):
            keep(resampler.resample(frame))
            if wanted is not None and count >= wanted:
                break
        else:
            keep(resampler.resample(None))
    if not chunks:
        return np.zeros((1, 0), dtype=np.float32), rate
    data = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    return data if wanted is None else data[:, :wanted], rate


def load_audio(source: PathLike | bytes, limits: AudioLimits | None = None) -> tuple[np.ndarray, int]:
    """Decode an audio file (or the audio track of a video file).

    soundfile reads wav/flac/ogg; PyAV reads everything else and is the fallback when soundfile fails. A file whose
    content does not match its extension (e.g. an mp3 saved as ``.wav``) is decoded with a warning. The sample rate is
    checked from the header before anything is decoded, and decoding stops after ``limits.max_seconds``, so memory
    follows what the caller needs, not what the header declares.

    Args:
        source: a path, or the encoded bytes of a file.
        limits: accepted rates, how much to decode and whether to mix down (default :class:`AudioLimits`).

    Returns:
        ``(waveform, sample_rate)``: float32 array [channels, samples] and the rate in Hz.

    Raises:
        InputError: the file is missing, empty, truncated, of an unknown extension, declares a sample rate outside
            ``limits.rate_range`` or cannot be decoded by any backend.
    """
    limits = limits or AudioLimits()
    name = sample_name(source)
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise InputError(f"{name}: empty audio bytes; expected an encoded audio file")
        attempts: list[tuple[str, Any]] = [("soundfile", _read_soundfile), ("PyAV", _read_pyav_audio)]
        errors = []
        for backend, reader in attempts:
            try:
                return reader(io.BytesIO(bytes(source)), limits, name)
            except InputError:
                raise
            except Exception as err:  # any backend failure means "try the next one"
                errors.append(f"{backend}: {err}")
        raise InputError(f"{name}: cannot decode audio ({'; '.join(errors)}); pass a valid audio file")

    path = _check_file(source, AUDIO_EXTENSIONS, "audio")
    ext = path.suffix.lower()
    if ext == ".wav" and (reason := _wav_truncation(path)):
        raise InputError(f"{path}: {reason}; re-export or re-download the file")
    order = (
        [("soundfile", _read_soundfile), ("PyAV", _read_pyav_audio)]
        if ext in _SOUNDFILE_EXTENSIONS
        else [("PyAV", _read_pyav_audio)]
    )
    errors = []
    for i, (backend, reader) in enumerate(order):
        try:
            waveform, rate = reader(path, limits, str(path))
        except InputError:
            raise
        except Exception as err:  # any backend failure means "try the next one"
            errors.append(f"{backend}: {err}")
            continue
        if i > 0:
            message = "%s: decoded with %s after %s (is the extension wrong?)"
            log_once(logger, ("fallback", Path(path).suffix.lower(), backend), message, path, backend, errors[-1])
        return waveform, rate
    raise InputError(f"{path}: cannot decode audio ({'; '.join(errors)}); check the file is complete and valid")


# ----------------------------------------------------------------------------------------------------------- video


class VideoSource:
    """An opened video: frame count, frame rate and random access to frames by index.

    Decord is tried first; PyAV is the fallback (it seeks to the keyframe before the first index asked and decodes
    up to the last).
    Use :func:`open_video` to build one.

    Attributes:
        path: the file.
        num_frames: number of decodable frames.
        fps: average frame rate (frames per second).
        backend: ``"decord"`` or ``"pyav"``.
        frame_size: (height, width) of a decoded frame from the header, or None when the header does not say.
    """

    def __init__(
        self,
        path: Path,
        num_frames: int,
        fps: float,
        backend: str,
        reader: Any = None,
        fallback: bool = False,
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        self.path = path
        self.num_frames = num_frames
        self.fps = fps
        self.backend = backend
        self.frame_size = frame_size
        self._reader = reader
        self._fallback = fallback  # decode with PyAV where decord fails (it cannot copy frames of some sizes)

    def get(self, indices: Sequence[int]) -> np.ndarray:
        """Decode frames by index.

        Args:
            indices: frame indices in [0, num_frames), any order, repeats allowed.

        Returns:
            uint8 array [T, H, W, 3] (RGB), in the order of ``indices``.

        Raises:
            InputError: an index is out of range or the frames cannot be decoded.
        """
        idx = [int(i) for i in indices]
        if not idx or min(idx) < 0 or max(idx) >= self.num_frames:
            raise InputError(
                f"{self.path}: frame indices {idx[:4]}... out of range; the video has {self.num_frames} frames"
            )
        try:
            if self.backend == "decord":
                try:
                    return self._reader.get_batch(idx).asnumpy()
                except Exception as err:  # decord raises its own error types
                    if not self._fallback:
                        raise
                    logger.debug("%s: decord cannot decode frames (%s); trying PyAV", self.path, err)
                    return _pyav_frames(self.path, idx, self.fps)
            elif self.backend == "pyav":
                return _pyav_frames(self.path, idx, self.fps)
            else:
                raise AssertionError(f"unknown video backend {self.backend!r}")
        except InputError:
            raise
        except Exception as err:  # decoder errors are reported as bad input
            raise InputError(
                f"{self.path}: cannot decode frames {idx[:4]}... ({err}); the file may be damaged"
            ) from err


def _pyav_frames(path: Path, indices: list[int], fps: float) -> np.ndarray:
    """Decode the requested frames with PyAV.

    Seeks to the keyframe before the first frame wanted and numbers frames by their timestamps (frame = time · fps,
    exact for constant-rate video); a stream without timestamps is decoded from the start and counted instead.
    """
    import av

    wanted = set(indices)
    first, last = min(indices), max(indices)
    found: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = stream.start_time or 0
        use_pts = fps > 0 and stream.time_base is not None
        if use_pts and first > 0:
            container.seek(base + int(first / fps / stream.time_base), stream=stream, backward=True)
        for count, frame in enumerate(container.decode(stream)):
            index = (
                round(float((frame.pts - base) * stream.time_base) * fps)
                if use_pts and frame.pts is not None
                else count
            )
            if index in wanted:
                found[index] = frame.to_ndarray(format="rgb24")
            if index >= last:
                break
    missing = wanted - set(found)
    if missing:
        raise InputError(f"{path}: frames {sorted(missing)[:4]} could not be decoded (truncated file?)")
    return np.stack([found[i] for i in indices])


def _pyav_count(path: Path) -> tuple[int, float, tuple[int, int] | None]:
    """Count frames by demuxing (containers often carry no or a wrong frame count); return (count, fps, frame size).

    Demuxing reads packets without decoding them, so it is cheap; one packet holds one frame for the usual codecs.
    """
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("the container has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        size = _stream_frame_size(stream)
        count = sum(1 for packet in container.demux(stream) if packet.size > 0)
    return count, fps, size


def _stream_frame_size(stream: Any) -> tuple[int, int] | None:
    """(height, width) a PyAV video stream's header declares, or None."""
    height, width = stream.codec_context.height, stream.codec_context.width
    return (int(height), int(width)) if height and width else None


def _header_frame_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from a video's header (PyAV reads only the header: well under a millisecond), or None."""
    try:
        import av

        with av.open(str(path)) as container:
            return _stream_frame_size(container.streams.video[0]) if container.streams.video else None
    except Exception as err:  # the size is a hint for reading frames in bounded memory; decord opened the file
        logger.debug("%s: no frame size from the header (%s)", path, err)
        return None


def open_video(path: PathLike, backend: str = "auto") -> VideoSource:
    """Open a video file for frame access.

    Args:
        path: the video file.
        backend: ``"auto"`` (decord, falling back to PyAV), ``"decord"`` or ``"pyav"``.

    Returns:
        A :class:`VideoSource`.

    Raises:
        InputError: the file is missing, empty, of an unknown extension, has no decodable frames or cannot be opened.
    """
    path = _check_file(path, VIDEO_EXTENSIONS, "video")
    errors: list[str] = []
    if backend not in ("auto", "decord", "pyav"):
        raise InputError(f"{path}: unknown video backend {backend!r}; expected 'auto', 'decord' or 'pyav'")
    if backend in ("auto", "decord"):
        try:
            import decord

            reader = decord.VideoReader(str(path), num_threads=0)
            n = len(reader)
            if n > 0:
                fps, size = float(reader.get_avg_fps()), _header_frame_size(path)
                return VideoSource(path, n, fps, "decord", reader, fallback=backend == "auto", frame_size=size)
            errors.append("decord: no frames")
        except ImportError as err:
            errors.append(f"decord: not installed ({err}; `pip install decord` on Linux x86-64)")
        except Exception as err:  # decord raises its own error types; fall back to PyAV
            errors.append(f"decord: {err}")
        if backend == "decord":
            raise InputError(f"{path}: cannot open video ({'; '.join(errors)})")
        logger.debug("%s: decord failed (%s); trying PyAV", path, errors[-1])
    try:
        n, fps, size = _pyav_count(path)
    except Exception as err:  # any decoder failure is a bad input
        errors.append(f"PyAV: {err}")
        raise InputError(
            f"{path}: cannot open video ({'; '.join(errors)}); check the file is a complete video"
        ) from err
    if n == 0:
        raise InputError(f"{path}: the video has no decodable frames; expected at least 1")
    return VideoSource(path, n, fps, "pyav", frame_size=size)


# ---------------------------------------------------------------------------------------------------------- points

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


class _UnsupportedPlyError(ValueError):
    """A valid-looking PLY layout the built-in reader does not handle (open3d may)."""


def _read_ply_vertices(path: Path) -> np.ndarray:
    """Read the x, y, z vertex properties of a PLY file (ascii or binary) without open3d."""
    raw = path.read_bytes()
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise ValueError("not a PLY file (no 'ply' magic or 'end_header')")
    header = raw[:end].decode("ascii", errors="replace").splitlines()
    body = raw[raw.index(b"\n", end) + 1 :]
    fmt, count, props, elements = "", 0, [], []
    for line in header:
        words = line.split()
        if not words:
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append(words[1])
            if words[1] == "vertex":
                count = int(words[2])
                if count < 0:
                    raise ValueError(f"the header declares {count} vertices")
        elif words[0] == "property" and elements[-1:] == ["vertex"]:
            if words[1] == "list":
                raise _UnsupportedPlyError("list properties in the vertex element")
            props.append((words[2], _PLY_TYPES[words[1]]))
    if elements[:1] != ["vertex"] or not {"x", "y", "z"} <= {p for p, _ in props}:
        raise _UnsupportedPlyError("the vertex element must come first and have x, y, z properties")
    if count == 0:
        return np.zeros((0, 3), np.float32)
    if fmt == "ascii":
        table = np.loadtxt(io.BytesIO(body), max_rows=count, ndmin=2)
        if table.shape[0] < count:
            raise ValueError(f"header declares {count} vertices, found {table.shape[0]} (truncated)")
        names = [p for p, _ in props]
        return table[:, [names.index("x"), names.index("y"), names.index("z")]].astype(np.float32)
    if fmt in ("binary_little_endian", "binary_big_endian"):
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(p, order + t) for p, t in props])
        if len(body) < dtype.itemsize * count:
            raise ValueError(f"header declares {count} vertices, the file holds {len(body) // dtype.itemsize}")
        table = np.frombuffer(body, dtype=dtype, count=count)
        return np.stack([table["x"], table["y"], table["z"]], axis=1).astype(np.float32)
    raise _UnsupportedPlyError(f"unknown PLY format {fmt!r}")


def _import_open3d() -> Any:
    """Import open3d or raise ImportError with an install hint."""
    try:
        import open3d
    except ImportError as err:  # open3d also fails when a system library such as libusb is missing
        raise ImportError(
            f"open3d cannot be imported ({err}); `pip install open3d` (Linux also needs libusb-1.0-0)"
        ) from err
    return open3d


def load_points(path: PathLike, mesh_points: int = 8192) -> np.ndarray:
    """Read a point cloud, or sample points from a mesh.

    Formats: ``.ply`` (built-in reader, open3d for unusual layouts), ``.xyz .pts`` (ASCII, one point per line; a
    ``.pts`` may start with its point count), ``.pcd`` (open3d); meshes ``.off`` (built-in
    reader) and ``.obj .stl`` (open3d), of which ``mesh_points`` points are sampled uniformly over the surface (seeded);
    ``.npy .npz .txt`` (numpy; the first three columns are x, y, z; an ``.npz`` holds a ``points`` or ``xyz`` array,
    or a single array).

    Args:
        path: the file.
        mesh_points: how many points to sample from a mesh.

    Returns:
        float32 array [N, 3]; N may be 0 (the adapter rejects empty clouds).

    Raises:
        InputError: the file is missing, empty, of an unknown extension or cannot be parsed.
    """
    path = _check_file(path, POINT_EXTENSIONS, "point cloud")
    ext = path.suffix.lower()
    try:
        if ext == ".npy":
            array = np.load(path, allow_pickle=False)
        elif ext == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = [k for k in ("points", "xyz") if k in archive.files] or archive.files
                if not keys:
                    raise ValueError("the archive holds no arrays")
                if len(keys) != 1 and keys[0] not in ("points", "xyz"):
                    raise ValueError(f"cannot tell which array holds the points among {archive.files}")
                array = archive[keys[0]]
        elif ext == ".txt":
            text = path.read_text()
            array = np.loadtxt(io.StringIO(text.replace(",", " ")), ndmin=2)
        elif ext in _O3D_CLOUD_EXTENSIONS:
            array = _read_o3d_cloud(path)
        elif ext in _O3D_MESH_EXTENSIONS:
            array = _read_mesh_points(path, mesh_points)
        else:
            raise AssertionError(f"extension {ext} passed the check but has no reader")
    except ImportError as err:
        raise InputError(f"{path}: {err}") from err
    except InputError:
        raise
    except Exception as err:  # parser errors of any backend are bad input
        raise InputError(f"{path}: cannot read points ({err}); check the file is complete and valid") from err
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] < 3:
        raise InputError(f"{path}: points have shape {array.shape}; expected [N, 3] or more columns")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"{path}: points of dtype {array.dtype}; expected real numbers (x, y, z columns)")
    return np.ascontiguousarray(array[:, :3], dtype=np.float32)


def _read_off(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse an OFF mesh into vertices [V, 3] and triangles [F, 3] (polygons fan-triangulated)."""
    tokens = path.read_text().split()
    if not tokens or not tokens[0].startswith("OFF"):
        raise ValueError("not an OFF file (no 'OFF' header)")
    # ModelNet40 has files whose header runs into the counts ("OFF490 518 0")
    head = [tokens[0][3:]] if len(tokens[0]) > 3 else []
    rest = head + tokens[1:]
    if len(rest) < 3:
        raise ValueError("the OFF header has no vertex, face and edge counts")
    num_vertices, num_faces = int(rest[0]), int(rest[1])
    values = rest[3:]
    if len(values) < 3 * num_vertices:
        raise ValueError(f"header declares {num_vertices} vertices, the file holds fewer (truncated)")
    vertices = np.asarray(values[: 3 * num_vertices], dtype=np.float64).reshape(num_vertices, 3)
    cursor, triangles = 3 * num_vertices, []
    for _ in range(num_faces):
        if cursor >= len(values):
            raise ValueError(f"header declares {num_faces} faces, the file holds fewer (truncated)")
        size = int(values[cursor])
        polygon = [int(v) for v in values[cursor + 1 : cursor + 1 + size]]
        triangles.extend((polygon[0], polygon[i], polygon[i + 1]) for i in range(1, size - 1))
        cursor += 1 + size
    return vertices, np.asarray(triangles, dtype=np.int64).reshape(-1, 3)


def sample_mesh_surface(vertices: np.ndarray, triangles: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Sample points uniformly over a triangle mesh's surface (area-weighted, seeded, so deterministic).

    Args:
        vertices: [V, 3].
        triangles: int [F, 3].
        count: points wanted.
        seed: seed of the sampler.

    Returns:
        float64 array [count, 3].
    """
    if len(triangles) and (triangles.min() < 0 or triangles.max() >= len(vertices)):
        bad = triangles[(triangles < 0) | (triangles >= len(vertices))][0]
        raise ValueError(f"a face refers to vertex {bad}, outside the {len(vertices)} vertices")
    if not np.isfinite(vertices).all():
        raise ValueError(f"{int((~np.isfinite(vertices).all(axis=1)).sum())} vertices have NaN or inf coordinates")
    corners = vertices[triangles]  # (F, 3 corners, 3)
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    if not areas.sum() > 0:
        raise ValueError("the mesh has no surface (all triangles are degenerate)")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(triangles), size=count, p=areas / areas.sum())
    u, v = rng.random((2, count))
    flip = u + v > 1  # fold points of the parallelogram back into the triangle
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    a, b, c = corners[chosen, 0], corners[chosen, 1], corners[chosen, 2]
    return a + u[:, None] * (b - a) + v[:, None] * (c - a)


def _read_mesh_points(path: Path, count: int) -> np.ndarray:
    """Sample ``count`` points from a mesh: OFF with the built-in reader (which also takes ModelNet's run-on headers
    such as ``OFF490 518 0``), OBJ and STL with open3d."""
    if path.suffix.lower() == ".off":
        vertices, triangles = _read_off(path)
    else:
        mesh = _import_open3d().io.read_triangle_mesh(str(path))
        vertices, triangles = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    if len(triangles) == 0:
        raise ValueError("the mesh has no triangles")
    return sample_mesh_surface(vertices, triangles, count)


def _read_o3d_cloud(path: Path) -> np.ndarray:
    """Read a cloud file: PLY with the built-in reader first, everything else (and unusual PLY layouts) with open3d.

    The built-in PLY reader comes first because open3d, given a truncated PLY, logs a warning and returns a cloud of
    the declared size filled with uninitialised memory; ours checks the size. ASCII xyz/pts are read with numpy when
    open3d cannot be imported.
    """
    ext = path.suffix.lower()
    if ext == ".ply":
        try:
            return _read_ply_vertices(path)
        except _UnsupportedPlyError as err:
            logger.debug("%s: %s; reading it with open3d", path, err)
    if ext in (".xyz", ".pts"):
        return _read_ascii_cloud(path)
    return np.asarray(_import_open3d().io.read_point_cloud(str(path)).points)


def _read_ascii_cloud(path: Path) -> np.ndarray:
    """Read an ASCII ``.xyz``/``.pts`` cloud: one point per line (x y z, then any other columns), separated by
    spaces or commas; a ``.pts`` may start with a line holding the point count (Leica), which is checked.

    Not open3d: it skips malformed lines without a word, reads a header-less ``.pts`` (ShapeNet's) as empty and a
    two-column file as no points.
    """
    lines = [line for line in path.read_text().replace(",", " ").splitlines() if line.strip()]
    first = lines[0].split() if lines else []
    if path.suffix.lower() == ".pts" and len(first) == 1 and first[0].isdigit():
        count, lines = int(first[0]), lines[1:]
        if len(lines) != count:
            raise ValueError(f"the first line declares {count} points, the file holds {len(lines)}")
    if not lines:
        return np.zeros((0, 3), np.float32)
    return np.loadtxt(lines, ndmin=2)


# ---------------------------------------------------------------------------------------------------------- images


#: largest image accepted by default, in pixels (checked from the header, before decoding).
DEFAULT_MAX_PIXELS = 40_000_000

# PIL modes whose pixels are not 8-bit: the numpy dtype they read as and the value that means "full intensity".
_WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 2**31 - 1.0, "F": 1.0}


def load_image(path: PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """Read an image file as a ``PIL.Image`` (RGB for 8-bit images; 16-bit, 32-bit and float images keep their mode,
    see :func:`image_to_array`), turned upright by its EXIF orientation tag as image viewers do.

    Args:
        path: the file.
        max_pixels: largest width × height accepted; checked from the header, before the pixels are decoded.

    Raises:
        InputError: the file is missing, empty, of an unknown extension, larger than ``max_pixels``, truncated or not
            an image.
    """
    import warnings

    from PIL import Image

    path = _check_file(path, IMAGE_EXTENSIONS, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own cap below is lower
            image = Image.open(path)
    except Exception as err:  # PIL raises several types for bad files
        raise InputError(f"{path}: cannot decode image ({err}); check the file is a complete image") from err
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise InputError(
                f"{path}: the header declares {width}x{height} = {width * height} pixels, above max_pixels="
                f"{max_pixels}; expected a smaller image. Fix: downscale it, or raise ImageConfig.max_pixels"
            )
        try:
            image.load()
            image = _upright(image, path)
            return image.copy() if image.mode in _WIDE_MODES else image.convert("RGB")
        except Exception as err:  # PIL raises several types for bad files
            raise InputError(f"{path}: cannot decode image ({err}); check the file is a complete image") from err


def _upright(image: Any, path: Path) -> Any:
    """The image as a viewer shows it: turned by its EXIF orientation tag (phone photos are stored sideways). An
    unreadable tag leaves the pixels as stored, with a log line."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image)
    except Exception as err:  # a damaged EXIF block does not make the pixels unreadable
        log_once(
            logger, ("exif", type(err).__name__), "%s: EXIF orientation unreadable (%s); pixels as stored", path, err
        )
        return image


def image_to_array(image: Any, name: str, reduce: int = 1) -> np.ndarray:
    """Pixels of a PIL image as RGB, scaled by the range of their type.

    8-bit modes give uint8 [H, W, 3]. Wider modes give float32 [H, W, 3] in [0, 1]: 16-bit integers divided by 65535
    (so a 16-bit image maps like its 8-bit twin), 32-bit integers by 2³¹ - 1, and float images taken as [0, 1].

    Args:
        image: a PIL image.
        name: the sample's name, for messages.
        reduce: an integer factor to box-downscale by first (each output pixel the mean of a reduce × reduce block),
            so a huge image never exists in memory as floats.

    Raises:
        InputError: negative integer pixels, or float pixels outside [0, 1] or not finite.
    """
    if image.mode not in _WIDE_MODES:
        rgb = image.convert("RGB")
        return np.asarray(rgb.reduce(reduce) if reduce > 1 else rgb)
    values = np.asarray(image).astype(np.float32)
    if values.ndim != 2:
        raise InputError(f"{name}: {image.mode} image of shape {values.shape}; expected one grey channel")
    if not np.isfinite(values).all():
        raise InputError(f"{name}: the image has NaN or inf pixels; expected finite values")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode == "F" and (low < 0 or high > 1):
        raise InputError(
            f"{name}: float image with values in [{low:g}, {high:g}]; expected [0, 1]. Fix: rescale it to [0, 1] "
            "(or save it as 8/16-bit)"
        )
    if low < 0:
        raise InputError(f"{name}: {image.mode} image with negative pixels ({low:g}); expected values >= 0")
    grey = _box_reduce(values, reduce) / _WIDE_MODES[image.mode]
    return np.repeat(grey[:, :, None], 3, axis=2)


def _box_reduce(values: np.ndarray, factor: int) -> np.ndarray:
    """Mean of factor × factor blocks of a 2-D array (partial blocks at the edges are dropped)."""
    if factor <= 1:
        return values
    height, width = values.shape[0] // factor, values.shape[1] // factor
    blocks = values[: height * factor, : width * factor].reshape(height, factor, width, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------- series


@dataclass(frozen=True)
class SeriesData:
    """A multivariate time series read from a file.

    Attributes:
        values: float32 array [T, D].
        columns: the D column names.
        timestamps: datetime64 array [T], or None when the file has no date column.
    """

    values: np.ndarray
    columns: tuple[str, ...]
    timestamps: np.ndarray | None


def load_series(path: PathLike) -> SeriesData:
    """Read a time series: a CSV whose optional first column ``date`` holds timestamps, or a numpy array [T, D].

    Args:
        path: ``.csv``, ``.npy`` or ``.npz`` (an npz holds ``values`` and optionally ``timestamps``). A numpy array
            [T, stations, features] (Corrformer's files) is flattened to [T, stations·features], station-major.

    Returns:
        A :class:`SeriesData`. NaN and inf are kept (the adapter decides); non-numeric cells raise.

    Raises:
        InputError: the file is missing, empty, of an unknown extension or not parseable.
    """
    path = _check_file(path, SERIES_EXTENSIONS, "time-series")
    ext = path.suffix.lower()
    try:
        if ext == ".csv":
            return _read_series_csv(path)
        if ext == ".npy":
            values = np.load(path, allow_pickle=False)
            timestamps = None
        elif ext == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                values = archive["values"]
                timestamps = archive["timestamps"].astype("datetime64[s]") if "timestamps" in archive else None
        else:
            raise AssertionError(f"extension {ext} passed the check but has no reader")
    except InputError:
        raise
    except Exception as err:  # parser errors are bad input
        raise InputError(f"{path}: cannot read the series ({err}); check the file") from err
    values = series_float32(values, str(path))
    if values.ndim == 1:
        values = values[:, None]
    elif values.ndim == 3:  # Corrformer's (T, stations, features): station-major channels
        values = values.reshape(values.shape[0], -1)
    if values.ndim != 2:
        raise InputError(f"{path}: series has shape {values.shape}; expected [T], [T, D] or [T, stations, features]")
    if timestamps is not None and timestamps.shape != values.shape[:1]:
        raise InputError(
            f"{path}: {timestamps.size} timestamps for {values.shape[0]} steps; expected one timestamp per step"
        )
    return SeriesData(values, tuple(f"c{i}" for i in range(values.shape[1])), timestamps)


def _read_series_csv(path: Path) -> SeriesData:
    """Parse a CSV with a header row; a first column named ``date``/``time``/``timestamp`` holds timestamps."""
    # utf-8-sig: spreadsheet programs start their CSV files with a byte-order mark; blank lines are not rows
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise InputError(f"{path}: the CSV has {len(rows)} row(s); expected a header and at least one data row")
    header = [h.strip() for h in rows[0]]
    has_time = header[0].lower() in ("date", "time", "timestamp", "datetime")
    body = rows[1:]
    widths = {len(r) for r in body}
    if widths != {len(header)}:
        raise InputError(f"{path}: rows have {sorted(widths)} cells but the header has {len(header)} (truncated?)")
    start = 1 if has_time else 0
    try:
        values = np.array([[float(c) for c in r[start:]] for r in body], dtype=np.float64)
        stamps = [r[0].strip().replace(" ", "T") for r in body]
        timestamps = np.array(stamps, dtype="datetime64[s]") if has_time else None
    except ValueError as err:
        raise InputError(f"{path}: a cell is not a number or a date ({err}); clean the CSV") from err
    return SeriesData(series_float32(values, str(path)), tuple(header[start:]), timestamps)


def series_float32(values: np.ndarray, name: str) -> np.ndarray:
    """Series values as float32.

    Raises:
        InputError: values that are not real numbers (strings, complex), or finite values beyond float32's range
            (they would silently become inf).
    """
    values = np.asarray(values)
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_) or np.iscomplexobj(values):
        raise InputError(f"{name}: series of dtype {values.dtype}; expected real numbers")
    with np.errstate(over="ignore"):
        narrow = np.asarray(values, dtype=np.float32)
    if np.issubdtype(values.dtype, np.floating) and (overflow := np.isinf(narrow) & np.isfinite(values)).any():
        raise InputError(
            f"{name}: {int(overflow.sum())} value(s) beyond float32's range (±3.4e38), e.g. {values[overflow][0]:g}; "
            "rescale the series"
        )
    return narrow
