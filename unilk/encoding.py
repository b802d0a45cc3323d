"""Embeddings from any modality, in memory: :class:`Encoder` and :func:`encode`.

An :class:`Encoder` holds one trunk per *profile* (the number of input channels its adapters make: audio and series
maps have 1, points, video and images 3) in deploy form (re-parameterized, eval, inference mode), and one adapter per
modality. Several modalities in one call therefore share a trunk whenever their maps have the same channel count.

Every call returns the same type, a ``dict`` from modality name to :class:`Encoding` (ids, ``[N, D]`` embeddings,
and what was done to each input). For long audio under the adapter's ``chunk`` policy, the embedding of a clip is the
mean of the embeddings of its chunks; ``Encoding.num_maps`` and ``Encoding.policy`` say so per input.

Example:
    >>> enc = unilk.Encoder(checkpoint="runs/esc50/best.pt")  # a unireplknet_a trained by `unilk train`
    >>> out = enc.encode(audio=["a.wav", "b.wav"])
    >>> out["audio"].embeddings.shape
    torch.Size([2, 320])
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from unilk.errors import CheckpointError, ConfigError, InputError

__all__ = [
    "MODALITIES",
    "Encoder",
    "Encoding",
    "Maps",
    "Prepared",
    "RandomWeightsWarning",
    "SamplePreparer",
    "TrainedModel",
    "encode",
    "read_training_checkpoint",
]

logger = logging.getLogger(__name__)

#: the modalities :func:`encode` accepts, in the order results are returned.
MODALITIES = ("audio", "image", "video", "points", "series")
_POOLS = ("avg", "max")
_DEFAULT_MODEL = "unireplknet_a"

_warned_random_weights = False


class RandomWeightsWarning(UserWarning):
    """An Encoder built without trained weights: its embeddings carry no meaning."""


@dataclass(frozen=True)
class Maps:
    """Ready-made maps, passed to :func:`encode` instead of raw samples (the adapter is skipped).

    Attributes:
        tensor: Tensor[N, C, H, W] (one map per input) or Tensor[C, H, W] (one input).
    """

    tensor: Tensor


@dataclass(frozen=True)
class Encoding:
    """The embeddings of one modality's inputs.

    Attributes:
        modality: the modality name.
        ids: one name per input: the file's path, or ``"<modality>[i]"`` for in-memory samples.
        embeddings: Tensor[N, D] float32 on the CPU, one row per input, in input order.
        num_maps: maps per input; above 1 the embedding is the mean of the map embeddings: the chunks of a long clip
            under the audio ``chunk`` policy, or the nodes (channel groups) of a series.
        policy: per input, what the adapter did to fit the input (audio: ``"none"``, ``"pad"``, ``"crop"``,
            ``"repeat"``, ``"chunk"``; series: ``"window"``; ``"maps"`` for ready maps; ``""`` otherwise).
        maps: with ``return_maps=True``, per input the final-stage feature maps Tensor[K_i, D, h, w] (float32, CPU);
            otherwise None.
        model: the trunk's name.
    """

    modality: str
    ids: list[str]
    embeddings: Tensor
    num_maps: list[int]
    policy: list[str]
    maps: list[Tensor] | None
    model: str


class Prepared(NamedTuple):
    """One input after its adapter, before the trunk.

    Attributes:
        data: Tensor[K, C, H, W] maps; for series, the scaled window Tensor[L, D] that the learned stem embeds.
        policy: what the adapter did to fit the input (see :attr:`Encoding.policy`).
        marks: series only: time features Tensor[L, k], or None.
    """

    data: Tensor
    policy: str
    marks: Tensor | None = None


class SamplePreparer:
    """``sample -> Prepared`` for one modality's adapter; picklable, so DataLoader workers can run it."""

    def __init__(self, modality: str, adapter: Any) -> None:
        self.modality = modality
        self.adapter = adapter

    def __call__(self, sample: Any) -> Prepared:
        if isinstance(sample, Maps):
            maps = sample.tensor
            return Prepared((maps if maps.dim() == 4 else maps.unsqueeze(0)).float(), "maps")
        if self.modality == "series":
            data = self.adapter.load(sample)
            window = self.adapter(data)  # (L, D)
            marks = self.adapter.marks(data)
            marks = None if marks is None else torch.from_numpy(np.ascontiguousarray(marks[-window.shape[0] :]))
            return Prepared(window, "window", marks)
        process = getattr(self.adapter, "process", None)
        if process is not None:  # adapters with several maps per sample (audio) report the policy they applied
            result = process(sample)
            return Prepared(result.maps, result.policy)
        return Prepared(self.adapter(sample).unsqueeze(0), "")


_MODAL_BUILDER = "unilk.models.modal.create_modal_model"


@dataclass(frozen=True)
class TrainedModel:
    """What a ``unilk train`` checkpoint says about its model.

    Attributes:
        path: the checkpoint file.
        arch: how the trainer built the model: ``{"builder", "modality", "task", "trunk", "num_classes", "kwargs",
            "head_kwargs"}`` (:func:`unilk.models.modal.create_modal_model` arguments).
        adapter: the adapter config dict used in training.
        labels: the label names (empty for forecasting).
        state_dict: the weights of the modal model (``stem.`` for series, ``trunk.``, ``head.``).
    """

    path: str
    arch: dict[str, Any]
    adapter: dict[str, Any]
    labels: list[str]
    state_dict: dict[str, Tensor]

    @property
    def modality(self) -> str:
        """The modality the model was trained on."""
        return self.arch["modality"]

    def build(self, **trunk_kwargs: Any) -> nn.Module:
        """Rebuild the modal model (stem + trunk + head) exactly as in training and load its weights, strictly.

        Raises:
            CheckpointError: the weights do not fit the architecture the checkpoint names.
        """
        from unilk.models.modal import create_modal_model

        arch = self.arch
        model = create_modal_model(
            arch["modality"],
            arch["task"],
            arch["trunk"],
            num_classes=arch.get("num_classes"),
            adapter_config=self.adapter,
            head_kwargs=arch.get("head_kwargs"),
            **{**arch.get("kwargs", {}), **trunk_kwargs},
        )
        _load_strict(model, self.state_dict, self.path, "model")
        return model


def read_training_checkpoint(path: str | os.PathLike[str]) -> TrainedModel | None:
    """Read a ``unilk train`` checkpoint; None when ``path`` holds plain weights (a state_dict) instead.

    Args:
        path: a ``.pt``/``.pth`` file (read with ``weights_only=True``) or ``.safetensors`` (always plain weights).

    Returns:
        The :class:`TrainedModel`, or None for a plain weights file.

    Raises:
        CheckpointError: the file cannot be read, or a training checkpoint's ``arch`` is not one this version builds.
    """
    from unilk.train.checkpoint import FORMAT

    text = os.fspath(path)
    if text.endswith(".safetensors"):
        return None
    try:
        data = torch.load(text, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for unreadable files
        raise CheckpointError(f"checkpoint {text!r}: cannot be read ({err}); expected a .pt or weights") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    arch = dict(data.get("arch") or {})
    missing = [k for k in ("modality", "task", "trunk") if k not in arch]
    if arch.get("builder") != _MODAL_BUILDER or missing or arch["modality"] not in MODALITIES:
        raise CheckpointError(
            f"checkpoint {text!r}: arch={arch!r}; expected builder {_MODAL_BUILDER!r} with modality, task and trunk "
            f"(modality one of {list(MODALITIES)}). Fix: use a checkpoint written by `unilk train`."
        )
    return TrainedModel(text, arch, dict(data.get("adapter") or {}), list(data.get("labels") or []), data["model"])


@contextlib.contextmanager
def _seeded() -> Iterator[None]:
    """Initialise modules from a fixed seed, without touching the caller's random state.

    Weights that are not loaded from a file (random trunks, an untrained series stem) are then the same in every
    process, so the shards that torchrun ranks write, or a resumed run adds, come from one and the same model.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _warn_random_weights(model: str) -> None:
    global _warned_random_weights
    if _warned_random_weights:
        return
    _warned_random_weights = True
    warnings.warn(
        f"unilk.Encoder({model!r}) has random weights: its embeddings carry no meaning and must not be used for "
        "retrieval, clustering or probing. To get weights, pass pretrained=True (ImageNet weights from the hub, stem "
        "adapted to the modality's channels), or checkpoint='runs/<recipe>/best.pt' written by `unilk train <recipe>`.",
        RandomWeightsWarning,
        stacklevel=3,
    )


class Encoder:
    """A reusable feature extractor: trunks in deploy form plus one adapter per modality.

    Args:
        model: a registered trunk name (``unilk.list_models()``; default: the checkpoint's architecture, else
            ``unireplknet_a``), or a ready ``nn.Module`` following the timm contract
            (``forward_features``, ``forward_head(x, pre_logits=True)``), used for every modality and put in deploy
            form in place. Weights not loaded from a file are initialised from a fixed seed, so every process (each
            torchrun rank, a resumed run) holds the same model.
        checkpoint: a checkpoint written by ``unilk train`` (it carries the architecture, the adapter config and the
            labels, so features are made exactly as in training), or a plain weights file for ``model``.
        pretrained: load the registry's pretrained weights for ``model`` (ignored with ``checkpoint``).
        adapters: per modality an adapter config (a config object or a dict) overriding the default one.
        model_kwargs: extra keywords for ``unilk.create_model`` (e.g. ``drop_path_rate``, tiny ``depths``/``dims``).
        device: ``"auto"`` (CUDA when available, else CPU), or any torch device.
        batch_size: maps per forward pass.
        pool: ``"avg"`` (the trunk's pre-logits feature: global average pool and its final norm) or ``"max"``
            (global max pool of the final-stage map).
        channels_last: run the trunk in channels-last memory format (faster on recent GPUs and CPUs).
        bf16: run the trunk under bfloat16 autocast; embeddings are returned in float32.

    Raises:
        ConfigError: unknown pool, unknown modality in ``adapters``, or a model that cannot be built.
        CheckpointError: a checkpoint that cannot be read or does not fit the model.
    """

    def __init__(
        self,
        model: str | nn.Module | None = None,
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        pretrained: bool = False,
        adapters: Mapping[str, Any] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        device: str | torch.device = "auto",
        batch_size: int = 32,
        pool: str = "avg",
        channels_last: bool = False,
        bf16: bool = False,
    ) -> None:
        if pool not in _POOLS:
            raise ConfigError(f"Encoder pool: got {pool!r}, expected one of {list(_POOLS)}.")
        if batch_size < 1:
            raise ConfigError(f"Encoder batch_size: got {batch_size}, expected an integer >= 1.")
        unknown = set(adapters or {}) - set(MODALITIES)
        if unknown:
            raise ConfigError(f"Encoder adapters: unknown modality {sorted(unknown)}; expected some of {MODALITIES}.")
        self.device = _resolve_device(device)
        self.batch_size = batch_size
        self.pool = pool
        self.channels_last = channels_last
        self.bf16 = bf16
        self.model_kwargs = dict(model_kwargs or {})
        self.pretrained = pretrained
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.trained = None if checkpoint is None else read_training_checkpoint(checkpoint)
        self.model_name = model if isinstance(model, str) else _DEFAULT_MODEL if model is None else type(model).__name__
        self._module = model if isinstance(model, nn.Module) else None
        self._adapter_configs: dict[str, Any] = dict(adapters or {})
        self._trunks: dict[int, nn.Module] = {}
        self._series_stem: nn.Module | None = None
        self._modal: nn.Module | None = None
        self.labels: list[str] = []
        if self.trained is not None:
            self._use_training_config(self.trained, model)
        self._adapters: dict[str, Any] = {}
        if self._module is None and self.checkpoint is None and not pretrained:
            _warn_random_weights(self.model_name)

    def _use_training_config(self, trained: TrainedModel, model: str | nn.Module) -> None:
        """Take the architecture, adapter config and labels from a training checkpoint."""
        if model is not None and model != trained.arch["trunk"]:
            raise ConfigError(
                f"Encoder: model={model!r} but checkpoint {trained.path!r} holds a {trained.arch['trunk']}; "
                "expected no model (the checkpoint names it) or the same name. Fix: drop model=."
            )
        self.model_name = trained.arch["trunk"]
        if trained.modality in self._adapter_configs:
            logger.warning(
                "adapters[%r] overrides the adapter config stored in %s: features will differ from training",
                trained.modality,
                trained.path,
            )
        else:
            self._adapter_configs[trained.modality] = {k: v for k, v in trained.adapter.items() if k != "modality"}
        self.labels = trained.labels

    # ----------------------------------------------------------------------------------------------- parts

    def adapter(self, modality: str) -> Any:
        """The adapter of a modality (built on first use).

        Args:
            modality: one of :data:`MODALITIES`.

        Returns:
            The adapter (``in_chans``, ``__call__(sample) -> Tensor[C, H, W]``).

        Raises:
            ConfigError: unknown modality.
        """
        if modality not in MODALITIES:
            raise ConfigError(f"modality: got {modality!r}, expected one of {list(MODALITIES)}.")
        if self.trained is not None and modality != self.trained.modality:
            raise ConfigError(
                f"checkpoint {self.trained.path!r} was trained on {self.trained.modality}; got {modality} inputs. "
                "Fix: use one Encoder per trained checkpoint, or no checkpoint for this modality."
            )
        if modality not in self._adapters:
            from unilk.adapters import build_adapter

            self._adapters[modality] = build_adapter(modality, self._adapter_configs.get(modality))
        return self._adapters[modality]

    def preparer(self, modality: str) -> SamplePreparer:
        """A picklable ``sample -> Prepared`` for the modality (what extraction workers run)."""
        return SamplePreparer(modality, self.adapter(modality))

    def series_stem(self) -> nn.Module:
        """The learned series embedding (windows -> maps), in eval mode on the Encoder's device."""
        if self._series_stem is None:
            from unilk.adapters.series import SeriesEmbedding

            if self.trained is not None:
                stem = self._trained_model().stem
            else:
                with _seeded():
                    stem = SeriesEmbedding(self.adapter("series").config)
            self._series_stem = stem.eval().to(self.device)
        return self._series_stem

    def to_maps(self, prepared: Sequence[Prepared]) -> list[Tensor]:
        """Per input its maps Tensor[K_i, C, H, W]; series windows go through the learned stem (K_i = nodes)."""
        windows = [p for p in prepared if p.policy == "window"]
        if not windows:
            return [p.data for p in prepared]
        stem = self.series_stem()
        maps_of: dict[int, Tensor] = {}
        # windows with different channel counts make different numbers of maps: one stem call per window shape
        for shape in {tuple(p.data.shape) for p in windows}:
            group = [i for i, p in enumerate(prepared) if p.policy == "window" and tuple(p.data.shape) == shape]
            x = torch.stack([prepared[i].data for i in group]).to(self.device)  # (B, L, D)
            has_marks = prepared[group[0]].marks is not None
            marks = torch.stack([prepared[i].marks for i in group]).to(self.device) if has_marks else None
            with torch.inference_mode():
                maps = stem(x, marks).cpu()  # (B·n, 1, H, W), sample-major
            maps_of.update(zip(group, maps.split(maps.shape[0] // len(group))))
        return [maps_of.get(i, p.data) for i, p in enumerate(prepared)]

    def trunk(self, in_chans: int) -> nn.Module:
        """The deploy-form trunk of one profile (maps with ``in_chans`` channels), built on first use."""
        if in_chans not in self._trunks:
            with _seeded():
                self._trunks[in_chans] = self._prepare(self._build(in_chans))
        return self._trunks[in_chans]

    def _build(self, in_chans: int) -> nn.Module:
        if self._module is not None:
            return self._module
        from unilk.models.registry import create_model

        if self.trained is not None:
            return self._trained_model().trunk
        kwargs = {"num_classes": 0, "in_chans": in_chans, **self.model_kwargs}
        if self.checkpoint is not None:
            kwargs["checkpoint_path"] = self.checkpoint
        return create_model(self.model_name, pretrained=self.pretrained and self.checkpoint is None, **kwargs)

    def _trained_model(self) -> nn.Module:
        """The modal model of the training checkpoint (built once; its trunk and stem are used, not its head)."""
        assert self.trained is not None
        if self._modal is None:
            self._modal = self.trained.build(**self.model_kwargs)
        return self._modal

    def _prepare(self, model: nn.Module) -> nn.Module:
        from unilk.reparam import reparameterize

        model.eval()
        reparameterize(model)
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    # ----------------------------------------------------------------------------------------------- forward

    @torch.inference_mode()
    def embed_maps(self, maps: Tensor, *, return_maps: bool = False) -> tuple[Tensor, Tensor | None]:
        """Embed a stack of maps with the trunk of their profile, ``batch_size`` maps at a time.

        Args:
            maps: Tensor[M, C, H, W].
            return_maps: also return the final-stage feature maps.

        Returns:
            ``(embeddings, feature_maps)``: Tensor[M, D] float32 on the CPU, and Tensor[M, D, h, w] or None.
        """
        trunk = self.trunk(maps.shape[1])
        rows, feats = [], []
        for start in range(0, maps.shape[0], self.batch_size):
            x = maps[start : start + self.batch_size].to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                feat = trunk.forward_features(x)  # (B, D, h, w)
                if self.pool == "avg":
                    emb = trunk.forward_head(feat, pre_logits=True)  # (B, D)
                elif self.pool == "max":
                    emb = feat.amax(dim=(-2, -1))
                else:
                    raise ConfigError(f"Encoder pool: got {self.pool!r}, expected one of {list(_POOLS)}.")
            rows.append(emb.float().cpu())
            if return_maps:
                feats.append(feat.float().cpu())
        return torch.cat(rows), torch.cat(feats) if return_maps else None

    def embed_samples(self, stacks: Sequence[Tensor], *, return_maps: bool = False) -> tuple[Tensor, list | None]:
        """Embed inputs given as map stacks; an input with K > 1 maps gets the mean of its K map embeddings.

        Args:
            stacks: per input a Tensor[K_i, C, H, W] (all with the same C).
            return_maps: also return per input the final-stage maps Tensor[K_i, D, h, w].

        Returns:
            ``(embeddings, maps)``: Tensor[N, D] float32 on the CPU, and a list of N tensors or None.
        """
        counts = [s.shape[0] for s in stacks]
        emb, feat = self.embed_maps(torch.cat(list(stacks)), return_maps=return_maps)
        index = torch.repeat_interleave(torch.arange(len(stacks)), torch.tensor(counts))  # input of each map
        pooled = torch.zeros(len(stacks), emb.shape[1]).index_add_(0, index, emb)
        pooled /= torch.tensor(counts, dtype=pooled.dtype).unsqueeze(1)
        return pooled, list(feat.split(counts)) if feat is not None else None

    # ----------------------------------------------------------------------------------------------- public

    def encode(
        self,
        audio: Any = None,
        image: Any = None,
        video: Any = None,
        points: Any = None,
        series: Any = None,
        *,
        return_maps: bool = False,
    ) -> dict[str, Encoding]:
        """Embed inputs of one or more modalities.

        Each modality argument takes: a path; a directory or glob pattern (all matching files, sorted); a list of
        paths or in-memory samples; a ``{id: sample}`` mapping; an array or tensor (one sample; audio also as
        ``(waveform, sample_rate)``); or :class:`Maps` (ready maps, skipping the adapter).

        Args:
            audio: audio input(s).
            image: image input(s).
            video: video input(s).
            points: point cloud input(s).
            series: time-series input(s).
            return_maps: also return each input's final-stage feature maps.

        Returns:
            ``{modality: Encoding}`` for each modality given, in :data:`MODALITIES` order.

        Raises:
            InputError: no input given, or a bad sample (the message names it).
        """
        given = {"audio": audio, "image": image, "video": video, "points": points, "series": series}
        given = {m: v for m, v in given.items() if v is not None}
        if not given:
            raise InputError(
                f"encode: no input given; pass at least one of {', '.join(MODALITIES)} (e.g. audio='a.wav')."
            )
        return {m: self.encode_modality(m, v, return_maps=return_maps) for m, v in given.items()}

    def encode_modality(self, modality: str, inputs: Any, *, return_maps: bool = False) -> Encoding:
        """Embed the inputs of one modality (see :meth:`encode` for what ``inputs`` may be).

        Returns:
            The :class:`Encoding`.
        """
        named = _name_inputs(modality, inputs)
        prepare = self.preparer(modality)
        prepared = [prepare(sample) for _, sample in named]
        stacks = self.to_maps(prepared)
        emb, feats = self.embed_samples(stacks, return_maps=return_maps)
        return Encoding(
            modality=modality,
            ids=[name for name, _ in named],
            embeddings=emb,
            num_maps=[s.shape[0] for s in stacks],
            policy=[p.policy for p in prepared],
            maps=feats,
            model=self.model_name,
        )


def _load_strict(module: nn.Module, state: Mapping[str, Tensor], path: str, part: str) -> None:
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint {path!r}: the {part} does not fit the architecture it names: missing "
            f"{result.missing_keys[:5]} ({len(result.missing_keys)}), unexpected {result.unexpected_keys[:5]} "
            f"({len(result.unexpected_keys)}). Fix: load it with the unilk version that wrote it."
        )


def _name_inputs(modality: str, inputs: Any) -> list[tuple[str, Any]]:
    """Turn every accepted input form into ``[(id, sample)]``; directories keep the modality's file types only."""
    from unilk.extract import list_inputs, modality_extensions

    if isinstance(inputs, Maps):
        maps = inputs.tensor if inputs.tensor.dim() == 4 else inputs.tensor.unsqueeze(0)
        return [(f"{modality}[{i}]", Maps(m)) for i, m in enumerate(maps)]
    if isinstance(inputs, (str, os.PathLike)):
        path = Path(inputs)
        if path.is_file():
            return [(str(path), str(path))]
        return [(item.path, item.path) for item in list_inputs(inputs, extensions=modality_extensions(modality))]
    if isinstance(inputs, Mapping):
        return [(str(k), v) for k, v in inputs.items()]
    if isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[1], numbers.Integral):
        return [(f"{modality}[0]", inputs)]  # one (waveform, sample_rate) pair
    if isinstance(inputs, (np.ndarray, Tensor)):
        return [(f"{modality}[0]", inputs)]
    if isinstance(inputs, Sequence) and inputs:
        return [(str(x) if isinstance(x, (str, os.PathLike)) else f"{modality}[{i}]", x) for i, x in enumerate(inputs)]
    raise InputError(
        f"encode({modality}=...): got {type(inputs).__name__}; expected a path, directory, glob, list of samples, "
        "{id: sample} mapping, array/tensor, or unilk.encoding.Maps."
    )


def encode(
    audio: Any = None,
    image: Any = None,
    video: Any = None,
    points: Any = None,
    series: Any = None,
    *,
    model: str | nn.Module | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    pretrained: bool = False,
    device: str | torch.device = "auto",
    batch_size: int = 32,
    pool: str = "avg",
    return_maps: bool = False,
    adapters: Mapping[str, Any] | None = None,
) -> dict[str, Encoding]:
    """Embed inputs of one or more modalities in one call (builds an :class:`Encoder`; reuse one for many calls).

    Args:
        audio: audio input(s): paths, a directory/glob, waveforms, ``(waveform, sample_rate)``, or :class:`Maps`.
        image: image input(s).
        video: video input(s).
        points: point cloud input(s).
        series: time-series input(s).
        model: trunk name or module; default: the checkpoint's architecture, else ``unireplknet_a``.
        checkpoint: a ``unilk train`` checkpoint or a weights file.
        pretrained: load the registry's pretrained weights.
        device: ``"auto"`` or a torch device.
        batch_size: maps per forward pass.
        pool: ``"avg"`` or ``"max"``.
        return_maps: also return the final-stage feature maps.
        adapters: per modality an adapter config (object or dict) overriding the default one.

    Returns:
        ``{modality: Encoding}``: per modality the ids, Tensor[N, D] embeddings and per-input policy.

    Raises:
        InputError: no input, or a bad sample.
        ConfigError: a bad option or model.
    """
    encoder = Encoder(
        model,
        checkpoint=checkpoint,
        pretrained=pretrained,
        adapters=adapters,
        device=device,
        batch_size=batch_size,
        pool=pool,
    )
    return encoder.encode(audio, image, video, points, series, return_maps=return_maps)
