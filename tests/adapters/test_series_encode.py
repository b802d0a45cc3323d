"""encode and extract take any series (any length, any channel count) with the default adapter: no fitting step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import unilk
from unilk.extract import extract

# tiny inputs make last-stage maps smaller than the large kernels; expected here
pytestmark = pytest.mark.filterwarnings("ignore:UniRepLKNet.*smaller than the reach:UserWarning")

# the default adapter, only a smaller embedding so the test is fast
SMALL = {"series": {"d_model": 48}}


def test_encode_any_series_without_fitting() -> None:
    rng = np.random.default_rng(0)
    series = [
        rng.normal(size=(200, 1)),
        rng.normal(3.0, 5.0, size=(30, 5)),
        rng.normal(size=7),
        rng.normal(size=(48, 12)),
    ]
    out = unilk.encode(series=series, model="test_unireplknet", pretrained=False, adapters=SMALL, device="cpu")[
        "series"
    ]
    assert out.embeddings.shape[0] == 4
    assert torch.isfinite(out.embeddings).all()
    # channels are padded to a multiple of group_size (11): one node, one node, one node, two nodes
    assert out.num_maps == [1, 1, 1, 2]
    # per-series normalisation: an affine change of a series' units does not change its embedding
    shifted = unilk.encode(
        series=[series[1] * 100.0 - 7.0], model="test_unireplknet", pretrained=False, adapters=SMALL, device="cpu"
    )
    torch.testing.assert_close(shifted["series"].embeddings[0], out.embeddings[1], atol=1e-4, rtol=1e-4)


def test_extract_a_folder_of_csv_without_fitting(tmp_path: Path) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i, (steps, channels) in enumerate([(100, 3), (20, 1), (500, 7)]):
        values = rng.normal(size=(steps, channels))
        header = ",".join(f"c{j}" for j in range(channels))
        np.savetxt(folder / f"s{i}.csv", values, delimiter=",", header=header, comments="")
    summary = extract(
        "series",
        folder,
        tmp_path / "out",
        model="test_unireplknet",
        pretrained=False,
        adapter=SMALL["series"],
        num_workers=0,
    )
    assert summary.complete
    assert summary.done == 3
    assert summary.failed == 0
