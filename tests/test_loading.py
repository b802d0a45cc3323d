"""One loader for every model file: the acceptance matrix of issue 19.

Sources: ``best.pt`` and ``last.pt`` of a tiny real training run, its ``convert`` output in training and deploy form,
its ``export`` folder and safetensors, and the official ``unireplknet_a`` fixture. Entry points: ``unilk.load``,
``create_model(checkpoint_path=)``, ``Encoder(checkpoint=)``, and the ``encode``, ``extract``, ``eval``, ``predict``,
``erf`` and ``convert`` commands. Each combination that makes sense gives the logits or embeddings of the source
model; the others fail with a message naming the file and what it holds.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import unilk
from unilk.errors import CheckpointError, ConfigError
from unilk.models.registry import create_model

# tiny models on small inputs: the trunks warn that the last-stage map is smaller than the kernels
pytestmark = pytest.mark.filterwarnings("ignore:.*last-stage map:UserWarning")

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "unireplknet_a_official.pt"
if not OFFICIAL.exists():
    OFFICIAL = Path("/work/shared/fixtures/unireplknet_a_official.pt")

MODAL_SOURCES = ("best", "last", "convert_train", "convert_deploy", "export_folder", "export_safetensors")
SOURCES = (*MODAL_SOURCES, "official")
DEPLOY_SOURCES = ("convert_deploy", "export_folder", "export_safetensors")
RTOL = 1e-5  # train vs deploy form, relative to the largest output


def _close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    scale = float(expected.abs().max())
    assert float((actual - expected).abs().max()) <= rtol * scale, (actual - expected).abs().max()


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A two-step training run of the image quick recipe, its conversions and exports (made once)."""
    from unilk.diagnostics.convert import convert_checkpoint
    from unilk.export import export_model
    from unilk.train.build import build_parts
    from unilk.train.config import load_recipe
    from unilk.train.engine import Trainer

    root = tmp_path_factory.mktemp("loading")
    recipe = load_recipe(
        "image/quick_stripes",
        [f"output_dir={root / 'run'}", f"data.root={root / 'data'}", "data.synthetic_kwargs.n_per_class=2",
         "data.batch_size=4", "train.max_steps=2", "train.device=cpu", "log.progress=false"],
    )  # fmt: skip
    Trainer(recipe, build_parts(recipe)).fit()
    paths = {"run": root / "run", "best": root / "run" / "best.pt", "last": root / "run" / "last.pt",
             "data": root / "data", "official": OFFICIAL}  # fmt: skip
    paths["convert_train"] = convert_checkpoint(paths["best"], root / "train.safetensors").out
    paths["convert_deploy"] = convert_checkpoint(paths["best"], root / "deploy.pth", deploy=True).out
    paths["export_folder"] = export_model(paths["run"], root / "export").out
    paths["export_safetensors"] = export_model(paths["best"], root / "export_st", fmt="safetensors").out / (
        "model.safetensors"
    )
    images = root / "images"
    images.mkdir()
    for i, name in enumerate(("a", "b")):  # two of the run's validation images under short names
        src = sorted((root / "data").rglob("*.png"))[i]
        (images / f"{name}.png").write_bytes(src.read_bytes())
    paths["images"] = images
    return paths


@pytest.fixture(scope="session")
def maps() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def reference(run: dict[str, Path], maps: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """Logits and embeddings of the training-form model, straight from the checkpoint's state_dict."""
    from unilk.models.modal import create_modal_model

    out = {}
    for name in ("best", "last"):
        ckpt = torch.load(run[name], weights_only=True)
        arch = ckpt["arch"]
        model = create_modal_model("image", "classification", arch["trunk"], num_classes=arch["num_classes"],
                                   adapter_config=ckpt["adapter"], **arch["kwargs"])  # fmt: skip
        model.load_state_dict(ckpt["model"])
        model.eval()
        with torch.no_grad():
            out[name] = {"logits": model(maps), "embeddings": model.forward_features(maps)}
    return out


def _expected(source: str, reference: dict) -> dict[str, torch.Tensor]:
    return reference["last" if source == "last" else "best"]


@pytest.fixture(scope="session")
def official() -> dict:
    """The official fixture, its model read by ``unilk.load`` and that model's logits on a small input."""
    if not OFFICIAL.exists():
        pytest.skip(f"shared fixture {OFFICIAL} is not available")
    fixture = torch.load(OFFICIAL, weights_only=True)
    model = unilk.load(OFFICIAL)
    x = fixture["input"][:, :, :64, :64]
    with torch.no_grad():
        feats = model.forward_features(x)
        small = {"x": x, "logits": model.forward_head(feats), "embeddings": model.forward_head(feats, pre_logits=True)}
    return {**fixture, "model": model, "small": small}


# ------------------------------------------------------------------------------------------------------ unilk.load


@pytest.mark.parametrize("source", MODAL_SOURCES)
def test_load_gives_the_trained_model(run, reference, maps, source) -> None:
    model = unilk.load(run[source])
    assert (model.task, model.modality) == ("classification", "image")
    assert model.labels == ["checker", "diagonal", "horizontal", "vertical"]
    assert model.unilk_config["deploy"] is (source in DEPLOY_SOURCES)
    with torch.no_grad():
        _close(model(maps), _expected(source, reference)["logits"])
        _close(model.forward_features(maps), _expected(source, reference)["embeddings"])


def test_load_official_fixture_and_deploy_option(official) -> None:
    assert official["model"].unilk_config == {
        "format": "unilk-model-1",
        "kind": "trunk",
        "model": "unireplknet_a",
        "model_kwargs": {},
        "num_classes": 1000,
        "in_chans": 3,
        "deploy": False,
    }
    with torch.no_grad():  # the official model's own logits on its own 224 input
        _close(official["model"](official["input"]), official["output"], 1e-5)
        _close(unilk.load(OFFICIAL, deploy=True)(official["small"]["x"]), official["small"]["logits"])


def test_load_folder_from_the_hugging_face_cache_offline(run, reference, maps, tmp_path, monkeypatch) -> None:
    import huggingface_hub.constants

    snapshot = tmp_path / "hub" / "models--someone--stripes" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "README.md"):
        (snapshot / name).write_bytes((run["export_folder"] / name).read_bytes())
    (tmp_path / "hub" / "models--someone--stripes" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--stripes" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = unilk.load("hf-hub:someone/stripes")
    with torch.no_grad():
        _close(model(maps), reference["best"]["logits"])
    with pytest.raises(CheckpointError, match="hf-hub:someone/missing"):
        unilk.load("hf-hub:someone/missing")


def test_load_errors_name_the_file(run, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        unilk.load(tmp_path / "nothing.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"best\.pt/last\.pt"):
        unilk.load(tmp_path / "empty")
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match=r"foreign.pth.*bare state_dict.*no registered model"):
        unilk.load(tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match=r"best.pt.*holds a test_unireplknet, not the 'unireplknet_a'"):
        unilk.load(run["best"], model="unireplknet_a")


# ------------------------------------------------------------------------------------------ create_model and Encoder


@pytest.mark.parametrize("source", MODAL_SOURCES)
def test_create_model_loads_the_trunk_of_a_modal_file(run, reference, maps, source) -> None:
    kwargs = dict(unilk.load(run[source]).unilk_config["arch"]["kwargs"])
    if source in DEPLOY_SOURCES:
        kwargs["deploy"] = True
    trunk = create_model("test_unireplknet", checkpoint_path=run[source], num_classes=0, **kwargs).eval()
    with torch.no_grad():
        _close(trunk.forward_head(trunk.forward_features(maps), pre_logits=True),
               _expected(source, reference)["embeddings"])  # fmt: skip
    with pytest.raises(CheckpointError, match=r"no classifier.*num_classes=0"):
        create_model("test_unireplknet", checkpoint_path=run[source], **kwargs)


def test_create_model_loads_the_official_fixture(official) -> None:
    model = create_model("unireplknet_a", checkpoint_path=OFFICIAL).eval()
    with torch.no_grad():
        _close(model(official["small"]["x"]), official["small"]["logits"])


@pytest.mark.parametrize("source", SOURCES)
def test_encoder_takes_every_file(run, reference, maps, official, source) -> None:
    from unilk.encoding import Maps

    encoder = unilk.Encoder(checkpoint=run[source], device="cpu")
    x = maps if source != "official" else official["small"]["x"]
    out = encoder.encode(image=Maps(x))["image"].embeddings
    _close(out, official["small"]["embeddings"] if source == "official" else _expected(source, reference)["embeddings"])


# ------------------------------------------------------------------------------------------------------- commands


def _invoke(args: list[str]) -> object:
    from unilk.cli import cli

    return CliRunner().invoke(cli, args)


def _on_images(run: dict[str, Path], source: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and logits of the training-form model behind ``source`` on the two test images."""
    from unilk.adapters import build_adapter

    model = unilk.load(run["last" if source == "last" else "best"])
    adapter = build_adapter("image", {k: v for k, v in model.adapter_config.items() if k != "modality"})
    x = torch.stack([adapter(str(run["images"] / f"{n}.png")) for n in ("a", "b")])
    with torch.no_grad():
        return model.forward_features(x), model(x)


@pytest.mark.parametrize("source", MODAL_SOURCES)
def test_encode_and_extract_commands(run, tmp_path, source) -> None:
    from unilk.extract import read_embeddings

    expected = _on_images(run, source)[0]
    files = [str(run["images"] / "a.png"), str(run["images"] / "b.png")]
    result = _invoke(["encode", *files, "--checkpoint", str(run[source]), "--device", "cpu",
                      "--out", str(tmp_path / "e.npz")])  # fmt: skip
    assert result.exit_code == 0, result.output
    _close(torch.from_numpy(np.load(tmp_path / "e.npz")["image_embeddings"]), expected)
    result = _invoke(["extract", "image", str(run["images"]), "--out", str(tmp_path / "x"), "--checkpoint",
                      str(run[source]), "--device", "cpu", "--num-workers", "0", "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    ids, embeddings = read_embeddings(tmp_path / "x")
    assert ids == ["a.png", "b.png"]
    _close(torch.from_numpy(embeddings), expected)


def test_encode_command_with_the_official_fixture(run, tmp_path) -> None:
    result = _invoke(["encode", str(run["images"] / "a.png"), "--checkpoint", str(OFFICIAL), "--device", "cpu",
                      "--out", str(tmp_path / "e.npz")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "e.npz")["image_embeddings"].shape == (1, 320)  # unireplknet_a's width


@pytest.mark.parametrize("source", MODAL_SOURCES)
def test_eval_command(run, source) -> None:
    expected = torch.load(run["last" if source == "last" else "best"], weights_only=True)["metrics"]
    target = run["run"] if source == "best" else run[source]
    result = _invoke(["eval", str(target)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout[result.stdout.index("{") :])["metrics"]
    assert metrics["acc"] == pytest.approx(expected["acc"])
    assert metrics["eval_loss"] == pytest.approx(expected["eval_loss"], rel=1e-4)


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_official_file_in_commands_that_need_a_trained_model(run, command) -> None:
    args = [command, str(OFFICIAL)] + ([str(run["images"])] if command == "predict" else [])
    result = _invoke(args)
    assert result.exit_code != 0
    assert "unireplknet_a_official.pt" in result.output
    assert "bare unireplknet_a trunk" in result.output


@pytest.mark.parametrize("source", MODAL_SOURCES)
def test_predict_command(run, tmp_path, source) -> None:
    labels = ["checker", "diagonal", "horizontal", "vertical"]
    probs = _on_images(run, source)[1].softmax(-1)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "p.jsonl"
    result = _invoke(["predict", str(run[source]), str(run["images"] / "*.png"), str(bad), "--top-k", "2",
                      "--jsonl", str(out), "--batch-size", "1"])  # fmt: skip
    assert result.exit_code == 1, result.output  # one input failed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["id"]).name for r in records] == ["a.png", "b.png", "broken.png"]
    for record, row in zip(records[:2], probs):
        top = row.topk(2)
        assert record["labels"] == [labels[i] for i in top.indices.tolist()]
        assert record["scores"] == pytest.approx(top.values.tolist(), abs=1e-5)
    assert "broken.png" in records[2]["error"]
    assert "cannot decode" in records[2]["error"]


def test_predict_prints_one_line_per_input_whatever_the_file_name(run, tmp_path) -> None:
    import shutil

    odd = tmp_path / "two\nlines\tand tab.png"
    shutil.copy(run["images"] / "a.png", odd)
    (tmp_path / "bad\nname.png").write_bytes(b"not an image")
    out = tmp_path / "p.jsonl"
    result = _invoke(["predict", str(run["best"]), str(tmp_path / "*.png"), "--top-k", "1", "--jsonl", str(out)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stdout.splitlines() if not line.startswith("wrote ")]
    assert len(lines) == 2  # a newline in a name used to split its line in two
    assert lines[0].startswith(str(tmp_path / "bad\\nname.png") + "\terror: InputError: ")
    assert lines[1].startswith(str(tmp_path / "two\\nlines\\tand tab.png") + "\t")
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [
        str(tmp_path / "bad\nname.png"),
        str(odd),
    ]


@pytest.mark.parametrize("source", SOURCES)
def test_erf_command(run, tmp_path, source) -> None:
    result = _invoke(["erf", str(run[source]), "--images", str(run["images"]), "--num", "2", "--size", "32",
                      "--out", str(tmp_path / "erf.png"), "--json", "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout[result.stdout.index("{") :])
    assert table[str(run[source])]["inputs"] == 2
    assert (tmp_path / "erf.png").is_file()


@pytest.mark.parametrize("source", SOURCES)
def test_convert_command(run, reference, maps, official, tmp_path, source) -> None:
    out = tmp_path / "c.safetensors"
    extra = ["--input-size", "3", "64", "64"] if source == "official" else []
    result = _invoke(["convert", str(run[source]), "--out", str(out), "--deploy", *extra])
    assert result.exit_code == 0, result.output
    assert "equivalence check passed" in result.output
    converted = unilk.load(out)
    assert converted.unilk_config["deploy"] is True
    with torch.no_grad():
        if source == "official":
            _close(converted(official["small"]["x"]), official["small"]["logits"])
        else:
            _close(converted(maps), _expected(source, reference)["logits"])
    again = _invoke(["convert", str(run[source]), "--out", str(out)])
    assert again.exit_code != 0
    assert "already exists" in again.output


# -------------------------------------------------------------------------------------------- export and writes


def test_export_folder_layout_and_config(run) -> None:
    folder = run["export_folder"]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert (config["kind"], config["deploy"], config["architecture"]) == ("modal", True, "test_unireplknet")
    assert config["labels"] == ["checker", "diagonal", "horizontal", "vertical"]
    assert config["recipe"]["name"] == "quick_stripes"
    assert "acc" in config["metrics"]
    assert config["unilk_version"] == unilk.__version__
    assert "checker" in (folder / "README.md").read_text()
    umask = os.umask(0o022)
    os.umask(umask)
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_export_onnx_matches_pytorch_with_any_batch(run, reference, tmp_path) -> None:
    import onnxruntime

    from unilk.export import export_model

    report = export_model(run["best"], tmp_path / "onnx", fmt="onnx")
    assert report.max_rel_diff <= 1e-4
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    model = unilk.load(run["best"])
    with torch.no_grad():
        _close(torch.from_numpy(session.run(None, {"input": x.numpy()})[0]), model(x), 1e-4)


def test_a_failed_check_leaves_nothing(run, tmp_path) -> None:
    from unilk.diagnostics.convert import convert_checkpoint
    from unilk.export import export_model

    with pytest.raises(CheckpointError, match="nothing was written"):
        export_model(run["best"], tmp_path / "out", rtol=-1.0)
    with pytest.raises(CheckpointError, match="nothing was written"):
        convert_checkpoint(run["best"], tmp_path / "c.safetensors", deploy=True, atol=-1.0)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("user data")
    with pytest.raises(ConfigError, match="already exists"):
        export_model(run["best"], tmp_path / "taken")
    assert (tmp_path / "taken" / "mine.txt").read_text() == "user data"


# ------------------------------------------------------------------------------------------ other modalities, info


@pytest.mark.parametrize("freq", ["none", "h"])
def test_series_forecaster_loads_exports_and_runs_in_onnx(tmp_path, freq) -> None:
    from unilk.export import export_model
    from unilk.loading import example_inputs, read_model_file
    from unilk.models.modal import create_modal_model
    from unilk.train.checkpoint import save_checkpoint

    adapter = {"modality": "series", "seq_len": 8, "label_len": 4, "pred_len": 4, "group_size": 2, "d_model": 8,
               "freq": freq, "norm": "none"}  # fmt: skip
    torch.manual_seed(0)
    model = create_modal_model("series", "forecast", "test_unireplknet", adapter_config=adapter).eval()
    arch = {"builder": "unilk.models.modal.create_modal_model", "modality": "series", "task": "forecast",
            "trunk": "test_unireplknet", "num_classes": None, "kwargs": {}, "head_kwargs": {}}  # fmt: skip
    path = save_checkpoint(tmp_path / "best.pt", {"model": model.state_dict(), "arch": arch, "adapter": adapter})
    inputs = example_inputs(read_model_file(path), batch=3)
    assert len(inputs) == (1 if freq == "none" else 2)
    with torch.no_grad():
        expected = model(*inputs)  # Tensor[3, pred_len, group_size]
        assert expected.shape == (3, 4, 2)
        _close(unilk.load(path)(*inputs), expected)
        exported = export_model(path, tmp_path / "export")
        _close(unilk.load(exported.out)(*inputs), expected)
    assert export_model(path, tmp_path / "onnx", fmt="onnx").max_rel_diff <= 1e-4


@pytest.mark.parametrize("source", ["best", "export_folder", "official"])
def test_info_command_reads_model_files(run, source) -> None:
    result = _invoke(["info", str(run[source]), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["input_size"] == ([3, 32, 32] if source != "official" else [3, 224, 224])
    assert report["params_deploy"] <= report["params_train"]
