"""The PNG figures: ERF heatmaps side by side and training curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unilk.diagnostics.erf import area_ratios, normalize_erf
from unilk.diagnostics.plot import find_run_log, plot_erf, plot_training_curves, read_curve_log
from unilk.errors import InputError


def _open_png(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def _assert_not_blank(pixels: np.ndarray) -> None:
    # a blank figure is one flat colour; a drawn one has many colours and a large non-white area
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    assert (pixels.min(axis=2) < 200).mean() > 0.05


def test_erf_figure_size_and_content(tmp_path) -> None:
    yy, xx = torch.meshgrid(torch.arange(33.0), torch.arange(33.0), indexing="ij")
    maps = {f"model{s}": torch.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / (2 * s * s)) for s in (2, 5, 9)}
    ratios = {name: area_ratios(m) for name, m in maps.items()}
    path = plot_erf({n: normalize_erf(m) for n, m in maps.items()}, tmp_path / "erf.png", ratios, dpi=50)
    pixels = _open_png(path)
    assert pixels.shape == (5 * 50, 3 * 4 * 50, 3)
    _assert_not_blank(pixels)
    # the three heatmaps are drawn in three separate panels: each third of the image has its own colours
    thirds = np.split(pixels[: pixels.shape[0] // 2], 3, axis=1)
    assert all(len(np.unique(t.reshape(-1, 3), axis=0)) > 20 for t in thirds)


def test_erf_figure_rejects_bad_maps(tmp_path) -> None:
    with pytest.raises(InputError, match="no maps"):
        plot_erf({}, tmp_path / "x.png")
    with pytest.raises(InputError, match="expected"):
        plot_erf({"m": torch.zeros(2, 3, 3)}, tmp_path / "x.png")


def _write_log(path) -> None:
    lines = ["epoch,step,split,loss,top1,lr,time"]
    for step in range(1, 41):
        lines.append(f"{step // 10},{step},train,{2.0 / step:.4f},,{1e-3 * (1 - step / 41):.6f},{0.1 * step}")
        if step % 10 == 0:
            lines.append(f"{step // 10},{step},val,{2.5 / step:.4f},{step * 2.0},,")
    path.write_text("\n".join(lines) + "\n")


def test_read_curve_log_groups_columns(tmp_path) -> None:
    _write_log(tmp_path / "metrics.csv")
    log = read_curve_log(tmp_path / "metrics.csv")
    assert log.x_name == "step"
    assert set(log.groups) == {"loss", "metrics", "lr"}
    assert set(log.groups["loss"]) == {"loss (train)", "loss (val)"}
    assert set(log.groups["metrics"]) == {"top1 (val)"}
    assert set(log.groups["lr"]) == {"lr (train)"}
    xs, ys = log.groups["loss"]["loss (val)"]
    assert xs == [10.0, 20.0, 30.0, 40.0]
    assert ys == pytest.approx([0.25, 0.125, 2.5 / 30, 0.0625], abs=1e-4)
    assert len(log.groups["lr"]["lr (train)"][0]) == 40


def test_training_curves_png(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _write_log(run / "metrics.csv")
    (run / "other.csv").write_text("a,b\n1,2\n")
    assert find_run_log(run) == run / "metrics.csv"
    path = plot_training_curves(run, tmp_path / "curves.png", dpi=40)
    pixels = _open_png(path)
    assert pixels.shape == (int((3 * 3 + 0.4) * 40), 8 * 40, 3)  # three panels and a title line
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20
    assert (pixels.min(axis=2) < 128).mean() > 0.01


def test_curve_log_errors(tmp_path) -> None:
    (tmp_path / "a.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="x axis"):
        read_curve_log(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("epoch,note\n1,hello\n")
    with pytest.raises(InputError, match="no numeric column"):
        read_curve_log(tmp_path / "b.csv")
    with pytest.raises(InputError, match="exactly one"):
        find_run_log(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        find_run_log(tmp_path / "missing")


def test_training_curves_are_titled_labelled_and_draw_evaluations_as_markers(tmp_path, monkeypatch) -> None:
    import matplotlib.pyplot as plt
    import torch

    run = tmp_path / "sc"
    run.mkdir()
    (run / "log.csv").write_text(
        "step,epoch,lr,loss,eval_loss,acc\n1,0,0.1,2.0,,\n2,0,0.1,1.5,,\n2,0,,,1.2,0.5\n"
        "3,1,0.1,1.0,,\n4,1,0.1,0.8,,\n4,1,,,0.9,0.75\n"
    )
    torch.save({"recipe": {"name": "audio/quick_speech_commands"}}, run / "last.pt")
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    plot_training_curves(run, tmp_path / "curves.png", dpi=30)
    (fig,) = figures
    assert fig._suptitle.get_text() == "run sc · recipe audio/quick_speech_commands"
    axes = fig.get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["loss", "metric value", "learning rate"]
    assert axes[-1].get_xlabel() == "step"
    lines = {line.get_label(): line for ax in axes for line in ax.get_lines()}
    assert lines["acc"].get_marker() == "o"  # two evaluations: two markers
    assert lines["eval_loss"].get_marker() == "o"
    assert lines["loss"].get_marker() in ("None", None, "")  # training loss: a line
