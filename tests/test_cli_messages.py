"""What the command line prints: warnings as one line, library messages in CLI words, `unilk encode --adapter`."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from unilk.extract_cli import cli_words, encode_command

pytestmark = pytest.mark.filterwarnings("ignore:UniRepLKNet.*smaller than the reach:UserWarning")


def test_python_warnings_are_one_warning_line_without_the_source(capsys: pytest.CaptureFixture[str]) -> None:
    from unilk import cli

    with warnings.catch_warnings():  # restores showwarning afterwards
        warnings.simplefilter("always")
        warnings.showwarning = cli._show_warning  # what `unilk ...` installs
        warnings.warn("a video is shorter than a clip", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err == "warning: a video is shorter than a clip\n"


def test_log_records_read_warning_colon_message() -> None:
    from unilk.cli import _CliFormatter

    record = logging.LogRecord("unilk.adapters.io", logging.WARNING, "io.py", 1, "%s: silent", ("a.wav",), None)
    assert _CliFormatter(with_names=False).format(record) == "warning: a.wav: silent"
    assert _CliFormatter(with_names=True).format(record) == "warning unilk.adapters.io: a.wav: silent"


def test_library_keywords_become_cli_options() -> None:
    message = "fetch it; or pass checkpoint= with a local file, or pretrained=False for random weights"
    assert (
        cli_words(message) == "fetch it; or pass --checkpoint with a local file, or --random-weights for random weights"
    )
    assert cli_words("Encoder: model='x' with this checkpoint") == "Encoder: --model 'x' with this checkpoint"
    assert cli_words("use my_model=3") == "use my_model=3"  # only whole keywords


def _image(path: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    return path


def test_encode_adapter_overrides(tmp_path: Path) -> None:
    image = _image(tmp_path / "a.png")
    base = [str(image), "--model", "test_unireplknet", "--random-weights", "--device", "cpu"]
    small = CliRunner().invoke(
        encode_command, [*base, "--adapter", "input_size=[3,32,32]", "--out", str(tmp_path / "s.npz")]
    )
    assert small.exit_code == 0, small.output
    prefixed = CliRunner().invoke(encode_command, [*base, "--adapter", "image.crop_pct=1.0"])
    assert prefixed.exit_code == 0, prefixed.output
    cloud = tmp_path / "c.npy"
    np.save(cloud, np.random.default_rng(1).normal(size=(200, 3)).astype(np.float32))
    mixed = CliRunner().invoke(encode_command, [*base, str(cloud), "--adapter", "crop_pct=1.0"])
    assert mixed.exit_code == 2
    assert "expected MODALITY.KEY=VALUE" in mixed.output
    unknown = CliRunner().invoke(encode_command, [*base, "--adapter", "input_sise=[3,32,32]"])
    assert unknown.exit_code == 2  # a ConfigError: exit code 2, as docs/errors.md says
    assert "did you mean 'input_size'" in unknown.output


def test_encode_takes_folders(tmp_path: Path) -> None:
    (tmp_path / "pics" / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        _image(tmp_path / "pics" / name)
    (tmp_path / "pics" / "notes.md").write_text("not a picture")
    (tmp_path / "nothing").mkdir()
    base = ["--model", "test_unireplknet", "--random-weights", "--device", "cpu", "--adapter", "input_size=[3,32,32]"]
    out = tmp_path / "e.npz"
    folder = CliRunner().invoke(encode_command, [str(tmp_path / "pics"), *base, "--out", str(out)])
    assert folder.exit_code == 0, folder.output
    assert "image: 2 input(s) -> embeddings (2, 64)" in folder.output
    assert [Path(p).name for p in np.load(out)["image_ids"]] == ["a.png", "b.png"]
    empty = CliRunner().invoke(encode_command, [str(tmp_path / "nothing"), *base])
    assert empty.exit_code == 2
    assert "lists no inputs" in empty.output


def test_a_misspelt_model_fails_before_any_input_is_read(tmp_path: Path) -> None:
    import unilk

    with pytest.raises(unilk.ConfigError, match=r"unknown model 'unireplknet_q'; did you mean 'unireplknet_t'"):
        unilk.Encoder("unireplknet_q", pretrained=False)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    result = CliRunner().invoke(encode_command, [str(broken), "--model", "unireplknet_q", "--random-weights"])
    assert result.exit_code == 2
    assert "unknown model 'unireplknet_q'" in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["encode", "a.png"],
        ["extract", "image", "src", "--out", "feats"],
        ["predict", "run", "a.wav"],
        ["calibrate", "run", "data", "--out", "c.pt"],
        ["probe", "run", "data"],
        ["erf", "unireplknet_a", "--images", "."],
        ["info", "unireplknet_a"],
    ],
)
@pytest.mark.parametrize("device", ["tpu", "cuda:7"])
def test_every_device_option_is_checked_before_anything_runs(command: list[str], device: str) -> None:
    from unilk.cli import cli
    from unilk.errors import ConfigError

    result = CliRunner().invoke(cli, [*command, "--device", device])
    assert isinstance(result.exception, ConfigError), result.output
    assert str(result.exception).startswith(f"--device: got {device!r}")
    assert "expected 'auto'" in str(result.exception)


def test_a_bad_device_is_one_error_line_with_exit_code_2() -> None:
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "unilk", "info", "unireplknet_a", "--device", "tpu"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "Error: --device: got 'tpu', not a device; expected 'auto', 'cpu', 'cuda' or 'cuda:N' or 'meta'."
    ]
