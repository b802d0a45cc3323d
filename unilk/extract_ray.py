"""The Ray Data engine of :func:`unilk.extract.extract_items`: tasks load, an actor pool embeds, the driver commits.

The driver plans the job exactly as the torch engine does (same runs, shards and batches) and hands Ray Data one block
per batch. A task runs ``load`` on each input of a block (decoding and adapting it) and a pool of actors runs
``embed`` (the trunk; one GPU per actor when the cluster has GPUs); the outcomes stream back to the driver, which
commits a shard once all of its inputs have arrived, through the same code as the torch engine.

Fault tolerance comes from Ray: a task whose worker dies is run again, a dead actor is restarted and its pending
batches are resubmitted. An input whose outcome arrives twice is taken once (the driver keys outcomes by input index
and writes each shard once), so a retry never duplicates a row. A killed driver loses only the shards not yet
committed; the rerun resumes like the torch engine.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from unilk.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from unilk.extract import Item, _Outcome

__all__ = ["import_ray", "ray_outcomes"]

logger = logging.getLogger(__name__)


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or a :class:`ConfigError` saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise ConfigError(
            "extract engine 'ray': Ray Data is not installed; expected the ray package. "
            "Fix: pip install 'unilk[ray]' (or pip install 'ray[data]'), or use engine='torch'."
        ) from err
    return ray


class LoadBlock:
    """Ray Data task function: one block of ``(index, path)`` rows -> the loaded samples, pickled, with errors.

    Paths travel as their file-system bytes and error records as JSON, so file names that are not valid UTF-8 (and
    messages quoting them) pass through Arrow's string columns unchanged.
    """

    def __init__(self, load: Callable[[str], Any]) -> None:
        self.load = load

    def __call__(self, block: pa.Table) -> pa.Table:
        import pyarrow as pa

        from unilk.extract import Item, _LoadDataset

        paths = [os.fsdecode(p) for p in block.column("path").to_pylist()]
        dataset = _LoadDataset([Item(id=p, path=p) for p in paths], self.load)
        loaded = [dataset[j] for j in range(len(paths))]
        return pa.table(
            {
                "index": block.column("index"),
                "sample": pa.array([None if err else pickle.dumps(s) for _, s, err, _ in loaded], type=pa.binary()),
                "error": pa.array([None if err is None else json.dumps(err) for _, _, err, _ in loaded], pa.string()),
                "state": pa.array([json.dumps(state) for _, _, _, state in loaded], type=pa.string()),
            }
        )


class EmbedActor:
    """Ray Data actor: holds the model (``embed``) and embeds the loaded blocks, one ``embed`` call per block."""

    def __init__(self, embed: Callable[[list[Any]], Any], use_gpu: bool, threads: int | None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        for_device = getattr(embed, "for_device", None)
        # Ray masks the actor's GPU as device 0
        self.embed = for_device("cuda" if use_gpu else "cpu") if callable(for_device) else embed

    def __call__(self, block: pa.Table) -> pa.Table:
        import torch

        from unilk.extract import embed_loaded

        indices = block.column("index").to_pylist()
        samples = block.column("sample").to_pylist()
        errors = block.column("error").to_pylist()
        states = block.column("state").to_pylist()
        loaded = [
            (i, None if err else pickle.loads(s), None if err is None else json.loads(err), json.loads(state))
            for i, s, err, state in zip(indices, samples, errors, states)
        ]
        with torch.inference_mode():
            return outcomes_to_table(embed_loaded(self.embed, loaded))


def outcomes_to_table(outcomes: Sequence[_Outcome]) -> pa.Table:
    """Outcomes as an Arrow table (the embedding as its float32 bytes, so blocks of any dimension concatenate; an
    error as JSON ``{"type", "error"}``, which escapes any character)."""
    import pyarrow as pa

    return pa.table(
        {
            "index": pa.array([o.index for o in outcomes], type=pa.int64()),
            "embedding": pa.array(
                [None if o.embedding is None else o.embedding.astype("float32").tobytes() for o in outcomes],
                type=pa.binary(),
            ),
            "num_maps": pa.array([o.num_maps for o in outcomes], type=pa.int32()),
            "policy": pa.array([o.policy for o in outcomes], type=pa.string()),
            "error": pa.array(
                [None if o.error is None else json.dumps({"type": o.error_type, "error": o.error}) for o in outcomes],
                type=pa.string(),
            ),
            "state": pa.array([json.dumps(o.state) for o in outcomes], type=pa.string()),
            "weights_sha256": pa.array([o.weights_sha256 for o in outcomes], type=pa.string()),
        }
    )


def table_to_outcomes(table: pa.Table) -> list[_Outcome]:
    """The inverse of :func:`outcomes_to_table`."""
    import numpy as np

    from unilk.extract import _Outcome

    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    errors = [None if e is None else json.loads(e) for e in columns["error"]]
    return [
        _Outcome(
            index=index,
            embedding=None if emb is None else np.frombuffer(emb, dtype=np.float32).copy(),
            num_maps=num_maps,
            policy=policy,
            error=None if error is None else error["error"],
            error_type=None if error is None else error["type"],
            state=json.loads(state),
            weights_sha256=weights,
        )
        for index, emb, num_maps, policy, error, state, weights in zip(
            columns["index"],
            columns["embedding"],
            columns["num_maps"],
            columns["policy"],
            errors,
            columns["state"],
            columns["weights_sha256"],
        )
    ]


def _connect(ray: Any, address: str | None, num_cpus: int | None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local one without the dashboard."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def ray_outcomes(
    items: Sequence[Item],
    batches: list[list[int]],
    load: Callable[[str], Any],
    embed: Callable[[list[Any]], Any],
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    actors: int | None = None,
    actor_cpus: float = 1.0,
    loaders: int | None = None,
    threads: int | None = None,
    gpu: bool | None = None,
) -> Iterator[list[_Outcome]]:
    """Run ``load`` in Ray Data tasks and ``embed`` in an actor pool over ``batches``; yield the outcomes as they come.

    Args:
        items: the job's inputs; ``batches`` index into them.
        batches: lists of item indices; each becomes one block, one load task and one ``embed`` call.
        load: ``path -> sample`` (picklable).
        embed: ``list of samples -> embeddings`` (picklable; see :func:`unilk.extract.embed_loaded`).
        address: a running cluster to join (default: ``RAY_ADDRESS``, else a local cluster is started).
        num_cpus: CPUs of a local cluster started here (default: all).
        actors: size of the actor pool (default: one per GPU with GPU actors, else 1).
        actor_cpus: CPUs reserved by each CPU actor.
        loaders: most load tasks at once (default: the cluster's CPUs; each task takes one CPU).
        threads: torch threads in each actor (default: Ray's, which follows the actor's CPUs).
        gpu: give each actor a GPU (default: when the cluster has GPUs).

    Yields:
        Lists of outcomes (one list per embedded block), in completion order.

    Raises:
        ConfigError: ``gpu=True`` on a cluster without GPUs.
    """
    if not batches:
        return
    ray = import_ray()
    import pyarrow as pa

    _connect(ray, address, num_cpus)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    use_gpu = gpus > 0 if gpu is None else gpu
    if use_gpu and gpus == 0:
        raise ConfigError("extract engine 'ray': gpu=True but the cluster has no GPU; expected one. Fix: gpu=None.")
    pool = actors or (gpus if use_gpu else 1)
    blocks = [
        pa.table(
            {"index": pa.array(b, pa.int64()), "path": pa.array([os.fsencode(items[i].path) for i in b], pa.binary())}
        )
        for b in batches
    ]
    tasks = loaders or max(1, int(ray.cluster_resources().get("CPU", 1)))
    # Ray fuses a task pool of the actor pool's size into the actors, which would load inside them, one block at a
    # time, with no overlap: a different size keeps loading in tasks
    tasks = tasks + 1 if tasks == pool else tasks
    resources = {"num_gpus": 1} if use_gpu else {"num_cpus": actor_cpus}
    # Ray Data's defaults are what exactly-once needs: a failed task is retried without limit, and a dead actor is
    # restarted without limit with its pending batches resubmitted
    dataset = (
        ray.data.from_arrow(blocks)
        .map_batches(
            LoadBlock(load),
            batch_size=None,
            batch_format="pyarrow",
            num_cpus=1,
            compute=ray.data.TaskPoolStrategy(size=tasks),
        )
        .map_batches(
            EmbedActor,
            fn_constructor_args=(embed, use_gpu, threads),
            batch_size=None,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=pool),
            **resources,
        )
    )
    # this dataset's own copy of the context: the caller's global Ray Data settings stay as they are
    dataset.context.execution_options.preserve_order = False  # outcomes are keyed by input: no need to wait in order
    dataset.context.enable_progress_bars = False  # extract_items shows its own
    logger.info("ray engine: %d batches, %d actor(s)%s", len(batches), pool, " with a GPU each" if use_gpu else "")
    for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        yield table_to_outcomes(table)
