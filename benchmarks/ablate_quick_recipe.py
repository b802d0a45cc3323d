"""Before/after accuracy of a quick recipe under recipe overrides (augmentations, automatic statistics), same seed.

Each variant trains the recipe to its epoch budget (``train.max_minutes`` off, so a busy machine changes the time
but not the result). To keep CPU runs short, the adapter's clean maps are computed once per input and reused where
that changes nothing: audio augmentations act on the adapter's output, so the trained model sees exactly the maps of
an uncached run; the other modalities' augmenting transforms are left uncached.

Run: ``python benchmarks/ablate_quick_recipe.py audio/quick_speech_commands --root /tmp/sc --out /tmp/ablate \\
--variant base= --variant stats="adapter.mean=auto adapter.std=auto"``. Prints one JSON line per variant.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

import torch

_RAW: dict[str, torch.Tensor] = {}  # audio: un-normalised maps by source, shared by every variant


def _memoize_adapter(parts: object) -> None:
    """Cache ``adapter(source)`` of the training and evaluation transforms by source (a path).

    Audio maps are cached before normalisation and normalised per variant: the normalisation is affine and comes last
    in the adapter (padding included), so variants with other statistics share the expensive fbanks exactly. Only a
    plain adapter or the audio wrapper (which augments the adapter's output) is cached: the image, video and point
    wrappers and the multi-view and voting tests draw their randomness before the map is made, so they stay as they
    are.
    """
    from unilk.adapters.audio import AudioAdapter, normalize_fbank
    from unilk.adapters.augment_transforms import AudioTrain

    for dataset in (parts.train_set, parts.eval_set):  # type: ignore[attr-defined]
        transform = dataset.transform
        holder = transform if isinstance(transform, AudioTrain) else None
        if holder is None and not hasattr(transform, "config"):
            continue  # a wrapper whose randomness comes before the map: nothing to share between epochs
        adapter = holder.adapter if holder is not None else transform
        cfg = adapter.config
        if cfg.modality == "audio":
            raw_adapter = AudioAdapter(cfg.replace(mean=None, std=None))

            def cached(source, raw_adapter=raw_adapter, cfg=cfg):
                if source not in _RAW:
                    _RAW[source] = raw_adapter(source)
                return normalize_fbank(_RAW[source], cfg.mean, cfg.std)

        else:
            cache: dict[str, torch.Tensor] = {}

            def cached(source, adapter=adapter, cache=cache):
                if source not in cache:
                    cache[source] = adapter(source)
                return cache[source]

        if holder is not None:
            holder.adapter = type("Cached", (), {"__call__": staticmethod(cached), "config": cfg})()
        else:
            dataset.transform = cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--root", required=True, help="data.root of the (synthetic) dataset")
    parser.add_argument("--out", required=True, help="folder for the runs")
    parser.add_argument("--variant", action="append", required=True, help="NAME=OVERRIDES (space-separated)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (1: steady on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from unilk.train.build import build_parts
    from unilk.train.config import load_recipe
    from unilk.train.engine import Trainer

    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        recipe = load_recipe(
            args.recipe,
            [
                f"data.root={args.root}",
                f"output_dir={Path(args.out) / name}",
                "train.max_minutes=null",
                "log.progress=false",
                *shlex.split(overrides),
            ],
        )
        start = time.monotonic()
        parts = build_parts(recipe)
        _memoize_adapter(parts)
        summary = Trainer(recipe, parts).fit()
        row = {"variant": name, "overrides": overrides, "best": summary["best"], **summary["metrics"]}
        row["minutes"] = round((time.monotonic() - start) / 60, 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
