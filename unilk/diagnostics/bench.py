"""Benchmarks that time unilk against the plain PyTorch reference in the same process and report ratios.

Two benchmarks, both usable as library functions and from the ``unilk bench`` command:

- :func:`bench_lkconv`: :func:`unilk.ops.lkconv.depthwise_conv2d` against plain ``F.conv2d`` (NCHW) over the
  depthwise shapes the real trunks use, forward and forward+backward, with outputs and gradients checked equal.
- :func:`bench_model`: a whole model on its default fast path (eager, or ``torch.compile``-d) against the same model
  and weights as the plain bit-reference build (``set_fast_path(False)``, ``lkconv_mode("plain")``), inference and
  one training step, with outputs checked equal.

Timings interleave reference and candidate in every repeat and report medians, because the machines this runs on are
shared and noisy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import torch
from torch import Tensor, nn

from unilk.devices import DEVICE, resolve_device
from unilk.errors import ConfigError
from unilk.layers.fast_path import set_fast_path, uses_fast_path
from unilk.ops.fused import fused_tail
from unilk.ops.lkconv import MODES, depthwise_conv2d, lkconv_mode
from unilk.progress import Progress

__all__ = [
    "LKCONV_SHAPES",
    "QUICK_SHAPES",
    "BenchSetting",
    "ConvShape",
    "bench_lkconv",
    "bench_model",
    "format_lkconv_table",
    "lkconv_table_header",
    "lkconv_table_row",
    "format_model_table",
    "format_official_table",
    "bench_official",
    "perturb_for_check",
    "bench",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ConvShape:
    """One depthwise convolution of a real trunk: ``channels`` maps of ``size x size``, kernel ``k_h x k_w``."""

    family: str
    channels: int
    size: int
    k_h: int
    k_w: int

    @property
    def label(self) -> str:
        return f"{self.family} C{self.channels} {self.size}x{self.size} k{self.k_h}x{self.k_w}"


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclasses.dataclass(frozen=True)
class BenchSetting:
    """Where and how both builds run.

    Attributes:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        dtype: the op benchmark's tensor dtype; for whole models, float32 runs as is and a 16-bit dtype runs under
            ``torch.autocast`` (mixed precision, as models are trained and served).
        channels_last: inputs (and models) in the channels-last memory format.
        mode: the fast build's ``lkconv_mode`` (``"auto"``, or a forced algorithm to compare on a new device).
    """

    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    channels_last: bool = False
    mode: str = "auto"

    def describe(self) -> str:
        """``"float32, cpu"``-style summary for table headers."""
        layout = ", channels-last" if self.channels_last else ""
        mode = "" if self.mode == "auto" else f", fast mode {self.mode}"
        return f"{str(self.dtype).removeprefix('torch.')}, {self.device}{layout}{mode}"

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA runs asynchronously; timings must include it)."""
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize(self.device)

    def layout(self, x: Tensor) -> Tensor:
        """``x`` on the device in the chosen memory format (dtype unchanged)."""
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Mixed precision for 16-bit whole-model runs, else a no-op."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=self.dtype)


def _stages(family: str, dims: tuple[int, ...], kernels: list[list[tuple[int, int]]]) -> list[ConvShape]:
    sizes = (56, 28, 14, 7)
    return [ConvShape(family, c, s, kh, kw) for c, s, ks in zip(dims, sizes, kernels) for kh, kw in ks]


def _slak(m: int, n: int = 5) -> list[tuple[int, int]]:
    """SLaK's three parallel branches: M x N, N x M and N x N."""
    return [(m, n), (n, m), (n, n)]


# Stage sizes at 224 input; dims and kernels from shared/spec (SLaK-T at width 1.3x, RepLKNet-31B, UniRepLKNet A/S).
LKCONV_SHAPES: list[ConvShape] = [
    *_stages("unireplknet_a", (40, 80, 160, 320), [[(13, 13)]] * 4),
    *_stages("unireplknet_s", (96, 192, 384, 768), [[(13, 13)]] * 4),
    *_stages("slak_t", (124, 249, 499, 998), [_slak(51), _slak(49), _slak(47), _slak(13)]),
    *_stages("replknet_31b", (128, 256, 512, 1024), [[(31, 31)], [(29, 29)], [(27, 27)], [(13, 13)]]),
]
QUICK_SHAPES: list[ConvShape] = [
    ConvShape("unireplknet_a", 40, 56, 13, 13),
    ConvShape("unireplknet_s", 384, 14, 13, 13),
    ConvShape("slak_t", 124, 56, 51, 5),
    ConvShape("slak_t", 499, 14, 47, 5),
    ConvShape("replknet_31b", 128, 56, 31, 31),
    ConvShape("replknet_31b", 512, 14, 27, 27),
]


def _time_pair(
    reference: Callable[[], object],
    candidate: Callable[[], object],
    repeats: int,
    min_time_s: float = 1.0,
    synchronize: Callable[[], None] = lambda: None,
) -> tuple[float, float, float, float]:
    """Median seconds of ``reference`` and ``candidate``, run alternately after one warm-up each, and two ratios.

    Runs at least ``repeats`` pairs, and more (up to 50) for fast calls, so the pairs take about ``min_time_s``. The
    ratio is the median over pairs of ``reference / candidate``: on a shared machine whole stretches of time run slow,
    and a pair run back to back sees the same stretch, so its ratio survives noise that swamps the medians of times.
    The ratio of the fastest runs estimates the uncontended speed-up. ``synchronize`` runs before every clock read, so
    asynchronous device work is counted.

    Returns:
        ``(reference median s, candidate median s, median of per-pair ratios, ratio of the minimum times)``.
    """
    synchronize()
    start = time.perf_counter()
    reference()
    candidate()
    synchronize()
    pair_s = time.perf_counter() - start
    pairs = max(repeats, min(50, math.ceil(min_time_s / max(pair_s, 1e-6))))
    ref_times, cand_times = [], []
    for _ in range(pairs):
        for fn, times in ((reference, ref_times), (candidate, cand_times)):
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            times.append(time.perf_counter() - start)
    ratios = [r / c for r, c in zip(ref_times, cand_times)]
    median_ratio, best_ratio = statistics.median(ratios), min(ref_times) / min(cand_times)
    return statistics.median(ref_times), statistics.median(cand_times), median_ratio, best_ratio


def _relative_error(result: Tensor, reference: Tensor) -> float:
    result, reference = result.float(), reference.float()
    scale = reference.abs().max().clamp_min(torch.finfo(reference.dtype).tiny)
    return ((result - reference).abs().max() / scale).item()


def _conv_step(x: Tensor, weight: Tensor, grad_out: Tensor | None, mode: str) -> tuple[Tensor, ...]:
    """One forward (and backward when ``grad_out`` is given) in ``mode`` (``"plain"``: the reference)."""
    with lkconv_mode(mode), fused_tail(mode != "plain"):
        if grad_out is None:
            with torch.no_grad():
                return (depthwise_conv2d(x, weight),)
        x_, w_ = x.detach().requires_grad_(), weight.detach().requires_grad_()
        out = depthwise_conv2d(x_, w_)
        return (out, *torch.autograd.grad(out, (x_, w_), grad_out))


def _bench_case(
    shape: ConvShape,
    batch: int,
    repeats: int,
    backward: bool,
    min_time_s: float = 1.0,
    setting: BenchSetting = BenchSetting(),
) -> dict[str, object]:
    """Time and check one shape at one batch size (see :func:`bench_lkconv`)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, shape.channels, shape.size, shape.size, generator=gen)
    weight = torch.randn(shape.channels, 1, shape.k_h, shape.k_w, generator=gen) / (shape.k_h * shape.k_w) ** 0.5
    grad_out = torch.randn(x.shape, generator=gen) if backward else None
    x, weight = setting.layout(x.to(setting.dtype)), weight.to(setting.device, setting.dtype)
    grad_out = None if grad_out is None else setting.layout(grad_out.to(setting.dtype))
    row: dict[str, object] = {"label": shape.label, "batch": batch}
    errors = []
    for key, g in (("fwd", None), ("train", grad_out)) if backward else (("fwd", None),):
        ref_s, fast_s, ratio, best = _time_pair(
            lambda g=g: _conv_step(x, weight, g, "plain"),
            lambda g=g: _conv_step(x, weight, g, setting.mode),
            repeats,
            min_time_s,
            setting.synchronize,
        )
        row.update(
            {f"{key}_ref_ms": ref_s * 1e3, f"{key}_ms": fast_s * 1e3, f"{key}_ratio": ratio, f"{key}_best": best}
        )
        reference, result = _conv_step(x, weight, g, "plain"), _conv_step(x, weight, g, setting.mode)
        errors += [_relative_error(a, b) for a, b in zip(result, reference)]
    row["max_rel_err"] = max(errors)
    return row


def bench_lkconv(
    shapes: list[ConvShape],
    batches: tuple[int, ...] = (1, 32),
    repeats: int = 3,
    backward: bool = True,
    progress: bool = True,
    min_time_s: float = 1.0,
    setting: BenchSetting = BenchSetting(),
) -> list[dict[str, object]]:
    """Time the fast depthwise convolution against plain ``F.conv2d`` on each shape and batch.

    Args:
        shapes: the convolutions to time.
        batches: batch sizes.
        repeats: timed runs per measurement (medians are reported).
        backward: also time forward+backward (input and weight gradients).
        progress: show progress (a bar on a terminal, else a line now and then).
        min_time_s: fast calls are repeated (up to 50 pairs) until one measurement takes about this long.
        setting: device, dtype, memory format and the fast build's mode (default: float32 NCHW on CPU, ``auto``).

    Returns:
        One dict per (shape, batch): ``label, batch, fwd_ref_ms, fwd_ms, fwd_ratio`` and, with ``backward``,
        ``train_ref_ms, train_ms, train_ratio``; ``max_rel_err`` is the largest error of output and gradients.
    """
    cases = [(shape, batch) for batch in batches for shape in shapes]
    return [
        _bench_case(shape, batch, repeats, backward, min_time_s, setting)
        for shape, batch in Progress(len(cases), desc="lkconv", unit="case", enabled=progress).iterate(cases)
    ]


def lkconv_table_header(backward: bool = True) -> str:
    """Markdown header of the :func:`bench_lkconv` table."""
    head = "| shape | batch | fwd plain ms | fwd unilk ms | fwd ratio | fwd best |"
    rule = "|---|---|---|---|---|---|"
    if backward:
        head += " fwd+bwd plain ms | fwd+bwd unilk ms | fwd+bwd ratio | fwd+bwd best |"
        rule += "---|---|---|---|"
    return f"{head} max rel err |\n{rule}---|"


def lkconv_table_row(row: dict[str, object]) -> str:
    """One markdown line of a :func:`bench_lkconv` row."""
    line = f"| {row['label']} | {row['batch']} | {row['fwd_ref_ms']:.2f} | {row['fwd_ms']:.2f} |"
    line += f" {row['fwd_ratio']:.2f}x | {row['fwd_best']:.2f}x |"
    if "train_ratio" in row:
        line += f" {row['train_ref_ms']:.1f} | {row['train_ms']:.1f} | {row['train_ratio']:.2f}x |"
        line += f" {row['train_best']:.2f}x |"
    return line + f" {row['max_rel_err']:.1e} |"


def format_lkconv_table(rows: list[dict[str, object]]) -> str:
    """Markdown table of :func:`bench_lkconv` rows."""
    backward = bool(rows) and "train_ratio" in rows[0]
    return "\n".join([lkconv_table_header(backward), *map(lkconv_table_row, rows)])


@contextlib.contextmanager
def _build(model: nn.Module, fast: bool) -> Iterator[None]:
    """Inside the block ``model`` is the fast build (its layers' fast forms) or the plain bit-reference build."""
    chosen = uses_fast_path(model)
    set_fast_path(model, fast)
    try:
        yield
    finally:
        set_fast_path(model, chosen)


def bench_model(
    model: nn.Module,
    batch: int,
    image_size: int = 224,
    repeats: int = 3,
    train_step: bool = True,
    min_time_s: float = 1.0,
    setting: BenchSetting = BenchSetting(),
    compiled: bool = False,
) -> dict[str, float]:
    """Time a model on its fast path against the same model and weights as the plain bit-reference build.

    Args:
        model: the model (its mode is switched to eval for inference and train for the training step; it is moved
            to ``setting.device`` and memory format).
        batch: batch size.
        image_size: input height and width (``model.pretrained_cfg``-independent, 3 channels unless
            ``model.in_chans`` says otherwise).
        repeats: timed runs per measurement.
        train_step: also time forward + backward of a summed-output loss in train mode.
        min_time_s: fast calls are repeated (up to 50 pairs) until one measurement takes about this long.
        setting: device, precision (16-bit dtypes run under autocast), memory format and the fast build's mode.
        compiled: the candidate is ``torch.compile(model)`` of the default build (compiled in the warm-up call, which
            is not timed); the reference stays the plain eager build.

    Returns:
        ``infer_ref_ms, infer_ms, infer_ratio, infer_rel_err`` and, with ``train_step``,
        ``train_ref_ms, train_ms, train_ratio``.
    """
    in_chans = getattr(model, "in_chans", 3)
    x = setting.layout(torch.randn(batch, in_chans, image_size, image_size, generator=torch.Generator().manual_seed(0)))
    model.to(setting.device, memory_format=torch.channels_last if setting.channels_last else torch.contiguous_format)
    candidate = torch.compile(model) if compiled else model

    def run(fast: bool) -> Tensor:
        with _build(model, fast), lkconv_mode(setting.mode if fast else "plain"), fused_tail(fast), setting.autocast():
            return (candidate if fast else model)(x)

    def infer(fast: bool) -> Tensor:
        with torch.inference_mode():
            return run(fast)

    model.eval()
    ref_s, fast_s, ratio, best = _time_pair(
        lambda: infer(False), lambda: infer(True), repeats, min_time_s, setting.synchronize
    )
    out: dict[str, float] = {
        "infer_ref_ms": ref_s * 1e3,
        "infer_ms": fast_s * 1e3,
        "infer_ratio": ratio,
        "infer_best": best,
        "infer_rel_err": _relative_error(infer(True), infer(False)),
    }
    if train_step:

        def step(fast: bool) -> None:
            model.zero_grad(set_to_none=True)
            run(fast).float().pow(2).mean().backward()

        # Train mode updates BatchNorm running stats; that changes no timing and no weights.
        model.train()
        ref_s, fast_s, ratio, best = _time_pair(
            lambda: step(False), lambda: step(True), repeats, min_time_s, setting.synchronize
        )
        out.update(train_ref_ms=ref_s * 1e3, train_ms=fast_s * 1e3, train_ratio=ratio, train_best=best)
        model.eval()
    return out


@torch.no_grad()
def perturb_for_check(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give ``model`` non-trivial BatchNorm statistics and layer/GRN scales (seeded, in place), so that comparing two
    implementations' outputs tests every branch: at initialisation BN is the identity and layer scales are ~1e-6, so
    most of a block would not show in the logits.

    Returns:
        ``model``.
    """
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_var is not None:
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
            if module.affine:
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
    for name, param in model.named_parameters():
        if name.rsplit(".", 1)[-1] in ("gamma", "beta") and param.is_floating_point():
            param.copy_(torch.rand(param.shape, generator=gen) * 0.4 + 0.1)
    return model


def bench_official(
    model: nn.Module,
    official: nn.Module,
    batch: int,
    image_size: int = 224,
    repeats: int = 3,
    min_time_s: float = 1.0,
    setting: BenchSetting = BenchSetting(),
    compiled: bool = False,
) -> dict[str, float]:
    """Time ``model`` (its default fast path) against an official implementation holding the same weights.

    Args:
        model: the unilk model, in the form to time (usually deploy).
        official: the official model (see :func:`unilk.diagnostics.official.build_official`), in eval mode.
        batch, image_size, repeats, min_time_s, setting: as for :func:`bench_model`.
        compiled: the candidate is ``torch.compile(model)``; the official model stays eager.

    Returns:
        ``infer_ref_ms`` (official), ``infer_ms``, ``infer_ratio``, ``infer_best`` and ``infer_rel_err`` (logits).
    """
    in_chans = getattr(model, "in_chans", 3)
    x = setting.layout(torch.randn(batch, in_chans, image_size, image_size, generator=torch.Generator().manual_seed(0)))
    memory_format = torch.channels_last if setting.channels_last else torch.contiguous_format
    model.to(setting.device, memory_format=memory_format).eval()
    official.to(setting.device, memory_format=memory_format).eval()
    candidate = torch.compile(model) if compiled else model

    def infer(net: nn.Module) -> Tensor:
        with torch.inference_mode(), setting.autocast():
            return net(x)

    ref_s, fast_s, ratio, best = _time_pair(
        lambda: infer(official), lambda: infer(candidate), repeats, min_time_s, setting.synchronize
    )
    return {
        "infer_ref_ms": ref_s * 1e3,
        "infer_ms": fast_s * 1e3,
        "infer_ratio": ratio,
        "infer_best": best,
        "infer_rel_err": _relative_error(infer(candidate), infer(official)),
    }


def format_official_table(rows: list[dict[str, object]]) -> str:
    """Markdown table of ``{"model", "official_form", "form", "run", "batch", **bench_official(...)}`` rows."""
    lines = [
        "| model | official form | unilk form | run | batch | official ms | unilk ms | ratio | best | rel err |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['official_form']} | {r['form']} | {r['run']} | {r['batch']} |"
            f" {r['infer_ref_ms']:.0f} | {r['infer_ms']:.0f} | {r['infer_ratio']:.2f}x | {r['infer_best']:.2f}x |"
            f" {r['infer_rel_err']:.1e} |"
        )
    return "\n".join(lines)


def format_model_table(rows: list[dict[str, object]]) -> str:
    """Markdown table of ``{"model", "form", "batch", ["run",] **bench_model(...)}`` rows (run: eager or compiled)."""
    lines = [
        "| model | form | run | batch | infer plain ms | infer unilk ms | infer ratio | infer best | rel err"
        " | train plain ms | train unilk ms | train ratio | train best |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        train = (
            f"{r['train_ref_ms']:.0f} | {r['train_ms']:.0f} | {r['train_ratio']:.2f}x | {r['train_best']:.2f}x"
            if "train_ratio" in r
            else "- | - | - | -"
        )
        lines.append(
            f"| {r['model']} | {r['form']} | {r.get('run', 'eager')} | {r['batch']} |"
            f" {r['infer_ref_ms']:.0f} | {r['infer_ms']:.0f} |"
            f" {r['infer_ratio']:.2f}x | {r['infer_best']:.2f}x | {r['infer_rel_err']:.1e} | {train} |"
        )
    return "\n".join(lines)


def _set_threads(threads: int | None, setting: BenchSetting) -> str:
    if threads is not None:
        torch.set_num_threads(threads)
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, {setting.describe()}"


def _setting_options(command: Callable[..., None]) -> Callable[..., None]:
    """The ``--device/--dtype/--channels-last/--mode`` options shared by both benchmark commands."""
    options = [
        click.option(
            "--device", default="cpu", type=DEVICE, show_default=True, help="Where both builds run, e.g. cuda."
        ),
        click.option(
            "--dtype",
            type=click.Choice(sorted(DTYPES)),
            default="float32",
            show_default=True,
            help="Op tensors' dtype; for whole models 16-bit means autocast.",
        ),
        click.option("--channels-last", is_flag=True, help="Inputs (and models) in the channels-last format."),
        click.option(
            "--mode",
            type=click.Choice([m for m in MODES if m != "plain"]),
            default="auto",
            show_default=True,
            help="The fast build's lkconv mode (a forced algorithm on a new device).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _make_setting(device: str, dtype: str, channels_last: bool, mode: str) -> BenchSetting:
    # --device was checked when the command line was parsed (unilk.devices.DEVICE); "auto" is resolved here
    return BenchSetting(str(resolve_device(device)), DTYPES[dtype], channels_last, mode)


def _run_name(compiled: bool) -> str:
    return "compiled" if compiled else "eager"


@click.group("bench")
def bench() -> None:
    """Time unilk's fast paths against plain PyTorch in the same process and print ratios."""


@bench.command("lkconv")
@click.option("--quick", is_flag=True, help="Six representative shapes instead of every trunk shape.")
@click.option("--batch", "batches", type=int, multiple=True, default=(1, 32), show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True, help="torch.set_num_threads (0 keeps the default).")
@click.option("--family", type=str, default=None, help="Only shapes of this trunk (e.g. slak_t).")
@click.option("--no-backward", is_flag=True, help="Time the forward only.")
@click.option("--no-progress", is_flag=True)
@_setting_options
def bench_lkconv_command(
    quick: bool, batches: tuple[int, ...], repeats: int, threads: int, family: str | None, no_backward: bool,
    no_progress: bool, device: str, dtype: str, channels_last: bool, mode: str,
) -> None:  # fmt: skip
    """The large-kernel depthwise convolution against plain nn.Conv2d."""
    setting = _make_setting(device, dtype, channels_last, mode)
    shapes = QUICK_SHAPES if quick else LKCONV_SHAPES
    if family is not None:
        shapes = [s for s in shapes if s.family == family]
        if not shapes:
            valid = sorted({s.family for s in LKCONV_SHAPES})
            raise click.BadParameter(f"no shapes for family {family!r}; expected one of {valid}", param_hint="--family")
    click.echo(_set_threads(threads or None, setting))
    click.echo(lkconv_table_header(backward=not no_backward))
    cases = [(shape, batch) for batch in batches for shape in shapes]
    for shape, batch in Progress(len(cases), desc="lkconv", unit="case", enabled=not no_progress).iterate(cases):
        click.echo(lkconv_table_row(_bench_case(shape, batch, repeats, not no_backward, setting=setting)))


@bench.command("models")
@click.argument("names", nargs=-1)
@click.option("--batch", type=int, default=32, show_default=True)
@click.option("--image-size", type=int, default=224, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True, help="torch.set_num_threads (0 keeps the default).")
@click.option("--deploy/--train-form", default=True, show_default=True, help="Re-parameterize before timing inference.")
@click.option("--no-train-step", is_flag=True, help="Skip the training-step timing.")
@click.option(
    "--deploy-only",
    is_flag=True,
    help="Only deploy-form inference, timed first in the process (as an inference service runs).",
)
@click.option(
    "--compiled/--eager-only",
    default=True,
    show_default=True,
    help="Also a row per form for torch.compile of the default build (against the same plain eager build).",
)
@click.option(
    "--official-src",
    "official_src",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    multiple=True,
    help="A clone of an official repository (UniRepLKNet, SLaK, RepLKNet-pytorch; repeat for several): time against "
    "the official implementation with the same weights instead of the plain build (inference).",
)
@_setting_options
def bench_models_command(
    names: tuple[str, ...],
    batch: int,
    image_size: int,
    repeats: int,
    threads: int,
    deploy: bool,
    no_train_step: bool,
    deploy_only: bool,
    compiled: bool,
    official_src: tuple[Path, ...],
    device: str,
    dtype: str,
    channels_last: bool,
    mode: str,
) -> None:
    """Whole models (default: unireplknet_a unireplknet_s slak_t replknet_31b) on the default fast path against plain.

    Each form gets an eager row and (``--compiled``) a ``torch.compile`` row; the reference is the same module and
    weights as the plain bit-reference build (``set_fast_path(False)``), or with ``--official-src`` the official
    implementation (its deploy form where it has one; SLaK's official code has none, so it runs its training form).
    Order matters on CPU: after a training step glibc keeps more freed memory, so both
    builds page-fault less and their ratio shrinks; ``--deploy-only`` times deploy inference in a fresh process state.
    """
    setting = _make_setting(device, dtype, channels_last, mode)
    click.echo(_set_threads(threads or None, setting))
    names = names or ("unireplknet_a", "unireplknet_s", "slak_t", "replknet_31b")
    runs = (False, True) if compiled else (False,)
    if official_src:
        rows = [
            row
            for name in names
            for row in _official_rows(name, official_src, deploy, batch, image_size, repeats, setting, runs)
        ]
        click.echo(format_official_table(rows))
        return
    import unilk

    rows = []
    for name in names:
        model = perturb_for_check(_create(name))
        if not deploy_only:
            for compile_it in runs:
                row = bench_model(model, batch, image_size, repeats, not no_train_step, setting=setting,
                                  compiled=compile_it)  # fmt: skip
                rows.append({"model": name, "form": "train", "run": _run_name(compile_it), "batch": batch, **row})
        if deploy or deploy_only:
            unilk.reparameterize(model)
            for compile_it in runs:
                row = bench_model(model, batch, image_size, repeats, train_step=False, setting=setting,
                                  compiled=compile_it)  # fmt: skip
                rows.append({"model": name, "form": "deploy", "run": _run_name(compile_it), "batch": batch, **row})
    click.echo(format_model_table(rows))


def _create(name: str) -> nn.Module:
    import unilk

    try:
        return unilk.create_model(name)
    except (KeyError, ConfigError, RuntimeError) as err:
        raise click.ClickException(f"cannot build model {name!r}: {err}") from err


def _official_rows(
    name: str,
    sources: tuple[Path, ...],
    deploy: bool,
    batch: int,
    image_size: int,
    repeats: int,
    setting: BenchSetting,
    runs: tuple[bool, ...],
) -> list[dict[str, object]]:
    """The rows of one model against its official implementation (same weights, perturbed so every branch counts)."""
    import unilk
    from unilk.diagnostics.official import build_official

    model = perturb_for_check(_create(name))
    try:
        official = build_official(model, sources)
    except ConfigError as err:
        raise click.ClickException(str(err)) from err
    for note in official.notes:
        click.echo(f"note: official {name}: {note}")
    model.eval()
    if deploy:
        unilk.reparameterize(model)
    rows: list[dict[str, object]] = []
    for compile_it in runs:
        row = bench_official(model, official.module, batch, image_size, repeats, setting=setting, compiled=compile_it)
        form = "deploy" if deploy else "train"
        rows.append(
            {"model": name, "official_form": official.form, "form": form, "run": _run_name(compile_it),
             "batch": batch, **row}
        )  # fmt: skip
    return rows
