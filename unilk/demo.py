"""The demo: a new user's first minutes with unilk, on generated data and with no downloads.

:func:`run_demo` does four things and returns a :class:`DemoSummary` (it logs progress and never prints):

1. writes a small synthetic multimodal dataset as real files (wav, ply, mp4, csv, png) with
   :mod:`unilk.datasets.synthetic`;
2. fine-tunes the shipped ``audio/quick_speech_commands`` recipe briefly and evaluates it on held-out clips;
3. encodes one sample of each modality with one UniRepLKNet architecture (one trunk per channel profile) and times it;
4. draws a PNG of how each modality became an image (spectrogram, three point views, tiled video, series map, image).

``unilk demo`` (the click command at the bottom) runs it and prints the table and what to try next.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from unilk.errors import ConfigError
from unilk.once import SMALL_MAP_WARNING, expected

__all__ = ["DemoSummary", "EncodedSample", "demo", "encode_samples", "plot_modalities", "run_demo", "train_audio"]

logger = logging.getLogger(__name__)

#: modality -> (generator in unilk.datasets.synthetic, its sub-folder, file pattern of one sample)
_DATASETS: dict[str, tuple[str, str, str]] = {
    "audio": ("make_speech_commands", "speech_commands", "*/*.wav"),
    "points": ("make_modelnet", "modelnet", "*/test/*.ply"),
    "video": ("make_kinetics", "kinetics", "val/*/*.mp4"),
    "series": ("make_series_classification", "series", "test/*/*.csv"),
    "image": ("make_image_folder", "images", "val/*/*.png"),
}

#: per mode: generator kwargs, training overrides of the quick audio recipe, encoding trunk and adapter configs
_MODES: dict[str, dict[str, Any]] = {
    "full": {
        "data": {
            "audio": {"n_per_class": 100},  # the quick recipe's size: fewer clips make the short run unreliable
            "points": {"n_per_class": 4, "num_points": 1024},
            "video": {"n_per_class": 2, "size": 64},
            "series": {"n_per_class": 4},
            "image": {"n_per_class": 4, "size": 64},
        },
        # the recipe's own schedule, capped so that the whole demo stays under 5 minutes on 2 CPU cores
        "train": ["train.max_minutes=3"],
        "model": "unireplknet_a",
        # the papers' map sizes (Speech Commands: 128 frames of 1 s), fitted to the generated files
        "adapters": {
            "audio": {"target_frames": 128},
            "points": {"num_points": 1024},
            "video": {"frame_stride": 1},
            "series": {"group_size": 2},
        },
    },
    "quick": {
        "data": {
            "audio": {"n_per_class": 6},
            "points": {"n_per_class": 1, "num_points": 256},
            "video": {"n_per_class": 1, "num_frames": 8, "size": 32},
            "series": {"n_per_class": 2, "length": 64},
            "image": {"n_per_class": 1, "size": 32},
        },
        "train": ["train.epochs=1", "train.max_steps=3", "train.max_minutes=null", "data.batch_size=8"],
        "model": "test_unireplknet",
        "adapters": {
            "audio": {"num_mel_bins": 64, "target_frames": 96},
            "points": {"num_points": 256, "image_size": 64},
            "video": {
                "num_frames": 8,
                "frame_stride": 1,
                "short_side": 32,
                "crop_size": 32,
                "grid_rows": 2,
                "grid_cols": 4,
            },
            "series": {"seq_len": 24, "label_len": 12, "pred_len": 12, "group_size": 2, "d_model": 48},
            "image": {"input_size": [3, 32, 32], "crop_pct": 1.0},
        },
    },
}

_RECIPE = "audio/quick_speech_commands"


@dataclass(frozen=True)
class EncodedSample:
    """One row of the demo's encoding table.

    Attributes:
        modality: the modality.
        path: the encoded file.
        raw: what the file holds, in words (``"1.00 s mono @ 16000 Hz"``).
        map_shape: the C×H×W map the trunk saw, as ``(C, H, W)``.
        embedding_dim: size D of the pooled embedding.
        seconds: wall time of adapter + trunk for this sample (the first call of a channel profile includes
            building and re-parameterizing its trunk).
    """

    modality: str
    path: str
    raw: str
    map_shape: tuple[int, int, int]
    embedding_dim: int
    seconds: float


@dataclass(frozen=True)
class DemoSummary:
    """What the demo did and where its outputs are.

    Attributes:
        out_dir: the output folder.
        data_dir: the generated datasets (one sub-folder per modality).
        run_dir: the training run (checkpoints ``best.pt``/``last.pt``, ``log.csv``, ``metrics.json``).
        figure: the PNG of the maps.
        accuracy: held-out accuracy of the fine-tuned audio model (0..1).
        eval_clips: number of held-out clips it was measured on.
        train_steps: optimizer updates made.
        train_completed: False when the time cap stopped training before the recipe's last step.
        samples: the encoding table.
        model: the trunk used for encoding.
        seconds: total wall time.
        cpu_seconds: total CPU time of this process (user + system, all threads).
    """

    out_dir: str
    data_dir: str
    run_dir: str
    figure: str
    accuracy: float
    eval_clips: int
    train_steps: int
    train_completed: bool
    samples: list[EncodedSample]
    model: str
    seconds: float
    cpu_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_datasets(data_dir: Path, mode: str) -> dict[str, Path]:
    """Write the synthetic datasets of every modality; returns modality -> one held-out sample file.

    Args:
        data_dir: parent folder; each modality gets its own sub-folder.
        mode: ``"full"`` or ``"quick"`` (dataset sizes).

    Returns:
        modality -> path of the first held-out file, in :data:`_DATASETS` order.
    """
    from unilk.datasets import synthetic

    samples = {}
    for modality, (generator, folder, pattern) in _DATASETS.items():
        root = data_dir / folder
        getattr(synthetic, generator)(root, seed=0, **_MODES[mode]["data"][modality])
        samples[modality] = sorted(root.glob(pattern))[0]
        logger.info("wrote the synthetic %s dataset to %s", modality, root)
    return samples


def train_audio(data_root: Path, run_dir: Path, mode: str, *, progress: bool = True) -> dict[str, Any]:
    """Fine-tune the quick audio recipe on the generated Speech Commands clips and evaluate on the held-out ones.

    Args:
        data_root: the generated Speech Commands folder.
        run_dir: output folder of the run; an earlier demo run there is replaced.
        mode: ``"full"`` or ``"quick"`` (how long to train).
        progress: show the trainer's progress bar.

    Returns:
        The trainer's summary (``step``, ``metrics`` with ``acc`` on the test split, ...) plus ``eval_clips``.
    """
    from unilk.train.build import build_parts
    from unilk.train.config import load_recipe
    from unilk.train.engine import Trainer

    if run_dir.exists():  # the trainer refuses to overwrite a run; this folder is the demo's own output
        logger.info("replacing the previous demo run in %s", run_dir)
        shutil.rmtree(run_dir)
    overrides = [
        f"output_dir={run_dir}",
        f"data.root={data_root}",
        "data.synthetic=null",  # the demo already wrote the data
        f"log.progress={str(progress).lower()}",
        "log.tensorboard=false",
        *_MODES[mode]["train"],
    ]
    recipe = load_recipe(_RECIPE, overrides)
    parts = build_parts(recipe)
    logger.info(
        "fine-tuning %s (%s) on %d clips, evaluating on %d held-out clips",
        _RECIPE,
        recipe.model.arch,
        len(parts.train_set),
        len(parts.eval_set),
    )
    summary = Trainer(recipe, parts).fit()
    return {**summary, "eval_clips": len(parts.eval_set)}


def _describe_raw(modality: str, path: Path) -> str:
    """The raw content of a sample file, in words."""
    from unilk.adapters import io

    if modality == "audio":
        wave, rate = io.load_audio(path)
        return f"{wave.shape[1] / rate:.2f} s, {wave.shape[0]} ch @ {rate} Hz"
    elif modality == "points":
        return f"{len(io.load_points(path))} points (x, y, z)"
    elif modality == "video":
        source = io.open_video(path)
        height, width = source.get([0]).shape[1:3]
        return f"{source.num_frames} frames of {width}×{height} @ {source.fps:g} fps"
    elif modality == "series":
        data = io.load_series(path)
        return f"{data.values.shape[0]} steps × {data.values.shape[1]} channels"
    elif modality == "image":
        width, height = io.load_image(path).size
        return f"{width}×{height} RGB"
    else:
        raise ConfigError(f"demo: modality={modality!r}; expected one of {list(_DATASETS)}")


def encode_samples(
    samples: dict[str, Path], series_train: Path, mode: str, *, device: str = "auto"
) -> tuple[list[EncodedSample], dict[str, Any]]:
    """Encode one sample per modality with one UniRepLKNet architecture; time each.

    Args:
        samples: modality -> sample file.
        series_train: a training series file (the series scaler is fitted on training data, never on the sample).
        mode: ``"full"`` (``unireplknet_a`` at the papers' map sizes) or ``"quick"`` (a tiny trunk, small maps).
        device: ``"auto"`` or a torch device.

    Returns:
        The table rows, and modality -> the map Tensor[C, H, W] the trunk saw (for :func:`plot_modalities`).
    """
    from unilk.encoding import Encoder

    settings = _MODES[mode]
    logger.info(
        "encoding one sample per modality with %s (random weights, chosen so the demo runs offline: the embeddings "
        "show shapes and timings only)",
        settings["model"],
    )
    encoder = Encoder(settings["model"], adapters=settings["adapters"], device=device, pretrained=False)
    encoder.adapter("series").fit_scaler(series_train)
    rows, maps = [], {}
    for modality, path in samples.items():
        start = time.perf_counter()
        encoding = encoder.encode_modality(modality, str(path))
        seconds = time.perf_counter() - start
        # the same map again, outside the timing, for the table and the figure
        shown = encoder.to_maps([encoder.preparer(modality)(str(path))])[0][0]
        maps[modality] = shown
        rows.append(
            EncodedSample(
                modality=modality,
                path=str(path),
                raw=_describe_raw(modality, path),
                map_shape=tuple(shown.shape),
                embedding_dim=int(encoding.embeddings.shape[1]),
                seconds=seconds,
            )
        )
        logger.info("encoded %s: map %s -> embedding %d", modality, tuple(shown.shape), rows[-1].embedding_dim)
    return rows, {"maps": maps, "adapters": {m: encoder.adapter(m).config for m in samples}}


def _to_rgb(x: Any, config: Any) -> Any:
    """Undo the adapter's mean/std normalisation of a 3×H×W map; returns an H×W×3 array in [0, 1]."""
    import numpy as np

    mean = np.asarray(config.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(config.std, dtype=np.float32)[:, None, None]
    return np.clip(x.numpy() * std + mean, 0, 1).transpose(1, 2, 0)


def plot_modalities(maps: dict[str, Any], configs: dict[str, Any], path: Path) -> Path:
    """Draw how each modality became an image: one panel per map (three for the point views) in one PNG.

    Args:
        maps: modality -> Tensor[C, H, W] map (audio 1×T×F, points 3×S×S, video 3×H×W tiled, series 1×H×W, image).
        configs: modality -> adapter config (for the audio layout and the video/image normalisation).
        path: the PNG to write.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, Any, str | None, str]] = []  # title, image, colormap, origin
    for modality, x in maps.items():
        shape = "×".join(str(s) for s in x.shape)
        if modality == "audio":
            # time_freq maps are T×F; show time along x like a spectrogram
            spec = x[0].T if configs[modality].layout == "time_freq" else x[0]
            panels.append((f"audio: log-mel spectrogram\n{shape}", spec.numpy(), "magma", "lower"))
        elif modality == "points":
            for k, view in enumerate(("front", "side", "top")):
                panels.append((f"points: {view} depth view\n({k + 1}/3 of {shape})", x[k].numpy(), "viridis", "upper"))
        elif modality in ("video", "image"):
            what = "frames tiled in a grid" if modality == "video" else "image"
            panels.append((f"{modality}: {what}\n{shape}", _to_rgb(x, configs[modality]), None, "upper"))
        elif modality == "series":
            panels.append((f"series: learned embedding map\n{shape}", x[0].numpy(), "coolwarm", "upper"))
        else:
            raise ConfigError(f"demo: modality={modality!r}; expected one of {list(_DATASETS)}")
    # a grid four panels wide: the spectrogram (wide and short) spans two cells with labelled axes; every other map
    # keeps square pixels in its own cell
    columns = 4
    cells = [2 if origin == "lower" else 1 for _, _, _, origin in panels]
    rows = max(1, math.ceil(sum(cells) / columns))
    fig = plt.figure(figsize=(3.2 * columns, 3.4 * rows), dpi=100, layout="constrained")
    grid = fig.add_gridspec(rows, columns)
    position = 0
    for (title, image, cmap, origin), width in zip(panels, cells):
        if position % columns + width > columns:  # a wide panel does not fit the rest of this row
            position += columns - position % columns
        row, col = divmod(position, columns)
        ax = fig.add_subplot(grid[row, col : col + width])
        position += width
        ax.imshow(image, cmap=cmap, origin=origin, aspect="auto" if origin == "lower" else "equal")
        ax.set_title(title, fontsize=9)
        if origin == "lower":
            ax.set_xlabel("time (frames)", fontsize=8)
            ax.set_ylabel("mel bin", fontsize=8)
            ax.tick_params(labelsize=7)
        else:
            ax.set_axis_off()
    fig.suptitle("unilk: every modality becomes a C×H×W map for one large-kernel ConvNet", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def run_demo(
    out_dir: str | Path = "unilk-demo", *, quick: bool = False, progress: bool = True, device: str = "auto"
) -> DemoSummary:
    """Run the whole demo and write ``summary.json`` next to its outputs.

    Args:
        out_dir: output folder (created; the demo's own earlier outputs there are replaced).
        quick: a reduced run (tiny datasets, a few training steps, a tiny trunk) for tests and smoke checks.
        progress: show progress bars.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.

    Returns:
        The :class:`DemoSummary`.
    """
    from tqdm import tqdm

    mode = "quick" if quick else "full"
    out = Path(out_dir)
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    # a bar on a terminal only; in a log file the stage lines logged below say the same
    stages = tqdm(total=4, desc="unilk demo", unit="stage", disable=not progress or not sys.stderr.isatty())
    # the quick trunks see small maps on purpose; their "kernel larger than the last map" warning is expected here
    with expected(SMALL_MAP_WARNING):
        stages.set_postfix_str("1/4 writing synthetic data")
        samples = write_datasets(out / "data", mode)
        stages.update(1)
        stages.set_postfix_str("2/4 fine-tuning audio")
        trained = train_audio(out / "data" / _DATASETS["audio"][1], out / "audio_run", mode, progress=progress)
        stages.update(1)
        stages.set_postfix_str("3/4 encoding")
        series_train = sorted((out / "data" / _DATASETS["series"][1]).glob("train/*/*.csv"))[0]
        rows, shown = encode_samples(samples, series_train, mode, device=device)
        stages.update(1)
        stages.set_postfix_str("4/4 drawing the figure")
        figure = plot_modalities(shown["maps"], shown["adapters"], out / "modalities.png")
        stages.update(1)
    stages.close()
    summary = DemoSummary(
        out_dir=str(out),
        data_dir=str(out / "data"),
        run_dir=str(out / "audio_run"),
        figure=str(figure),
        accuracy=float(trained["metrics"]["acc"]),
        eval_clips=int(trained["eval_clips"]),
        train_steps=int(trained["step"]),
        train_completed=bool(trained["completed"]),
        samples=rows,
        model=_MODES[mode]["model"],
        seconds=time.perf_counter() - start,
        cpu_seconds=_cpu_seconds() - cpu_start,
    )
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    logger.info("demo finished in %.1f s (%.1f s CPU); summary in %s", summary.seconds, summary.cpu_seconds, out)
    return summary


def format_table(samples: list[EncodedSample]) -> str:
    """The encoding table as aligned plain text."""
    header = ("modality", "raw input", "C×H×W map", "embedding", "time")
    body = [
        (s.modality, s.raw, "×".join(map(str, s.map_shape)), str(s.embedding_dim), f"{s.seconds:.2f} s")
        for s in samples
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *body])


@click.command("demo")
@click.option("--out", "out_dir", default="unilk-demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--quick", is_flag=True, help="A reduced run in seconds (tiny data, 3 training steps, a tiny trunk).")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def demo(out_dir: str, quick: bool, device: str, no_progress: bool) -> None:
    """Generate multimodal data, fine-tune an audio model, encode every modality and draw how each became an image."""
    logging.getLogger(__name__).setLevel(logging.INFO)  # the demo's own steps show at the default verbosity
    summary = run_demo(out_dir, quick=quick, progress=not no_progress, device=device)
    click.echo("")
    click.echo(
        f"Audio fine-tune: {summary.train_steps} steps, held-out accuracy {summary.accuracy:.1%} "
        f"on {summary.eval_clips} clips"
    )
    if not summary.train_completed:
        click.echo(
            "  (stopped at the demo's 3-minute training cap: this machine is slower or busier than 2 free cores)"
        )
    click.echo(f"\nOne sample per modality through {summary.model} (random weights: shapes and timings only):")
    click.echo(format_table(summary.samples))
    click.echo(f"\nDone in {summary.seconds:.0f} s ({summary.cpu_seconds:.0f} s CPU). Outputs in {summary.out_dir}/:")
    click.echo(f"  {summary.figure:<40} how each modality became an image")
    click.echo(f"  {summary.data_dir + '/':<40} the generated datasets (real wav, ply, mp4, csv, png files)")
    click.echo(f"  {summary.run_dir + '/':<40} the audio run: best.pt, last.pt, log.csv, metrics.json")
    click.echo(f"  {Path(summary.out_dir) / 'summary.json'!s:<40} this summary")
    run, data = summary.run_dir, summary.data_dir
    next_steps = [
        (f"unilk eval {run}", "evaluate the fine-tuned checkpoint again"),
        (f"unilk plot {run}", "its training curves as a PNG"),
        (f"unilk extract audio {data}/speech_commands --out feats --checkpoint {run}/best.pt", "features at scale"),
        ("unilk train points/quick_modelnet", "another modality's quick recipe"),
        ("unilk info unireplknet_a", "params, MACs and shapes of a trunk"),
    ]
    click.echo("\nTry next:")
    for command, what in next_steps:
        click.echo(f"  {command}\n      {what}")
    click.echo("  Guide: docs/getting-started.md")
