"""One loader for every model file unilk or the official repositories write: :func:`load`.

What it reads, told apart by content, not by name:

* a ``unilk train`` checkpoint (``best.pt`` / ``last.pt``): a modal model (adapter config, learned stem, trunk, head,
  labels, task), training form; EMA weights when the recipe evaluated with them; SLaK sparse masks folded in;
* a file written by ``unilk convert`` or ``unilk export`` (``.safetensors`` with the config in its metadata, or a
  ``.pth`` with the config next to the ``state_dict``): a modal model or a trunk, training or deploy form;
* a folder in the Hugging Face layout (``config.json`` + ``model.safetensors``; ``unilk export`` writes one, and timm's
  ``config.json`` with ``architecture`` / ``num_classes`` / ``model_args`` is read too), a training run directory
  (its ``best.pt``), or an ``hf-hub:org/name`` id (through ``huggingface_hub``; ``HF_HUB_OFFLINE=1`` uses the cache);
* a bare ``state_dict`` (an official ``.pth`` of UniRepLKNet, SLaK or RepLKNet): the architecture and its form are
  found from the keys and shapes (:mod:`unilk.identify`), or given with ``model=`` / ``model_kwargs=``.

Every entry point that takes a checkpoint goes through this module: ``create_model(checkpoint_path=)`` (via
:func:`load_weights`, which also loads the trunk of a modal checkpoint), ``Encoder(checkpoint=)``, ``encode``, and the
``encode``/``extract``/``eval``/``erf``/``info``/``convert``/``export``/``predict`` commands.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from unilk.errors import CheckpointError, ConfigError
from unilk.hub import refuse_nonfinite

__all__ = [
    "CONFIG_FILE",
    "CONFIG_KEY",
    "FORMAT",
    "HF_PREFIX",
    "WEIGHTS_FILE",
    "ModelFile",
    "build",
    "example_inputs",
    "load",
    "load_weights",
    "read_model_file",
    "source_sha256",
]

logger = logging.getLogger(__name__)

FORMAT = "unilk-model-1"  # the ``format`` field of the config unilk embeds in the files it writes
CONFIG_KEY = "unilk_config"  # safetensors metadata key (JSON) and ``.pth`` dict key of the embedded config
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
HF_PREFIX = "hf-hub:"
_TRAIN_FORMAT = "unilk-train-1"  # unilk.train.checkpoint.FORMAT (not imported: it would pull in the trainer)
_MODAL_BUILDER = "unilk.models.modal.create_modal_model"
_RUN_CHECKPOINTS = ("best.pt", "last.pt")


@dataclass(frozen=True)
class ModelFile:
    """What one model file holds, before anything is built.

    Attributes:
        source: what the caller passed (a path or an ``hf-hub:`` id), for messages.
        path: the file the weights were read from.
        origin: ``"training checkpoint"``, ``"unilk file"`` or ``"bare state_dict"``.
        config: the normalised config. Always ``kind`` (``"modal"`` or ``"trunk"``) and ``deploy``. A modal model
            also has ``arch`` (the ``create_modal_model`` arguments), ``adapter``, ``labels``, ``recipe`` (the
            source recipe dict or None) and ``metrics``; a trunk has ``model`` (registered name), ``model_kwargs``,
            ``num_classes`` and ``in_chans``.
        state_dict: the weights, with the model's key names (a modal model: ``stem.``, ``trunk.``, ``head.``).
    """

    source: str
    path: Path
    origin: str
    config: dict[str, Any]
    state_dict: dict[str, Tensor] = field(repr=False)

    @property
    def kind(self) -> str:
        """``"modal"`` (stem + trunk + head, adapter config, labels) or ``"trunk"`` (a registered model)."""
        return self.config["kind"]

    @property
    def deploy(self) -> bool:
        """Whether the weights are the re-parameterized inference form."""
        return bool(self.config["deploy"])

    @property
    def architecture(self) -> str:
        """The registered trunk name."""
        return self.config["arch"]["trunk"] if self.kind == "modal" else self.config["model"]

    @property
    def arch(self) -> dict[str, Any]:
        """A modal model's ``create_modal_model`` arguments (``modality``, ``task``, ``trunk``, ...); {} for a trunk."""
        return dict(self.config.get("arch") or {})

    @property
    def modality(self) -> str | None:
        """The modality a modal model was trained on (None for a trunk)."""
        return self.arch.get("modality")

    @property
    def adapter(self) -> dict[str, Any]:
        """A modal model's adapter config ({} for a trunk)."""
        return dict(self.config.get("adapter") or {})

    @property
    def labels(self) -> list[str]:
        """Label names of a modal classifier (empty otherwise)."""
        return list(self.config.get("labels") or [])

    def describe(self) -> str:
        """One line naming the file and what it holds (used in every error about it)."""
        form = "deploy form" if self.deploy else "training form"
        if self.kind == "modal":
            arch = self.config["arch"]
            article = "an" if arch["modality"][0] in "aeiou" else "a"  # an audio, an image, a video
            what = f"{article} {arch['modality']} {arch['task']} model (trunk {arch['trunk']}, {form}"
            what += f", {len(self.labels)} labels)" if self.labels else ")"
        else:
            what = f"a bare {self.architecture} trunk ({self.config.get('num_classes')} classes, {form}, no adapter "
            what += "config or labels)"
        return f"{self.source!r} ({self.origin}: {what})"

    def __repr__(self) -> str:
        return f"ModelFile({self.describe()}, {len(self.state_dict)} tensors)"


# --------------------------------------------------------------------------------------------------------- reading


def _torch_load(path: Path) -> Any:
    try:
        # training scripts often store their argparse Namespace next to the weights: a plain attribute bag, safe
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for corrupt or unsafe files
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r}: {err}. unilk loads only safetensors or weights_only torch files"
        ) from err


def _hf_snapshot(repo_id: str, source: str) -> Path:
    """The local folder of a Hugging Face repo (downloaded, or from the cache when ``HF_HUB_OFFLINE`` is set)."""
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    try:
        patterns = [CONFIG_FILE, "*.safetensors", "README.md"]
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=offline))
    except Exception as err:  # huggingface_hub raises many types (network, 404, not cached)
        hint = "HF_HUB_OFFLINE is set, so only the local cache is searched" if offline else "check the id and network"
        raise CheckpointError(f"could not fetch {source!r}: {err}; {hint}") from err


def _folder_weights(folder: Path, source: str) -> Path:
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{source!r}: the folder has {CONFIG_FILE} but no {WEIGHTS_FILE}")
    return weights


def _resolve(source: str) -> tuple[Path, dict[str, Any] | None]:
    """The weights file of ``source`` and, for a Hugging Face style folder, its ``config.json``."""
    if source.startswith(HF_PREFIX):
        folder = _hf_snapshot(source[len(HF_PREFIX) :], source)
        return _folder_weights(folder, source), _read_json(folder / CONFIG_FILE, source)
    path = Path(source)
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            return _folder_weights(path, source), _read_json(path / CONFIG_FILE, source)
        if (path / WEIGHTS_FILE).is_file():  # ``unilk export --format safetensors``: the config is in its metadata
            return path / WEIGHTS_FILE, None
        for name in _RUN_CHECKPOINTS:
            if (path / name).is_file():
                return path / name, None
        listing = sorted(p.name for p in path.iterdir())[:8]
        raise CheckpointError(
            f"{source!r} is a folder without {CONFIG_FILE} or {WEIGHTS_FILE} (an export) or best.pt/last.pt (a "
            f"training run); it holds {listing}"
        )
    if not path.is_file():
        raise CheckpointError(
            f"{source!r}: no such file or folder; expected a checkpoint file, an export folder, a training run "
            f"folder or an {HF_PREFIX}org/name id"
        )
    if path.suffix == ".onnx":
        raise CheckpointError(
            f"{source!r} is an ONNX graph: run it with onnxruntime; unilk.load reads the export folder's "
            f"{WEIGHTS_FILE} instead"
        )
    return path, None


def _read_json(path: Path, source: str) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{source!r}: no {CONFIG_FILE} next to the weights")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{str(path)!r}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{str(path)!r}: expected a JSON object, found {type(data).__name__}")
    return data


def _safetensors_config(path: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            text = (handle.metadata() or {}).get(CONFIG_KEY)
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"cannot read {str(path)!r}: {err}") from err
    return json.loads(text) if text else None


def _from_training_checkpoint(data: dict[str, Any], path: Path, source: str, ema: bool | None) -> ModelFile:
    arch = dict(data.get("arch") or {})
    missing = [k for k in ("modality", "task", "trunk") if k not in arch]
    if arch.get("builder") != _MODAL_BUILDER or missing:
        raise CheckpointError(
            f"{source!r}: a training checkpoint whose arch={arch!r} is not a modal model (expected builder "
            f"{_MODAL_BUILDER!r} with modality, task and trunk); load it with the unilk version that wrote it"
        )
    recipe = data.get("recipe") or {}
    train = recipe.get("train") or {}
    use_ema = bool(train.get("ema") and train.get("ema_eval")) if ema is None else ema
    if use_ema and "ema" not in data:
        if ema:
            raise CheckpointError(f"{source!r} holds no EMA weights; load it with ema=False")
        use_ema = False
    state = dict(data["ema"] if use_ema else data["model"])
    refuse_nonfinite(state, f"{source!r}")  # a diverged run's weights would give NaN for every input
    masks = (data.get("sparsity") or {}).get("masks") or {}
    for name, mask in masks.items():  # fold SLaK's masks: a pruned weight is exactly zero in the file's model
        if name not in state:
            raise CheckpointError(f"{source!r}: a sparsity mask names {name!r}, which its model does not have")
        state[name] = state[name] * mask.to(state[name].dtype)
    config = {
        "format": FORMAT,
        "kind": "modal",
        "deploy": False,
        "arch": arch,
        "adapter": dict(data.get("adapter") or {}),
        "labels": list(data.get("labels") or []),
        "recipe": recipe or None,
        "metrics": dict(data.get("metrics") or {}),
        "ema": use_ema,
    }
    return ModelFile(source, path, "training checkpoint", config, state)


def _normalise_config(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A config written by unilk (any version) or timm's ``config.json``, as :attr:`ModelFile.config`."""
    config = dict(config)
    if config.get("kind") == "modal":
        for key in ("arch", "adapter"):
            if not isinstance(config.get(key), dict):
                raise CheckpointError(f"{source!r}: its modal config has no {key!r} object")
        return {"labels": [], "recipe": None, "metrics": {}, "deploy": False, **config}
    if config.get("kind") in (None, "trunk") and "model" in config:  # unilk's trunk config (convert writes it)
        return {"kind": "trunk", "model_kwargs": {}, "deploy": False, **config}
    if "architecture" in config:  # timm's config.json
        kwargs = dict(config.get("model_args") or {})
        if "num_classes" in config:
            kwargs.setdefault("num_classes", config["num_classes"])
        return {"kind": "trunk", "model": config["architecture"], "model_kwargs": kwargs, "deploy": False,
                "num_classes": kwargs.get("num_classes"), "in_chans": kwargs.get("in_chans")}  # fmt: skip
    raise CheckpointError(
        f"{source!r}: its config names no model (keys {sorted(config)[:8]}); expected one written by unilk "
        "(convert/export) or timm's config.json with 'architecture'"
    )


def _bare_config(
    state: dict[str, Tensor], source: str, model: str | None, model_kwargs: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Identify a bare state_dict: its architecture (given or inferred), classes, input channels and form."""
    from unilk.identify import classes_and_chans, detect_form, infer_model_name, signature

    given = dict(model_kwargs or {})
    if model is None:
        if given:
            raise ConfigError(f"model_kwargs {sorted(given)} need the architecture: pass model= (--model)")
        try:
            model = infer_model_name(state)
        except CheckpointError as err:
            raise CheckpointError(f"{source!r} (a bare state_dict): {err}") from err
    inferred = classes_and_chans(state, signature(model, False, json.dumps(given, sort_keys=True)))
    if "in_channels" in given:  # RepLKNet's official name of in_chans
        inferred.pop("in_chans", None)
    shape_kwargs = {**inferred, **given}
    kwargs_json = json.dumps(shape_kwargs, sort_keys=True)
    deploy = detect_form(state, model, kwargs_json)
    if deploy is None:
        probe = signature(model, False, kwargs_json).shapes
        missing, unexpected = sorted(set(probe) - set(state)), sorted(set(state) - set(probe))
        raise CheckpointError(
            f"{source!r} (a bare state_dict of {len(state)} tensors) does not fit {model!r} in training or deploy "
            f"form: missing {missing[:4]} ({len(missing)}), unexpected {unexpected[:4]} ({len(unexpected)}); pass "
            "the right --model"
        )
    return {
        "format": FORMAT,
        "kind": "trunk",
        "model": model,
        "model_kwargs": given,
        "num_classes": shape_kwargs.get("num_classes"),
        "in_chans": shape_kwargs.get("in_chans", shape_kwargs.get("in_channels")),
        "deploy": deploy,
    }


def _read_raw(source: str, ema: bool | None) -> tuple[Path, str, dict[str, Any] | None, dict[str, Tensor]]:
    """``(path, origin, config or None, state_dict)``: the file read, nothing inferred."""
    from unilk.hub import load_state_dict_file

    path, folder_config = _resolve(source)
    if folder_config is not None:
        return path, "unilk file", folder_config, load_state_dict_file(path)
    if path.suffix == ".safetensors":
        return (
            path,
            "unilk file" if (cfg := _safetensors_config(path)) else "bare state_dict",
            cfg,
            (load_state_dict_file(path)),
        )
    data = _torch_load(path)
    if isinstance(data, dict) and data.get("format") == _TRAIN_FORMAT:
        loaded = _from_training_checkpoint(data, path, source, ema)
        return path, loaded.origin, loaded.config, loaded.state_dict
    if isinstance(data, dict) and isinstance(data.get(CONFIG_KEY), dict):
        return path, "unilk file", dict(data[CONFIG_KEY]), load_state_dict_file(path)
    return path, "bare state_dict", None, load_state_dict_file(path)


def read_model_file(
    source: str | os.PathLike[str] | ModelFile,
    *,
    model: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    ema: bool | None = None,
) -> ModelFile:
    """Read a model file and say what it holds (see the module docstring for the kinds of file).

    Args:
        source: a file, an export folder, a training run folder, or an ``hf-hub:org/name`` id.
        model: the architecture of a bare state_dict (default: inferred from its keys and shapes). For a file that
            names its architecture, a different name is an error.
        model_kwargs: constructor keywords of a bare state_dict's architecture (e.g. official ``depths``/``dims``).
        ema: for a training checkpoint, use its EMA weights (default: when its recipe evaluated with them).

    Returns:
        The :class:`ModelFile`.

    Raises:
        CheckpointError: the file is missing, unreadable, or matches no model.
        ConfigError: ``model_kwargs`` without ``model`` for a bare state_dict.
    """
    if isinstance(source, ModelFile):
        return source
    text = os.fspath(source)
    path, origin, config, state = _read_raw(text, ema)
    config = _bare_config(state, text, model, model_kwargs) if config is None else _normalise_config(config, text)
    found = ModelFile(text, path, origin, config, state)
    if model is not None and model != found.architecture:
        raise CheckpointError(f"{found.describe()} holds a {found.architecture}, not the {model!r} asked for")
    return found


# -------------------------------------------------------------------------------------------------------- building


def _trunk_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = dict(config.get("model_kwargs") or {})
    for key in ("num_classes", "in_chans"):
        if config.get(key) is not None and key not in kwargs and "in_channels" not in kwargs:
            kwargs[key] = config[key]
    return kwargs


def build(found: ModelFile, **overrides: Any) -> nn.Module:
    """Build the model a :class:`ModelFile` describes and load its weights strictly (eval mode, on the CPU).

    Args:
        found: the file.
        **overrides: more model keywords (a modal model: trunk keywords; a trunk: ``create_model`` keywords).

    Returns:
        A :class:`~unilk.models.modal.ModalModel` (with ``labels`` and ``unilk_config`` attributes) or the trunk.

    Raises:
        CheckpointError: the weights do not fit the architecture the file names.
    """
    import unilk.models  # noqa: F401  (registers the model families)

    if found.kind == "modal":
        from unilk.models.modal import create_modal_model

        arch = found.config["arch"]
        trunk_kwargs = {**(arch.get("kwargs") or {}), **overrides}
        if found.deploy:
            trunk_kwargs["deploy"] = True
        net: nn.Module = create_modal_model(
            arch["modality"],
            arch["task"],
            arch["trunk"],
            num_classes=arch.get("num_classes"),
            pred_len=arch.get("pred_len"),
            adapter_config=found.config["adapter"],
            head_kwargs=arch.get("head_kwargs"),
            **trunk_kwargs,
        )
        result = net.load_state_dict(found.state_dict, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(
                f"{found.describe()} does not fit the model it names: missing {result.missing_keys[:5]} "
                f"({len(result.missing_keys)}), unexpected {result.unexpected_keys[:5]} "
                f"({len(result.unexpected_keys)}); load it with the unilk version that wrote it"
            )
        net.labels = found.labels  # type: ignore[assignment]
    elif found.kind == "trunk":
        from unilk.diagnostics.info import build_any_model

        kwargs = {**_trunk_kwargs(found.config), **overrides}
        if found.deploy:
            kwargs["deploy"] = True
        net = build_any_model(found.architecture, checkpoint_path=found, **kwargs)
    else:
        raise CheckpointError(f"{found.source!r}: unknown model kind {found.kind!r}")
    net.unilk_config = found.config  # type: ignore[assignment]
    return net.eval()


def load(
    source: str | os.PathLike[str],
    *,
    model: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    ema: bool | None = None,
    deploy: bool = False,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """The model in a file, folder or ``hf-hub:`` id, ready to use (eval mode).

    Example:
        >>> model = unilk.load("runs/quick_stripes/best.pt")  # doctest: +SKIP
        >>> model.labels, model.task
        (['checker', 'diagonal', 'horizontal', 'vertical'], 'classification')

    Args:
        source: a ``unilk train`` checkpoint, a ``convert``/``export`` output, an export folder, a run folder, an
            official ``.pth``/``.safetensors``, or ``hf-hub:org/name``.
        model: architecture of a bare state_dict (inferred when None).
        model_kwargs: constructor keywords of a bare state_dict's architecture.
        ema: use a training checkpoint's EMA weights (default: when its recipe evaluated with them).
        deploy: re-parameterize the model (inference form) when the file holds the training form.
        device: where to put the model.

    Returns:
        A modal model (``model.labels``, ``model.task``, ``model.modality``, ``model.adapter_config``) or a trunk
        (timm's contract); either has ``unilk_config``, the file's config.

    Raises:
        CheckpointError: the file is missing, unreadable, or fits no model; the message names it and what it holds.
    """
    net = build(read_model_file(source, model=model, model_kwargs=model_kwargs, ema=ema))
    if deploy:
        from unilk.reparam import reparameterize

        reparameterize(net)
        net.unilk_config = {**net.unilk_config, "deploy": True}  # type: ignore[assignment]
    return net.to(device).eval()


# ------------------------------------------------------------------------------------ weights into a built model


def load_weights(
    model: nn.Module,
    source: str | os.PathLike[str] | ModelFile,
    filter_fn: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None,
    strict: bool = True,
) -> nn.Module:
    """Load a file's weights into an already built trunk (what ``create_model(checkpoint_path=)`` calls).

    A modal file gives its trunk (``trunk.`` keys); its stem and head are left out. The family's ``filter_fn``
    maps official keys (and a training-form file into a ``deploy=True`` model); a classifier that does not fit is
    dropped and the first conv adapted to ``in_chans`` (:func:`unilk.hub.adapt_state_dict`).

    Args:
        model: the target trunk.
        source: anything :func:`read_model_file` reads.
        filter_fn: the family's checkpoint filter.
        strict: fail on missing or unexpected keys.

    Returns:
        The model, loaded in place.

    Raises:
        CheckpointError: the weights do not fit; the message names the file and what it holds.
    """
    from unilk.hub import adapt_state_dict

    if isinstance(source, ModelFile):
        found = source
        describe = found.describe()
        state = found.state_dict
        modal = found.kind == "modal"
    else:
        text = os.fspath(source)
        _, origin, config, state = _read_raw(text, None)
        modal = (config or {}).get("kind") == "modal"
        describe = f"{text!r} ({origin}{', a modal model' if modal else ''})"
    if modal:
        state = {key[len("trunk.") :]: value for key, value in state.items() if key.startswith("trunk.")}
    if filter_fn is not None:
        state = filter_fn(state, model)
    state, dropped = adapt_state_dict(state, model)
    target = model.state_dict()
    mismatched = [
        f"{key}: file {tuple(value.shape)} vs model {tuple(target[key].shape)}"
        for key, value in state.items()
        if key in target and target[key].shape != value.shape
    ]
    if mismatched:
        raise CheckpointError(
            f"{describe}: {len(mismatched)} shape mismatch(es) with the model, e.g. {mismatched[:3]}; build the model "
            "with the file's configuration (depths, dims, kernel_sizes, deploy), or use unilk.load(file)"
        )
    result = model.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if key not in dropped]  # a dropped head keeps its fresh init
    if strict and (missing or result.unexpected_keys):
        hint = (
            "the trunk of a modal model has no classifier (its head is separate): build it with num_classes=0, or "
            "use unilk.load(file) for the whole model"
            if modal
            else "check that the model (variant, deploy, features_only) matches the file, or use unilk.load(file)"
        )
        raise CheckpointError(
            f"{describe} does not fit the model: missing {missing[:5]} ({len(missing)}), unexpected "
            f"{result.unexpected_keys[:5]} ({len(result.unexpected_keys)}); {hint}"
        )
    logger.info("loaded %s (%d tensors)", describe, len(state))
    return model


# ------------------------------------------------------------------------------------------------------- helpers


def source_sha256(source: str | os.PathLike[str]) -> str:
    """The sha256 of the weights file behind ``source`` (a file, folder or ``hf-hub:`` id)."""
    from unilk.hub import file_sha256

    return file_sha256(_resolve(os.fspath(source))[0])


def _map_shape(modality: str, adapter: Mapping[str, Any]) -> tuple[int, int, int]:
    from unilk.adapters import build_adapter

    cfg = build_adapter(modality, {k: v for k, v in adapter.items() if k != "modality"}).config
    if modality == "image":
        return tuple(int(v) for v in cfg.input_size)  # type: ignore[return-value]
    elif modality == "audio":
        return 1, cfg.target_frames, cfg.num_mel_bins
    elif modality == "points":
        return 3, cfg.image_size, cfg.image_size
    elif modality == "video":
        rows, cols = cfg.grid
        return 3, rows * cfg.crop_size, cols * cfg.crop_size
    else:
        raise ConfigError(f"no map shape for modality {modality!r}; pass input_size")


def example_inputs(
    found: ModelFile, batch: int = 2, input_size: tuple[int, ...] | None = None, seed: int = 0
) -> tuple[Tensor, ...]:
    """Seeded random inputs of the shape the model takes (for equivalence checks and ONNX export).

    Args:
        found: the file.
        batch: samples N.
        input_size: ``(C, H, W)`` to use instead of the adapter's or the trunk cfg's map shape.
        seed: generator seed.

    Returns:
        ``(maps,)`` Tensor[N, C, H, W]; for a series model ``(windows, marks)`` Tensor[N, L, g] and Tensor[N, L, k]
        (just ``(windows,)`` without time features).
    """
    generator = torch.Generator().manual_seed(seed)
    if found.kind == "modal" and found.config["arch"]["modality"] == "series" and input_size is None:
        from unilk.adapters.series import TIME_FEATURES, SeriesConfig

        cfg = SeriesConfig.from_dict({k: v for k, v in found.config["adapter"].items() if k != "modality"})
        windows = torch.randn(batch, cfg.seq_len, cfg.group_size, generator=generator)
        if cfg.freq == "none":
            return (windows,)
        return windows, torch.rand(batch, cfg.seq_len, len(TIME_FEATURES[cfg.freq]), generator=generator) - 0.5
    if input_size is None and found.kind == "modal":
        input_size = _map_shape(found.config["arch"]["modality"], found.config["adapter"])
    elif input_size is None:
        size = found.config.get("input_size")
        input_size = tuple(size) if size else None
    if input_size is None:
        from unilk.models.registry import get_pretrained_cfg

        _, height, width = get_pretrained_cfg(found.architecture).input_size
        input_size = (int(found.config.get("in_chans") or 3), height, width)
    return (torch.randn(batch, *input_size, generator=generator),)
