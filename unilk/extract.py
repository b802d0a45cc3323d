"""Sharded, resumable, exactly-once, incremental feature extraction to disk.

The inputs of a run are a fixed, ordered list (:func:`list_inputs`) cut into shards of ``shard_size`` consecutive
items. Shard ``k`` belongs to rank ``k % world_size``, so under ``torchrun`` every rank works on its own disjoint set of
shards: there is no ``DistributedSampler`` and therefore no padding with duplicate samples (pytorch/pytorch#25162).
The Ray engine (:mod:`unilk.extract_ray`) runs the same plan on Ray Data and commits through the same code.

A later run over the same output directory extracts only the inputs that are new or whose content changed (sha256),
into new shards numbered after the old ones; the older row of a changed input stays in its shard and is listed as
superseded in the manifest. Layout of the output directory::

    job.json                       what the job is (model, adapter, shard size, dtype); a rerun must match it
    runs/run-00001.json            a run's inputs (id, path), in order, and the ids whose older rows it supersedes
    shards/part-00000.parquet      ``id``, ``id_bytes`` (the id's exact bytes, see below), ``path``, ``modality``,
                                   ``policy``, ``num_maps``, ``embedding``, ``sha256``, ``run``; the job description
                                   in the schema metadata
    shards/part-00000.npy          optional (``write_npy``): [n, D] embeddings, rows in the order of ...
    shards/part-00000.ids.jsonl    ... these ids, one JSON string per line (so no character can break the lines)
    done/part-00000.json           the commit record of a shard: ids embedded, errors, input states; written last
    manifest.json                  written once every shard is committed: runs, shards, superseded rows, counts
    errors.jsonl                   written with the manifest: one ``{"id", "path", "type", "error"}`` per failed input

Any exception while reading or adapting one input, and an embedding with NaN or inf values, is that input's recorded
error; the job goes on. File names that are not valid UTF-8 are kept exactly: ``id`` (and ``path``) show their
undecodable bytes as ``\\xNN`` escapes, ``id_bytes`` holds the bytes, and :func:`read_embeddings` returns the ids as
:func:`list_inputs` made them.

Every file is written under a temporary name and renamed into place, so a reader never sees a partial file. A shard
counts as finished only when its commit record exists, which is written after its data files, so a run killed at any
moment loses at most the shards in progress; a rerun skips the committed shards and redoes the rest.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any

from unilk.errors import ConfigError, InputError
from unilk.hub import file_sha256

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import torch

    from unilk.loader_workers import WorkerWatch

__all__ = [
    "Item",
    "ExtractSummary",
    "EncoderEmbed",
    "list_inputs",
    "source_root",
    "modality_extensions",
    "plan_shards",
    "shards_of_rank",
    "resolve_rank",
    "extract",
    "extract_items",
    "read_embeddings",
    "read_table",
    "input_state",
    "embed_loaded",
]

logger = logging.getLogger(__name__)

_FORMAT = "unilk-embeddings/2"
_ENGINES = ("torch", "ray")
_DTYPES = ("float32", "float16")
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
        skipped: inputs left alone: committed by an earlier run (and unchanged since), in shards this rank owns.
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


def source_root(source: str | os.PathLike[str]) -> str:
    """The directory that input paths of a source are relative to (what the shards' ``path`` column is relative to).

    Args:
        source: as for :func:`list_inputs`.

    Returns:
        The directory itself; a glob pattern's fixed leading directory; a manifest's or a single file's directory.
    """
    path = Path(os.fspath(source))
    if path.is_dir():
        return str(path)
    if path.is_file():
        return str(path.parent)
    return str(_glob_root(os.fspath(source)))


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


def _glob_root(pattern: str) -> Path:
    fixed = []
    for part in Path(pattern).parts:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _list_glob(pattern: str) -> list[Item]:
    root = _glob_root(pattern)
    files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    return [Item(id=f.relative_to(root).as_posix(), path=str(f)) for f in files]


def _manifest_item(row: dict[str, Any], where: str, base: Path) -> Item:
    missing = [k for k in ("id", "path") if row.get(k) in (None, "")]
    if missing:
        raise InputError(f"{where}: missing {missing}; each row needs 'id' and 'path'. Fix: add the column(s).")
    path = Path(str(row["path"]))
    return Item(id=str(row["id"]), path=str(path if path.is_absolute() else base / path))


# surrogateescape: a path that is not valid UTF-8 keeps its exact bytes (os.fsencode gives them back)
def _read_csv_manifest(path: Path) -> list[Item]:
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as f:
        return [_manifest_item(row, f"{path} row {n}", path.parent) for n, row in enumerate(csv.DictReader(f), 2)]


def _read_jsonl_manifest(path: Path) -> list[Item]:
    items = []
    with path.open(encoding="utf-8", errors="surrogateescape") as f:
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


# ---------------------------------------------------------------------------------------------------------------------
# One input's outcome, and the shard files


@dataclass
class _Outcome:
    """What became of one input: an embedding row or an error, with what was read (for incremental runs).

    Attributes:
        index: the input's index in the job's item list.
        embedding: float32 [D], or None when the input failed.
        num_maps: maps the embedding averages (chunks of a long clip, nodes of a series).
        policy: what the adapter did to fit the input (``pad``, ``crop``, ``chunk``, ...; empty when unknown).
        error: why the input failed, or None.
        error_type: the name of the exception class that made it fail (``InputError`` for a non-finite embedding).
        state: ``{"size", "mtime_ns", "sha256"}`` of the input file when it was read, or None (not a readable file).
        weights_sha256: the hash of the weights that embedded it, when ``embed`` reports one.
    """

    index: int
    embedding: np.ndarray | None = None
    num_maps: int = 1
    policy: str = ""
    error: str | None = None
    error_type: str | None = None
    state: dict[str, Any] | None = None
    weights_sha256: str | None = None


@dataclass(frozen=True)
class _ShardContext:
    """What every shard of a job carries besides its rows."""

    job: dict[str, Any]
    modality: str | None
    source_root: str | None
    dtype: str
    write_npy: bool


def input_state(path: str) -> dict[str, Any] | None:
    """Size, modification time and sha256 of an input file (what an incremental run compares); None if unreadable or
    not a regular file (reading a FIFO or a device named like an input would block or never end)."""
    try:
        stat = os.stat(path)
        if not S_ISREG(stat.st_mode):
            return None
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_sha256(Path(path))}
    except OSError:
        return None


def _relative_path(path: str, root: str | None) -> str:
    """``path`` relative to the source root (POSIX form); unchanged when there is no root or it lies outside."""
    if root is None:
        return path
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else Path(rel).as_posix()


def _shard_table(ids: list[str], rows: list[_Outcome], items: Sequence[Item], run: int, ctx: _ShardContext) -> Any:
    """The parquet table of one shard: one row per embedded input, plus the job description as schema metadata."""
    import numpy as np
    import pyarrow as pa

    emb = np.stack([o.embedding for o in rows]) if rows else np.zeros((0, 0), np.float32)
    dim = emb.shape[1]
    values = pa.array(emb.astype(ctx.dtype).reshape(-1), type=pa.float16() if ctx.dtype == "float16" else pa.float32())
    weights = sorted({o.weights_sha256 for o in rows if o.weights_sha256})
    meta = {"job": ctx.job, "run": run, "unilk_version": _unilk_version(), "weights_sha256": weights}
    paths = [_display_id(_relative_path(items[o.index].path, ctx.source_root)) for o in rows]
    columns = {
        "id": pa.array([_display_id(i) for i in ids], type=pa.string()),
        "id_bytes": pa.array([os.fsencode(i) for i in ids], type=pa.binary()),
        "path": pa.array(paths, type=pa.string()),
        "modality": pa.array([ctx.modality] * len(rows), type=pa.string()),
        "policy": pa.array([o.policy for o in rows], type=pa.string()),
        "num_maps": pa.array([o.num_maps for o in rows], type=pa.int32()),
        # a shard whose inputs all failed has no rows and no known width; Arrow needs a positive list size
        "embedding": pa.FixedSizeListArray.from_arrays(values, dim or 1),
        "sha256": pa.array([(o.state or {}).get("sha256") for o in rows], type=pa.string()),
        "run": pa.array([run] * len(rows), type=pa.int32()),
    }
    return pa.table(columns).replace_schema_metadata({"unilk": json.dumps(meta, sort_keys=True)})


def _display_id(item_id: str) -> str:
    """The id as valid UTF-8 text: bytes of a non-UTF-8 file name (surrogate escapes) shown as ``\\xNN``."""
    return os.fsencode(item_id).decode("utf-8", errors="backslashreplace")


def _id_lines(ids: Sequence[str]) -> str:
    """One JSON string per id and line: newlines or any other character inside an id cannot shift the rows."""
    return "".join(json.dumps(i) + "\n" for i in ids)


def _commit(
    out: Path, k: int, shard: range, items: Sequence[Item], result: dict[int, _Outcome], run: int, ctx: _ShardContext
) -> tuple[int, int]:
    """Write one shard's data files, then its commit record (last: the record is what makes the shard count)."""
    import numpy as np
    import pyarrow.parquet as pq

    name = _shard_name(k)
    # a shard being redone (retry_failed) stops counting as finished before its files change
    (out / "done" / f"{name}.json").unlink(missing_ok=True)
    result = {i: _refuse_unstorable(o, ctx.dtype) for i, o in result.items()}
    rows = [result[i] for i in shard if result[i].error is None]
    errors = [result[i] for i in shard if result[i].error is not None]
    ids = [items[o.index].id for o in rows]
    table = _shard_table(ids, rows, items, run, ctx)
    _atomic_write(out / "shards" / f"{name}.parquet", lambda f: pq.write_table(table, f))
    if ctx.write_npy:
        emb = np.stack([o.embedding for o in rows]).astype(ctx.dtype) if rows else np.zeros((0, 0), ctx.dtype)
        _atomic_write(out / "shards" / f"{name}.npy", lambda f: np.save(f, emb))
        _atomic_write(out / "shards" / f"{name}.ids.jsonl", lambda f: f.write(_id_lines(ids)), mode="w")
    record = {
        "shard": k,
        "run": run,
        "ids": ids,
        "dim": rows[0].embedding.shape[0] if rows else 0,  # 0: no row, so no known width (the table says 1)
        "errors": [
            {"id": items[o.index].id, "path": items[o.index].path, "type": o.error_type, "error": o.error}
            for o in errors
        ],
        "states": {items[result[i].index].id: result[i].state for i in shard},
        "weights_sha256": sorted({o.weights_sha256 for o in rows if o.weights_sha256}),
    }
    _write_json(out / "done" / f"{name}.json", record)
    return len(ids), len(errors)


def _refuse_unstorable(outcome: _Outcome, dtype: str) -> _Outcome:
    """The outcome, or its input's error when its finite float32 row would overflow to inf in the stored ``dtype``."""
    import numpy as np

    if outcome.embedding is None or np.isfinite(outcome.embedding.astype(dtype)).all():
        return outcome
    return _Outcome(
        index=outcome.index,
        error=f"its embedding has values beyond the {dtype} range; expected finite values (not written). "
        "Fix: store float32 (--dtype float32).",
        error_type="InputError",
        state=outcome.state,
    )


def _read_record(out: Path, index: int) -> dict[str, Any] | None:
    path = out / "done" / f"{_shard_name(index)}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _unilk_version() -> str:
    from unilk.version import __version__

    return __version__


# ---------------------------------------------------------------------------------------------------------------------
# Runs: the incremental plan


@dataclass
class _Plan:
    """Every run of an output directory, laid end to end: one item list and one list of shards over it.

    Shard ``k`` holds ``items[shards[k]]`` and belongs to run ``shard_run[k]``; runs follow each other. An id found in
    several shards (a changed file, re-extracted by a later run) is current in its last one.
    """

    items: list[Item]
    shards: list[range]
    shard_run: list[int]
    runs: list[dict[str, Any]]


def _fingerprint(items: Sequence[Item]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.id}\0{item.path}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _run_path(out: Path, run: int) -> Path:
    return out / "runs" / f"run-{run:05d}.json"


def _read_runs(out: Path) -> list[dict[str, Any]]:
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("run-*.json"))]
    for expected, run in enumerate(runs, 1):
        if run["run"] != expected:
            raise ConfigError(f"{out / 'runs'}: run files skip from {expected - 1} to {run['run']}; expected 1, 2, ...")
    return runs


def _lay_out(runs: list[dict[str, Any]], shard_size: int) -> _Plan:
    plan = _Plan(items=[], shards=[], shard_run=[], runs=runs)
    for run in runs:
        offset = len(plan.items)
        plan.items.extend(Item(id=i, path=p) for i, p in run["items"])
        for shard in plan_shards(len(run["items"]), shard_size):
            plan.shards.append(range(offset + shard.start, offset + shard.stop))
            plan.shard_run.append(run["run"])
    return plan


def _latest_states(records: Sequence[dict[str, Any]]) -> tuple[dict[str, dict[str, Any] | None], set[str]]:
    """Per id, the input state its current (last committed) row or error was made from; and the ids that failed."""
    states: dict[str, dict[str, Any] | None] = {}
    failed: set[str] = set()
    for record in records:
        states.update(record["states"])
        failed -= set(record["ids"])
        failed |= {e["id"] for e in record["errors"]}
    return states, failed


def _is_changed(item: Item, state: dict[str, Any] | None) -> bool:
    """Whether an input's content differs from the state it was embedded from.

    Same size and modification time count as unchanged without reading the file; otherwise the sha256 decides, so a
    file that was only touched (or copied back unchanged) is not extracted again.
    """
    try:
        stat = os.stat(item.path)
    except OSError:
        return state is not None  # gone or unreadable now: changed only if it was readable before
    if state is None:
        return True  # unreadable before, readable now
    if (stat.st_size, stat.st_mtime_ns) == (state["size"], state["mtime_ns"]):
        return False
    current = input_state(item.path)
    return current is None or current["sha256"] != state["sha256"]


def _plan_runs(
    out: Path, listing: Sequence[Item], shard_size: int, retry_failed: bool = False
) -> tuple[_Plan, list[str]]:
    """Resume if a shard lacks its commit record; else plan a new run of the new and changed inputs (if any).

    Every rank computes the same plan from the same files, and a new run's file is written atomically with the same
    bytes by whichever rank gets there, so ranks need no coordination.

    Args:
        out: the output directory.
        listing: the inputs given to this run.
        shard_size: inputs per shard.
        retry_failed: failed inputs are redone in their own shards, so they are not planned again as changed.

    Returns:
        The plan and the ids of ``listing`` that the last run (re)extracts.

    Raises:
        ConfigError: a run is unfinished (a shard lacks its commit record) and the last run lists other inputs.
    """
    (out / "runs").mkdir(exist_ok=True)
    runs = _read_runs(out)
    fingerprint = _fingerprint(listing)
    laid = _lay_out(runs, shard_size)
    records = [_read_record(out, k) for k in range(len(laid.shards))]
    if any(record is None for record in records):
        if runs[-1]["inputs_sha256"] != fingerprint:
            raise ConfigError(
                f"output directory {str(out)!r}: run {runs[-1]['run']} is unfinished and lists other inputs; "
                "expected the same inputs to resume it. Fix: rerun with the inputs of that run to finish it, "
                "then run again with the new inputs (only new and changed files are extracted)."
            )
        return laid, [i for i, _ in runs[-1]["items"]]
    states, failed = _latest_states([r for r in records if r is not None])
    redone = failed if retry_failed else set()
    todo = [
        item
        for item in listing
        if item.id not in states or (item.id not in redone and _is_changed(item, states[item.id]))
    ]
    if todo:
        run = {
            "run": len(runs) + 1,
            "inputs_sha256": fingerprint,
            "items": [[item.id, item.path] for item in todo],
            "supersedes": [item.id for item in todo if item.id in states],
            "unilk_version": _unilk_version(),
        }
        _write_json(_run_path(out, run["run"]), run)
        runs.append(run)
    return _lay_out(runs, shard_size), [item.id for item in todo]


def _run_shards(plan: _Plan, run: int) -> list[int]:
    return [k for k, r in enumerate(plan.shard_run) if r == run]


def _current_shard(plan: _Plan) -> dict[str, int]:
    """Per id, the last shard that holds it (where its current row or error lives)."""
    return {plan.items[i].id: k for k, shard in enumerate(plan.shards) for i in shard}


# ---------------------------------------------------------------------------------------------------------------------
# The job


#: a temporary file older than this is left over from a killed run (a live writer renames its file within seconds).
_STALE_TEMP_S = 3600.0


def _clean_stale_temps(out: Path, world_size: int) -> int:
    """Remove temporary files that a killed run left (``.NAME.tmp-XXXX``); returns how many.

    A single process owns the directory, so every temporary file there is stale; with several ranks another rank may
    be writing one right now, so only those untouched for ``_STALE_TEMP_S`` are removed.
    """
    now, removed = time.time(), 0
    for folder in (out, out / "shards", out / "done", out / "runs"):
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
    root = Path(os.path.realpath(out))
    # realpath, not Path.resolve: a symlink loop among the inputs is that input's error later, not this job's end
    kept = [item for item in items if not Path(os.path.realpath(item.path)).is_relative_to(root)]
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
                f"output directory {str(out)!r} holds another job (differs in {changed}); expected the same "
                "model, adapter, shard size and output format to resume or extend it. Fix: use a new --out "
                "directory, or delete this one to start over."
            )
    else:
        # several ranks may race here; they write the same content, and the rename is atomic
        _write_json(job_path, job)


def _finalize(out: Path, plan: _Plan, job: dict[str, Any]) -> bool:
    """Write ``manifest.json`` and ``errors.jsonl`` if every shard is committed; deterministic, so any rank may.

    An id held by several shards is current in the last; its rows in earlier shards are listed as superseded.
    """
    records = [_read_record(out, k) for k in range(len(plan.shards))]
    if any(r is None for r in records):
        return False
    dims = {r["dim"] for r in records if r["ids"]}
    if len(dims) > 1:
        raise ConfigError(f"{out}: shards disagree on the embedding dimension {sorted(dims)}; expected one.")
    current = _current_shard(plan)
    files = [f"shards/{_shard_name(k)}.parquet" for k in range(len(records))]
    superseded = [
        {"id": i, "file": files[k], "by_run": plan.shard_run[current[i]]}
        for k, r in enumerate(records)
        for i in r["ids"]
        if current[i] != k
    ]
    errors = [e for k, r in enumerate(records) for e in r["errors"] if current[e["id"]] == k]
    manifest = {
        "format": _FORMAT,
        "job": job,
        "unilk_version": _unilk_version(),
        "weights_sha256": sorted({w for r in records for w in r["weights_sha256"]}),
        "dim": dims.pop() if dims else 0,
        "num_items": len(current),
        "num_embeddings": sum(len(r["ids"]) for r in records) - len(superseded),
        "num_errors": len(errors),
        "num_superseded": len(superseded),
        "runs": [
            {"run": run["run"], "num_items": len(run["items"]), "shards": _run_shards(plan, run["run"])}
            for run in plan.runs
        ],
        "shards": [
            {
                "file": files[k],
                "run": plan.shard_run[k],
                "num_embeddings": len(r["ids"]),
                "num_errors": len(r["errors"]),
            }
            for k, r in enumerate(records)
        ],
        "superseded": superseded,
    }
    _atomic_write(out / "errors.jsonl", lambda f: f.write("".join(json.dumps(e) + "\n" for e in errors)), mode="w")
    _write_json(out / "manifest.json", manifest)
    return True


class _LoadDataset:
    """Map-style dataset of (item index, loaded sample or None, error record or None, input state); a bad input is
    data, not a crash: any exception while reading or adapting one input becomes its ``{"type", "error"}`` record,
    and so does a file whose reading killed a worker in an earlier run (``crashed``: path -> its sha256 and error)."""

    def __init__(
        self, items: Sequence[Item], load: Callable[[str], Any], crashed: Mapping[str, dict[str, str]] | None = None
    ) -> None:
        self.items = items
        self.load = load
        self.crashed = crashed or {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Any, dict[str, str] | None, dict[str, Any] | None]:
        from unilk.encoding import error_record

        item = self.items[index]
        # the state is read first: the embedding then belongs to this content (or to a newer one, never an older)
        state = input_state(item.path)
        crash = self.crashed.get(item.path)
        if crash is not None and state is not None and crash["sha256"] == state["sha256"]:
            return index, None, {"type": "WorkerDiedError", "error": crash["error"]}, state
        try:
            return index, self.load(item.path), None, state
        except Exception as err:  # one input's failure, whatever the decoder raised, must not end the job
            record = error_record(item.id, err)
            if not isinstance(err, InputError) and item.path not in record["error"]:
                record["error"] = f"{_display_id(item.path)}: {record['error']}"
            return index, None, {"type": record["type"], "error": record["error"]}, state


#: files whose reading killed a data-loading worker; a rerun records them as failed instead of reading them again
_CRASHED = "crashed.jsonl"


def _read_crashed(out: Path) -> dict[str, dict[str, str]]:
    """``path -> {"sha256", "error"}`` of the inputs that killed a worker in an earlier run (the last record wins)."""
    path = out / _CRASHED
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["path"]: {"sha256": r["sha256"], "error": r["error"]} for r in records}


@contextmanager
def _recording_crashes(out: Path, items: Sequence[Item]) -> Iterator[None]:
    """Note the input(s) a dying worker was reading in ``crashed.jsonl`` (several ranks append whole lines)."""
    from unilk.errors import WorkerDiedError

    try:
        yield
    except WorkerDiedError as err:
        lines = []
        for index in err.reading:
            state = input_state(items[index].path)
            if state is not None:
                error = (
                    f"{_display_id(items[index].path)}: reading it killed a data-loading worker ({err.how}); left out"
                )
                lines.append(json.dumps({"path": items[index].path, "sha256": state["sha256"], "error": error}) + "\n")
        if lines:
            with open(out / _CRASHED, "a") as handle:
                handle.write("".join(lines))
        raise


def _keep_list(batch: list[Any]) -> list[Any]:
    return batch


def _batches(shards: list[range], owned: list[int], batch_size: int) -> list[list[int]]:
    """Batches of item indices that never cross a shard boundary, so a shard completes with its last batch."""
    return [list(shards[k][i : i + batch_size]) for k in owned for i in range(0, len(shards[k]), batch_size)]


#: the recorded error of an input whose embedding is not finite (its row is never written).
_NONFINITE_ERROR = "its embedding has NaN or inf values; expected finite values (not written)"


def embed_loaded(
    embed: Callable[[list[Any]], Any],
    loaded: Sequence[tuple[int, Any, dict[str, str] | None, dict[str, Any] | None]],
) -> list[_Outcome]:
    """Embed the loaded samples of one batch; inputs that failed to load pass through as errors.

    An embedding with NaN or inf values becomes its input's error (type ``InputError``), so no engine writes it.

    Args:
        embed: ``list of samples -> [N, D]`` embeddings, or ``(embeddings, num_maps, policy)`` with per-sample lists.
            It may have a ``weights_sha256()`` method, whose value is recorded with every row.
        loaded: ``(index, sample, error record, state)`` per input, as :class:`_LoadDataset` returns; the error record
            is ``{"type", "error"}`` or None.

    Returns:
        One :class:`_Outcome` per input, in order.

    Raises:
        ConfigError: ``embed`` returned another number of rows than samples.
    """
    import numpy as np

    good = [sample for _, sample, err, _ in loaded if err is None]
    emb, num_maps, policy = _split_embed_output(embed(good), len(good)) if good else (None, [], [])
    weights = getattr(embed, "weights_sha256", None)
    weights_sha256 = weights() if good and callable(weights) else None
    rows = iter(range(len(good)))
    outcomes = []
    for index, _, err, state in loaded:
        if err is not None:
            outcomes.append(_Outcome(index=index, error=err["error"], error_type=err["type"], state=state))
            continue
        j = next(rows)
        if not np.isfinite(emb[j]).all():
            outcomes.append(_Outcome(index=index, error=_NONFINITE_ERROR, error_type="InputError", state=state))
            continue
        outcomes.append(_Outcome(index, emb[j], num_maps[j], policy[j], state=state, weights_sha256=weights_sha256))
    return outcomes


def _split_embed_output(output: Any, n: int) -> tuple[np.ndarray, list[int], list[str]]:
    if isinstance(output, tuple) and len(output) == 3:
        emb, num_maps, policy = _to_numpy(output[0]), [int(c) for c in output[1]], [str(p) for p in output[2]]
    else:
        emb, num_maps, policy = _to_numpy(output), [1] * n, [""] * n
    if emb.ndim != 2 or len(emb) != n or len(num_maps) != n or len(policy) != n:
        raise ConfigError(
            f"embed returned {tuple(emb.shape)} embeddings ({len(num_maps)} counts, {len(policy)} policies) for {n} "
            "samples; expected [N, D] and one count and policy per sample."
        )
    return emb, num_maps, policy


def _torch_outcomes(
    items: Sequence[Item],
    batches: list[list[int]],
    load: Callable[[str], Any],
    embed: Callable[[list[Any]], Any],
    num_workers: int,
    watch: WorkerWatch,
    crashed: Mapping[str, dict[str, str]],
) -> Iterator[list[_Outcome]]:
    """DataLoader workers run ``load``; this process runs ``embed`` on each batch, in order."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(
        watch.track(_LoadDataset(items, load, crashed)),
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=_keep_list,
        worker_init_fn=watch.worker_init,
    )
    with torch.inference_mode():
        for batch in loader:
            yield embed_loaded(embed, batch)


def extract_items(
    items: Sequence[Item],
    out_dir: str | os.PathLike[str],
    *,
    load: Callable[[str], Any],
    embed: Callable[[list[Any]], Any],
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
    source_root: str | os.PathLike[str] | None = None,
    embedding_dtype: str = "float32",
    ray_options: Mapping[str, Any] | None = None,
) -> ExtractSummary:
    """Embed ``items`` into sharded files under ``out_dir``; a rerun extracts only what is new or changed.

    The first run plans every input; a later run over the same directory resumes an unfinished run, or else plans a
    new run of the inputs that are new or whose content changed (their older rows are then superseded). Shards
    already committed are never rewritten (except with ``retry_failed``).

    Args:
        items: the inputs, in job order (e.g. from :func:`list_inputs`).
        out_dir: output directory (created).
        load: ``path -> sample``; runs in DataLoader workers (or Ray tasks) and must be picklable when
            ``num_workers > 0`` under a non-fork start method, or with ``engine="ray"``. Any exception marks that
            input as failed (its type and message are recorded).
        embed: ``list of samples -> [N, D]`` embeddings, one row per sample, in order; or ``(embeddings, num_maps,
            policy)``. With ``engine="ray"`` it runs in Ray actors, so it must be picklable; a ``for_device(device)``
            method, if present, gives the copy each actor uses.
        job_meta: what else identifies the job (model, checkpoint, modality...); stored in ``job.json`` and compared on
            resume. Its ``modality`` fills the shards' ``modality`` column.
        shard_size: inputs per shard.
        batch_size: inputs per ``embed`` call.
        num_workers: DataLoader worker processes (0: load in the main process; the Ray engine ignores it).
        rank: this process's rank; default from an initialised process group or torchrun's ``RANK``.
        world_size: number of processes; default likewise from ``WORLD_SIZE``.
        write_npy: also write ``part-XXXXX.npy`` + ``part-XXXXX.ids.jsonl`` per shard.
        retry_failed: redo committed shards that recorded errors (e.g. after fixing the files).
        progress: show progress (a bar on a terminal, else a line now and then; items/s).
        engine: ``torch`` (DataLoader workers) or ``ray`` (Ray Data tasks load, an actor pool embeds).
        source_root: the shards' ``path`` column holds input paths relative to this directory.
        embedding_dtype: ``float32`` or ``float16`` for the stored embeddings.
        ray_options: for ``engine="ray"``: see :func:`unilk.extract_ray.ray_outcomes`.

    Returns:
        The :class:`ExtractSummary` (done, failed, skipped; totals over ranks when a process group is initialised).

    Raises:
        ConfigError: ``out_dir`` holds a different job, bad shard/rank settings, an unknown engine or dtype, or Ray
            missing.
    """
    from unilk.progress import Progress

    start = time.perf_counter()
    if engine == "ray":
        from unilk.extract_ray import import_ray

        import_ray()  # fail before anything is written
    elif engine != "torch":
        raise ConfigError(f"extract engine: got {engine!r}, expected one of {list(_ENGINES)}.")
    if embedding_dtype not in _DTYPES:
        raise ConfigError(f"embedding_dtype: got {embedding_dtype!r}, expected one of {list(_DTYPES)}.")
    out = Path(out_dir)
    rank, world_size = resolve_rank(rank, world_size)
    plan_shards(len(items), shard_size)  # validates shard_size before anything is written
    job = {"format": _FORMAT, "shard_size": shard_size, "embedding_dtype": embedding_dtype} | (job_meta or {})
    _prepare_out_dir(out, job)
    _clean_stale_temps(out, world_size)
    plan, todo = _plan_runs(out, items, shard_size, retry_failed)
    ctx = _ShardContext(
        job=job,
        modality=job.get("modality"),
        source_root=None if source_root is None else os.fspath(source_root),
        dtype=embedding_dtype,
        write_npy=write_npy,
    )

    summary = ExtractSummary(out_dir=str(out))
    current = _current_shard(plan)
    owned = []
    for k in shards_of_rank(len(plan.shards), rank, world_size):
        record = _read_record(out, k)
        if record is not None and not (retry_failed and record["errors"]):
            summary.skipped += sum(current[plan.items[i].id] == k for i in plan.shards[k])
            summary.shards_skipped += 1
        else:
            owned.append(k)
    logger.info(
        "rank %d/%d: %d shard(s) to do (%d new or changed inputs in run %d), %d already committed",
        rank, world_size, len(owned), len(todo), len(plan.runs), summary.shards_skipped,
    )  # fmt: skip

    if owned:  # the job is (again) incomplete until these shards are committed
        (out / "manifest.json").unlink(missing_ok=True)
    item_shard = {i: k for k in owned for i in plan.shards[k]}
    results: dict[int, dict[int, _Outcome]] = {k: {} for k in owned}  # shard -> item index -> outcome
    batches = _batches(plan.shards, owned, batch_size)
    from unilk.loader_workers import WorkerWatch

    # a DataLoader worker that dies (a decoder crash, the out-of-memory killer) is told in one line naming its input
    watch = WorkerWatch(
        num_workers,
        lambda i: repr(_display_id(plan.items[i].path)),
        fix="rerun: extraction resumes, recording that file as failed (retry_failed=True reads it again)",
        workers="num_workers=",
    )
    if engine == "torch":
        crashed = {} if retry_failed else _read_crashed(out)
        stream = _torch_outcomes(plan.items, batches, load, embed, num_workers, watch, crashed)
    elif engine == "ray":
        from unilk.extract_ray import ray_outcomes

        stream = ray_outcomes(plan.items, batches, load, embed, **dict(ray_options or {}))
    else:
        raise ConfigError(f"extract engine: got {engine!r}, expected one of {list(_ENGINES)}.")
    bar = Progress(len(item_shard), desc=f"extract[{rank}]", unit="item", enabled=progress)
    with bar, _recording_crashes(out, plan.items), watch.naming_deaths():
        for outcomes in stream:
            for outcome in outcomes:
                k = item_shard[outcome.index]
                if k not in results or outcome.index in results[k]:
                    # a retried task's second answer for an input already taken: keep the first, write nothing twice
                    logger.warning("input %s arrived twice; the repeat is dropped", plan.items[outcome.index].id)
                    continue
                results[k][outcome.index] = outcome
                if len(results[k]) == len(plan.shards[k]):
                    done, failed = _commit(out, k, plan.shards[k], plan.items, results.pop(k), plan.shard_run[k], ctx)
                    summary.done += done
                    summary.failed += failed
                    summary.shards_written += 1
            bar.update(len(outcomes))
            bar.set_postfix(done=summary.done, failed=summary.failed)
    if results:
        raise RuntimeError(f"extract engine {engine!r} ended with shards {sorted(results)} incomplete; rerun resumes.")

    summary.complete = _sum_and_finalize(summary, out, plan, job, rank)
    summary.errors = _read_errors(out) if summary.complete else []
    summary.seconds = time.perf_counter() - start
    return summary


def _to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    import numpy as np
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _group_ready() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _sum_and_finalize(summary: ExtractSummary, out: Path, plan: _Plan, job: dict[str, Any], rank: int) -> bool:
    """Total the counts over ranks and write the manifest once every shard is committed; return whether it is.

    Without a process group (one process, or ranks started independently, e.g. a SLURM array), every rank tries to
    finalize: the manifest is a pure function of the committed shards, so concurrent writers write the same bytes.
    With a group, the all_reduce waits for every rank, rank 0 writes, and a barrier lets the others see it.
    """
    if not _group_ready():
        return _finalize(out, plan, job)
    import torch
    import torch.distributed as dist

    counts = torch.tensor(
        [summary.done, summary.failed, summary.skipped, summary.shards_written, summary.shards_skipped]
    )
    dist.all_reduce(counts)  # also a barrier: every rank has committed its shards
    summary.done, summary.failed, summary.skipped, summary.shards_written, summary.shards_skipped = counts.tolist()
    if rank == 0:
        _finalize(out, plan, job)
    dist.barrier()
    return (out / "manifest.json").exists()


def _read_errors(out: Path) -> list[dict[str, str]]:
    path = out / "errors.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def read_table(out_dir: str | os.PathLike[str], *, include_superseded: bool = False) -> pa.Table:
    """Read a finished extraction as one Arrow table (columns as in the shards: ``id``, ``path``, ``embedding``...).

    Args:
        out_dir: the directory :func:`extract_items` wrote.
        include_superseded: keep the rows of inputs that a later run re-extracted (their ``run`` column tells).

    Returns:
        The current rows in shard order (failed inputs absent), ready for pandas, Polars or DuckDB. ``id`` is
        readable text; ``id_bytes`` holds each id's exact bytes (they differ for file names that are not UTF-8).

    Raises:
        InputError: the directory has no ``manifest.json`` (the job is not finished: rerun it to complete it).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = Path(out_dir)
    manifest = _read_manifest(out)
    stale: dict[str, set[str]] = {}
    for row in manifest["superseded"]:
        stale.setdefault(row["file"], set()).add(row["id"])
    tables = []
    for shard in manifest["shards"]:
        table = pq.read_table(out / shard["file"])
        if not include_superseded and shard["file"] in stale:
            old = pa.array(sorted(os.fsencode(i) for i in stale[shard["file"]]), type=pa.binary())
            table = table.filter(pc.invert(pc.is_in(table.column("id_bytes"), old)))
        tables.append(table)
    # a shard whose inputs all failed has a placeholder width (1): leave it out unless nothing else is there
    tables = [t for t in tables if t.num_rows] or tables[:1]
    return pa.concat_tables(tables).replace_schema_metadata(tables[0].schema.metadata) if tables else pa.table({})


def _read_manifest(out: Path) -> dict[str, Any]:
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        raise InputError(
            f"{str(out)!r} has no manifest.json, so its extraction is not finished; expected a completed job. "
            "Fix: rerun the same extraction, which resumes where it stopped."
        )
    return json.loads(manifest_path.read_text())


def read_embeddings(out_dir: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Read a finished extraction back into memory (current rows only).

    Args:
        out_dir: the directory :func:`extract_items` wrote.

    Returns:
        ``(ids, embeddings)``: ids in shard order (failed and superseded rows absent), exactly as :func:`list_inputs`
        made them (also for file names that are not valid UTF-8), and a float32 array [N, D] (float16 shards are
        widened).

    Raises:
        InputError: the directory has no ``manifest.json`` (the job is not finished: rerun it to complete it).
    """
    import numpy as np

    manifest = _read_manifest(Path(out_dir))
    table = read_table(out_dir)
    if table.num_rows == 0:
        return [], np.zeros((0, manifest["dim"]), np.float32)
    ids = [os.fsdecode(b) for b in table.column("id_bytes").to_pylist()]
    flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return ids, flat.reshape(table.num_rows, manifest["dim"]).astype(np.float32)


class EncoderEmbed:
    """``list of Prepared -> (embeddings, num_maps, policy)`` with an :class:`~unilk.encoding.Encoder`; picklable.

    A pickled copy carries the Encoder's settings, not its modules: a Ray actor rebuilds the same model on its own
    device (random trunks are seeded, weights files are read again) and reports the hash of the weights it holds.
    """

    def __init__(self, encoder_kwargs: Mapping[str, Any], encoder: Any = None) -> None:
        self.encoder_kwargs = dict(encoder_kwargs)
        self._encoder = encoder
        self._hashed: tuple[Any, str] | None = None  # (modules hashed, their sha256): hashed once, not per batch

    @property
    def encoder(self) -> Any:
        """The Encoder, built on first use."""
        if self._encoder is None:
            from unilk.encoding import Encoder

            self._encoder = Encoder(**self.encoder_kwargs)
        return self._encoder

    def for_device(self, device: str) -> EncoderEmbed:
        """A copy that builds its Encoder on ``device``."""
        return EncoderEmbed(self.encoder_kwargs | {"device": device})

    def __call__(self, prepared: list[Any]) -> tuple[torch.Tensor, list[int], list[str]]:
        stacks = self.encoder.to_maps(prepared)
        emb, _ = self.encoder.embed_samples(stacks)
        return emb, [s.shape[0] for s in stacks], [p.policy for p in prepared]

    def weights_sha256(self) -> str:
        """sha256 over the names and bytes of every module built so far (trunks in deploy form, series stem)."""
        encoder = self.encoder
        modules = [m for _, m in sorted(encoder._trunks.items())]
        modules += [encoder._series_stem] if encoder._series_stem is not None else []
        key = tuple(id(m) for m in modules)
        if self._hashed is None or self._hashed[0] != key:
            self._hashed = (key, _state_sha256(modules))
        return self._hashed[1]

    def __getstate__(self) -> dict[str, Any]:
        return {"encoder_kwargs": self.encoder_kwargs, "_encoder": None, "_hashed": None}


def _state_sha256(modules: Sequence[torch.nn.Module]) -> str:
    import torch

    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}\n".encode())
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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
        out_dir: output directory; rerunning the same job there resumes it, or extracts what is new or changed.
        model: trunk name; default: the checkpoint's architecture, else ``unireplknet_a``.
        checkpoint: a ``unilk train`` checkpoint (it sets the architecture and adapter config) or a weights file.
        pretrained: the registry's pretrained weights; default: yes unless ``checkpoint`` (see
            :class:`~unilk.encoding.Encoder`); ``False`` for random weights.
        adapter: adapter config overrides for ``modality`` (a dict of config fields).
        model_kwargs: extra ``create_model`` keywords.
        engine: ``torch`` (DataLoader workers decode, this process embeds; torchrun-aware) or ``ray`` (Ray Data
            tasks decode, an actor pool embeds; needs ``pip install 'unilk[ray]'``).
        device: ``"auto"`` or a torch device (the Ray engine gives each actor a GPU when the cluster has GPUs and
            ``device`` is not ``cpu``).
        pool: ``"avg"`` or ``"max"`` (see :class:`~unilk.encoding.Encoder`).
        **kwargs: passed to :func:`extract_items` (``shard_size``, ``batch_size``, ``num_workers``, ``rank``,
            ``world_size``, ``write_npy``, ``retry_failed``, ``progress``, ``embedding_dtype``, ``ray_options``).

    Returns:
        The :class:`ExtractSummary`.

    Raises:
        ConfigError: unknown engine or modality, Ray missing, a model that cannot be built from these options
            (nothing is written then), or ``out_dir`` holding another job.
        InputError: the source lists nothing (inputs inside ``out_dir`` are left out) or repeats ids.
    """
    from unilk.encoding import Encoder
    from unilk.loading import source_sha256

    if engine not in _ENGINES:
        raise ConfigError(f"extract engine: got {engine!r}, expected one of {list(_ENGINES)}.")
    if engine == "ray":
        from unilk.extract_ray import import_ray

        import_ray()  # fail before the model is built
    listed = _is_item_list(source)
    items = list(source) if listed else list_inputs(source, extensions=modality_extensions(modality))
    items = _exclude_out_dir(items, Path(out_dir))
    if not items:
        raise InputError(f"input source {source!r} lists no inputs outside the output directory {str(out_dir)!r}.")
    encoder_kwargs = {
        "model": model,
        "checkpoint": checkpoint,
        "pretrained": pretrained,
        "adapters": {modality: dict(adapter)} if adapter else None,
        "model_kwargs": model_kwargs,
        "device": device,
        "batch_size": kwargs.get("batch_size", 32),
        "pool": pool,
    }
    encoder = Encoder(**encoder_kwargs)
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
        load=encoder.preparer(modality),
        embed=EncoderEmbed(encoder_kwargs, encoder),
        job_meta=job_meta,
        engine=engine,
        source_root=None if listed else source_root(source),
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
