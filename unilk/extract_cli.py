"""``unilk encode`` (a few files -> .npz) and ``unilk extract`` (a dataset -> sharded embeddings, resumable)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import click

from unilk.atomic import refuse_existing
from unilk.cli import CommandError
from unilk.devices import DEVICE
from unilk.errors import UnilkError

__all__ = ["encode_command", "extract_command"]

_MODALITIES = ("audio", "image", "video", "points", "series")


def _parse_kwargs(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs to a dict; values are read as JSON when they parse (``depths=[1,1,1,1]``), else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"got {pair!r}, expected key=value (e.g. drop_path_rate=0.1)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


#: the library's keyword in a message -> the option that sets it on the command line.
_CLI_OPTIONS = {
    "pretrained=False": "--random-weights",
    "checkpoint_path=": "--checkpoint",
    "checkpoint=": "--checkpoint",
    "model=": "--model",
    "model_kwargs=": "--model-kwarg",
    "device=": "--device",
    "batch_size=": "--batch-size",
    "num_workers=": "--num-workers",
    "retry_failed=True": "--retry-failed",
}


def cli_words(message: str) -> str:
    """A library message in the command line's words: ``pretrained=False`` -> ``--random-weights``, and so on."""
    for keyword, option in _CLI_OPTIONS.items():
        message = re.sub(rf"(?<![\w.-]){re.escape(keyword)} ?", option + " ", message)
    return message


#: generic data suffixes (text, tables, arrays): in a folder of media files they are side files, not inputs
_DATA_SUFFIXES = frozenset({".txt", ".csv", ".npy", ".npz"})


def _expand_folders(files: tuple[str, ...], modality: str | None) -> list[str]:
    """FILES with each folder replaced by its media files (recursively, sorted; of ``modality``'s kinds when given).

    Without ``modality``, a folder's text and array files (:data:`_DATA_SUFFIXES`) are inputs only when the folder
    holds nothing else; next to media files they are left out, with a warning line.

    Raises:
        click.BadParameter: a folder holds no such file.
    """
    from unilk.adapters import io
    from unilk.errors import InputError
    from unilk.extract import list_inputs

    kinds = {
        "audio": io.AUDIO_EXTENSIONS,
        "image": io.IMAGE_EXTENSIONS,
        "video": io.VIDEO_EXTENSIONS,
        "points": io.POINT_EXTENSIONS,
        "series": io.SERIES_EXTENSIONS,
    }
    suffixes = sorted(kinds[modality] if modality else {s for group in kinds.values() for s in group})
    expanded: list[str] = []
    for path in files:
        if not Path(path).is_dir():
            expanded.append(path)
            continue
        try:
            found = [item.path for item in list_inputs(path, extensions=suffixes)]
        except InputError as err:
            raise click.BadParameter(f"{err} (media files: {', '.join(suffixes)})", param_hint="FILES") from err
        media = [p for p in found if Path(p).suffix.lower() not in _DATA_SUFFIXES]
        side = sorted({Path(p).suffix.lower() for p in found} - {Path(p).suffix.lower() for p in media})
        if modality is None and media and side:  # lists, labels, metadata next to the media: not inputs
            click.echo(
                f"warning: {path}: left out {len(found) - len(media)} {'/'.join(side)} file(s) next to its media "
                "files (lists or labels, as far as a suffix tells); pass --modality to embed them",
                err=True,
            )
            found = media
        expanded += found
    return expanded


def _modality_of(path: str) -> str:
    from unilk.adapters import io

    suffix = Path(path).suffix.lower()
    # video containers also hold audio; a video suffix means video unless --modality says otherwise
    for modality, suffixes in (
        ("video", io.VIDEO_EXTENSIONS),
        ("audio", io.AUDIO_EXTENSIONS),
        ("image", io.IMAGE_EXTENSIONS),
        ("points", io.POINT_EXTENSIONS),
        ("series", io.SERIES_EXTENSIONS),
    ):
        if suffix in suffixes:
            return modality
    raise click.UsageError(f"cannot tell the modality of {path!r} from its suffix {suffix!r}; pass --modality.")


_model_options = [
    click.option("--model", default=None, help="Trunk name (default: the checkpoint's, else unireplknet_a)."),
    click.option(
        "--checkpoint",
        default=None,
        help="Any model file unilk.load reads: a `unilk train` checkpoint, an export folder, a .pth, hf-hub:org/name.",
    ),
    click.option(
        "--random-weights",
        is_flag=True,
        help="Random weights instead of the registry's pretrained ones (embeddings without meaning: smoke tests).",
    ),
    click.option("--model-kwarg", "model_kwargs", multiple=True, metavar="KEY=VALUE", help="Extra create_model key."),
    click.option("--device", default="auto", show_default=True, type=DEVICE, help="auto, cpu, cuda, cuda:1, ..."),
    click.option(
        "--batch-size", default=32, type=click.IntRange(min=1), show_default=True, help="Maps per forward pass."
    ),
    click.option("--pool", type=click.Choice(["avg", "max"]), default="avg", show_default=True),
]


def _with_model_options(fn: Any) -> Any:
    for option in reversed(_model_options):
        fn = option(fn)
    return fn


@click.command("encode")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--modality", type=click.Choice(_MODALITIES), help="Default: guessed from each file's suffix.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write ids and embeddings to this new .npz.")
@click.option(
    "--adapter",
    "adapter_kwargs",
    multiple=True,
    metavar="[MODALITY.]KEY=VALUE",
    help="Adapter config override (MODALITY. needed when FILES hold several modalities).",
)
@_with_model_options
def encode_command(
    files: tuple[str, ...],
    modality: str | None,
    out_path: str | None,
    adapter_kwargs: tuple[str, ...],
    model: str | None,
    checkpoint: str | None,
    random_weights: bool,
    model_kwargs: tuple[str, ...],
    device: str,
    batch_size: int,
    pool: str,
) -> None:
    """Embed a few FILES (files or folders) and print the shapes (for many files, use `unilk extract`)."""
    import numpy as np

    from unilk.encoding import Encoder

    if out_path is not None:  # before any work: a typo'd suffix or a file the user has is not written over
        if Path(out_path).suffix.lower() != ".npz":
            raise click.BadParameter(f"got {out_path!r}; expected a new .npz file", param_hint="--out")
        try:
            refuse_existing(out_path, "--out file")
        except UnilkError as err:
            raise CommandError(str(err), err) from err
    groups: dict[str, list[str]] = {}
    for path in _expand_folders(files, modality):
        groups.setdefault(modality or _modality_of(path), []).append(path)
    adapters = _adapter_overrides(_parse_kwargs(adapter_kwargs), list(groups))
    try:
        encoder = Encoder(
            model,
            checkpoint=checkpoint,
            pretrained=False if random_weights else None,
            adapters=adapters,
            model_kwargs=_parse_kwargs(model_kwargs),
            device=device,
            batch_size=batch_size,
            pool=pool,
        )
        result = encoder.encode(**groups, on_error="record")
    except UnilkError as err:
        raise CommandError(cli_words(str(err)), err) from err
    arrays: dict[str, Any] = {}
    for name, enc in result.items():
        click.echo(f"{name}: {len(enc.ids)} input(s) -> embeddings {tuple(enc.embeddings.shape)} ({enc.model})")
        for error in enc.errors:
            click.echo(f"  failed {error['id']!a}: {error['type']}: {error['error']}", err=True)
        for input_id, count, policy in zip(enc.ids, enc.num_maps, enc.policy):
            if count > 1:
                click.echo(f"  {input_id}: mean of {count} chunk embeddings ({policy})")
        arrays[f"{name}_ids"] = np.array(enc.ids)
        arrays[f"{name}_embeddings"] = enc.embeddings.numpy()
    if out_path:
        _save_npz_atomic(Path(out_path), arrays)
        click.echo(f"wrote {out_path}")
    failed = sum(len(enc.errors) for enc in result.values())
    if failed:  # the others were embedded (and written); the exit status still says that not all were
        raise click.ClickException(f"{failed} input(s) could not be embedded (listed above)")


def _save_npz_atomic(path: Path, arrays: dict[str, Any]) -> None:
    """Write an ``.npz`` under a temporary name and rename it into place (no partial file, no added suffix)."""
    import numpy as np

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _adapter_overrides(pairs: dict[str, Any], modalities: list[str]) -> dict[str, dict[str, Any]]:
    """``--adapter`` pairs -> ``{modality: {field: value}}``; a bare KEY applies to the one modality of the call."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in pairs.items():
        prefix, dot, field = key.partition(".")
        if dot and prefix in _MODALITIES:
            out.setdefault(prefix, {})[field] = value
        elif len(modalities) == 1:
            out.setdefault(modalities[0], {})[key] = value
        else:
            raise click.UsageError(
                f"--adapter {key}=...: FILES hold {', '.join(modalities)}; expected MODALITY.KEY=VALUE "
                f"(e.g. --adapter {modalities[0]}.{key}=...)"
            )
    return out


@click.command("extract")
@click.argument("modality", type=click.Choice(_MODALITIES))
@click.argument("source")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@_with_model_options
@click.option("--adapter", "adapter_kwargs", multiple=True, metavar="KEY=VALUE", help="Adapter config override.")
@click.option(
    "--shard-size", default=1024, type=click.IntRange(min=1), show_default=True, help="Inputs per output shard."
)
@click.option(
    "--num-workers",
    default=min(8, os.cpu_count() or 1),
    type=click.IntRange(min=0),
    show_default=True,
    help="Decoding workers.",
)
@click.option("--npy", "write_npy", is_flag=True, help="Also write .npy + .ids.jsonl per shard.")
@click.option("--retry-failed", is_flag=True, help="Redo finished shards that recorded errors.")
@click.option("--engine", type=click.Choice(["torch", "ray"]), default="torch", show_default=True)
@click.option(
    "--dtype", "embedding_dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
    help="Stored embedding precision.",
)  # fmt: skip
@click.option("--ray-address", default=None, help="Ray engine: cluster to join (default: RAY_ADDRESS, else local).")
@click.option("--ray-actors", type=int, default=None, help="Ray engine: embedding actors (default: 1 per GPU, or 1).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def extract_command(
    modality: str,
    source: str,
    out_dir: str,
    model: str | None,
    checkpoint: str | None,
    random_weights: bool,
    model_kwargs: tuple[str, ...],
    device: str,
    batch_size: int,
    pool: str,
    adapter_kwargs: tuple[str, ...],
    shard_size: int,
    num_workers: int,
    write_npy: bool,
    retry_failed: bool,
    engine: str,
    embedding_dtype: str,
    ray_address: str | None,
    ray_actors: int | None,
    no_progress: bool,
) -> None:
    """Embed every MODALITY input of SOURCE (a directory, glob, or .csv/.jsonl manifest with id and path) into --out.

    Resumable (a rerun skips finished shards), incremental (a later run extracts only new and changed files) and
    exactly once under torchrun (each rank takes its own shards) or Ray (--engine ray).
    """
    import torch.distributed as dist

    from unilk.extract import extract
    from unilk.train.distributed import shutdown_process_group

    # under torchrun, a gloo group lets the ranks total their counts and lets rank 0 write the manifest
    grouped = int(os.environ.get("WORLD_SIZE", 1)) > 1 and "MASTER_ADDR" in os.environ and not dist.is_initialized()
    if grouped:
        dist.init_process_group("gloo")
    finished = False
    try:
        summary = extract(
            modality,
            source,
            out_dir,
            model=model,
            checkpoint=checkpoint,
            pretrained=False if random_weights else None,
            adapter=_parse_kwargs(adapter_kwargs),
            model_kwargs=_parse_kwargs(model_kwargs),
            engine=engine,
            device=device,
            pool=pool,
            batch_size=batch_size,
            shard_size=shard_size,
            num_workers=num_workers,
            write_npy=write_npy,
            retry_failed=retry_failed,
            progress=not no_progress,
            embedding_dtype=embedding_dtype,
            ray_options={"address": ray_address, "actors": ray_actors} if engine == "ray" else None,
        )
        finished = True
    except UnilkError as err:
        raise CommandError(cli_words(str(err)), err) from err
    finally:
        if grouped:
            shutdown_process_group(wait_for_peers=finished)
    if int(os.environ.get("RANK", 0)) == 0:
        click.echo(
            f"done {summary.done}, failed {summary.failed}, skipped {summary.skipped} "
            f"({summary.items_per_s:.1f} items/s, {summary.seconds:.1f} s)"
        )
        if summary.complete:
            click.echo(f"complete: {Path(out_dir) / 'manifest.json'}; errors in {Path(out_dir) / 'errors.jsonl'}")
        else:
            click.echo("not complete yet: other ranks still have shards to do, or rerun to finish")
