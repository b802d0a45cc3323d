"""Small generated datasets with a learnable signal, written as real files in the real dataset layouts.

Every generator is deterministic from ``seed``, writes under ``root`` (created if needed), returns ``root``, and
produces files that the loaders of :mod:`unilk.datasets` read unchanged:

* ``make_speech_commands``: tones whose pitch and beep rhythm depend on the word -> ``SpeechCommands(root, split)``.
* ``make_esc50``: the same tones by category, 5 folds -> ``ESC50(root, split, test_fold)``.
* ``make_audioset``: sums of the tones of each clip's labels -> ``AudioSet(root, split)``, ``AudioSetJSON``.
* ``make_kinetics``: a square whose motion direction is the class -> ``Kinetics(root, split)`` (list or folders).
* ``make_modelnet``: primitive shapes, noise, random pose, ``.ply`` -> ``ModelNet40(root, split, extension=".ply")``.
* ``make_modelnet_h5``: the same shapes in PointNet's HDF5 files -> ``ModelNet40H5(root, split)``.
* ``make_series_classification``: series whose period depends on the class -> ``SeriesFolder(root, split)``.
* ``make_series_archive``: variable-length series whose cycle count is the class, in a UCR/UEA ``.ts`` archive ->
  ``UCRArchive(root, split)``.
* ``make_forecasting``: sums of sines per channel plus noise -> ``TSLibDataset(root / name, split)``.
* ``make_corrformer``: a daily cycle per station, in ×10 units -> ``CorrformerWeather(root, variable, split)``.
* ``make_image_folder``: stripes whose orientation is the class -> ``ImageFolder(root, split)``.

Use :func:`generate_into` rather than calling a generator on a folder you own: it writes only into a new or empty
folder, marks it (``.unilk_synthetic.json``, with the generator and its arguments), reuses it while the arguments are
the same and regenerates it, with a log line, when they change. A folder without the mark is never written into.

Sizes default to a few hundred small samples, generated in seconds. PLY files are written by a small built-in
binary writer (open3d is optional and often lacks a system library); mp4 files by PyAV (MPEG-4 part 2, one thread).
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unilk.errors import ConfigError

__all__ = [
    "MARKER",
    "generate_into",
    "generator_names",
    "make_audioset",
    "make_corrformer",
    "make_esc50",
    "make_forecasting",
    "make_image_folder",
    "make_kinetics",
    "make_modelnet",
    "make_modelnet_h5",
    "make_series_archive",
    "make_series_classification",
    "make_speech_commands",
    "tone_clip",
    "write_ply",
]

logger = logging.getLogger(__name__)

SHAPES = ("sphere", "cube", "cylinder", "cone", "torus")

#: the file that marks a folder as written by :func:`generate_into` (and says with which arguments).
MARKER = ".unilk_synthetic.json"


def generator_names() -> list[str]:
    """The generators of this module (``make_*``)."""
    return sorted(name for name in __all__ if name.startswith("make_"))


def generate_into(root: str | Path, generator: str, kwargs: Mapping[str, Any] | None = None) -> Path:
    """Write a synthetic dataset into ``root``, safely: never into a folder that holds anything but our own data.

    ``root`` must not exist, be empty, or carry the :data:`MARKER` of an earlier call. With the same generator and
    arguments the existing data is reused; with others the marked folder is deleted and regenerated (logged). The
    marker is written first (incomplete) and completed last, so an interrupted generation is redone.

    Args:
        root: the dataset folder.
        generator: a name from :func:`generator_names` (e.g. ``make_speech_commands``).
        kwargs: the generator's keyword arguments.

    Returns:
        ``root``.

    Raises:
        ConfigError: an unknown generator, ``root`` is a file, or ``root`` is a folder with other content.
    """
    if generator not in generator_names():
        raise ConfigError(f"synthetic generator: got {generator!r}, expected one of {generator_names()}")
    root = Path(root)
    wanted = {"generator": generator, "kwargs": json.loads(json.dumps(dict(kwargs or {}), default=str))}
    marker = root / MARKER
    if root.exists() and not root.is_dir():
        raise ConfigError(f"synthetic data root {str(root)!r} is a file; expected a new or empty folder")
    if marker.is_file():
        found = _read_marker(marker)
        if found.get("complete") and {k: found.get(k) for k in wanted} == wanted:
            return root
        logger.warning(
            "%s: synthetic data made by %s %s; regenerating it for %s %s",
            root,
            found.get("generator"),
            found.get("kwargs"),
            generator,
            wanted["kwargs"],
        )
        shutil.rmtree(root)
    elif root.is_dir() and any(root.iterdir()):
        raise ConfigError(
            f"synthetic data root {str(root)!r} holds files that unilk's generator did not write (no {MARKER}); "
            "refusing to write synthetic data into it. Fix: pick a new or empty folder for the synthetic data, or "
            "train on this folder as data (drop data.synthetic)"
        )
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({**wanted, "complete": False}))
    logger.info("generating synthetic dataset %s in %s", generator, root)
    globals()[generator](root, **wanted["kwargs"])
    marker.write_text(json.dumps({**wanted, "complete": True}))
    return root


def _read_marker(marker: Path) -> dict[str, Any]:
    try:
        found = json.loads(marker.read_text())
    except (OSError, ValueError):  # a damaged marker: the folder is still ours, so it is regenerated
        return {}
    return found if isinstance(found, dict) else {}


MOTIONS = ("right", "left", "down", "up")
_DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}
STRIPES = ("horizontal", "vertical", "diagonal", "checker")


def _check_sizes(owner: str, **sizes: int) -> None:
    """Raise ConfigError unless every size is a positive int."""
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{owner}: {name}={value!r}; expected an int >= 1")


# ------------------------------------------------------------------------------------------------------------ audio


def tone_clip(
    class_index: int, num_classes: int, rng: np.random.Generator, sample_rate: int = 16000, duration_s: float = 1.0
) -> np.ndarray:
    """A noisy beep pattern whose pitch and rhythm encode the class.

    Pitch: log-spaced between 300 and 3,000 Hz by class (±2 % jitter). Rhythm: 1 to 4 beeps (``class % 4 + 1``),
    evenly spaced with a random offset. Plus white noise at about 20 dB SNR.

    Args:
        class_index: the class, 0..num_classes-1.
        num_classes: number of classes (sets the pitch spacing).
        rng: the random generator (advanced by the call).
        sample_rate: Hz.
        duration_s: clip length in seconds.

    Returns:
        float32 array [samples] in [-1, 1].
    """
    n = int(sample_rate * duration_s)
    t = np.arange(n) / sample_rate
    frac = class_index / max(num_classes - 1, 1)
    pitch = 300.0 * 10.0**frac * rng.uniform(0.98, 1.02)
    beeps = class_index % 4 + 1
    period = duration_s / beeps
    phase = (t - rng.uniform(0, 0.2 * period)) % period
    envelope = (phase < 0.5 * period).astype(np.float64)
    wave = envelope * np.sin(2 * np.pi * pitch * t + rng.uniform(0, 2 * np.pi))
    wave = rng.uniform(0.3, 0.8) * wave + 0.03 * rng.standard_normal(n)
    return np.clip(wave, -1, 1).astype(np.float32)


def _write_wav(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM wav."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, sample_rate, subtype="PCM_16")


def make_speech_commands(
    root: str | Path,
    *,
    words: Sequence[str] = ("down", "go", "left", "no", "right", "stop", "up", "yes"),
    n_per_class: int = 30,
    seed: int = 0,
    sample_rate: int = 16000,
    duration_s: float = 1.0,
) -> Path:
    """Speech Commands v2 layout: ``root/<word>/<speaker>_nohash_<n>.wav`` plus the two split lists.

    Every 10th clip of a word (from the 1st) goes to ``validation_list.txt``, every 10th from the 2nd to
    ``testing_list.txt``; the rest is training, so each split has every word.

    Args:
        root: output folder.
        words: class names (folder names), sorted when read back.
        n_per_class: clips per word (>= 3 so every split gets one).
        seed: random seed.
        sample_rate: Hz.
        duration_s: seconds per clip.

    Returns:
        ``root``.
    """
    _check_sizes("make_speech_commands", n_per_class=n_per_class, sample_rate=sample_rate)
    root = Path(root)
    rng = np.random.default_rng(seed)
    words = sorted(words)
    lists: dict[str, list[str]] = {"validation_list.txt": [], "testing_list.txt": []}
    for k, word in enumerate(words):
        for i in range(n_per_class):
            rel = f"{word}/{rng.integers(16**8):08x}_nohash_{i}.wav"
            _write_wav(root / rel, tone_clip(k, len(words), rng, sample_rate, duration_s), sample_rate)
            if i % 10 == 0:
                lists["validation_list.txt"].append(rel)
            elif i % 10 == 1:
                lists["testing_list.txt"].append(rel)
    for name, rels in lists.items():
        (root / name).write_text("".join(f"{r}\n" for r in sorted(rels)))
    return root


def make_esc50(
    root: str | Path,
    *,
    categories: Sequence[str] = ("dog", "rain", "crying_baby", "clock_tick", "helicopter"),
    n_per_class: int = 10,
    seed: int = 0,
    sample_rate: int = 16000,
    duration_s: float = 1.0,
) -> Path:
    """ESC-50 layout: ``root/meta/esc50.csv`` and ``root/audio/{fold}-{clip}-{take}-{target}.wav``.

    Clip i of a category goes to fold ``i % 5 + 1``. (The real clips are 5 s at 44.1 kHz; the defaults here are short
    and 16 kHz so generation is fast.)

    Args:
        root: output folder.
        categories: class names, target = position.
        n_per_class: clips per category (>= 5 so every fold has each category).
        seed: random seed.
        sample_rate: Hz.
        duration_s: seconds per clip.

    Returns:
        ``root``.
    """
    _check_sizes("make_esc50", n_per_class=n_per_class, sample_rate=sample_rate)
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for target, category in enumerate(categories):
        for i in range(n_per_class):
            fold, clip = i % 5 + 1, int(rng.integers(100000, 999999))
            name = f"{fold}-{clip}-A-{target}.wav"
            _write_wav(
                root / "audio" / name, tone_clip(target, len(categories), rng, sample_rate, duration_s), sample_rate
            )
            rows.append([name, fold, target, category, "False", clip, "A"])
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with (root / "meta" / "esc50.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(sorted(rows))
    return root


def make_audioset(
    root: str | Path,
    *,
    num_classes: int = 6,
    n_clips: dict[str, int] | None = None,
    seed: int = 0,
    sample_rate: int = 16000,
    duration_s: float = 1.0,
    max_labels: int = 3,
) -> Path:
    """AudioSet layout: ``class_labels_indices.csv``, ``<split>_segments.csv`` and ``audio/<split>/<ytid>.wav``.

    Each clip has 1..``max_labels`` labels and is the sum of those classes' tones. An AST-style JSON datafile
    ``<split>.json`` listing the same clips is written too (read with ``AudioSetJSON``).

    Args:
        root: output folder.
        num_classes: number of classes (MIDs ``/m/syn00``...).
        n_clips: clips per split; default ``{"balanced_train": 120, "eval": 60}``.
        seed: random seed.
        sample_rate: Hz.
        duration_s: seconds per clip.
        max_labels: most labels of one clip.

    Returns:
        ``root``.
    """
    _check_sizes("make_audioset", num_classes=num_classes, max_labels=max_labels)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mids = [f"/m/syn{k:02d}" for k in range(num_classes)]
    with (root / "class_labels_indices.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows([k, mid, f"Tone {k}"] for k, mid in enumerate(mids))
    for split, count in (n_clips or {"balanced_train": 120, "eval": 60}).items():
        lines = [f"# Segments csv created by unilk.datasets.synthetic (seed {seed})\n", "# YTID, start_seconds, ...\n"]
        entries = []
        for i in range(count):
            labels = sorted(rng.choice(num_classes, size=rng.integers(1, max_labels + 1), replace=False).tolist())
            wave = sum(tone_clip(k, num_classes, rng, sample_rate, duration_s) for k in labels) / len(labels)
            ytid = f"syn{split[:2]}{i:05d}"
            _write_wav(root / "audio" / split / f"{ytid}.wav", wave, sample_rate)
            codes = ",".join(mids[k] for k in labels)
            lines.append(f'{ytid}, 0.000, {duration_s:.3f}, "{codes}"\n')
            entries.append({"wav": f"audio/{split}/{ytid}.wav", "labels": codes})
        (root / f"{split}_segments.csv").write_text("".join(lines))
        (root / f"{split}.json").write_text(json.dumps({"data": entries}, indent=1))
    return root


# ------------------------------------------------------------------------------------------------------------ video


def _moving_square(motion: str, rng: np.random.Generator, num_frames: int, size: int) -> np.ndarray:
    """Frames uint8 [T, size, size, 3] of a coloured square crossing a dark noisy background in one direction."""
    dx, dy = _DIRECTIONS[motion]
    side = size // 5
    speed = rng.uniform(0.5, 1.0) * (size - side) / max(num_frames - 1, 1)
    # start so that the whole path stays inside the frame
    span = speed * (num_frames - 1)
    x0 = rng.uniform(0, size - side - span) if dx > 0 else rng.uniform(span, size - side) if dx < 0 else None
    y0 = rng.uniform(0, size - side - span) if dy > 0 else rng.uniform(span, size - side) if dy < 0 else None
    x0 = rng.uniform(0, size - side) if x0 is None else x0
    y0 = rng.uniform(0, size - side) if y0 is None else y0
    colour = rng.integers(128, 256, size=3)
    frames = rng.integers(0, 40, size=(num_frames, size, size, 3)).astype(np.uint8)
    for t in range(num_frames):
        x, y = round(x0 + dx * speed * t), round(y0 + dy * speed * t)
        frames[t, y : y + side, x : x + side] = colour
    return frames


def _write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode RGB frames [T, H, W, 3] to an MPEG-4 mp4 with PyAV (one thread, so the output is reproducible)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        # MPEG-4 part 2 rather than H.264: libx264 output varied between identical runs here (1 in ~10 files)
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 2_000_000
        stream.codec_context.thread_count = 1
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_kinetics(
    root: str | Path,
    *,
    classes: Sequence[str] = MOTIONS,
    n_per_class: int = 12,
    seed: int = 0,
    num_frames: int = 16,
    size: int = 64,
    fps: int = 8,
    val_fraction: float = 0.25,
) -> Path:
    """Kinetics layout: ``root/{train,val}/<class>/<id>.mp4`` plus the ``train.csv``/``val.csv`` ``path label`` lists.

    The class is the direction a square moves in (``right``, ``left``, ``down``, ``up``; with more classes the
    directions repeat). Start, speed, colour and background noise are random.

    Args:
        root: output folder.
        classes: class names; sorted when read back, labels in the lists follow that order.
        n_per_class: videos per class.
        seed: random seed.
        num_frames: frames per video.
        size: frame side in pixels (even).
        fps: frame rate.
        val_fraction: share of each class in ``val`` (at least one video).

    Returns:
        ``root``.
    """
    _check_sizes("make_kinetics", n_per_class=n_per_class, num_frames=num_frames, size=size, fps=fps)
    root = Path(root)
    rng = np.random.default_rng(seed)
    classes = sorted(classes)
    n_val = max(1, round(n_per_class * val_fraction))
    lists: dict[str, list[str]] = {"train": [], "val": []}
    for label, name in enumerate(classes):
        motion = MOTIONS[label % len(MOTIONS)]
        for i in range(n_per_class):
            split = "val" if i < n_val else "train"
            rel = f"{split}/{name}/{name}_{i:04d}.mp4"
            _write_mp4(root / rel, _moving_square(motion, rng, num_frames, size), fps)
            lists[split].append(f"{rel} {label}")
    for split, lines in lists.items():
        (root / f"{split}.csv").write_text("".join(f"{line}\n" for line in lines))
    return root


# ----------------------------------------------------------------------------------------------------------- points


def _shape_points(shape: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Points [n, 3] sampled on the surface of a unit-size primitive."""
    u, v = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    theta = 2 * np.pi * u
    if shape == "sphere":
        z = 2 * v - 1
        r = np.sqrt(1 - z**2)
        return np.stack([r * np.cos(theta), r * np.sin(theta), z], 1)
    elif shape == "cube":
        pts = rng.uniform(-1, 1, (n, 3))
        axis, sign = rng.integers(0, 3, n), rng.choice([-1.0, 1.0], n)
        pts[np.arange(n), axis] = sign
        return pts
    elif shape == "cylinder":
        return np.stack([np.cos(theta), np.sin(theta), 2 * v - 1], 1)
    elif shape == "cone":
        h = np.sqrt(v)  # uniform over the lateral surface
        return np.stack([h * np.cos(theta), h * np.sin(theta), 1 - 2 * h], 1)
    elif shape == "torus":
        phi = 2 * np.pi * v
        ring = 1 + 0.35 * np.cos(phi)
        return np.stack([ring * np.cos(theta), ring * np.sin(theta), 0.35 * np.sin(phi)], 1)
    else:
        raise ConfigError(f"synthetic points: shape={shape!r}; expected one of {list(SHAPES)}")


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3×3 rotation (QR of a Gaussian matrix with the sign fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _posed_cloud(shape: str, num_points: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """A primitive with Gaussian noise, random rotation, scale and translation, as float32 [num_points, 3]."""
    pts = _shape_points(shape, num_points, rng) + noise * rng.standard_normal((num_points, 3))
    pts = pts @ _random_rotation(rng).T * rng.uniform(0.5, 2.0) + rng.uniform(-1, 1, 3)
    return pts.astype(np.float32)


def write_ply(path: str | Path, points: np.ndarray) -> None:
    """Write points [N, 3] as a binary little-endian PLY with float x, y, z (readable by open3d and by unilk).

    Args:
        path: the output file.
        points: float array [N, 3].
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pts = np.ascontiguousarray(points, dtype="<f4")
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    )
    path.write_bytes(header.encode("ascii") + pts.tobytes())


def make_modelnet(
    root: str | Path,
    *,
    classes: Sequence[str] = SHAPES,
    n_per_class: int = 20,
    seed: int = 0,
    num_points: int = 1024,
    noise: float = 0.02,
    test_fraction: float = 0.25,
) -> Path:
    """ModelNet folder layout with ``.ply`` clouds: ``root/<class>/{train,test}/<class>_<nnnn>.ply``.

    Args:
        root: output folder.
        classes: shapes among ``sphere``, ``cube``, ``cylinder``, ``cone``, ``torus``.
        n_per_class: clouds per class.
        seed: random seed.
        num_points: points per cloud.
        noise: std of the Gaussian jitter, in units of the shape size.
        test_fraction: share of each class in ``test`` (at least one).

    Returns:
        ``root``.
    """
    _check_sizes("make_modelnet", n_per_class=n_per_class, num_points=num_points)
    root = Path(root)
    rng = np.random.default_rng(seed)
    n_test = max(1, round(n_per_class * test_fraction))
    for name in classes:
        for i in range(n_per_class):
            split = "test" if i < n_test else "train"
            write_ply(root / name / split / f"{name}_{i + 1:04d}.ply", _posed_cloud(name, num_points, noise, rng))
    return root


def make_modelnet_h5(
    root: str | Path,
    *,
    classes: Sequence[str] = SHAPES,
    n_per_class: dict[str, int] | None = None,
    seed: int = 0,
    num_points: int = 2048,
    noise: float = 0.02,
) -> Path:
    """PointNet HDF5 layout: ``ply_data_{train,test}0.h5`` (``data`` [N, P, 3], ``label`` [N, 1]), the file lists
    ``{train,test}_files.txt`` and ``shape_names.txt``.

    Args:
        root: output folder.
        classes: shapes (see :func:`make_modelnet`).
        n_per_class: clouds per class and split; default ``{"train": 16, "test": 4}``.
        seed: random seed.
        num_points: points per cloud.
        noise: jitter std.

    Returns:
        ``root``.
    """
    import h5py

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (root / "shape_names.txt").write_text("".join(f"{c}\n" for c in classes))
    for split, count in (n_per_class or {"train": 16, "test": 4}).items():
        labels = np.repeat(np.arange(len(classes)), count)
        data = np.stack([_posed_cloud(classes[k], num_points, noise, rng) for k in labels])
        with h5py.File(root / f"ply_data_{split}0.h5", "w") as f:
            f.create_dataset("data", data=data)
            f.create_dataset("label", data=labels[:, None].astype(np.uint8))
        (root / f"{split}_files.txt").write_text(f"data/modelnet40_ply_hdf5_2048/ply_data_{split}0.h5\n")
    return root


# ----------------------------------------------------------------------------------------------------------- series


def _hourly_dates(length: int, start: str = "2020-01-01T00:00:00") -> list[str]:
    """``length`` hourly timestamps as ``YYYY-MM-DD HH:MM:SS`` strings."""
    stamps = np.datetime64(start, "s") + np.arange(length) * np.timedelta64(3600, "s")
    return [str(s).replace("T", " ") for s in stamps]


def _write_series_csv(path: Path, dates: list[str], columns: Sequence[str], values: np.ndarray) -> None:
    """Write ``date`` + columns with 6 significant digits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["date", *columns])
        writer.writerows([d, *(f"{x:.6g}" for x in row)] for d, row in zip(dates, values))


def make_series_classification(
    root: str | Path,
    *,
    num_classes: int = 4,
    n_per_class: int = 30,
    seed: int = 0,
    length: int = 96,
    channels: int = 2,
    test_fraction: float = 0.25,
) -> Path:
    """Class-folder series: ``root/{train,test}/class_<k>/<id>.csv`` with a ``date`` column and ``channels`` columns.

    The period of class k is ``length / 2**(k + 1)`` steps (48, 24, 12, 6 for length 96); amplitude, phase, offset
    and noise are random per channel.

    Args:
        root: output folder.
        num_classes: classes (at most log2(length) - 1).
        n_per_class: series per class.
        seed: random seed.
        length: time steps per series.
        channels: columns per series.
        test_fraction: share of each class in ``test`` (at least one).

    Returns:
        ``root``.
    """
    _check_sizes("make_series_classification", num_classes=num_classes, n_per_class=n_per_class, channels=channels)
    if length / 2 ** (num_classes + 1) < 2:
        raise ConfigError(f"make_series_classification: length={length} is too short for {num_classes} periods")
    root = Path(root)
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None]
    dates = _hourly_dates(length)
    n_test = max(1, round(n_per_class * test_fraction))
    for k in range(num_classes):
        period = length / 2 ** (k + 1)
        for i in range(n_per_class):
            phase, amp = rng.uniform(0, 2 * np.pi, channels), rng.uniform(0.5, 2.0, channels)
            values = amp * np.sin(2 * np.pi * t / period + phase) + rng.normal(0, 1, channels)
            values = values + 0.2 * rng.standard_normal((length, channels))
            split = "test" if i < n_test else "train"
            path = root / split / f"class_{k}" / f"s{i:04d}.csv"
            _write_series_csv(path, dates, [f"c{c}" for c in range(channels)], values)
    return root


def make_series_archive(
    root: str | Path,
    *,
    name: str = "Synthetic",
    num_classes: int = 3,
    n_per_class: int = 20,
    seed: int = 0,
    min_length: int = 60,
    max_length: int = 120,
    channels: int = 2,
    test_fraction: float = 0.5,
    missing_fraction: float = 0.0,
) -> Path:
    """A UCR/UEA archive: ``root/<name>_TRAIN.ts`` and ``root/<name>_TEST.ts``, labels ``k0``, ``k1``, ...

    A series of class k holds ``k + 2`` sine cycles over its length (drawn from ``[min_length, max_length]``), with
    random phase, amplitude, offset and noise per channel, so the class survives resampling to any length.

    Args:
        root: output folder.
        name: the problem name.
        num_classes: classes.
        n_per_class: series per class (both splits).
        seed: random seed.
        min_length, max_length: range of the series lengths.
        channels: dimensions per series.
        test_fraction: share of each class in the test split (at least one).
        missing_fraction: share of values written as missing (``?``), never a whole step of a series' ends.

    Returns:
        ``root``.
    """
    _check_sizes("make_series_archive", num_classes=num_classes, n_per_class=n_per_class, channels=channels)
    if not 8 <= min_length <= max_length:
        raise ConfigError(f"make_series_archive: lengths {min_length}..{max_length}; expected 8 <= min <= max")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_test = max(1, round(n_per_class * test_fraction))
    lines: dict[str, list[str]] = {"TRAIN": [], "TEST": []}
    for i in range(n_per_class):
        for k in range(num_classes):
            length = int(rng.integers(min_length, max_length + 1))
            t = np.linspace(0.0, 1.0, length)[:, None]
            phase, amp = rng.uniform(0, 2 * np.pi, channels), rng.uniform(0.5, 2.0, channels)
            values = amp * np.sin(2 * np.pi * (k + 2) * t + phase) + rng.normal(0, 1, channels)
            values = values + 0.2 * rng.standard_normal((length, channels))
            cells = np.vectorize(lambda v: f"{v:.5f}")(values).astype(object)
            inner = cells[1:-1]
            inner[rng.random(inner.shape) < missing_fraction] = "?"
            dims = ":".join(",".join(cells[:, c]) for c in range(channels))
            lines["TEST" if i < n_test else "TRAIN"].append(f"{dims}:k{k}")
    labels = " ".join(f"k{k}" for k in range(num_classes))
    for split, rows in lines.items():
        header = [
            f"@problemName {name}",
            "@timeStamps false",
            f"@missing {str(missing_fraction > 0).lower()}",
            f"@univariate {str(channels == 1).lower()}",
            f"@dimensions {channels}",
            f"@equalLength {str(min_length == max_length).lower()}",
            f"@classLabel true {labels}",
            "@data",
        ]
        (root / f"{name}_{split}.ts").write_text("\n".join([*header, *rows]) + "\n")
    return root


def make_forecasting(
    root: str | Path,
    *,
    name: str = "synthetic.csv",
    length: int = 2000,
    channels: int = 3,
    seed: int = 0,
    noise: float = 0.05,
) -> Path:
    """A Time-Series-Library ``custom`` CSV ``root/<name>``: ``date``, ``c0``..., and the target ``OT`` last.

    Each channel is a sum of sines with periods 24 h and 168 h (daily and weekly) plus one random period, with
    random amplitudes and phases, an offset in the hundreds (so errors in original units differ from scaled ones)
    and Gaussian noise. Split 70/10/20 by ``TSLibDataset``.

    Args:
        root: output folder.
        name: file name.
        length: hourly rows.
        channels: columns including ``OT``.
        seed: random seed.
        noise: noise std relative to the unit amplitude.

    Returns:
        ``root`` (the file is ``root / name``).
    """
    _check_sizes("make_forecasting", length=length, channels=channels)
    root = Path(root)
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None]
    periods = np.stack([np.full(channels, 24.0), np.full(channels, 168.0), rng.uniform(6, 48, channels)])
    amps, phases = rng.uniform(0.5, 2.0, periods.shape), rng.uniform(0, 2 * np.pi, periods.shape)
    values = sum(amps[j] * np.sin(2 * np.pi * t / periods[j] + phases[j]) for j in range(len(periods)))
    values = values + rng.uniform(100, 500, channels) + noise * rng.standard_normal((length, channels))
    columns = [f"c{c}" for c in range(channels - 1)] + ["OT"]
    _write_series_csv(root / name, _hourly_dates(length), columns, values)
    return root


def make_corrformer(
    root: str | Path,
    *,
    variable: str = "temp",
    steps: dict[str, int] | None = None,
    stations: int = 6,
    features: int = 3,
    seed: int = 0,
) -> Path:
    """Corrformer layout: ``<variable>_global_hourly_{train,val,test}.npy`` (T, stations, features), float32 in
    0.1 units (×10), and ``data_time_{split}.npy`` as datetime64[s] (no pickled objects).

    Feature 0 is the variable: a daily cycle with a station-dependent phase (time zone) plus noise; the other features
    are noisy covariates.

    Args:
        root: output folder.
        variable: ``temp`` or ``wind`` (the file prefix).
        steps: hours per split; default ``{"train": 480, "val": 120, "test": 120}`` (consecutive).
        stations: number of stations.
        features: features per station (>= 1).
        seed: random seed.

    Returns:
        ``root``.
    """
    if variable not in ("temp", "wind"):
        raise ConfigError(f"make_corrformer: variable={variable!r}; expected 'temp' or 'wind'")
    _check_sizes("make_corrformer", stations=stations, features=features)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    offsets, amps = rng.uniform(0, 24, stations), rng.uniform(3, 10, stations)
    base = rng.uniform(-5, 25, stations)
    start = 0
    for split, count in (steps or {"train": 480, "val": 120, "test": 120}).items():
        hours = np.arange(start, start + count)[:, None]
        cycle = (
            base + amps * np.sin(2 * np.pi * (hours - offsets) / 24.0) + 0.5 * rng.standard_normal((count, stations))
        )
        data = np.concatenate([cycle[:, :, None], rng.standard_normal((count, stations, features - 1))], axis=2)
        np.save(root / f"{variable}_global_hourly_{split}.npy", (10.0 * data).astype(np.float32))
        stamps = np.datetime64("2019-01-01T00:00:00", "s") + hours[:, 0] * np.timedelta64(3600, "s")
        np.save(root / f"data_time_{split}.npy", stamps)
        start += count
    return root


# ----------------------------------------------------------------------------------------------------------- images


def _stripes(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """uint8 [size, size, 3] image of random-colour stripes of one orientation, with noise."""
    yy, xx = np.mgrid[0:size, 0:size]
    freq, phase = rng.uniform(0.15, 0.35), rng.uniform(0, 2 * np.pi)
    if kind == "horizontal":
        wave = np.sin(freq * yy + phase)
    elif kind == "vertical":
        wave = np.sin(freq * xx + phase)
    elif kind == "diagonal":
        wave = np.sin(freq * (xx + yy) / np.sqrt(2) + phase)
    elif kind == "checker":
        wave = np.sin(freq * xx + phase) * np.sin(freq * yy + phase)
    else:
        raise ConfigError(f"synthetic images: kind={kind!r}; expected one of {list(STRIPES)}")
    fg, bg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    mix = (wave[..., None] > 0).astype(np.float64)
    image = mix * fg + (1 - mix) * bg + rng.normal(0, 12, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def make_image_folder(
    root: str | Path,
    *,
    classes: Sequence[str] = STRIPES,
    n_per_class: int = 20,
    seed: int = 0,
    size: int = 32,
    val_fraction: float = 0.25,
) -> Path:
    """Class folders of PNG images: ``root/{train,val}/<class>/<nnnn>.png``; the class is the stripe orientation.

    Args:
        root: output folder.
        classes: among ``horizontal``, ``vertical``, ``diagonal``, ``checker``.
        n_per_class: images per class.
        seed: random seed.
        size: image side in pixels.
        val_fraction: share of each class in ``val`` (at least one).

    Returns:
        ``root``.
    """
    from PIL import Image

    _check_sizes("make_image_folder", n_per_class=n_per_class, size=size)
    root = Path(root)
    rng = np.random.default_rng(seed)
    n_val = max(1, round(n_per_class * val_fraction))
    for name in classes:
        for i in range(n_per_class):
            path = root / ("val" if i < n_val else "train") / name / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_stripes(name, rng, size)).save(path)
    return root
