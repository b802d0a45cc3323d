"""The demo in its reduced ``--quick`` mode: outputs exist, the figure is a real non-blank PNG, the summary is sound."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from unilk.demo import DemoSummary, demo, format_table, run_demo

MODALITIES = ["audio", "points", "video", "series", "image"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return run_demo(tmp_path_factory.mktemp("demo"), quick=True, progress=False, device="cpu")


def test_summary_reports_training_and_one_row_per_modality(quick_run: DemoSummary) -> None:
    assert quick_run.train_steps == 3
    assert quick_run.train_completed
    assert 0.0 <= quick_run.accuracy <= 1.0
    assert quick_run.eval_clips > 0
    assert [s.modality for s in quick_run.samples] == MODALITIES
    for sample in quick_run.samples:
        assert Path(sample.path).is_file()
        assert len(sample.map_shape) == 3
        assert all(n > 0 for n in sample.map_shape)
        assert sample.embedding_dim > 0
        assert sample.seconds > 0
    channels = {s.modality: s.map_shape[0] for s in quick_run.samples}
    assert channels == {"audio": 1, "points": 3, "video": 3, "series": 1, "image": 3}
    # one architecture for every modality: the same embedding size
    assert len({s.embedding_dim for s in quick_run.samples}) == 1
    assert quick_run.seconds > 0
    assert quick_run.cpu_seconds > 0


def test_outputs_are_on_disk(quick_run: DemoSummary) -> None:
    out = Path(quick_run.out_dir)
    assert (Path(quick_run.run_dir) / "best.pt").is_file()
    assert (Path(quick_run.run_dir) / "metrics.json").is_file()
    written = {p.suffix for p in Path(quick_run.data_dir).rglob("*") if p.is_file()}
    assert {".wav", ".ply", ".mp4", ".csv", ".png"} <= written
    saved = json.loads((out / "summary.json").read_text())
    assert saved["figure"] == quick_run.figure
    assert saved["accuracy"] == pytest.approx(quick_run.accuracy)
    assert [s["modality"] for s in saved["samples"]] == MODALITIES


def test_figure_is_a_non_blank_png(quick_run: DemoSummary) -> None:
    path = Path(quick_run.figure)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.format == "PNG"
        # seven panels on a grid four wide (the spectrogram spans two cells): readable, not a thin strip
        assert 1.2 * image.height < image.width < 2.5 * image.height
        assert image.height >= 600
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 10  # not one flat colour
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # real image content, not only text


def test_table_has_a_header_and_a_line_per_modality(quick_run: DemoSummary) -> None:
    lines = format_table(quick_run.samples).splitlines()
    assert lines[0].split()[:2] == ["modality", "raw"]
    assert [line.split()[0] for line in lines[1:]] == MODALITIES


def test_cli_prints_results_and_reruns_over_its_own_outputs(quick_run: DemoSummary) -> None:
    # the fixture already wrote a demo there: a rerun replaces the demo's own outputs instead of failing
    args = ["--out", quick_run.out_dir, "--quick", "--no-progress", "--device", "cpu"]
    result = CliRunner().invoke(demo, args)
    assert result.exit_code == 0, result.output
    assert "held-out accuracy" in result.output
    assert quick_run.figure in result.output
    for modality in MODALITIES:
        assert f"\n{modality} " in result.output  # a table row
    assert "Try next" in result.output
