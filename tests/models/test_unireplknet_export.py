"""The deploy model exports to ONNX (dynamic batch and spatial size) and with torch.export; torch.compile runs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from unilk.models import create_model

pytestmark = pytest.mark.filterwarnings("ignore:UniRepLKNet. the last-stage map", "ignore::DeprecationWarning")


@pytest.fixture
def deploy_model(randomize: Any) -> torch.nn.Module:
    model = randomize(create_model("test_unireplknet", num_classes=5)).eval()
    model.reparameterize()
    return model


def test_onnx_dynamic_batch_and_size_matches_onnxruntime(deploy_model: torch.nn.Module, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "unireplknet.onnx"
    dynamic = {"x": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}
    torch.onnx.export(
        deploy_model,
        (torch.randn(2, 3, 64, 64),),
        str(path),
        dynamo=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes=dynamic,
        opset_version=17,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(3, 3, 96, 160), (1, 3, 64, 64), (2, 3, 33, 47)]:  # other batch sizes, non-square, odd sizes
        x = torch.randn(*shape)
        (onnx_logits,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            assert abs(onnx_logits - deploy_model(x).numpy()).max() <= 1e-4


@pytest.mark.slow
def test_torch_export_with_dynamic_shapes(deploy_model: torch.nn.Module) -> None:
    from torch.export import Dim

    # sizes from 64 up: at 32 the last-stage map is 1x1, which export treats as a broadcasting special case
    dims = {
        "x": {0: Dim("batch", min=1, max=64), 2: Dim("height", min=64, max=2048), 3: Dim("width", min=64, max=2048)}
    }
    program = torch.export.export(deploy_model, (torch.randn(2, 3, 64, 64),), dynamic_shapes=dims)
    x = torch.randn(3, 3, 96, 160)
    with torch.no_grad():
        assert (program.module()(x) - deploy_model(x)).abs().max() <= 1e-5


@pytest.mark.slow
def test_torch_compile_runs(deploy_model: torch.nn.Module) -> None:
    compiled = torch.compile(deploy_model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (compiled(x) - deploy_model(x)).abs().max() <= 1e-5
