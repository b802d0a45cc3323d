"""The Triton kernels compile ahead of time for a Hopper GPU (PTX and cubin through Triton's ptxas), no GPU needed.

The interpreter tests check the values; this checks what only the compiler sees: the constexpr branches, the reduction,
the loop-carried pointers and the dtypes, as Triton specializes them at launch (arguments equal to 1 become constants).
"""

from __future__ import annotations

import pytest

triton = pytest.importorskip("triton")

import triton.language as tl  # noqa: E402 - after the skip: Triton is optional
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from unilk.ops import triton_lkconv  # noqa: E402

HOPPER = GPUTarget("cuda", 90, 32)


@pytest.fixture(autouse=True)
def _compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    # The compiled kernels are decorated without the interpreter, even where CI sets it for the whole run.
    monkeypatch.delenv(triton_lkconv.INTERPRET_ENV_VAR, raising=False)


def _compile(fn: object, pointers: dict[str, str], constants: dict[str, object]) -> object:
    """Compile ``fn`` with the given pointer types, every other argument int32 unless it is a constant."""
    signature = {name: "constexpr" if name in constants else pointers.get(name, "i32") for name in fn.arg_names}
    return triton.compile(ASTSource(fn, signature, constants), target=HOPPER)


@pytest.mark.parametrize(
    ("element", "layout_constants"),
    [
        ("fp32", {"block_c": 1, "block_p": 1024, "sxw": 1, "sow": 1}),  # NCHW: unit strides along a row
        ("bf16", {"block_c": 64, "block_p": 32, "sxc": 1, "soc": 1}),  # channels-last
    ],
)
def test_forward_kernel_compiles(element: str, layout_constants: dict[str, object]) -> None:
    kernels = triton_lkconv._kernels(False)
    pointers = {"x_ptr": f"*{element}", "w_ptr": f"*{element}", "b_ptr": f"*{element}", "out_ptr": f"*{element}"}
    pointers |= {"dh_ptr": "*i32", "dw_ptr": "*i32"}
    constants = {"has_bias": True, "acc_dtype": tl.float32, **layout_constants}
    compiled = _compile(kernels.conv, pointers, constants)
    assert "ld.global" in compiled.asm["ptx"]
    assert compiled.asm["cubin"]


@pytest.mark.parametrize(
    ("element", "layout_constants"),
    [
        ("fp16", {"block_c": 1, "block_t": 16, "block_p": 128, "sxw": 1, "sgw": 1, "n_per_split": 1}),
        ("fp32", {"block_c": 32, "block_t": 8, "block_p": 16, "sxc": 1, "sgc": 1}),
    ],
)
def test_weight_gradient_kernel_compiles(element: str, layout_constants: dict[str, object]) -> None:
    kernels = triton_lkconv._kernels(False)
    pointers = {"x_ptr": f"*{element}", "g_ptr": f"*{element}", "dh_ptr": "*i32", "dw_ptr": "*i32", "part_ptr": "*fp32"}
    constants = {"acc_dtype": tl.float32, "interpreted": False, "add": None, **layout_constants}
    compiled = _compile(kernels.weight_grad, pointers, constants)
    assert "ld.global" in compiled.asm["ptx"]
    assert compiled.asm["cubin"]
