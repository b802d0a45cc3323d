"""The encode input contract: each form a user holds gives the embedding of the same content, ambiguous shapes are
refused with the ``layout=`` that settles them; dtype/device checks; pretrained weights by default, failing fast."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import unilk
from unilk.encoding import Encoder, Maps
from unilk.errors import CheckpointError, ConfigError, InputError

pytestmark = pytest.mark.filterwarnings("ignore:UniRepLKNet.*smaller than the reach:UserWarning")

MODEL = "test_unireplknet"
ADAPTERS = {
    "audio": {"num_mel_bins": 32, "target_frames": 48},
    "image": {"input_size": (3, 32, 32), "crop_pct": 1.0},
    "points": {"num_points": 128, "image_size": 32},
    "series": {"seq_len": 8, "label_len": 4, "pred_len": 4, "group_size": 2, "d_model": 8}
    | {"freq": "none", "norm": "none"},
}
RATE = 16000


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(MODEL, pretrained=False, adapters=ADAPTERS, device="cpu")


def _emb(encoder: Encoder, **kwargs: Any) -> torch.Tensor:
    (encoding,) = encoder.encode(**kwargs).values()
    return encoding.embeddings


def _images(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 40, 48, 3), dtype=np.uint8)  # NHWC uint8


def test_image_forms_pil_hwc_chw_nhwc_nchw_float_and_bytes_agree(encoder: Encoder) -> None:
    from PIL import Image

    batch = _images()
    reference = torch.cat([_emb(encoder, image=str(p)) for p in _write_pngs(batch)])
    pil = [Image.fromarray(a) for a in batch]
    nchw = torch.from_numpy(batch).permute(0, 3, 1, 2)
    forms = {
        "PIL list": _emb(encoder, image=pil),
        "PIL one": torch.cat([_emb(encoder, image=p) for p in pil]),
        "HWC list": _emb(encoder, image=list(batch)),
        "CHW tensors": _emb(encoder, image=list(nchw)),
        "NHWC uint8": _emb(encoder, image=batch),
        "NCHW uint8 tensor": _emb(encoder, image=nchw),
        "NCHW float in [0, 1]": _emb(encoder, image=nchw.float() / 255),
        "bytes": torch.cat([_emb(encoder, image=_png_bytes(a)) for a in batch]),
    }
    for name, emb in forms.items():
        torch.testing.assert_close(emb, reference, rtol=0, atol=1e-5, msg=name)


def _write_pngs(batch: np.ndarray) -> list[Path]:
    import tempfile

    from PIL import Image

    folder = Path(tempfile.mkdtemp())
    paths = [folder / f"{i}.png" for i in range(len(batch))]
    for array, path in zip(batch, paths):
        Image.fromarray(array).save(path)
    return paths


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_shapes_that_say_nothing_are_refused_with_the_fix(encoder: Encoder) -> None:
    with pytest.raises(InputError, match=r"layout='CHW' or layout='HWC'"):
        encoder.encode(image=np.zeros((3, 8, 3), np.uint8))
    with pytest.raises(InputError, match=r"alpha"):
        encoder.encode(image=np.zeros((20, 20, 4), np.uint8))
    grey = np.random.default_rng(1).integers(0, 256, (40, 48), dtype=np.uint8)
    torch.testing.assert_close(_emb(encoder, image=grey), _emb(encoder, image=np.repeat(grey[..., None], 3, axis=2)))
    ambiguous = np.random.default_rng(2).integers(0, 256, (3, 40, 3), dtype=np.uint8)
    torch.testing.assert_close(
        _emb(encoder, image=ambiguous, layout="CHW"), _emb(encoder, image=np.moveaxis(ambiguous, 0, -1))
    )


def _clips(n: int = 2, seconds: float = 0.6) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.stack([0.3 * np.sin(2 * np.pi * (300 + 200 * i) * t) for i in range(n)]).astype(np.float32)


def test_audio_forms_t_ct_tc_bt_and_bytes(encoder: Encoder, tmp_path: Path) -> None:
    import soundfile as sf

    clips = _clips()
    reference = torch.cat([_emb(encoder, audio=c) for c in clips])  # [T] each
    torch.testing.assert_close(_emb(encoder, audio=clips, layout="BT"), reference)
    torch.testing.assert_close(_emb(encoder, audio=torch.from_numpy(clips[:1])), reference[:1])  # [1, T]
    stereo = np.stack([clips[0], clips[0]])  # [C, T], both channels the same clip
    torch.testing.assert_close(_emb(encoder, audio=stereo, layout="CT"), reference[:1], rtol=0, atol=1e-5)
    torch.testing.assert_close(_emb(encoder, audio=(stereo.T, RATE), layout="TC"), reference[:1], rtol=0, atol=1e-5)
    one_clip = _emb(encoder, audio=(stereo, RATE))  # a pair holds one clip: [C, T]
    torch.testing.assert_close(one_clip, reference[:1], rtol=0, atol=1e-5)
    with pytest.raises(InputError, match="layout='TC'"):
        encoder.encode(audio=(stereo.T, RATE))
    path = tmp_path / "a.wav"
    sf.write(path, clips[0], RATE, subtype="FLOAT")
    data, rate = sf.read(path, always_2d=True)  # soundfile's [frames, channels]
    torch.testing.assert_close(_emb(encoder, audio=(data, rate), layout="TC"), reference[:1], rtol=0, atol=1e-5)
    torch.testing.assert_close(_emb(encoder, audio=path.read_bytes()), reference[:1], rtol=0, atol=1e-5)


def test_ambiguous_audio_is_refused_with_each_layout_named(encoder: Encoder) -> None:
    with pytest.raises(InputError, match=r"layout='BT' \(clips\), 'CT' \(channels first\) or 'TC'"):
        encoder.encode(audio=_clips())
    with pytest.raises(InputError, match=r"layout='BCT' or layout='BTC'"):
        encoder.encode(audio=np.zeros((2, 2, 9600), np.float32))
    with pytest.raises(InputError, match="expected one of"):
        encoder.encode(audio=_clips(), layout="XY")
    with pytest.raises(ConfigError, match="mapping"):
        encoder.encode(audio=_clips()[0], image=_images(1)[0], layout="T")


def test_points_and_series_batches_equal_their_samples(encoder: Encoder) -> None:
    rng = np.random.default_rng(3)
    clouds = rng.normal(size=(2, 300, 4)).astype(np.float32)  # [B, N, 3+]
    torch.testing.assert_close(_emb(encoder, points=clouds), _emb(encoder, points=list(clouds)))
    torch.testing.assert_close(_emb(encoder, points=torch.from_numpy(clouds[0])), _emb(encoder, points=clouds[:1]))
    windows = rng.normal(size=(3, 8, 4)).astype(np.float32)  # [B, T, D]
    torch.testing.assert_close(_emb(encoder, series=windows), _emb(encoder, series=list(windows)))
    with pytest.raises(InputError, match="fit no points layout"):
        encoder.encode(points=np.zeros((1, 2, 3, 4)))
    with pytest.raises(InputError, match="bytes are read for audio and images"):
        encoder.encode(points=b"ply\n")


def test_elements_that_are_no_sample_and_empty_inputs_are_input_errors(encoder: Encoder) -> None:
    wave = np.zeros(RATE, np.float32)
    for kwargs, message in [
        ({"image": [None]}, r"image=\[\.\.\.\]\): an element of type NoneType"),  # was pathlib's TypeError
        ({"image": {"a": 1}}, "an element of type int"),
        ({"points": [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]}, r"an element of type list.*np\.asarray"),
        ({"series": [1.0, 2.0, 3.0]}, "an element of type float"),
        ({"audio": (wave, 16000.5)}, "pairs need an integer rate"),
        ({"image": []}, r"the list holds no inputs"),  # said "got list; expected ... list of samples"
        ({"audio": {}}, r"the dict holds no inputs"),
        ({"points": np.zeros((0, 10, 3), np.float32)}, r"the ndarray holds no inputs"),  # gave (0, 0) embeddings
    ]:
        with pytest.raises(InputError, match=message):
            encoder.encode(**kwargs)
    with pytest.raises(InputError, match="NoneType"):  # a form error, like an ambiguous array: raised in any mode
        encoder.encode(image=[None, np.zeros((8, 8, 3), np.uint8)], on_error="record")


def test_maps_is_public_and_batched(encoder: Encoder) -> None:
    assert unilk.Maps is Maps
    maps = torch.randn(3, 1, 48, 32)
    out = encoder.encode(audio=unilk.Maps(maps))["audio"]
    assert out.embeddings.shape[0] == 3
    assert out.policy == ["maps"] * 3


def test_dtype_and_device_are_checked_at_construction(encoder: Encoder) -> None:
    with pytest.raises(ConfigError, match="fp16' on the CPU"):
        Encoder(MODEL, pretrained=False, device="cpu", dtype="fp16")
    with pytest.raises(ConfigError, match="dtype: got 'int8'"):
        Encoder(MODEL, pretrained=False, device="cpu", dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            Encoder(MODEL, pretrained=False, device="cuda")
    bf16 = Encoder(MODEL, pretrained=False, adapters=ADAPTERS, device="cpu", dtype=torch.bfloat16)
    clouds = np.random.default_rng(4).normal(size=(2, 200, 3)).astype(np.float32)
    low = _emb(bf16, points=clouds)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, _emb(encoder, points=clouds), rtol=0.1, atol=0.1)


def test_encoding_repr_is_one_short_line(encoder: Encoder) -> None:
    out = encoder.encode(points=np.random.default_rng(5).normal(size=(2, 200, 3)))["points"]
    text = repr(out)
    assert "\n" not in text
    assert len(text) < 150
    assert "n=2" in text
    assert "[2, 64]" in text


# --------------------------------------------------------------------------------------------- pretrained default


def _cache_with_unireplknet_a(cache: Path, state: dict[str, Any]) -> None:
    """huggingface_hub's cache layout for the registry's unireplknet_a file."""
    repo = cache / "models--DingXiaoH--UniRepLKNet"
    (repo / "refs").mkdir(parents=True)
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    torch.save({"model": state}, repo / "snapshots" / commit / "unireplknet_a_in1k_224_acc77.03.pth")


def test_default_is_the_pretrained_weights_with_the_stem_adapted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, unireplknet_a_fixture: dict[str, Any]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    state = unireplknet_a_fixture["state_dict"]
    _cache_with_unireplknet_a(tmp_path, state)
    enc = Encoder(device="cpu", model_kwargs={"cache_dir": str(tmp_path)})  # no checkpoint: pretrained by default
    assert enc.pretrained
    stem_name = "downsample_layers.0.0.weight"
    with torch.no_grad():
        trunk = enc._build(1)  # audio's profile: one input channel
    loaded = trunk.state_dict()
    assert loaded[stem_name].shape[1] == 1
    assert state[stem_name].shape[1] == 3
    torch.testing.assert_close(loaded[stem_name], state[stem_name].sum(dim=1, keepdim=True))  # timm's 3 -> 1 rule
    later = "stages.3.0.dwconv.lk_origin.weight"
    torch.testing.assert_close(loaded[later], state[later])


def test_default_without_the_weights_fails_at_once_with_the_way_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as caught:
        Encoder(device="cpu", model_kwargs={"cache_dir": str(tmp_path)})
    assert time.perf_counter() - start < 5
    message = str(caught.value)
    for part in (
        "https://huggingface.co/DingXiaoH/UniRepLKNet/resolve/main/unireplknet_a_in1k_224_acc77.03.pth",
        "`hf download DingXiaoH/UniRepLKNet unireplknet_a_in1k_224_acc77.03.pth",
        "HF_HUB_OFFLINE",
        "pretrained=False",
        "checkpoint=",
    ):
        assert part in message
    with pytest.raises(CheckpointError, match="no released weights"):
        Encoder(MODEL, device="cpu")


def test_unreachable_hub_fails_fast_without_retries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import unilk.models._builder as builder

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(builder, "_hub_offline", lambda: False)
    monkeypatch.setattr(builder, "_reachable", lambda url: False)
    with pytest.raises(CheckpointError, match=r"cannot be reached \(offline\?\)"):
        Encoder(device="cpu", model_kwargs={"cache_dir": str(tmp_path)})


def test_cli_names_its_own_options_in_the_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from unilk.extract_cli import encode_command

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    clip = tmp_path / "a.npy"
    np.save(clip, np.zeros((300, 3), np.float32))
    result = CliRunner().invoke(encode_command, [str(clip), "--modality", "points", "--device", "cpu"])
    assert result.exit_code == 2
    assert "--random-weights" in result.output
    assert "pretrained=False" not in result.output
    assert "--checkpoint" in result.output


def test_a_trained_model_file_has_a_one_line_repr(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from unilk.loading import read_model_file
    from unilk.train.commands import train_command

    args = [
        "image/quick_stripes", f"output_dir={tmp_path / 'run'}", f"data.root={tmp_path / 'data'}",
        "data.synthetic_kwargs.n_per_class=2", "data.batch_size=4", "train.max_steps=1", "train.device=cpu",
    ]  # fmt: skip
    assert CliRunner().invoke(train_command, args).exit_code == 0
    text = repr(read_model_file(tmp_path / "run" / "best.pt"))
    assert "\n" not in text
    assert len(text) < 150 + len(str(tmp_path))
    assert "an image classification model (trunk test_unireplknet" in text
