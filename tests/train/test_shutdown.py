"""Leaving the process group: no rank tears its connections down while a peer has not yet left the final barrier."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from unilk.train.distributed import shutdown_process_group

WORLD = 2


def _rank(rank: int, store_path: str, out_dir: str) -> None:
    """Rank 1 is slow to leave the barrier; at destroy time, record which ranks had marked that they left it."""
    dist.init_process_group("gloo", store=dist.FileStore(store_path, WORLD), rank=rank, world_size=WORLD)
    barrier, destroy = dist.barrier, dist.destroy_process_group

    def slow_barrier(*args, **kwargs):
        barrier(*args, **kwargs)
        if rank == 1:
            time.sleep(1.0)

    def recording_destroy(*args, **kwargs):
        store = dist.distributed_c10d._get_default_store()
        marked = [r for r in range(WORLD) if store.check([f"unilk/left_barrier/{r}"])]
        Path(out_dir, f"{rank}.json").write_text(json.dumps(marked))
        destroy(*args, **kwargs)

    dist.barrier, dist.destroy_process_group = slow_barrier, recording_destroy
    shutdown_process_group(wait_for_peers=True)


def test_no_rank_leaves_before_every_rank_has_left_the_barrier(tmp_path):
    mp.start_processes(_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, start_method="spawn")
    for rank in range(WORLD):
        assert json.loads((tmp_path / f"{rank}.json").read_text()) == [0, 1]


def test_without_a_group_there_is_nothing_to_leave():
    shutdown_process_group(wait_for_peers=True)
    assert not dist.is_initialized()
