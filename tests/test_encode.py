"""unilk.encode / unilk.Encoder: every modality from files, determinism, batch = single calls, chunked audio, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from unilk.encoding import Encoder, Encoding, Maps, encode
from unilk.errors import ConfigError, InputError

# tiny inputs make last-stage maps smaller than the large kernels; expected here
pytestmark = pytest.mark.filterwarnings("ignore:UniRepLKNet.*smaller than the reach:UserWarning")

MODEL = "test_unireplknet"
# small adapters so a tiny trunk runs each modality in milliseconds
ADAPTERS = {
    "audio": {"num_mel_bins": 32, "target_frames": 48},
    "image": {"input_size": (3, 48, 48), "crop_pct": 1.0},
    "video": {"num_frames": 4, "frame_stride": 1, "short_side": 24, "crop_size": 24},
    "points": {"num_points": 256, "image_size": 32},
    "series": {"seq_len": 8, "label_len": 4, "pred_len": 4, "group_size": 2, "d_model": 8}
    | {"freq": "none", "norm": "none", "length": "truncate"},
}


def write_audio(path: Path, seconds: float, freq: float, rate: int = 16000) -> Path:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * np.cos(7 * t)).astype(np.float32), rate)
    return path


def write_image(path: Path, seed: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def write_video(path: Path, seed: int, frames: int = 6) -> Path:
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_points(path: Path, seed: int) -> Path:
    np.save(path, np.random.default_rng(seed).standard_normal((400, 3)).astype(np.float32))
    return path


def write_series(path: Path, seed: int) -> Path:
    np.save(path, np.random.default_rng(seed).standard_normal((12, 4)).astype(np.float32))
    return path


WRITERS = {
    "audio": lambda d, i: write_audio(d / f"a{i}.wav", 0.6 + 0.1 * i, 300 + 50 * i),
    "image": lambda d, i: write_image(d / f"i{i}.png", i),
    "video": lambda d, i: write_video(d / f"v{i}.mp4", i),
    "points": lambda d, i: write_points(d / f"p{i}.npy", i),
    "series": lambda d, i: write_series(d / f"s{i}.npy", i),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Three files per modality."""
    root = tmp_path_factory.mktemp("inputs")
    out = {}
    for modality, write in WRITERS.items():
        (root / modality).mkdir()
        out[modality] = [str(write(root / modality, i)) for i in range(3)]
    return out


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(MODEL, pretrained=False, adapters=ADAPTERS, device="cpu", batch_size=4)


def test_every_modality_encodes_from_files(encoder: Encoder, files: dict[str, list[str]]) -> None:
    out = encoder.encode(**files)
    assert list(out) == ["audio", "image", "video", "points", "series"]
    dim = encoder.trunk(1).num_features
    for modality, enc in out.items():
        assert isinstance(enc, Encoding)
        assert enc.modality == modality
        assert enc.ids == files[modality]
        assert enc.embeddings.shape == (3, dim)
        assert enc.embeddings.dtype == torch.float32
        assert torch.isfinite(enc.embeddings).all()
        assert enc.maps is None
        # different inputs give different embeddings
        assert not torch.allclose(enc.embeddings[0], enc.embeddings[1])
    # series: one map per node of group_size channels (4 channels / 2), pooled by the mean
    assert out["series"].num_maps == [2, 2, 2]
    assert out["audio"].policy == ["crop"] * 3  # 0.6 s+ clips have more than 48 frames
    # one trunk per profile: audio and series (1 channel) share one, image/video/points (3 channels) another
    assert sorted(encoder._trunks) == [1, 3]


def test_same_input_gives_the_same_embedding(encoder: Encoder, files: dict[str, list[str]]) -> None:
    one = {modality: paths[:1] for modality, paths in files.items()}
    first = encoder.encode(**one)
    # a second Encoder holds the same (seeded) random trunk: every process embeds alike, e.g. each torchrun rank
    other = Encoder(MODEL, pretrained=False, adapters=ADAPTERS, device="cpu")
    for result in (encoder.encode(**one), other.encode(**one)):
        for modality in files:
            torch.testing.assert_close(result[modality].embeddings, first[modality].embeddings, rtol=0, atol=0)


@pytest.mark.parametrize("modality", list(WRITERS))
def test_a_batch_of_n_equals_n_single_calls(encoder: Encoder, files: dict[str, list[str]], modality: str) -> None:
    batch = encoder.encode_modality(modality, files[modality]).embeddings
    singles = torch.cat([encoder.encode_modality(modality, path).embeddings for path in files[modality]])
    torch.testing.assert_close(batch, singles, rtol=0, atol=1e-5)


def test_input_forms_agree(encoder: Encoder, files: dict[str, list[str]], tmp_path: Path) -> None:
    import soundfile as sf

    by_path = encoder.encode_modality("audio", files["audio"][0]).embeddings
    wave, rate = sf.read(files["audio"][0], dtype="float32")
    by_pair = encoder.encode(audio=(wave, rate))["audio"]
    assert by_pair.ids == ["audio[0]"]
    torch.testing.assert_close(by_pair.embeddings, by_path, rtol=0, atol=1e-6)
    maps = encoder.adapter("audio")(files["audio"][0])
    torch.testing.assert_close(encoder.encode(audio=Maps(maps))["audio"].embeddings, by_path, rtol=0, atol=1e-6)
    directory = encoder.encode(image=str(Path(files["image"][0]).parent))["image"]
    assert directory.ids == sorted(files["image"])
    mapping = encoder.encode(points={"first": files["points"][0]})["points"]
    assert mapping.ids == ["first"]


def test_long_audio_chunks_are_mean_pooled_and_reported(tmp_path: Path) -> None:
    chunked = Encoder(
        MODEL, pretrained=False, adapters={"audio": {**ADAPTERS["audio"], "length_policy": "chunk"}}, device="cpu"
    )
    clip = write_audio(tmp_path / "long.wav", 1.3, 440)  # 128 frames -> 3 chunks of 48
    enc = chunked.encode(audio=str(clip), return_maps=True)["audio"]
    assert (enc.num_maps, enc.policy) == ([3], ["chunk"])
    chunks = chunked.adapter("audio").chunks(str(clip))
    per_chunk = chunked.encode(audio=Maps(chunks))["audio"].embeddings
    torch.testing.assert_close(enc.embeddings[0], per_chunk.mean(0), rtol=0, atol=1e-6)
    assert enc.maps is not None
    assert enc.maps[0].shape[:2] == (3, chunked.trunk(1).num_features)


def test_options_channels_last_bf16_and_max_pool(files: dict[str, list[str]], encoder: Encoder) -> None:
    reference = encoder.encode(image=files["image"])["image"].embeddings
    cl = Encoder(MODEL, pretrained=False, adapters=ADAPTERS, device="cpu", channels_last=True)
    bf = Encoder(MODEL, pretrained=False, adapters=ADAPTERS, device="cpu", dtype="bf16")
    mx = Encoder(MODEL, pretrained=False, adapters=ADAPTERS, device="cpu", pool="max")
    # share the reference trunk, so only the option differs
    for other in (cl, bf, mx):
        other._trunks[3] = encoder.trunk(3)
    torch.testing.assert_close(cl.encode(image=files["image"])["image"].embeddings, reference, rtol=1e-4, atol=1e-4)
    low = bf.encode(image=files["image"])["image"].embeddings
    assert low.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(low, reference).min() > 0.98
    pooled = mx.encode(image=files["image"], return_maps=True)["image"]
    torch.testing.assert_close(pooled.embeddings, torch.stack([m[0].amax(dim=(-2, -1)) for m in pooled.maps]))


def test_bad_calls_raise_clear_errors(encoder: Encoder, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no input given"):
        encoder.encode()
    with pytest.raises(ConfigError, match="pool"):
        Encoder(MODEL, pretrained=False, pool="mean")
    with pytest.raises(ConfigError, match="unknown modality"):
        Encoder(MODEL, pretrained=False, adapters={"text": {}})
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    with pytest.raises(InputError, match=r"bad\.wav"):
        encoder.encode(audio=str(bad))
    with pytest.raises(InputError, match="got int"):
        encoder.encode(audio=3)


def test_encode_function_builds_an_encoder(files: dict[str, list[str]]) -> None:
    import unilk

    out = encode(
        points=files["points"][:2], model=MODEL, pretrained=False, adapters=ADAPTERS, device="cpu", batch_size=1
    )
    # the public `unilk.encode` is the function (the module is `unilk.encoding`)
    again = unilk.encode(points=files["points"][:2], model=MODEL, pretrained=False, adapters=ADAPTERS, device="cpu")
    assert out["points"].embeddings.shape[0] == 2
    torch.testing.assert_close(again["points"].embeddings, out["points"].embeddings, rtol=0, atol=1e-5)


def test_cli_encode_prints_shapes_and_writes_npz(files: dict[str, list[str]], tmp_path: Path) -> None:
    from unilk.extract_cli import encode_command

    out = tmp_path / "feats.npz"
    args = [
        *files["image"][:2],
        files["points"][0],
        "--model",
        MODEL,
        "--random-weights",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(encode_command, args)
    assert result.exit_code == 0, result.output
    assert "image: 2 input(s) -> embeddings (2, 64)" in result.output
    with np.load(out) as saved:
        assert saved["image_embeddings"].shape == (2, 64)
        assert list(saved["points_ids"]) == [files["points"][0]]


def _randomize_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so that folding them into the convolutions is exercised."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _trained_trunk(num_classes: int) -> torch.nn.Module:
    from unilk.models.registry import create_model

    torch.manual_seed(3)
    return _randomize_batchnorm(create_model(MODEL, num_classes=num_classes, in_chans=1))


def _reference(trunk: torch.nn.Module, maps: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return trunk.forward_head(trunk.forward_features(maps), pre_logits=True)


def _save_like_the_trainer(path: Path, modality: str, task: str, adapter: dict, labels: list[str]) -> torch.nn.Module:
    """A modal model saved with the keys and ``arch`` that ``unilk train`` writes (unilk.train.build / engine)."""
    from unilk.models.modal import create_modal_model
    from unilk.train.checkpoint import save_checkpoint

    torch.manual_seed(5)
    num_classes = len(labels) or None
    model = create_modal_model(modality, task, MODEL, num_classes=num_classes, adapter_config=adapter)
    arch = {
        "builder": "unilk.models.modal.create_modal_model",
        "modality": modality,
        "task": task,
        "trunk": MODEL,
        "num_classes": num_classes,
        "kwargs": {},
        "head_kwargs": {},
    }
    payload = {"model": _randomize_batchnorm(model).state_dict(), "arch": arch, "adapter": adapter, "labels": labels}
    save_checkpoint(path, payload)
    return model


def test_training_checkpoint_sets_architecture_adapter_labels_and_weights(tmp_path: Path) -> None:
    from unilk.adapters import AudioAdapter, AudioConfig

    config = AudioConfig(num_mel_bins=32, target_frames=40)
    path = tmp_path / "best.pt"
    model = _save_like_the_trainer(path, "audio", "classification", config.to_dict(), ["yes", "no"])
    enc = Encoder(checkpoint=path, device="cpu")
    assert (enc.model_name, enc.labels) == (MODEL, ["yes", "no"])
    clip = write_audio(tmp_path / "c.wav", 0.7, 500)
    out = enc.encode(audio=str(clip))["audio"]
    with torch.no_grad():  # the training-time map (1×40×32 from the stored adapter config) through the trained model
        expected = model.forward_features(AudioAdapter(config)(str(clip))[None])
    torch.testing.assert_close(out.embeddings, expected, rtol=0, atol=1e-4)
    with pytest.raises(ConfigError, match="trained on audio"):
        enc.encode(image=torch.rand(3, 48, 48))
    with pytest.raises(ConfigError, match="holds a test_unireplknet"):
        Encoder("unireplknet_a", checkpoint=path)


def test_series_checkpoint_brings_its_learned_stem(tmp_path: Path) -> None:
    adapter = {"modality": "series", **ADAPTERS["series"]}
    path = tmp_path / "forecast.pt"
    model = _save_like_the_trainer(path, "series", "forecast", adapter, [])
    enc = Encoder(checkpoint=path, device="cpu")
    windows = torch.randn(3, 12, 4)
    out = enc.encode(series=[w.numpy() for w in windows])["series"]
    assert out.num_maps == [2, 2, 2]
    with torch.no_grad():  # the last seq_len steps, per node, averaged over the 2 nodes
        expected = model.forward_features(windows[:, -8:]).view(3, 2, -1).mean(1)
    torch.testing.assert_close(out.embeddings, expected, rtol=0, atol=1e-4)


def test_plain_weights_file_loads_into_the_named_model(tmp_path: Path) -> None:
    trunk = _trained_trunk(num_classes=0)
    torch.save(trunk.state_dict(), tmp_path / "weights.pth")
    enc = Encoder(MODEL, pretrained=False, checkpoint=tmp_path / "weights.pth", adapters=ADAPTERS, device="cpu")
    maps = torch.randn(2, 1, 48, 32)
    torch.testing.assert_close(
        enc.encode(audio=Maps(maps))["audio"].embeddings, _reference(trunk, maps), atol=1e-4, rtol=0
    )


def test_cli_encode_reports_a_bad_file_without_a_traceback(tmp_path: Path) -> None:
    from unilk.extract_cli import encode_command

    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"nope")
    result = CliRunner().invoke(encode_command, [str(bad), "--model", MODEL, "--random-weights", "--device", "cpu"])
    assert result.exit_code == 1
    assert "broken.wav" in result.output
    assert "Traceback" not in result.output
