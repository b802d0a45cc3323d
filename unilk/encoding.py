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
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from unilk.devices import resolve_device
from unilk.encode_inputs import name_inputs
from unilk.errors import CheckpointError, ConfigError, InputError
from unilk.loading import ModelFile
from unilk.models._builder import check_pretrained_available
from unilk.once import SMALL_MAP_WARNING, expected, log_once

__all__ = [
    "MODALITIES",
    "Encoder",
    "Encoding",
    "Maps",
    "Prepared",
    "SamplePreparer",
    "encode",
    "error_record",
]

logger = logging.getLogger(__name__)

#: the modalities :func:`encode` accepts, in the order results are returned.
MODALITIES = ("audio", "image", "video", "points", "series")
_POOLS = ("avg", "max")
_ON_ERROR = ("raise", "record")
_DEFAULT_MODEL = "unireplknet_a"
#: ``dtype=`` names -> the autocast dtype (None: plain float32).
_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "float32": None,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


@dataclass(frozen=True)
class Maps:
    """Ready-made maps, passed to :func:`encode` instead of raw samples (the adapter is skipped).

    Attributes:
        tensor: Tensor[N, C, H, W] (one map per input) or Tensor[C, H, W] (one input); a numpy array is taken as a
            tensor.

    Raises:
        InputError: neither a tensor nor an array, or not 3 or 4 dimensions.
    """

    tensor: Tensor

    def __post_init__(self) -> None:
        tensor = self.tensor
        if isinstance(tensor, np.ndarray):
            tensor = torch.from_numpy(tensor)
        if not isinstance(tensor, Tensor) or tensor.dim() not in (3, 4):
            got = f"shape {tuple(tensor.shape)}" if isinstance(tensor, Tensor) else type(self.tensor).__name__
            raise InputError(f"unilk.Maps: got {got}; expected a tensor or numpy array [N, C, H, W] or [C, H, W]")
        object.__setattr__(self, "tensor", tensor)


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
        errors: with ``on_error="record"``, one ``{"id", "type", "error"}`` per input that failed (absent from
            ``ids`` and ``embeddings``); empty otherwise.
    """

    modality: str
    ids: list[str]
    embeddings: Tensor
    num_maps: list[int]
    policy: list[str]
    maps: list[Tensor] | None
    model: str
    errors: list[dict[str, str]] = field(default_factory=list)

    def __repr__(self) -> str:
        failed = f", errors={len(self.errors)}" if self.errors else ""
        return (
            f"Encoding(modality={self.modality!r}, n={len(self.ids)}, embeddings={list(self.embeddings.shape)} "
            f"{str(self.embeddings.dtype).removeprefix('torch.')}, model={self.model!r}{failed})"
        )


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
        """Adapt one sample.

        Raises:
            InputError: the adapter refused the sample, or its map has NaN or inf values (never embedded).
        """
        prepared = self._prepare(sample)
        if not torch.isfinite(prepared.data).all():
            from unilk.adapters.io import sample_name

            raise InputError(
                f"{sample_name(sample)}: the {self.modality} adapter made a map with NaN or inf values; expected "
                "finite values. Fix: check the input for extreme or invalid values"
            )
        return prepared

    def _prepare(self, sample: Any) -> Prepared:
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


@contextlib.contextmanager
def _seeded() -> Iterator[None]:
    """Initialise modules from a fixed seed, without touching the caller's random state.

    Weights that are not loaded from a file (random trunks, an untrained series stem) are then the same in every
    process, so the shards that torchrun ranks write, or a resumed run adds, come from one and the same model.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def _resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype | None:
    """``dtype=`` -> the autocast dtype (None for float32).

    Raises:
        ConfigError: an unknown dtype, or one the device cannot run (fp16 on the CPU, bf16 on an old GPU).
    """
    names = {v: k for k, v in _DTYPES.items() if v is not None} | {torch.float32: "fp32"}
    name = names.get(dtype) if isinstance(dtype, torch.dtype) else dtype
    if name not in _DTYPES:
        raise ConfigError(f"dtype: got {dtype!r}; expected 'fp32', 'bf16' or 'fp16'.")
    resolved = _DTYPES[name]
    if resolved is torch.float16 and device.type == "cpu":
        raise ConfigError(
            "dtype: got 'fp16' on the CPU, which runs it slowly or not at all; expected 'bf16' or 'fp32'."
        )
    if resolved is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"dtype: got 'bf16' but {torch.cuda.get_device_name(device)} lacks it; expected 'fp16'.")
    return resolved


class Encoder:
    """A reusable feature extractor: trunks in deploy form plus one adapter per modality.

    Args:
        model: a registered trunk name (``unilk.list_models()``; default: the checkpoint's architecture, else
            ``unireplknet_a``), or a ready ``nn.Module`` following the timm contract
            (``forward_features``, ``forward_head(x, pre_logits=True)``), used for every modality and put in deploy
            form in place. Weights not loaded from a file are initialised from a fixed seed, so every process (each
            torchrun rank, a resumed run) holds the same model.
        checkpoint: anything :func:`unilk.load` reads. A modal model (``unilk train`` checkpoint, or its
            conversion or export) carries the architecture, the adapter config and the labels, so features are made
            exactly as in training; a trunk file (official, converted) names its architecture; bare weights are
            loaded into ``model``.
        pretrained: load the registry's pretrained (ImageNet) weights for ``model``, the stem adapted to each
            modality's channels. Default: yes, unless ``checkpoint`` or a module is given; the weights are checked
            at construction (local cache, or the hub reachable) and a ``CheckpointError`` says how to fetch them.
            ``False`` opts in to random weights, whose embeddings carry no meaning (tests, smoke runs).
        adapters: per modality an adapter config (a config object or a dict) overriding the default one.
        model_kwargs: extra keywords for ``unilk.create_model`` (e.g. ``drop_path_rate``, tiny ``depths``/``dims``).
        device: ``"auto"`` (CUDA when available, else CPU), or any torch device.
        batch_size: maps per forward pass.
        pool: ``"avg"`` (the trunk's pre-logits feature: global average pool and its final norm) or ``"max"``
            (global max pool of the final-stage map).
        channels_last: run the trunk in channels-last memory format (faster on recent GPUs and CPUs).
        dtype: ``"fp32"``, ``"bf16"`` (CPU and recent GPUs) or ``"fp16"`` (GPUs): the trunk runs under autocast to
            it; embeddings are returned in float32.

    Raises:
        ConfigError: unknown pool, dtype or modality in ``adapters``, a device this machine lacks, or a model that
            cannot be built.
        CheckpointError: a checkpoint that cannot be read or does not fit the model, or pretrained weights that are
            neither cached nor fetchable.
    """

    def __init__(
        self,
        model: str | nn.Module | None = None,
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        pretrained: bool | None = None,
        adapters: Mapping[str, Any] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        device: str | torch.device = "auto",
        batch_size: int = 32,
        pool: str = "avg",
        channels_last: bool = False,
        dtype: str | torch.dtype = "fp32",
    ) -> None:
        if pool not in _POOLS:
            raise ConfigError(f"Encoder pool: got {pool!r}, expected one of {list(_POOLS)}.")
        if batch_size < 1:
            raise ConfigError(f"Encoder batch_size: got {batch_size}, expected an integer >= 1.")
        unknown = set(adapters or {}) - set(MODALITIES)
        if unknown:
            raise ConfigError(f"Encoder adapters: unknown modality {sorted(unknown)}; expected some of {MODALITIES}.")
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.pool = pool
        self.channels_last = channels_last
        self.autocast_dtype = _resolve_dtype(dtype, self.device)
        self.model_kwargs = dict(model_kwargs or {})
        if pretrained is None:
            pretrained = checkpoint is None and not isinstance(model, nn.Module)
        self.pretrained = bool(pretrained) and checkpoint is None
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        # unilk.load's reader: a modal file (a training checkpoint, its conversion or export) sets the architecture,
        # adapter config and labels; a trunk file (official or converted) sets the architecture
        self.file = None if checkpoint is None else _read_checkpoint(checkpoint, model, self.model_kwargs)
        self.trained = self.file if self.file is not None and self.file.kind == "modal" else None
        self.model_name = model if isinstance(model, str) else _DEFAULT_MODEL if model is None else type(model).__name__
        if self.file is not None and self.trained is None:
            self.model_name = self.file.architecture
        elif self.file is None and not isinstance(model, nn.Module):
            from unilk.models.registry import model_entrypoint

            model_entrypoint(self.model_name)  # a misspelt name fails now, not at the first input that decodes
        self._module = model if isinstance(model, nn.Module) else None
        self._adapter_configs: dict[str, Any] = dict(adapters or {})
        self._trunks: dict[int, nn.Module] = {}
        self._series_stem: nn.Module | None = None
        self._modal: nn.Module | None = None
        self.labels: list[str] = []
        self._as_trained = False  # a trained model file with its own adapter config
        self._random_weights = not self.pretrained and self._module is None and self.checkpoint is None
        if self.trained is not None:
            self._use_training_config(self.trained, model)
        self._adapters: dict[str, Any] = {}
        if self.pretrained:
            alternatives = "or pass checkpoint= with a local file, or pretrained=False for random (meaningless) weights"
            check_pretrained_available(self.model_name, self.model_kwargs.get("cache_dir"), alternatives)
        elif self._random_weights:
            message = "Encoder(%r): random weights, as asked; embeddings carry no meaning"
            log_once(logger, ("random weights", self.model_name), message, self.model_name, level=logging.INFO)

    def __repr__(self) -> str:
        if self.checkpoint is not None:
            weights = f"checkpoint={self.checkpoint!r}"
        elif self._module is not None:
            weights = "weights=the given module's"
        else:
            weights = f"pretrained={self.pretrained}"
        dtype = "fp32" if self.autocast_dtype is None else str(self.autocast_dtype).removeprefix("torch.")
        return (
            f"Encoder(model={self.model_name!r}, {weights}, device={str(self.device)!r}, dtype={dtype!r}, "
            f"batch_size={self.batch_size}, pool={self.pool!r})"
        )

    def _use_training_config(self, trained: ModelFile, model: str | nn.Module) -> None:
        """Take the architecture, adapter config and labels from a modal model file."""
        if model is not None and model != trained.arch["trunk"]:
            raise ConfigError(
                f"Encoder: model={model!r} but checkpoint {trained.describe()} holds a {trained.arch['trunk']}; "
                "expected no model (the checkpoint names it) or the same name. Fix: drop model=."
            )
        self.model_name = trained.arch["trunk"]
        if trained.modality in self._adapter_configs:
            message = "adapters[%r] overrides the adapter config stored in %s: features will differ from training"
            log_once(logger, ("override", trained.modality, trained.path), message, trained.modality, trained.path)
        else:
            self._adapter_configs[trained.modality] = {k: v for k, v in trained.adapter.items() if k != "modality"}
            self._as_trained = True
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
        if self.file is not None:  # the file's own keywords; a classifier is dropped, the stem adapted to in_chans
            file_kwargs = {k: v for k, v in self.file.config.get("model_kwargs", {}).items() if k != "num_classes"}
            kwargs = {**file_kwargs, **kwargs, "checkpoint_path": self.file}
            if self.file.deploy:
                kwargs["deploy"] = True
        return create_model(self.model_name, pretrained=self.pretrained, **kwargs)

    def _trained_model(self) -> nn.Module:
        """The modal model of the training checkpoint (built once; its trunk and stem are used, not its head)."""
        from unilk.loading import build

        assert self.trained is not None
        if self._modal is None:
            self._modal = build(self.trained, **self.model_kwargs)
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
        # a trained model on its own maps (its stored adapter config): the size it learned on, nothing to act on;
        # random weights, asked for: the embeddings carry no meaning, whatever part of a kernel sees the map
        with expected(SMALL_MAP_WARNING) if self._as_trained or self._random_weights else nullcontext():
            for start in range(0, maps.shape[0], self.batch_size):
                x = maps[start : start + self.batch_size].to(self.device, non_blocking=True)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                dtype = self.autocast_dtype
                with torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
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
        on_error: str = "raise",
        layout: str | Mapping[str, str] | None = None,
    ) -> dict[str, Encoding]:
        """Embed inputs of one or more modalities.

        Each modality argument takes: a path; a directory or glob pattern (all matching files, sorted); the ``bytes``
        of one encoded file (audio, image); a list of paths or in-memory samples; a ``{id: sample}`` mapping; a PIL
        image; an array or tensor, one sample or a batch (audio also as ``(waveform, sample_rate)``); or
        :class:`Maps` (ready maps, skipping the adapter). docs/getting-started.md tabulates the array layouts.

        Args:
            audio: audio input(s).
            image: image input(s).
            video: video input(s).
            points: point cloud input(s).
            series: time-series input(s).
            return_maps: also return each input's final-stage feature maps.
            on_error: ``"raise"`` (a bad input raises, naming it) or ``"record"`` (a bad input is left out and
                recorded in :attr:`Encoding.errors`; the others are embedded).
            layout: how to read arrays whose shape is ambiguous, e.g. ``"TC"`` for soundfile's ``[frames,
                channels]``, ``"BT"`` for a batch of clips, ``"NCHW"``: a string when one modality is given, else
                ``{modality: layout}`` (choices: ``unilk.encoding.LAYOUTS``).

        Returns:
            ``{modality: Encoding}`` for each modality given, in :data:`MODALITIES` order.

        Raises:
            InputError: no input given, an ambiguous array, or (with ``on_error="raise"``) a bad sample.
        """
        if on_error not in _ON_ERROR:
            raise ConfigError(f"encode on_error: got {on_error!r}, expected one of {list(_ON_ERROR)}.")
        given = {"audio": audio, "image": image, "video": video, "points": points, "series": series}
        given = {m: v for m, v in given.items() if v is not None}
        if not given:
            raise InputError(
                f"encode: no input given; pass at least one of {', '.join(MODALITIES)} (e.g. audio='a.wav')."
            )
        layouts = _layouts_by_modality(layout, list(given))
        return {
            m: self.encode_modality(m, v, return_maps=return_maps, on_error=on_error, layout=layouts.get(m))
            for m, v in given.items()
        }

    def encode_modality(
        self,
        modality: str,
        inputs: Any,
        *,
        return_maps: bool = False,
        on_error: str = "raise",
        layout: str | None = None,
    ) -> Encoding:
        """Embed the inputs of one modality (see :meth:`encode` for ``inputs``, ``on_error`` and ``layout``).

        Returns:
            The :class:`Encoding`.
        """
        named = name_inputs(modality, inputs, layout)
        prepare = self.preparer(modality)
        errors: list[dict[str, str]] = []
        kept: list[tuple[str, Prepared]] = []
        for name, sample in named:
            try:
                kept.append((name, prepare(sample)))
            except Exception as err:  # one bad input is that input's error, whatever the adapter raised
                if on_error == "raise":
                    raise
                errors.append(error_record(name, err))
        stacks = self.to_maps([p for _, p in kept]) if kept else []
        emb, feats = self.embed_samples(stacks, return_maps=return_maps) if stacks else (torch.zeros(0, 0), None)
        finite = torch.isfinite(emb).all(dim=1).tolist()
        for (name, _), ok in zip(kept, finite):
            if ok:
                continue
            err = InputError(f"{name}: its embedding has NaN or inf values; expected finite values (not returned)")
            if on_error == "raise":
                raise err
            errors.append(error_record(name, err))
        keep = [i for i, ok in enumerate(finite) if ok]
        return Encoding(
            modality=modality,
            ids=[kept[i][0] for i in keep],
            embeddings=emb[keep] if stacks else emb,
            num_maps=[stacks[i].shape[0] for i in keep],
            policy=[kept[i][1].policy for i in keep],
            maps=None if feats is None else [feats[i] for i in keep],
            model=self.model_name,
            errors=errors,
        )


def _layouts_by_modality(layout: str | Mapping[str, str] | None, given: list[str]) -> dict[str, str]:
    """``layout=`` as ``{modality: layout}``.

    Raises:
        ConfigError: a string with several modalities given, or a modality that is not given.
    """
    if layout is None:
        return {}
    if isinstance(layout, str):
        if len(given) != 1:
            raise ConfigError(
                f"encode layout={layout!r} with {len(given)} modalities; expected a mapping such as "
                f"{{{given[0]!r}: {layout!r}}}"
            )
        return {given[0]: layout}
    if isinstance(layout, Mapping):
        unknown = sorted(set(layout) - set(given))
        if unknown:
            raise ConfigError(f"encode layout: {unknown} given no inputs; expected keys among {given}")
        return dict(layout)
    raise ConfigError(f"encode layout: got {type(layout).__name__}; expected a string or {{modality: layout}}")


def _read_checkpoint(checkpoint: str | os.PathLike[str], model: Any, model_kwargs: Mapping[str, Any]) -> ModelFile:
    """Read an Encoder's checkpoint with unilk.load's reader; ``model`` names the architecture of bare weights."""
    from unilk.loading import read_model_file

    name = model if isinstance(model, str) else None
    try:
        return read_model_file(checkpoint, model=name, model_kwargs=_shape_kwargs(model_kwargs) if name else None)
    except CheckpointError as err:
        if name is None:
            raise
        raise ConfigError(f"Encoder: model={name!r} with this checkpoint: {err}. Fix: drop model=") from err


def _shape_kwargs(model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords that decide a state_dict's shapes (not training-only ones like ``drop_path_rate``)."""
    return {k: v for k, v in model_kwargs.items() if k not in ("drop_path_rate", "drop_rate", "grad_checkpointing")}


def error_record(name: str, err: BaseException) -> dict[str, str]:
    """What a batch job records for a failed input: ``{"id", "type", "error"}`` (the message on one line)."""
    message = " ".join(str(err).split()) or type(err).__name__
    return {"id": name, "type": type(err).__name__, "error": message}


def encode(
    audio: Any = None,
    image: Any = None,
    video: Any = None,
    points: Any = None,
    series: Any = None,
    *,
    model: str | nn.Module | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    pretrained: bool | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 32,
    pool: str = "avg",
    return_maps: bool = False,
    adapters: Mapping[str, Any] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    on_error: str = "raise",
    layout: str | Mapping[str, str] | None = None,
    dtype: str | torch.dtype = "fp32",
) -> dict[str, Encoding]:
    """Embed inputs of one or more modalities in one call (builds an :class:`Encoder`; reuse one for many calls).

    Args:
        audio: audio input(s): paths, a directory/glob, waveforms, ``(waveform, sample_rate)``, or :class:`Maps`.
        image: image input(s).
        video: video input(s).
        points: point cloud input(s).
        series: time-series input(s).
        model: trunk name or module; default: the checkpoint's architecture, else ``unireplknet_a``.
        checkpoint: anything :func:`unilk.load` reads (a ``unilk train`` checkpoint, an export, a weights file...).
        pretrained: the registry's pretrained weights; default: yes unless ``checkpoint`` (see :class:`Encoder`);
            ``False`` for random weights.
        device: ``"auto"`` or a torch device.
        batch_size: maps per forward pass.
        pool: ``"avg"`` or ``"max"``.
        return_maps: also return the final-stage feature maps.
        adapters: per modality an adapter config (object or dict) overriding the default one.
        model_kwargs: extra keywords for ``unilk.create_model`` (see :class:`Encoder`).
        on_error: ``"raise"`` or ``"record"`` (bad inputs left out and listed in :attr:`Encoding.errors`).
        layout: how to read ambiguous arrays (see :meth:`Encoder.encode`).
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see :class:`Encoder`).

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
        model_kwargs=model_kwargs,
        device=device,
        batch_size=batch_size,
        pool=pool,
        dtype=dtype,
    )
    return encoder.encode(
        audio, image, video, points, series, return_maps=return_maps, on_error=on_error, layout=layout
    )
