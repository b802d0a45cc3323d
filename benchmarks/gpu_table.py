"""The GPU table: every large-kernel convolution algorithm and four whole models, timed in one run on one GPU.

Usage (on the GPU machine, with only PyTorch, torchvision, timm and einops installed, then
``pip install -e . --no-deps``)::

    python benchmarks/gpu_table.py                 # ~8-10 minutes on one H100/H200; markdown on stdout
    python benchmarks/gpu_table.py --out table.md  # also write the table to a file
    python benchmarks/gpu_table.py --smoke         # a tiny CPU run (about a minute) that exercises the code paths
    TRITON_INTERPRET=1 python benchmarks/gpu_table.py --smoke   # the same with the Triton kernels interpreted

What it prints:

1. The machine: GPU, driver, CUDA, cuDNN, PyTorch, Triton, timm, and the measured device-to-device copy bandwidth and
   float32 FMA rate (the "bound" column: the forward's bytes and FLOPs divided by them, see :class:`Peaks`).
2. The op table: depthwise "same" convolutions at K = 13 (UniRepLKNet), 31 (RepLKNet) and SLaK's 51×5 ∥ 5×51 pair
   (summed), stage-1 shapes (56×56 maps), batch 1/32/128, float32 and bfloat16, NCHW and channels-last, for every
   algorithm: ``plain`` (``F.conv2d`` as given: PyTorch's native kernel for NCHW, cuDNN for channels-last), the
   forced lkconv modes ``nchw``, ``channels_last`` (cuDNN), ``fft`` (float32 only) and ``triton``, and ``auto`` (the
   cached autotune). Each cell is "forward ms / forward+backward ms"; ✗ marks a result that differs from ``plain``.
3. The model table: inference (deploy form) and training-step (forward + backward) throughput of unireplknet_a,
   unireplknet_s, slak_t and replknet_31b under bfloat16 autocast in channels-last, for the plain build
   (``lkconv_mode("plain")``), ``auto``, ``triton`` and ``torch.compile`` of the plain build, each with its logits
   checked against the plain build's.

Every cell runs in its own ``try``: an error is written into the table and the run goes on. A global time budget
(``--budget-s``) skips what no longer fits, and says so in the table.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable

import torch
from torch import Tensor

import unilk
from unilk.ops.lkconv import depthwise_conv2d_sum, lkconv_mode

ALGORITHMS = ("plain", "nchw", "channels_last", "fft", "triton", "auto")
MODEL_MODES = ("plain", "auto", "triton", "compile")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# A torch.compile row starts only with this much budget left: compiling a model for inference and training takes
# minutes, and a row cannot be interrupted once started.
COMPILE_MIN_S = 150.0


@dataclasses.dataclass(frozen=True)
class OpShape:
    """A depthwise convolution (or a sum of them) of ``channels`` maps of ``size x size``."""

    name: str
    channels: int
    size: int
    kernels: tuple[tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class Config:
    """What one run measures."""

    device: str
    op_shapes: tuple[OpShape, ...]
    batches: tuple[int, ...]
    dtypes: tuple[str, ...]
    models: tuple[str, ...]
    image_size: int
    infer_batch: int
    train_batch: int
    compile_models: bool
    min_time_s: float


FULL_OPS = (
    OpShape("k13 (unireplknet_s C96)", 96, 56, ((13, 13),)),
    OpShape("k31 (replknet_31b C128)", 128, 56, ((31, 31),)),
    OpShape("k51x5+5x51 (slak_t C124)", 124, 56, ((51, 5), (5, 51))),
)
# Small enough for Triton's CPU interpreter (kernels are cropped to 11 taps per side on 6x6 maps).
SMOKE_OPS = (
    OpShape("k13", 3, 6, ((13, 13),)),
    OpShape("k31", 3, 6, ((31, 31),)),
    OpShape("k51x5+5x51", 3, 6, ((51, 5), (5, 51))),
)


class Budget:
    """Wall-clock deadlines: the whole run, and the share each part may use before the next one starts."""

    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.seconds = seconds

    def left(self, share: float = 1.0) -> float:
        """Seconds left before ``share`` of the budget is used up."""
        return self.start + share * self.seconds - time.monotonic()


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _time_ms(fn: Callable[[], object], device: str, min_s: float = 0.25, max_reps: int = 25) -> float:
    """Median milliseconds of ``fn`` after one untimed warm-up (compilation, autotuning), at least 3 timed calls.

    ``min_s == 0`` (the smoke run) times a single call without a warm-up: it checks the code path, not the speed.
    """
    if min_s == 0:
        start = time.perf_counter()
        fn()
        _synchronize(device)
        return (time.perf_counter() - start) * 1e3
    fn()
    _synchronize(device)
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - began < min_s and len(times) < max_reps):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _rel_err(result: Tensor, reference: Tensor) -> float:
    result, reference = result.detach().float(), reference.detach().float()
    return ((result - reference).abs().max() / reference.abs().max().clamp_min(1e-30)).item()


def _tolerance(dtype: torch.dtype) -> float:
    # float32 convolutions may run in TF32 on cuDNN (PyTorch's default for convolutions): about 1e-3 relative.
    return 5e-3 if dtype == torch.float32 else 3e-2


def _short(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:160]


# ---------------------------------------------------------------------------------------------------------------- ops


def _op_inputs(shape: OpShape, batch: int, dtype: torch.dtype, layout: str, device: str) -> tuple[Tensor, list[Tensor]]:
    gen = torch.Generator().manual_seed(batch + shape.channels)
    x = torch.randn(batch, shape.channels, shape.size, shape.size, generator=gen)
    weights = [torch.randn(shape.channels, 1, kh, kw, generator=gen) / math.sqrt(kh * kw) for kh, kw in shape.kernels]
    x = x.to(device, dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, [w.to(device, dtype) for w in weights]


def _op_run(x: Tensor, weights: list[Tensor], algorithm: str, backward: bool) -> tuple[Tensor, ...]:
    """Forward (and input and weight gradients of a summed-output loss) with ``algorithm``."""
    with lkconv_mode(algorithm):
        if not backward:
            with torch.no_grad():
                return (depthwise_conv2d_sum(x, weights),)
        leaves = [x.detach().requires_grad_(), *(w.detach().requires_grad_() for w in weights)]
        out = depthwise_conv2d_sum(leaves[0], leaves[1:])
        grads = torch.autograd.grad(out, leaves, torch.ones_like(out))
        return (out, *grads)


def _op_reference(x: Tensor, weights: list[Tensor]) -> tuple[Tensor, ...]:
    """The plain build in float32 on the same (rounded) values: output, input gradient, weight gradients."""
    return _op_run(x.float(), [w.float() for w in weights], "plain", backward=True)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _algorithm_unavailable(algorithm: str, dtype: torch.dtype, device: str) -> str | None:
    if algorithm == "fft" and dtype != torch.float32:
        return "n/a (float32 only)"
    if algorithm == "triton" and torch.device(device).type != "cuda" and not _interpreting():
        return "n/a (needs CUDA or TRITON_INTERPRET=1)"
    return None


def op_table(config: Config, budget: Budget, share: float, peaks: Peaks | None) -> list[str]:
    """Markdown lines of the op table, one row per (op, batch, dtype, layout)."""
    head = "| op | batch | dtype | layout | fwd bound ms: memory / fp32 FMA |"
    rule = "|---|---|---|---|---|"
    for algorithm in ALGORITHMS:
        head += f" {algorithm} |"
        rule += "---|"
    lines = [head + " best fwd | best f+b |", rule + "---|---|"]
    notes: list[str] = []
    for batch in config.batches:
        for shape in config.op_shapes:
            for dtype_name in config.dtypes:
                for layout in ("nchw", "channels_last"):
                    dtype = DTYPES[dtype_name]
                    row = f"| {shape.name} | {batch} | {dtype_name} | {layout} |"
                    if budget.left(share) <= 0:
                        lines.append(row + " skipped: time budget |" + " |" * (len(ALGORITHMS) + 2))
                        continue
                    cells, fwd, full, bound = _op_row(
                        shape, batch, dtype, layout, config.device, config.min_time_s, peaks, notes
                    )
                    best_fwd = min(fwd, key=fwd.__getitem__) if fwd else "-"
                    best_full = min(full, key=full.__getitem__) if full else "-"
                    lines.append(f"{row} {bound} | {' | '.join(cells)} | {best_fwd} | {best_full} |")
                    print(lines[-1], file=sys.stderr, flush=True)
    return lines + ([""] + [f"- {note}" for note in notes] if notes else [])


def _op_row(
    shape: OpShape,
    batch: int,
    dtype: torch.dtype,
    layout: str,
    device: str,
    min_s: float,
    peaks: Peaks | None,
    notes: list[str],
) -> tuple[list[str], dict[str, float], dict[str, float], str]:
    """Cells of one op-table row; timings of the algorithms that ran and matched the reference."""
    label = f"{shape.name} b{batch} {str(dtype).removeprefix('torch.')} {layout}"
    try:
        x, weights = _op_inputs(shape, batch, dtype, layout, device)
        reference = _op_reference(x, weights)
    except Exception as err:  # a row that cannot even be set up (e.g. out of memory) is recorded, not fatal
        notes.append(f"{label}: setup failed: {_short(err)}")
        return ["error"] * len(ALGORITHMS), {}, {}, "-"
    bound = "-" if peaks is None else peaks.describe_forward(x, shape)
    cells, fwd, full = [], {}, {}
    for algorithm in ALGORITHMS:
        unavailable = _algorithm_unavailable(algorithm, dtype, device)
        if unavailable:
            cells.append(unavailable)
            continue
        try:
            fwd_ms = _time_ms(lambda a=algorithm: _op_run(x, weights, a, backward=False), device, min_s)
            full_ms = _time_ms(lambda a=algorithm: _op_run(x, weights, a, backward=True), device, min_s)
            results = _op_run(x, weights, algorithm, backward=True)
            err = max(_rel_err(r, ref) for r, ref in zip(results, reference))
        except Exception as error:  # one failing algorithm must not lose the row
            notes.append(f"{label} {algorithm}: {_short(error)}")
            cells.append("error")
            if torch.device(device).type == "cuda":
                torch.cuda.empty_cache()
            continue
        ok = err <= _tolerance(dtype)
        cells.append(f"{fwd_ms:.3f} / {full_ms:.3f}" + ("" if ok else " ✗"))
        if ok:
            fwd[algorithm], full[algorithm] = fwd_ms, full_ms
        else:
            notes.append(f"{label} {algorithm}: differs from plain by {err:.2e} (relative)")
    return cells, fwd, full, bound


# ------------------------------------------------------------------------------------------------------------- models


@dataclasses.dataclass
class _Models:
    """One model's train-form and deploy-form copies (same weights) and their inputs."""

    train: torch.nn.Module
    deploy: torch.nn.Module
    infer_input: Tensor
    train_input: Tensor


def _autocast(device: str) -> contextlib.AbstractContextManager[object]:
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def _build(name: str, config: Config) -> _Models:
    memory = torch.channels_last
    train = unilk.create_model(name).to(config.device, memory_format=memory)
    # Reparameterizing builds new convolutions; put their weights in the same memory format as the rest.
    deploy = unilk.reparameterize(copy.deepcopy(train), inplace=True).to(memory_format=memory).eval()
    gen = torch.Generator().manual_seed(0)
    size = config.image_size

    def batch_of(n: int) -> Tensor:
        return torch.randn(n, 3, size, size, generator=gen).to(config.device).contiguous(memory_format=memory)

    return _Models(train.train(), deploy, batch_of(config.infer_batch), batch_of(config.train_batch))


def _infer_fn(models: _Models, mode: str, device: str) -> Callable[[], Tensor]:
    module = torch.compile(models.deploy) if mode == "compile" else models.deploy
    lk_mode = "plain" if mode == "compile" else mode

    def infer() -> Tensor:
        with lkconv_mode(lk_mode), torch.inference_mode(), _autocast(device):
            return module(models.infer_input)

    return infer


def _train_fn(models: _Models, mode: str, device: str) -> Callable[[], Tensor]:
    module = torch.compile(models.train) if mode == "compile" else models.train
    lk_mode = "plain" if mode == "compile" else mode

    def step() -> Tensor:
        models.train.zero_grad(set_to_none=True)
        with lkconv_mode(lk_mode), _autocast(device):
            loss = module(models.train_input).float().pow(2).mean()
        loss.backward()
        return loss.detach()

    return step


def model_table(config: Config, budget: Budget, share: float) -> list[str]:
    """Markdown lines of the model table: img/s per model and mode, inference and training step.

    The eager modes of every model run first; the ``torch.compile`` rows (minutes of compilation each) come last, so
    a budget spent compiling loses only compile rows.
    """
    lines = [
        f"| model | mode | infer img/s (batch {config.infer_batch}) | infer vs plain | logits rel err"
        f" | train img/s (batch {config.train_batch}) | train vs plain | loss rel err |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    # Per model, the plain build's times and results: {"infer": ms, "train": ms, "logits": Tensor, "loss": float}.
    references: dict[str, dict[str, object]] = {name: {} for name in config.models}
    eager = [mode for mode in MODEL_MODES if mode != "compile"]
    passes = [eager, ["compile"]] if config.compile_models else [eager]
    for modes in passes:
        for name in config.models:
            if budget.left(share) <= 0:
                lines.append(f"| {name} | {', '.join(modes)} | skipped: time budget | | | | | |")
                continue
            try:
                models = _build(name, config)
            except Exception as err:  # e.g. out of memory: record it and go on with the next model
                notes.append(f"{name}: build failed: {_short(err)}")
                lines.append(f"| {name} | {', '.join(modes)} | error | | | | | |")
                continue
            for mode in modes:
                if mode == "triton" and torch.device(config.device).type != "cuda":
                    lines.append(f"| {name} | triton | n/a (needs CUDA) | | | | | |")
                    continue
                needed = COMPILE_MIN_S if mode == "compile" else 0.0
                if budget.left(share) <= needed:
                    lines.append(f"| {name} | {mode} | skipped: time budget | | | | | |")
                    continue
                cells = []
                for kind in ("infer", "train"):
                    cells += _model_cells(models, name, mode, kind, config, references[name], notes)
                lines.append(f"| {name} | {mode} | {' | '.join(cells)} |")
                print(lines[-1], file=sys.stderr, flush=True)
            del models
            if torch.device(config.device).type == "cuda":
                torch.cuda.empty_cache()
    if not config.compile_models:
        lines.append("| all | compile | skipped (--no-compile or smoke) | | | | | |")
    return lines + ([""] + [f"- {note}" for note in notes] if notes else [])


def _model_cells(
    models: _Models, name: str, mode: str, kind: str, config: Config, reference: dict[str, object], notes: list[str]
) -> list[str]:
    """``[img/s, ratio to plain, rel err]`` of one model, mode and kind (``"infer"`` or ``"train"``)."""
    batch = config.infer_batch if kind == "infer" else config.train_batch
    try:
        fn = _infer_fn(models, mode, config.device) if kind == "infer" else _train_fn(models, mode, config.device)
        ms = _time_ms(fn, config.device, min_s=4 * config.min_time_s, max_reps=20)
        result = fn()
        if kind == "infer":
            if mode == "plain":
                reference["logits"] = result.float().cpu()
            err = _rel_err(result.cpu(), reference["logits"])
        else:
            value = float(result)
            if mode == "plain":
                reference["loss"] = value
            err = abs(value - reference["loss"]) / max(abs(reference["loss"]), 1e-30)
    except Exception as error:  # one failing mode must not lose the model's other rows
        notes.append(f"{name} {mode} {kind}: {_short(error)}")
        traceback.print_exc(file=sys.stderr)
        if torch.device(config.device).type == "cuda":
            torch.cuda.empty_cache()
        return ["error", "-", "-"]
    if mode == "plain":
        reference[kind] = ms
    ratio = f"{reference[kind] / ms:.2f}x" if kind in reference else "-"
    flag = "" if err <= 5e-2 else " ✗"
    return [f"{batch / ms * 1e3:.0f}", ratio, f"{err:.1e}{flag}"]


# -------------------------------------------------------------------------------------------------------- environment


def _driver_version() -> str:
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        return f"unknown ({type(err).__name__})"


def _module_version(name: str) -> str:
    try:
        return __import__(name).__version__
    except ImportError:
        return "not installed"


@dataclasses.dataclass(frozen=True)
class Peaks:
    """What the GPU sustains: device-to-device copy bytes/s and float32 FMA FLOP/s (SGEMM with TF32 off).

    A depthwise convolution must at least read ``x`` and write ``y`` (the memory bound) and do ``2 * taps`` float32
    FLOPs per output on the CUDA cores (the FMA bound; 16-bit inputs too, as every kernel here accumulates in float32
    on CUDA cores). Backward is about 3x both: the input gradient and the weight gradient each cost a forward.
    """

    bandwidth: float
    fp32_flops: float

    def describe_forward(self, x: Tensor, shape: OpShape) -> str:
        """``"memory ms / FMA ms"`` for the forward of ``shape`` on ``x`` (kernels cropped as unilk crops them)."""
        n, c, h, w = x.shape
        taps = sum(min(kh, 2 * h - 1) * min(kw, 2 * w - 1) for kh, kw in shape.kernels)
        memory_s = 2 * x.numel() * x.element_size() / self.bandwidth
        fma_s = 2 * n * c * h * w * taps / self.fp32_flops
        return f"{memory_s * 1e3:.3f} / {fma_s * 1e3:.3f}"


def measure_peaks(device: str) -> Peaks | None:
    """:class:`Peaks` measured on ``device`` (None off CUDA)."""
    if torch.device(device).type != "cuda":
        return None
    return Peaks(_copy_bandwidth(device), _fp32_flops(device))


def _copy_bandwidth(device: str) -> float:
    source = torch.empty(2**28, dtype=torch.float32, device=device)  # 1 GiB
    target = torch.empty_like(source)
    copy_ms = _time_ms(lambda: target.copy_(source), device, min_s=0.2)
    return 2 * 2**30 / (copy_ms / 1e3)


def _fp32_flops(device: str, size: int = 8192) -> float:
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        gemm_ms = _time_ms(lambda: a @ b, device, min_s=0.2)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * size**3 / (gemm_ms / 1e3)


def environment(config: Config, peaks: Peaks | None) -> list[str]:
    """Markdown bullet lines describing the machine and the software."""
    lines = []
    if torch.device(config.device).type == "cuda":
        props = torch.cuda.get_device_properties(config.device)
        lines.append(f"- GPU: {props.name}, {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB")
        lines.append(f"- driver {_driver_version()}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    else:
        lines.append(f"- device: {config.device} ({platform.processor() or platform.machine()}), smoke run")
    if peaks is not None:
        lines.append(
            f"- measured: copy bandwidth {peaks.bandwidth / 1e9:.0f} GB/s (1 GiB device-to-device copy), float32 FMA "
            f"{peaks.fp32_flops / 1e12:.1f} TFLOP/s (8192² SGEMM, TF32 off)"
        )
    lines.append(
        f"- torch {torch.__version__}, triton {_module_version('triton')}, timm {_module_version('timm')}, "
        f"unilk {unilk.__version__}, python {platform.python_version()}"
    )
    lines.append(
        f"- cudnn.benchmark={torch.backends.cudnn.benchmark}, cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
        f"models: bfloat16 autocast, channels-last, {config.image_size}x{config.image_size} inputs"
    )
    return lines


# ---------------------------------------------------------------------------------------------------------------- main


def _config(args: argparse.Namespace) -> Config:
    if args.smoke:
        return Config(
            device="cpu",
            op_shapes=SMOKE_OPS,
            batches=(1,),
            dtypes=("float32", "bfloat16"),
            models=("test_unireplknet", "test_slak", "test_replknet"),
            image_size=64,
            infer_batch=2,
            train_batch=2,
            compile_models=False,
            min_time_s=0.0,
        )
    if not torch.cuda.is_available():
        raise SystemExit("gpu_table.py: this PyTorch sees no CUDA device; run with --smoke to check the script on CPU")
    return Config(
        device="cuda",
        op_shapes=FULL_OPS,
        batches=(128, 32, 1),
        dtypes=("float32", "bfloat16"),
        models=tuple(args.models),
        image_size=224,
        infer_batch=args.infer_batch,
        train_batch=args.train_batch,
        compile_models=not args.no_compile,
        min_time_s=0.25,
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="Tiny shapes and test models on CPU.")
    parser.add_argument("--budget-s", type=float, default=None, help="Wall-clock budget (default 480, smoke 300).")
    parser.add_argument("--models", nargs="+", default=["unireplknet_a", "unireplknet_s", "slak_t", "replknet_31b"])
    parser.add_argument("--infer-batch", type=int, default=128)
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--no-compile", action="store_true", help="Skip the torch.compile rows.")
    parser.add_argument("--out", default=None, help="Also write the markdown to this file.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every part that fits the budget and print the markdown tables."""
    args = _parse(argv)
    config = _config(args)
    # 480 s leaves room under a 10-minute limit for start-up and for the one row that may overrun the budget.
    budget = Budget(args.budget_s if args.budget_s is not None else (300.0 if args.smoke else 480.0))
    torch.backends.cudnn.benchmark = True
    peaks = measure_peaks(config.device)
    out = ["## GPU table (benchmarks/gpu_table.py)", "", *environment(config, peaks), ""]
    out += ["### Large-kernel op: forward ms / forward+backward ms per algorithm", ""]
    out += op_table(config, budget, share=0.45, peaks=peaks)
    out += ["", "### Whole models: bfloat16 autocast, channels-last", ""]
    out += model_table(config, budget, share=1.0)
    out += ["", f"Total wall time {time.monotonic() - budget.start:.0f} s of a {budget.seconds:.0f} s budget."]
    text = "\n".join(out)
    print(text, flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
