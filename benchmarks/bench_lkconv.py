"""Time unilk's large-kernel depthwise convolution against plain nn.Conv2d (NCHW) on the trunks' shapes.

Usage: ``python benchmarks/bench_lkconv.py [--quick] [--batch 1 --batch 32] [--family slak_t]`` (same options as
``unilk bench lkconv``). Prints a markdown table of forward and forward+backward times, ratios and the largest
relative error of outputs and gradients.
"""

from unilk.diagnostics.bench import bench_lkconv_command

if __name__ == "__main__":
    bench_lkconv_command()
