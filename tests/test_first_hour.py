"""What a new user meets in the first hour, replayed: PointNet-layout points, numpy maps, a device this machine
lacks, the Encoder's repr, no kernel-reach warning for random weights asked for, pretrained weights failing fast
offline with a command that exists, and count options checked on the command line."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import unilk
from unilk.encoding import Encoder
from unilk.errors import CheckpointError, ConfigError, InputError
from unilk.once import forget

MODEL = "test_unireplknet"
POINTS = {"points": {"num_points": 128, "image_size": 32}}


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(MODEL, pretrained=False, adapters=POINTS, device="cpu")


def _points(encoder: Encoder, clouds: object, **kwargs: object) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return encoder.encode(points=clouds, **kwargs)["points"].embeddings


def test_channels_first_points_are_refused_unless_the_layout_says_so(encoder: Encoder) -> None:
    clouds = np.random.default_rng(0).normal(size=(2, 300, 3)).astype(np.float32)  # [B, N, 3]
    with pytest.raises(InputError, match=r"more columns than points.*layout='CN'"):
        encoder.encode(points=clouds[0].T)
    with pytest.raises(InputError, match=r"layout='BCN'"):
        encoder.encode(points=torch.from_numpy(clouds).transpose(1, 2))
    rows = _points(encoder, clouds)
    torch.testing.assert_close(_points(encoder, clouds[0].T, layout="CN"), rows[:1])
    torch.testing.assert_close(_points(encoder, torch.from_numpy(clouds).transpose(1, 2), layout="BCN"), rows)


def test_maps_take_numpy_and_refuse_other_things(encoder: Encoder) -> None:
    maps = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    from_numpy = encoder.encode(image=unilk.Maps(maps))["image"].embeddings
    torch.testing.assert_close(from_numpy, encoder.encode(image=unilk.Maps(torch.from_numpy(maps)))["image"].embeddings)
    with pytest.raises(InputError, match=r"unilk\.Maps: got shape \(32, 32\)"):
        unilk.Maps(torch.zeros(32, 32))
    with pytest.raises(InputError, match=r"unilk\.Maps: got list"):
        unilk.Maps([1.0, 2.0])  # type: ignore[arg-type]


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an MPS device")
def test_an_mps_device_this_machine_lacks_is_refused_at_construction() -> None:
    with pytest.raises(ConfigError, match="no Apple MPS device"):
        Encoder(MODEL, pretrained=False, device="mps")


def test_encoder_repr_is_one_short_line(encoder: Encoder) -> None:
    text = repr(encoder)
    assert text == (
        "Encoder(model='test_unireplknet', pretrained=False, device='cpu', dtype='fp32', batch_size=32, pool='avg')"
    )


def _reach_warnings(encoder: Encoder) -> list[str]:
    forget()
    image = np.full((32, 32, 3), 100, np.uint8)  # a 1x1 last-stage map for 13x13 kernels
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder.encode(image=image)
    return [str(w.message) for w in caught if "smaller than the reach" in str(w.message)]


def test_random_weights_asked_for_do_not_warn_about_kernel_reach() -> None:
    adapters = {"image": {"input_size": (3, 32, 32), "crop_pct": 1.0}}
    assert _reach_warnings(Encoder(MODEL, pretrained=False, adapters=adapters, device="cpu")) == []
    module = unilk.create_model(MODEL, num_classes=0)  # weights the user holds: the warning is theirs
    assert len(_reach_warnings(Encoder(module, adapters=adapters, device="cpu"))) == 1


def test_create_model_pretrained_offline_fails_at_once_with_the_hf_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import unilk.models._builder as builder

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(builder, "_hub_offline", lambda: False)
    monkeypatch.setattr(builder, "_reachable", lambda url: False)  # timm alone retried for half a minute here
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as caught:
        unilk.create_model("unireplknet_a", pretrained=True, cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 5
    message = str(caught.value)
    assert "cannot be reached (offline?)" in message
    # the pinned huggingface_hub ships the `hf` command; `huggingface-cli` does not exist there
    assert "Fix: fetch it once with `hf download DingXiaoH/UniRepLKNet unireplknet_a_in1k_224_acc77.03.pth`" in message
    assert "pretrained=False" in message


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["predict", "run", "a.wav", "--top-k", "0"], "'--top-k': 0 is not in the range x>=1"),
        (["extract", "audio", "data", "--out", "f", "--num-workers", "-1"], "'--num-workers': -1 is not in the range"),
        (["erf", "test_unireplknet", "--images", ".", "--num", "0"], "'--num': 0 is not in the range"),
        (["info", "test_unireplknet", "--input-size", "3", "0", "0"], "'--input-size': 0 is not in the range"),
        (["synth", "speech-commands", "x", "--n-per-class", "0"], "'--n-per-class': 0 is not in the range"),
    ],
)
def test_a_count_option_out_of_range_names_the_option(args: list[str], option: str) -> None:
    from click.testing import CliRunner

    from unilk.cli import cli

    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert option in result.output
    assert "Traceback" not in result.output


def test_encode_leaves_out_lists_next_to_media_files(tmp_path: Path) -> None:
    import soundfile
    from click.testing import CliRunner

    from unilk.extract_cli import encode_command

    folder = tmp_path / "clips"
    (folder / "yes").mkdir(parents=True)
    tone = np.sin(np.arange(8000) / 5).astype(np.float32)
    soundfile.write(folder / "yes" / "a.wav", tone, 16000)
    (folder / "validation_list.txt").write_text("yes/a.wav\n")  # Speech Commands' split list, not a point cloud
    args = ["--model", MODEL, "--random-weights", "--device", "cpu", "--adapter", "target_frames=48"]
    result = CliRunner().invoke(encode_command, [str(folder), *args])
    assert result.exit_code == 0, result.output
    assert "audio: 1 input(s)" in result.output
    assert "points" not in result.output.replace("warning", "")
    assert result.output.count("left out 1 .txt file(s)") == 1


def test_a_misspelt_model_gets_the_same_did_you_mean_as_everything_else() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'slak_tiny'; did you mean 'slak_t' or 'slak_s'"):
        unilk.create_model("slak_tiny")
    with pytest.raises(ConfigError, match=r"a timm model, not one of unilk.s; use timm\.create_model"):
        unilk.create_model("resnet18")


def test_probe_names_a_misspelt_dataset_before_looking_for_splits(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from unilk.cli import cli

    result = CliRunner().invoke(cli, ["probe", "test_unireplknet", str(tmp_path), "--dataset", "speech_command"])
    assert "--dataset: got 'speech_command'; did you mean 'speech_commands'?" in result.output
    assert "split" not in result.output


def test_train_help_keeps_its_example_on_one_line() -> None:
    from click.testing import CliRunner

    from unilk.cli import cli

    result = CliRunner(env={"COLUMNS": "80"}).invoke(cli, ["train", "--help"])
    example = "unilk train audio/quick_speech_commands optim.lr=1e-3 train.epochs=2 output_dir=runs/sc"
    assert any(line.strip() == example for line in result.output.splitlines())


def test_metrics_json_gives_the_last_step_the_epoch_of_log_csv(tmp_path: Path) -> None:
    import csv
    import json

    from click.testing import CliRunner

    from unilk.train.commands import train_command

    args = [
        "image/quick_stripes", f"output_dir={tmp_path / 'run'}", f"data.root={tmp_path / 'data'}", "train.device=cpu",
        "data.synthetic_kwargs.n_per_class=2", "data.batch_size=4", "train.max_steps=4", "log.progress=false",
    ]  # fmt: skip  # a few training images: the 4 steps span several epochs
    result = CliRunner().invoke(train_command, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert int(rows[-1]["step"]) == summary["step"] == 4
    assert summary["epoch"] > 0
    assert int(rows[-1]["epoch"]) == summary["epoch"]  # was the epochs completed: one more than log.csv said


def test_bench_lkconv_off_a_terminal_logs_progress_lines_not_a_bar(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from click.testing import CliRunner

    from unilk.diagnostics.bench import bench

    args = ["lkconv", "--quick", "--family", "unireplknet_a", "--batch", "1", "--repeats", "1", "--no-backward"]
    with caplog.at_level(logging.INFO, logger="unilk.progress"):
        result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output  # tqdm's redraws, one per case, in a log file
    lines = [r.getMessage() for r in caplog.records if r.name == "unilk.progress"]
    assert len(lines) == 1
    assert lines[0].startswith("lkconv: 1/1 (")


@pytest.mark.parametrize(
    "args",
    [["info", "unireplknet_q"], ["predict", "no-such-run", "."], ["export", "no-such-run", "--out", "x"]],
)
def test_a_unilk_error_inside_a_command_exits_2_as_documented(args: list[str]) -> None:
    from click.testing import CliRunner

    from unilk.cli import cli

    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2  # was 1, the code docs/errors.md keeps for operating-system errors
    assert result.output.startswith("Error: ")
    assert len(result.output.strip().splitlines()) == 1


def test_encode_out_never_writes_over_a_file_and_plot_out_needs_a_figure_suffix(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from unilk.cli import cli

    image = tmp_path / "a.npy"
    np.save(image, np.full((32, 32, 3), 100, np.uint8))
    mine = tmp_path / "mine.npz"
    mine.write_text("the user's own file")
    base = ["encode", str(image), "--modality", "image", "--model", MODEL, "--random-weights", "--device", "cpu"]
    result = CliRunner().invoke(cli, [*base, "--out", str(mine)])
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert mine.read_text() == "the user's own file"  # was replaced by the embeddings
    result = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "emb.txt")])
    assert result.exit_code == 2
    assert "expected a new .npz file" in result.output
    log = tmp_path / "log.csv"
    log.write_text("step,epoch,lr,loss\n1,0,0.1,2.0\n2,0,0.1,1.5\n")
    result = CliRunner().invoke(cli, ["plot", str(log), "--out", str(tmp_path / "curves.npz")])
    assert result.exit_code == 2  # was matplotlib's ValueError with a traceback
    assert "expected one of .png" in result.output


def test_training_off_a_terminal_logs_a_line_now_and_then_not_one_per_logged_step(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import csv
    import logging

    from click.testing import CliRunner

    from unilk.train.commands import train_command

    args = [
        "image/quick_stripes", f"output_dir={tmp_path / 'run'}", f"data.root={tmp_path / 'data'}", "train.device=cpu",
        "data.synthetic_kwargs.n_per_class=2", "data.batch_size=4", "train.max_steps=6", "log.every_steps=1",
    ]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="unilk.train.engine"):
        result = CliRunner().invoke(train_command, args)  # stderr is not a terminal here
    assert result.exit_code == 0, result.output
    lines = [r.getMessage() for r in caplog.records if ": step " in r.getMessage()]
    assert [line.split(",")[0] for line in lines] == ["quick_stripes: step 1/6 (epoch 0)", lines[-1].split(",")[0]]
    assert "step 6/6" in lines[-1]  # the first and the last: the run took less than 30 s (it printed all six)
    assert len(list(csv.DictReader((tmp_path / "run" / "log.csv").open()))) >= 6  # log.csv keeps every logged step


def test_channels_first_video_is_refused_unless_the_layout_says_so() -> None:
    small = {"num_frames": 4, "frame_stride": 1, "short_side": 32, "crop_size": 32}
    encoder = Encoder(MODEL, pretrained=False, adapters={"video": small}, device="cpu")
    clips = np.random.default_rng(2).integers(0, 256, (2, 8, 32, 32, 3), dtype=np.uint8)  # [B, T, H, W, C]
    with pytest.raises(InputError, match=r"channels first\?.*layout='TCHW'"):
        encoder.encode(video=clips[0].transpose(0, 3, 1, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = encoder.encode(video=clips)["video"].embeddings
        one = encoder.encode(video=clips[0].transpose(0, 3, 1, 2), layout="TCHW")["video"].embeddings
        batch = encoder.encode(video=torch.from_numpy(clips).permute(0, 1, 4, 2, 3), layout="BTCHW")["video"]
    torch.testing.assert_close(one, rows[:1])
    torch.testing.assert_close(batch.embeddings, rows)
