"""Sharded, resumable, exactly-once feature extraction to disk.

The job is a fixed, ordered list of inputs (:func:`list_inputs`) cut into shards of ``shard_size`` consecutive items.
Shard ``k`` belongs to rank ``k % world_size``, so under ``torchrun`` every rank works on its own disjoint set of
shards: there is no ``DistributedSampler`` and therefore no padding with duplicate samples (pytorch/pytorch#25162).

Layout of the output directory::

    job.json                       what the job is (inputs fingerprint, shard size, model); a rerun must match it
    shards/part-00000.parquet      columns ``id`` (string), ``id_bytes`` (the id's exact bytes, see below) and
                                   ``embedding`` (fixed-size list of float32)
    shards/part-00000.npy          optional (``write_npy``): float32 [n, D], rows in the order of ...
    shards/part-00000.ids.jsonl    ... these ids, one JSON string per line (so no character can break the lines)
    done/part-00000.json           the commit record of a shard: ids embedded and errors, written last
    manifest.json                  written once every shard is committed: shards, counts, dimension
    errors.jsonl                   written with the manifest: one ``{"id", "path", "type", "error"}`` per failed input

Any exception while reading or adapting one input, and an embedding with NaN or inf values, is that input's recorded
error; the job goes on. File names that are not valid UTF-8 are kept exactly: ``id`` shows their undecodable bytes as
``\\xNN`` escapes, ``id_bytes`` holds the bytes, and :func:`read_embeddings` returns the ids as :func:`list_inputs`
made them.

Every file is written under a temporary name and renamed into place, so a reader never sees a partial file. A shard
counts as finished only when its commit record exists, which is written after its data files, so a run killed at any
moment loses at most the shard in progress; a rerun skips the committed shards and redoes the rest.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import os
import pickle
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unilk.errors import ConfigError, InputError
from unilk.loading import source_sha256

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "Item",
    "ExtractSummary",
    "list_inputs",
    "modality_extensions",
    "plan_shards",
    "shards_of_rank",
    "resolve_rank",
    "extract",
    "extract_items",
    "read_embeddings",
]

logger = logging.getLogger(__name__)

_FORMAT = "unilk-embeddings/1"
_ENGINES = ("torch", "ray")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Item:
    """One input of an extraction job.

    Attributes:
        id: a unique name for the input; the key of its embedding in the output.
        path: where the input is read from.
    """

    id: str
    path: str


@dataclass
class ExtractSummary:
    """What one call of :func:`extract_items` did (summed over ranks when a process group is initialised).

    Attributes:
        done: inputs embedded in this run.
        failed: inputs that failed in this run (recorded in ``errors.jsonl``).
        skipped: inputs of shards that an earlier run had already committed.
        shards_written: shards committed in this run.
        shards_skipped: shards found committed and left alone.
        complete: whether every shard of the job is now committed (then ``manifest.json`` exists).
        seconds: wall time of the run.
        out_dir: the output directory.
        errors: once complete, every recorded error of the job (``{"id", "path", "type", "error"}``), as in
            ``errors.jsonl``.
    """

    done: int = 0
    failed: int = 0
    skipped: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    complete: bool = False
    seconds: float = 0.0
    out_dir: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        """Inputs processed (done + failed) per second of this run."""
        return (self.done + self.failed) / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------------------------------
# Listing inputs


def list_inputs(source: str | os.PathLike[str], *, extensions: Sequence[str] | None = None) -> list[Item]:
    """List the inputs of a job, in a deterministic order.

    Args:
        source: one of
            - a directory: every file below it (recursively, hidden files excluded), sorted; the id is the path
              relative to the directory;
            - a glob pattern (``data/**/*.wav``): the matching files, sorted; the id is the path relative to the
              pattern's fixed leading directory;
            - a manifest ``.csv`` (header with ``id`` and ``path`` columns) or ``.jsonl`` (one ``{"id", "path"}`` object
              per line), in file order; relative paths are taken relative to the manifest's directory;
            - a single file (any other suffix): one input whose id is the file name.
        extensions: for directories only, keep files with these suffixes (e.g. ``[".wav", ".flac"]``).

    Returns:
        The inputs. Ids are unique.

    Raises:
        InputError: the source does not exist, matches nothing, a manifest row lacks ``id``/``path``, or ids repeat.
    """
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        items = _list_dir(path, extensions)
    elif path.is_file() and path.suffix.lower() == ".csv":
        items = _read_csv_manifest(path)
    elif path.is_file() and path.suffix.lower() == ".jsonl":
        items = _read_jsonl_manifest(path)
    elif path.is_file():
        items = [Item(id=path.name, path=str(path))]
    elif _GLOB_CHARS & set(text):
        items = _list_glob(text)
    else:
        raise InputError(
            f"input source {text!r} does not exist; expected a directory, a glob pattern, a .csv/.jsonl manifest "
            "with 'id' and 'path' columns, or a file. Fix: check the path."
        )
    if not items:
        raise InputError(f"input source {text!r} lists no inputs; expected at least one file. Fix: check the path.")
    _check_unique_ids(items, text)
    return items


def _list_dir(root: Path, extensions: Sequence[str] | None) -> list[Item]:
    suffixes = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions or []}
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or (suffixes and Path(name).suffix.lower() not in suffixes):
                continue
            files.append(Path(dirpath) / name)
    return [Item(id=f.relative_to(root).as_posix(), path=str(f)) for f in sorted(files)]


def _list_glob(pattern: str) -> list[Item]:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    root = Path(*fixed) if fixed else Path(".")
    files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    return [Item(id=f.relative_to(root).as_posix(), path=str(f)) for f in files]


def _manifest_item(row: dict[str, Any], where: str, base: Path) -> Item:
    missing = [k for k in ("id", "path") if row.get(k) in (None, "")]
    if missing:
        raise InputError(f"{where}: missing {missing}; each row needs 'id' and 'path'. Fix: add the column(s).")
    path = Path(str(row["path"]))
    return Item(id=str(row["id"]), path=str(path if path.is_absolute() else base / path))


def _read_csv_manifest(path: Path) -> list[Item]:
    with path.open(newline="") as f:
        return [_manifest_item(row, f"{path} row {n}", path.parent) for n, row in enumerate(csv.DictReader(f), 2)]


def _read_jsonl_manifest(path: Path) -> list[Item]:
    items = []
    with path.open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path} line {n}: not valid JSON ({err}). Fix: one JSON object per line.") from err
            if not isinstance(row, dict):
                raise InputError(f"{path} line {n}: got {type(row).__name__}, expected an object with id and path.")
            items.append(_manifest_item(row, f"{path} line {n}", path.parent))
    return items


def _check_unique_ids(items: Sequence[Item], source: str) -> None:
    seen: set[str] = set()
    repeated = sorted({item.id for item in items if item.id in seen or seen.add(item.id)})
    if repeated:
        raise InputError(
            f"input source {source!r} repeats ids {repeated[:5]}{' ...' if len(repeated) > 5 else ''}; "
            "expected every id once. Fix: make the manifest ids unique."
        )


# ---------------------------------------------------------------------------------------------------------------------
# Sharding and ranks


def plan_shards(num_items: int, shard_size: int) -> list[range]:
    """Cut ``num_items`` inputs into consecutive shards.

    Args:
        num_items: number of inputs.
        shard_size: inputs per shard (the last shard may be smaller).

    Returns:
        One ``range`` of item indices per shard; together they cover ``range(num_items)`` exactly once.

    Raises:
        ConfigError: ``shard_size`` is not positive.
    """
    if shard_size < 1:
        raise ConfigError(f"shard_size: got {shard_size}, expected an integer >= 1.")
    return [range(start, min(start + shard_size, num_items)) for start in range(0, num_items, shard_size)]


def shards_of_rank(num_shards: int, rank: int, world_size: int) -> list[int]:
    """The shards one rank owns: ``k`` with ``k % world_size == rank``. Ranks get disjoint sets covering all shards.

    Args:
        num_shards: number of shards in the job.
        rank: this process's rank, in ``[0, world_size)``.
        world_size: number of processes.

    Returns:
        Shard indices, ascending.

    Raises:
        ConfigError: ``rank`` or ``world_size`` out of range.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank/world_size: got {rank}/{world_size}, expected 0 <= rank < world_size.")
    return list(range(rank, num_shards, world_size))


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Rank and world size: explicit values, else an initialised process group, else torchrun's env, else (0, 1).

    Args:
        rank: explicit rank, or None.
        world_size: explicit world size, or None.

    Returns:
        ``(rank, world_size)``.
    """
    if rank is not None and world_size is not None:
        return rank, world_size
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


# ---------------------------------------------------------------------------------------------------------------------
# Atomic files


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through ``write(file)`` under a unique temporary name, fsync, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        with tmp.open(mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, lambda f: json.dump(obj, f, indent=1, sort_keys=True), mode="w")


def _shard_name(index: int) -> str:
    return f"part-{index:05d}"


def _write_shard(
    out: Path, index: int, ids: list[str], emb: np.ndarray, errors: list[dict[str, str]], npy: bool
) -> None:
    """Write one shard's data files, then its commit record (last: the record is what makes the shard count)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = _shard_name(index)
    # a shard being redone (retry_failed) stops counting as finished before its files change
    (out / "done" / f"{name}.json").unlink(missing_ok=True)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    dim = emb.shape[1] if emb.ndim == 2 else 0
    values = pa.array(emb.reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "id": pa.array([_display_id(i) for i in ids], type=pa.string()),
            "id_bytes": pa.array([os.fsencode(i) for i in ids], type=pa.binary()),
            # a shard whose inputs all failed has no rows and no known width; Arrow needs a positive list size
            "embedding": pa.FixedSizeListArray.from_arrays(values, dim or 1),
        }
    )
    _atomic_write(out / "shards" / f"{name}.parquet", lambda f: pq.write_table(table, f))
    if npy:
        _atomic_write(out / "shards" / f"{name}.npy", lambda f: np.save(f, emb))
        _atomic_write(out / "shards" / f"{name}.ids.jsonl", lambda f: f.write(_id_lines(ids)), mode="w")
    record = {"shard": index, "ids": ids, "dim": dim, "errors": errors}
    _write_json(out / "done" / f"{name}.json", record)


def _display_id(item_id: str) -> str:
    """The id as valid UTF-8 text: bytes of a non-UTF-8 file name (surrogate escapes) shown as ``\\xNN``."""
    return os.fsencode(item_id).decode("utf-8", errors="backslashreplace")


def _id_lines(ids: Sequence[str]) -> str:
    """One JSON string per id and line: newlines or any other character inside an id cannot shift the rows."""
    return "".join(json.dumps(i) + "\n" for i in ids)


def _read_record(out: Path, index: int) -> dict[str, Any] | None:
    path = out / "done" / f"{_shard_name(index)}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------------------------------
# The job


def _fingerprint(items: Sequence[Item]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.id}\0{item.path}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


#: a temporary file older than this is left over from a killed run (a live writer renames its file within seconds).
_STALE_TEMP_S = 3600.0


def _clean_stale_temps(out: Path, world_size: int) -> int:
    """Remove temporary files that a killed run left (``.NAME.tmp-XXXX``); returns how many.

    A single process owns the directory, so every temporary file there is stale; with several ranks another rank may
    be writing one right now, so only those untouched for ``_STALE_TEMP_S`` are removed.
    """
    now, removed = time.time(), 0
    for folder in (out, out / "shards", out / "done"):
        for tmp in folder.glob(".*.tmp-*") if folder.is_dir() else []:
            try:
                if world_size == 1 or now - tmp.stat().st_mtime > _STALE_TEMP_S:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:  # another rank removed or renamed it first
                continue
    if removed:
        logger.info("%s: removed %d temporary file(s) left by an interrupted run", out, removed)
    return removed


def _exclude_out_dir(items: Sequence[Item], out: Path) -> list[Item]:
    """Drop inputs that lie inside the output directory (an ``--out`` inside the source would read its own files)."""
    root = out.resolve()
    kept = [item for item in items if not Path(item.path).resolve().is_relative_to(root)]
    if len(kept) < len(items):
        logger.info("left out %d input(s) inside the output directory %s", len(items) - len(kept), out)
    return kept


def _prepare_out_dir(out: Path, job: dict[str, Any]) -> None:
    """Create the layout and pin the job description; a different job in the same directory is refused."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output directory {str(out)!r} is a file; expected a directory. Fix: pick another --out.")
    (out / "shards").mkdir(parents=True, exist_ok=True)
    (out / "done").mkdir(exist_ok=True)
    job_path = out / "job.json"
    if job_path.exists():
        old = json.loads(job_path.read_text())
        if old != job:
            changed = sorted(k for k in {*old, *job} if old.get(k) != job.get(k))
            raise ConfigError(
                f"output directory {str(out)!r} holds another job (differs in {changed}); expected the same inputs, "
                "shard size and model to resume. Fix: use a new --out directory, or delete this one to start over."
            )
    else:
        # several ranks may race here; they write the same content, and the rename is atomic
        _write_json(job_path, job)


def _finalize(out: Path, shards: list[range], items: Sequence[Item], job: dict[str, Any]) -> bool:
    """Write ``manifest.json`` and ``errors.jsonl`` if every shard is committed; deterministic, so any rank may."""
    records = [_read_record(out, k) for k in range(len(shards))]
    if any(r is None for r in records):
        return False
    dims = {r["dim"] for r in records if r["ids"]}
    if len(dims) > 1:
        raise ConfigError(f"{out}: shards disagree on the embedding dimension {sorted(dims)}; expected one.")
    errors = [e for r in records for e in r["errors"]]
    manifest = {
        "format": _FORMAT,
        "job": job,
        "dim": dims.pop() if dims else 0,
        "num_items": len(items),
        "num_embeddings": sum(len(r["ids"]) for r in records),
        "num_errors": len(errors),
        "shards": [
            {
                "file": f"shards/{_shard_name(k)}.parquet",
                "num_embeddings": len(r["ids"]),
                "num_errors": len(r["errors"]),
            }
            for k, r in enumerate(records)
        ],
    }
    _atomic_write(out / "errors.jsonl", lambda f: f.write("".join(json.dumps(e) + "\n" for e in errors)), mode="w")
    _write_json(out / "manifest.json", manifest)
    return True


class _LoadDataset:
    """Map-style dataset of (item index, loaded sample or None, error record or None); a bad input is data, not a
    crash: any exception while reading or adapting one input becomes its ``{"type", "error"}`` record."""

    def __init__(self, items: Sequence[Item], load: Callable[[str], Any]) -> None:
        self.items = items
        self.load = load

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Any, dict[str, str] | None]:
        from unilk.encoding import error_record

        item = self.items[index]
        try:
            return index, self.load(item.path), None
        except Exception as err:  # one input's failure, whatever the decoder raised, must not end the job
            record = error_record(item.id, err)
            if not isinstance(err, InputError) and item.path not in record["error"]:
                record["error"] = f"{_display_id(item.path)}: {record['error']}"
            return index, None, {"type": record["type"], "error": record["error"]}


def _keep_list(batch: list[Any]) -> list[Any]:
    return batch


def _batches(shards: list[range], owned: list[int], batch_size: int) -> list[list[int]]:
    """Batches of item indices that never cross a shard boundary, so a shard completes with its last batch."""
    return [list(shards[k][i : i + batch_size]) for k in owned for i in range(0, len(shards[k]), batch_size)]


def extract_items(
    items: Sequence[Item],
    out_dir: str | os.PathLike[str],
    *,
    load: Callable[[str], Any],
    embed: Callable[[list[Any]], torch.Tensor | np.ndarray],
    job_meta: dict[str, Any] | None = None,
    shard_size: int = 1024,
    batch_size: int = 32,
    num_workers: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    write_npy: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
    engine: str = "torch",
) -> ExtractSummary:
    """Embed ``items`` into sharded files under ``out_dir``, skipping shards an earlier run committed.

    DataLoader workers run ``load`` in parallel; the main process runs ``embed`` on batches that never cross a shard
    boundary and commits each shard as soon as its last batch is embedded.

    Args:
        items: the inputs, in job order (e.g. from :func:`list_inputs`).
        out_dir: output directory (created).
        load: ``path -> sample``; runs in DataLoader workers and must be picklable when ``num_workers > 0`` under a
            non-fork start method. Any exception marks that input as failed (its type and message are recorded).
        embed: ``list of samples -> [N, D]`` embeddings, one row per sample, in order.
        job_meta: what else identifies the job (model, checkpoint, modality...); stored in ``job.json`` and compared on
            resume.
        shard_size: inputs per shard.
        batch_size: inputs per ``embed`` call.
        num_workers: DataLoader worker processes (0: load in the main process).
        rank: this process's rank; default from an initialised process group or torchrun's ``RANK``.
        world_size: number of processes; default likewise from ``WORLD_SIZE``.
        write_npy: also write ``part-XXXXX.npy`` + ``part-XXXXX.ids.jsonl`` per shard.
        retry_failed: redo committed shards that recorded errors (e.g. after fixing the files).
        progress: show a tqdm bar (items/s).
        engine: ``torch`` (DataLoader workers) or ``ray`` (Ray Data tasks decode; needs ray installed).

    Returns:
        The :class:`ExtractSummary` (done, failed, skipped; totals over ranks when a process group is initialised).

    Raises:
        ConfigError: ``out_dir`` holds a different job, bad shard/rank settings, an unknown engine, or Ray missing.
    """
    import numpy as np
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if engine == "ray":
        _import_ray()  # fail before anything is written
    elif engine != "torch":
        raise ConfigError(f"extract engine: got {engine!r}, expected one of {list(_ENGINES)}.")
    out = Path(out_dir)
    rank, world_size = resolve_rank(rank, world_size)
    shards = plan_shards(len(items), shard_size)
    job = {"format": _FORMAT, "inputs_sha256": _fingerprint(items), "num_items": len(items), "shard_size": shard_size}
    job |= job_meta or {}
    _prepare_out_dir(out, job)
    _clean_stale_temps(out, world_size)

    summary = ExtractSummary(out_dir=str(out))
    owned = []
    for k in shards_of_rank(len(shards), rank, world_size):
        record = _read_record(out, k)
        if record is not None and not (retry_failed and record["errors"]):
            summary.skipped += len(shards[k])
            summary.shards_skipped += 1
        else:
            owned.append(k)
    logger.info(
        "rank %d/%d: %d shard(s) to do, %d already committed", rank, world_size, len(owned), summary.shards_skipped
    )

    if owned:  # the job is (again) incomplete until these shards are committed
        (out / "manifest.json").unlink(missing_ok=True)
    item_shard = {i: k for k in owned for i in shards[k]}
    results: dict[int, dict[int, Any]] = {k: {} for k in owned}  # shard -> item index -> embedding row or error
    batches = _batches(shards, owned, batch_size)
    if engine == "torch":
        loader: Iterable[list[Any]] = DataLoader(
            _LoadDataset(items, load), batch_sampler=batches, num_workers=num_workers, collate_fn=_keep_list
        )
    elif engine == "ray":
        loader = _ray_batches(items, batches, load)
    else:
        raise ConfigError(f"extract engine: got {engine!r}, expected one of {list(_ENGINES)}.")
    bar = tqdm(total=sum(len(shards[k]) for k in owned), unit="item", disable=not progress, desc=f"extract[{rank}]")
    with torch.inference_mode(), bar:
        for batch in loader:
            good = [(i, sample) for i, sample, err in batch if err is None]
            rows = _to_numpy(embed([s for _, s in good])) if good else np.zeros((0, 0), np.float32)
            if len(rows) != len(good):
                raise ConfigError(f"embed returned {len(rows)} rows for {len(good)} samples; expected one per sample.")
            batch = _refuse_nonfinite_rows(batch, good, rows)
            for (i, _), row in zip(good, rows):
                if np.isfinite(row).all():
                    results[item_shard[i]][i] = row
            for i, _, err in batch:
                if err is not None:
                    results[item_shard[i]][i] = {"id": items[i].id, "path": items[i].path, **err}
            k = item_shard[batch[0][0]]
            if len(results[k]) == len(shards[k]):
                done, failed = _commit(out, k, shards[k], items, results.pop(k), write_npy)
                summary.done += done
                summary.failed += failed
                summary.shards_written += 1
            bar.update(len(batch))
            bar.set_postfix(done=summary.done, failed=summary.failed, refresh=False)

    summary.complete = _sum_and_finalize(summary, out, shards, items, job, rank)
    summary.errors = _read_errors(out) if summary.complete else []
    summary.seconds = time.perf_counter() - start
    return summary


def _refuse_nonfinite_rows(batch: list[Any], good: list[tuple[int, Any]], rows: np.ndarray) -> list[Any]:
    """Mark the inputs whose embedding has NaN or inf as failed (their rows are never written); returns the batch."""
    import numpy as np

    bad = {i for (i, _), row in zip(good, rows) if not np.isfinite(row).all()}
    message = "its embedding has NaN or inf values; expected finite values (not written)"
    return [(i, s, {"type": "InputError", "error": message} if i in bad else err) for i, s, err in batch]


def _to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    import numpy as np
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _commit(
    out: Path, k: int, shard: range, items: Sequence[Item], result: dict[int, Any], npy: bool
) -> tuple[int, int]:
    import numpy as np

    ids = [items[i].id for i in shard if not isinstance(result[i], dict)]
    rows = [result[i] for i in shard if not isinstance(result[i], dict)]
    errors = [result[i] for i in shard if isinstance(result[i], dict)]
    emb = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    _write_shard(out, k, ids, emb, errors, npy)
    return len(ids), len(errors)


def _group_ready() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _sum_and_finalize(
    summary: ExtractSummary, out: Path, shards: list[range], items: Sequence[Item], job: dict[str, Any], rank: int
) -> bool:
    """Total the counts over ranks and write the manifest once every shard is committed; return whether it is.

    Without a process group (one process, or ranks started independently, e.g. a SLURM array), every rank tries to
    finalize: the manifest is a pure function of the committed shards, so concurrent writers write the same bytes.
    With a group, the all_reduce waits for every rank, rank 0 writes, and a barrier lets the others see it.
    """
    if not _group_ready():
        return _finalize(out, shards, items, job)
    import torch
    import torch.distributed as dist

    counts = torch.tensor(
        [summary.done, summary.failed, summary.skipped, summary.shards_written, summary.shards_skipped]
    )
    dist.all_reduce(counts)  # also a barrier: every rank has committed its shards
    summary.done, summary.failed, summary.skipped, summary.shards_written, summary.shards_skipped = counts.tolist()
    if rank == 0:
        _finalize(out, shards, items, job)
    dist.barrier()
    return (out / "manifest.json").exists()


def _read_errors(out: Path) -> list[dict[str, str]]:
    path = out / "errors.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def read_embeddings(out_dir: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Read a finished extraction back into memory.

    Args:
        out_dir: the directory :func:`extract_items` wrote.

    Returns:
        ``(ids, embeddings)``: ids in job order (failed inputs absent) and a float32 array [N, D].

    Raises:
        InputError: the directory has no ``manifest.json`` (the job is not finished: rerun it to complete it).
    """
    import numpy as np
    import pyarrow.parquet as pq

    out = Path(out_dir)
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        raise InputError(
            f"{str(out)!r} has no manifest.json, so its extraction is not finished; expected a completed job. "
            "Fix: rerun the same extraction, which resumes where it stopped."
        )
    manifest = json.loads(manifest_path.read_text())
    ids: list[str] = []
    parts = []
    for shard in manifest["shards"]:
        table = pq.read_table(out / shard["file"])
        if "id_bytes" in table.column_names:  # exact ids, also for file names that are not valid UTF-8
            ids.extend(os.fsdecode(b) for b in table.column("id_bytes").to_pylist())
        else:
            ids.extend(table.column("id").to_pylist())
        flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        parts.append(flat.reshape(len(table), manifest["dim"]))
    embeddings = np.concatenate(parts) if parts else np.zeros((0, manifest["dim"]), np.float32)
    return ids, embeddings.astype(np.float32, copy=False)


def extract(
    modality: str,
    source: str | os.PathLike[str] | Sequence[Item],
    out_dir: str | os.PathLike[str],
    *,
    model: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    pretrained: bool | None = None,
    adapter: Mapping[str, Any] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    engine: str = "torch",
    device: str = "auto",
    pool: str = "avg",
    **kwargs: Any,
) -> ExtractSummary:
    """Embed every input of a directory, glob or manifest with an :class:`~unilk.encoding.Encoder`, into shards on disk.

    Args:
        modality: ``audio``, ``image``, ``video``, ``points`` or ``series``.
        source: a directory, glob, ``.csv``/``.jsonl`` manifest (see :func:`list_inputs`), or a list of :class:`Item`.
        out_dir: output directory; rerunning the same job there resumes it.
        model: trunk name; default: the checkpoint's architecture, else ``unireplknet_a``.
        checkpoint: a ``unilk train`` checkpoint (it sets the architecture and adapter config) or a weights file.
        pretrained: the registry's pretrained weights; default: yes unless ``checkpoint`` (see
            :class:`~unilk.encoding.Encoder`); ``False`` for random weights.
        adapter: adapter config overrides for ``modality`` (a dict of config fields).
        model_kwargs: extra ``create_model`` keywords.
        engine: ``torch`` (DataLoader workers decode, this process embeds; torchrun-aware) or ``ray`` (Ray Data
            tasks decode, streaming into this process; needs ``pip install 'unilk[ray]'``).
        device: ``"auto"`` or a torch device.
        pool: ``"avg"`` or ``"max"`` (see :class:`~unilk.encoding.Encoder`).
        **kwargs: passed to :func:`extract_items` (``shard_size``, ``batch_size``, ``num_workers``, ``rank``,
            ``world_size``, ``write_npy``, ``retry_failed``, ``progress``).

    Returns:
        The :class:`ExtractSummary`.

    Raises:
        ConfigError: unknown engine or modality, Ray missing, or ``out_dir`` holding another job.
        InputError: the source lists nothing or repeats ids.
    """
    from unilk.encoding import Encoder

    if engine not in _ENGINES:
        raise ConfigError(f"extract engine: got {engine!r}, expected one of {list(_ENGINES)}.")
    items = list(source) if _is_item_list(source) else list_inputs(source, extensions=modality_extensions(modality))
    items = _exclude_out_dir(items, Path(out_dir))
    if not items:
        raise InputError(f"input source {source!r} lists no inputs outside the output directory {str(out_dir)!r}.")
    encoder = Encoder(
        model,
        checkpoint=checkpoint,
        pretrained=pretrained,
        adapters={modality: dict(adapter)} if adapter else None,
        model_kwargs=model_kwargs,
        device=device,
        batch_size=kwargs.get("batch_size", 32),
        pool=pool,
    )
    prepare = encoder.preparer(modality)
    _build_before_writing(encoder, modality)
    config = getattr(encoder.adapter(modality), "config", None)
    job_meta = {
        "modality": modality,
        "model": encoder.model_name,
        "model_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in (model_kwargs or {}).items()},
        "checkpoint": None if checkpoint is None else os.fspath(checkpoint),
        "checkpoint_sha256": None if checkpoint is None else source_sha256(checkpoint),
        "pretrained": encoder.pretrained,
        "pool": pool,
        "adapter": config.to_dict() if hasattr(config, "to_dict") else None,
    }
    return extract_items(
        items,
        out_dir,
        load=prepare,
        embed=lambda prepared: encoder.embed_samples(encoder.to_maps(prepared))[0],
        job_meta=job_meta,
        engine=engine,
        **kwargs,
    )


def _build_before_writing(encoder: Any, modality: str) -> None:
    """Build the model now, so bad model options fail before ``job.json`` pins the job (a corrected rerun must run).

    Raises:
        ConfigError: the model cannot be built from these options.
    """
    from unilk.errors import CheckpointError

    try:
        if modality == "series":
            encoder.series_stem()
        encoder.trunk(encoder.adapter(modality).in_chans)
    except (ConfigError, CheckpointError):
        raise
    except Exception as err:  # create_model raises TypeError/ValueError for bad keywords
        raise ConfigError(
            f"model {encoder.model_name!r} cannot be built with these options ({type(err).__name__}: {err}); "
            "nothing was written. Fix: check --model-kwarg / model_kwargs."
        ) from err


def _is_item_list(source: Any) -> bool:
    return isinstance(source, Sequence) and not isinstance(source, str) and all(isinstance(x, Item) for x in source)


def modality_extensions(modality: str) -> frozenset[str]:
    """File suffixes a modality's adapter reads (used to filter directory listings).

    Raises:
        ConfigError: unknown modality.
    """
    from unilk.adapters import io

    table = {
        "audio": io.AUDIO_EXTENSIONS,
        "image": io.IMAGE_EXTENSIONS,
        "video": io.VIDEO_EXTENSIONS,
        "points": io.POINT_EXTENSIONS,
        "series": io.SERIES_EXTENSIONS,
    }
    if modality not in table:
        raise ConfigError(f"modality: got {modality!r}, expected one of {sorted(table)}.")
    return table[modality]


# ---------------------------------------------------------------------------------------------------------------------
# Ray Data engine


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise ConfigError(
            "extract engine 'ray': Ray Data is not installed; expected the ray package. "
            "Fix: pip install 'unilk[ray]' (or pip install 'ray[data]'), or use engine='torch'."
        ) from err
    return ray


def _ray_batches(items: Sequence[Item], batches: list[list[int]], load: Callable[[str], Any]) -> Iterator[list[Any]]:
    """The same batches as the DataLoader path, decoded by Ray Data tasks and streamed back in order.

    Ray Data runs ``load`` in parallel tasks (on a cluster if one is connected) while this process embeds the batches
    already decoded; samples travel pickled so any ``load`` output works.
    """
    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, log_to_driver=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    rows = [{"batch": b, "index": i} for b, batch in enumerate(batches) for i in batch]

    def decode(row: dict[str, Any]) -> dict[str, Any]:
        index, sample, err = _LoadDataset(items, load)[row["index"]]
        return {"batch": row["batch"], "payload": pickle.dumps((index, sample, err))}

    current: list[Any] = []
    current_batch = 0
    for row in ray.data.from_items(rows).map(decode).iter_rows():
        if row["batch"] != current_batch and current:
            yield current
            current = []
        current_batch = row["batch"]
        current.append(pickle.loads(row["payload"]))
    if current:
        yield current
