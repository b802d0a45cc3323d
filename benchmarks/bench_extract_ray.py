"""Extraction throughput (items/s) of the Ray Data engine against the torch engine, on the same CPUs.

Writes ``--files`` one-second 16 kHz wav clips (Speech Commands preset: 1×128×128 maps), then times
:func:`unilk.extract.extract` with ``engine="torch"`` (DataLoader workers decode, the main process embeds) and with
``engine="ray"`` (Ray Data tasks decode, one actor embeds) on a local Ray cluster of ``--cpus`` CPUs. The cluster is
started before the clock runs (a long-lived cluster is the usual set-up); the Ray figure includes starting the actor
and the load workers, as every job pays it. Both runs must write the same ids and embeddings (checked).

Run: ``python benchmarks/bench_extract_ray.py [--model unireplknet_a] [--files 256] [--cpus 2] [--batch-size 32]``.
Pin the process to the same CPUs for a fair figure: ``taskset -c 0,1 python benchmarks/bench_extract_ray.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from bench_extract import write_clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unireplknet_a")
    parser.add_argument("--files", type=int, default=256)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray cluster and torch threads")
    parser.add_argument("--workers", type=int, default=1, help="torch engine DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=64)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*random weights.*")  # the speed does not depend on the weights
    warnings.filterwarnings("ignore", message=".*smaller than the reach.*")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    torch.set_num_threads(args.cpus)

    import ray

    from unilk.adapters import AudioConfig
    from unilk.extract import extract, read_embeddings

    audio = AudioConfig.preset("speechcommands")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible "
          f"({len(os.sched_getaffinity(0))} usable), torch {torch.__version__}, ray {ray.__version__}; "
          f"{args.model}, {args.files} one-second clips -> 1x128x128, batch {args.batch_size}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "clips").mkdir()
        write_clips(root / "clips", args.files)
        kwargs = dict(model=args.model, adapter=audio.to_dict(), device="cpu", progress=False)
        kwargs |= dict(batch_size=args.batch_size, shard_size=args.shard_size)
        extract("audio", root / "clips", root / "warm", num_workers=0, **kwargs)  # warm-up: imports, caches

        torch_run = extract("audio", root / "clips", root / "torch", engine="torch", num_workers=args.workers, **kwargs)
        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - start
        ray_options = {"actors": 1, "actor_cpus": 1, "threads": args.cpus}
        ray_run = extract("audio", root / "clips", root / "ray", engine="ray", ray_options=ray_options, **kwargs)
        ray.shutdown()
        ids_t, emb_t = read_embeddings(root / "torch")
        ids_r, emb_r = read_embeddings(root / "ray")

    assert ids_t == ids_r, "the engines wrote different ids"
    print(f"torch engine  {torch_run.items_per_s:8.1f} items/s  ({torch_run.seconds:.1f} s, workers={args.workers})")
    print(f"ray engine    {ray_run.items_per_s:8.1f} items/s  ({ray_run.seconds:.1f} s, 1 actor with {args.cpus} "
          f"threads, load tasks on the other CPU; cluster start {init_s:.1f} s, not counted)")  # fmt: skip
    print(f"ratio ray / torch: {ray_run.items_per_s / torch_run.items_per_s:.2f}x")
    print(f"max |ray - torch| embedding difference: {np.abs(emb_r - emb_t).max():.2e}")


if __name__ == "__main__":
    main()
