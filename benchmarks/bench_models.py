"""Whole-model throughput of unilk's fast large-kernel path against the same model and weights with the plain path.

Usage: ``python benchmarks/bench_models.py [unireplknet_a slak_t ...] [--batch 32] [--train-form]`` (same options as
``unilk bench models``). The plain build is the same module with ``lkconv_mode("plain")``, so weights are identical;
outputs are checked equal and the table prints inference and training-step ratios.
"""

from unilk.diagnostics.bench import bench_models_command

if __name__ == "__main__":
    bench_models_command()
