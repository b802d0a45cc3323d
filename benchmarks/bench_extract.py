"""Extraction throughput (items/s): ``unilk.extract`` against a plain loop that calls the model file by file.

Writes ``--files`` one-second 16 kHz wav clips (Speech Commands preset: 1×128×128 maps), then in one process times

* ``loop (train form)``: what a user writes first: ``create_model(...).eval()``, then adapter -> model per file;
* ``loop (deploy form)``: the same loop on the re-parameterized model, to separate that gain from batching;
* ``extract``: :func:`unilk.extract.extract` (deploy form, batches, DataLoader workers decoding, parquet shards).

Every variant uses the same weights (seeded); the embeddings of the loop and of ``extract`` are compared.

Run: ``python benchmarks/bench_extract.py [--model unireplknet_a] [--files 128] [--workers 2] [--batch-size 32]
[--threads N]``. Prints one line per variant and the ratios.
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


def write_clips(root: Path, count: int) -> list[Path]:
    import soundfile as sf

    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        t = np.arange(16000) / 16000
        wave = 0.2 * np.sin(2 * np.pi * (150 + 5 * i) * t) + 0.02 * rng.standard_normal(16000)
        paths.append(root / f"clip{i:05d}.wav")
        sf.write(paths[-1], wave.astype(np.float32), 16000)
    return paths


def plain_loop(model: torch.nn.Module, adapter, paths: list[Path]) -> tuple[float, np.ndarray]:
    """Seconds for the file-by-file loop, and its embeddings."""
    rows = []
    start = time.perf_counter()
    with torch.inference_mode():
        for path in paths:
            x = adapter(str(path)).unsqueeze(0)  # (1, 1, H, W)
            rows.append(model.forward_head(model.forward_features(x), pre_logits=True)[0].numpy())
    return time.perf_counter() - start, np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unireplknet_a")
    parser.add_argument("--files", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*random weights.*")  # the speed does not depend on the weights
    warnings.filterwarnings("ignore", message=".*smaller than the reach.*")  # 128x128 maps -> 4x4 last stage

    from unilk.adapters import AudioAdapter, AudioConfig
    from unilk.extract import extract, read_embeddings
    from unilk.models.registry import create_model
    from unilk.reparam import reparameterize

    audio = AudioConfig.preset("speechcommands")
    adapter = AudioAdapter(audio)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.model}, {args.files} one-second clips -> 1x128x128")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "clips").mkdir()
        paths = write_clips(root / "clips", args.files)

        torch.manual_seed(0)  # the Encoder seeds its random trunks with 0 too: same weights everywhere
        model = create_model(args.model, num_classes=0, in_chans=1).eval()
        plain_loop(model, adapter, paths[:2])  # warm-up
        train_s, _ = plain_loop(model, adapter, paths)
        reparameterize(model)
        plain_loop(model, adapter, paths[:2])
        deploy_s, loop_emb = plain_loop(model, adapter, paths)

        kwargs = dict(model=args.model, pretrained=False, adapter=audio.to_dict(), device="cpu", progress=False)
        extract("audio", root / "clips", root / "warm", batch_size=8, num_workers=0, **kwargs)  # warm-up
        start = time.perf_counter()
        summary = extract(
            "audio", root / "clips", root / "out", batch_size=args.batch_size, num_workers=args.workers, **kwargs
        )
        extract_s = time.perf_counter() - start
        _, emb = read_embeddings(root / "out")

    n = args.files
    print(f"loop (train form)   {n / train_s:8.1f} items/s")
    print(f"loop (deploy form)  {n / deploy_s:8.1f} items/s")
    print(f"extract             {n / extract_s:8.1f} items/s  (workers={args.workers}, batch={args.batch_size}, "
          f"done={summary.done}, failed={summary.failed})")  # fmt: skip
    print(f"ratio extract / loop (train form):  {train_s / extract_s:.2f}x")
    print(f"ratio extract / loop (deploy form): {deploy_s / extract_s:.2f}x")
    print(f"max |extract - loop| embedding difference: {np.abs(emb - loop_emb).max():.2e}")


if __name__ == "__main__":
    main()
