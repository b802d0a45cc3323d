"""The recipe schema: nested frozen dataclasses read from YAML, with ``key=value`` overrides.

A recipe is one YAML file with the sections below; every key has a default, unknown keys raise a
:class:`~unilk.errors.ConfigError` that lists the valid ones. Field name = YAML key = CLI override path
(``optim.lr=1e-4``, ``train.max_steps=10``). Durations carry their unit in the name (``warmup_epochs``,
``max_minutes``).

Example::

    recipe = load_recipe("audio/speech_commands", ["optim.lr=1e-3", "train.epochs=2"])
    recipe.optim.lr  # 0.001
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from unilk.errors import ConfigError, did_you_mean, unknown_keys_error
from unilk.train.sparse import SparsityConfig

__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "EvalConfig",
    "LogConfig",
    "ModelConfig",
    "OptimConfig",
    "Recipe",
    "SchedConfig",
    "SparsityConfig",
    "TrainConfig",
    "apply_overrides",
    "load_recipe",
    "recipe_from_dict",
    "resolve_recipe_path",
]

Modality = Literal["audio", "points", "video", "series", "image"]
Task = Literal["classification", "multilabel", "forecast"]


@dataclass(frozen=True)
class ModelConfig:
    """The trunk and how it is built.

    Attributes:
        arch: registered model name (``unilk.list_models()``), e.g. ``unireplknet_s``.
        kwargs: extra constructor arguments (``drop_path_rate``, ``depths``, ``dims``, ...).
        head_kwargs: keyword arguments of the task head (``drop_rate``, ``norm``, ...).
        pretrained: load the registered pretrained weights.
        checkpoint_path: local weights to start from (safetensors or a ``weights_only`` torch file).
        sync_bn: convert BatchNorm to SyncBatchNorm under DDP.
        calibrate_bn: before training, re-estimate every BatchNorm's running statistics on the train split's inputs
            (:func:`unilk.calibrate.calibrate_bn`; for a pretrained trunk moved to another modality).
    """

    arch: str = "unireplknet_s"
    kwargs: dict[str, Any] = field(default_factory=dict)
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    checkpoint_path: str | None = None
    sync_bn: bool = False
    calibrate_bn: bool = False


@dataclass(frozen=True)
class DataConfig:
    """The dataset and its loaders.

    Attributes:
        dataset: class name in :mod:`unilk.datasets` (``SpeechCommands``, ``ModelNet40``, ...).
        root: dataset root directory (with ``synthetic`` set, where the generated dataset is written).
        file: a file inside ``root`` that the dataset reads instead of the directory (Time-Series-Library CSVs).
        kwargs: extra keyword arguments of the dataset class (e.g. ``test_fold`` for ESC-50).
        train_split: split name used for training.
        eval_split: split name used for evaluation.
        synthetic: if set, the generator in :mod:`unilk.datasets.synthetic` (e.g. ``make_speech_commands``) that
            writes a small dataset into ``root`` before training; ``synthetic_kwargs`` are its arguments.
        synthetic_kwargs: keyword arguments of the generator.
        batch_size: global training batch (split evenly across DDP ranks).
        eval_batch_size: per-process evaluation batch.
        num_workers: DataLoader workers per process (exact mid-epoch resume needs 0).
        sampler: ``uniform`` (a seeded permutation per epoch) or ``balanced`` (AST's label-frequency weighted draws
            with replacement, :class:`~unilk.train.samplers.BalancedBatchSampler`; AudioSet).
    """

    dataset: str = ""
    root: str = ""
    file: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    eval_split: str = "test"
    synthetic: str | None = None
    synthetic_kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    eval_batch_size: int = 64
    num_workers: int = 0
    sampler: Literal["uniform", "balanced"] = "uniform"


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer (timm ``create_optimizer_v2``) and layer-wise learning-rate decay.

    Attributes:
        opt: timm optimizer name (``adamw``, ``adam``, ``sgd``, ``lamb``, ...).
        lr: peak learning rate at ``lr_base_batch`` (or absolute when ``lr_base_batch`` is None).
        lr_base_batch: if set, lr is scaled linearly by ``batch_size * grad_accum_steps / lr_base_batch``.
        weight_decay: decoupled weight decay; 1-D parameters and biases get none.
        betas: Adam betas.
        eps: Adam epsilon.
        momentum: SGD momentum.
        layer_decay: per-layer lr scale ``layer_decay ** (num_layers - layer_id)`` from the model's ``group_matcher``.
    """

    opt: str = "adamw"
    lr: float = 1e-3
    lr_base_batch: int | None = None
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9
    layer_decay: float | None = None


@dataclass(frozen=True)
class SchedConfig:
    """Learning-rate schedule, stepped per optimizer update.

    Attributes:
        sched: ``cosine``, ``step`` (multiply by ``decay_rate`` every ``decay_epochs``) or ``constant``.
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        warmup_lr: learning rate at the start of warm-up.
        min_lr: final learning rate of the cosine schedule.
        decay_epochs: period of the ``step`` schedule.
        decay_start_epochs: first decay of the ``step`` schedule, counted after warm-up (None: ``decay_epochs``;
            the official Speech Commands recipe starts at epoch 5, then decays every epoch).
        decay_rate: factor of the ``step`` schedule.
    """

    sched: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    decay_epochs: float = 1.0
    decay_start_epochs: float | None = None
    decay_rate: float = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """The training loop.

    Attributes:
        epochs: number of passes over the training set.
        max_steps: stop after this many optimizer updates (None: no limit).
        max_minutes: stop after this much wall time of one invocation (None: no limit); a checkpoint is written
            when it stops.
        grad_accum_steps: micro-batches per optimizer update.
        clip_grad: gradient clipping threshold (None: off).
        clip_mode: ``norm`` (total L2 norm), ``value`` or ``agc`` (timm's adaptive clipping).
        amp: autocast the forward pass.
        amp_dtype: ``bfloat16`` (CPU and GPU) or ``float16`` (GPU, with a grad scaler).
        ema: keep an exponential moving average of the weights.
        ema_decay: EMA decay per update.
        ema_eval: evaluate (and pick the best checkpoint with) the EMA weights.
        loss: ``auto`` (cross-entropy / BCE / MSE by task), ``ce``, ``bce`` or ``mse``.
        label_smoothing: label smoothing of the classification loss.
        mixup: mixup alpha (0: off).
        cutmix: cutmix alpha (0: off).
        mixup_prob: probability of applying mixup or cutmix to a batch.
        mixup_switch_prob: probability of cutmix instead of mixup when both are on.
        seed: global seed; ranks derive theirs from it.
        deterministic: ``torch.use_deterministic_algorithms`` and no cuDNN benchmarking.
        eval_every_epochs: evaluate after every this many epochs (0: only at the end).
        device: ``auto`` (cuda when available), ``cpu`` or ``cuda``.
        threads: intra-op CPU threads of the run (``torch.set_num_threads``); 0 keeps PyTorch's default, one per
            core. Tiny models train faster on one: their ops are too small to share, and a parallel op waits for all
            its threads, which stalls whenever another process holds a core.
    """

    epochs: int = 1
    max_steps: int | None = None
    max_minutes: float | None = None
    grad_accum_steps: int = 1
    clip_grad: float | None = None
    clip_mode: Literal["norm", "value", "agc"] = "norm"
    amp: bool = False
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    ema: bool = False
    ema_decay: float = 0.9999
    ema_eval: bool = True
    loss: Literal["auto", "ce", "bce", "mse"] = "auto"
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    seed: int = 0
    deterministic: bool = False
    eval_every_epochs: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocols.

    Attributes:
        multiview: video: evaluate every clip on the adapter's ``test_clips`` × ``test_crops`` views and average
            them (Kinetics: 5 × 3).
        votes: points: the voting test, ``votes`` copies per cloud (the first as is, the others scaled and shifted
            with ``augment.scale``/``shift``/``anisotropic``), averaged (ModelNet: 10); 1: off.
        vote_seed: seed of the vote copies (the test is deterministic).
        reduce: how views are averaged: ``softmax`` (class probabilities, VideoMAE) or ``logits`` (Point-BERT).
        folds: cross-validation: train and evaluate once per value of ``data.kwargs[fold_key]`` and report the mean
            and std over folds (ESC-50: [1, 2, 3, 4, 5]); empty: one run.
        fold_key: the dataset argument that selects the held-out fold.
    """

    multiview: bool = False
    votes: int = 1
    vote_seed: int = 0
    reduce: Literal["softmax", "logits"] = "softmax"
    folds: list[int] = field(default_factory=list)
    fold_key: str = "test_fold"


@dataclass(frozen=True)
class CheckpointConfig:
    """When checkpoints are written (always atomically, to ``<output_dir>``).

    Attributes:
        every_steps: write ``last.pt`` every this many optimizer updates (0: only at epoch ends and the end).
        metric: metric that selects ``best.pt`` (``acc``, ``mAP``, ``mse``, ``loss``, ...).
        metric_mode: ``max`` or ``min``.
    """

    every_steps: int = 0
    metric: str = "acc"
    metric_mode: Literal["max", "min"] = "max"


@dataclass(frozen=True)
class LogConfig:
    """Progress bar and log files.

    Attributes:
        every_steps: append a row to ``log.csv`` (and TensorBoard) every this many updates.
        progress: show a tqdm progress bar.
        tensorboard: write TensorBoard events to ``<output_dir>/tb``.
    """

    every_steps: int = 10
    progress: bool = True
    tensorboard: bool = True


@dataclass(frozen=True)
class Recipe:
    """A complete training recipe.

    Attributes:
        name: short name, used in logs.
        modality: input modality (picks the adapter).
        task: ``classification``, ``multilabel`` or ``forecast`` (picks the head, loss and metrics).
        output_dir: where checkpoints and logs go.
        model: see :class:`ModelConfig`.
        adapter: adapter config (the fields of the modality's adapter config; ``modality`` is filled in).
        eval_adapter: overrides of ``adapter`` for evaluation.
        augment: training augmentations, the fields of the modality's augmentation config
            (:mod:`unilk.adapters.augment`); all off when absent.
        evaluation: see :class:`EvalConfig`.
        data: see :class:`DataConfig`.
        optim: see :class:`OptimConfig`.
        sched: see :class:`SchedConfig`.
        train: see :class:`TrainConfig`.
        checkpoint: see :class:`CheckpointConfig`.
        log: see :class:`LogConfig`.
        sparsity: SLaK dynamic sparse training (:class:`~unilk.train.sparse.SparsityConfig`); None (absent): dense.
        source: where the settings come from (paper table, official script); documentation only.
    """

    name: str = "recipe"
    modality: Modality = "image"
    task: Task = "classification"
    output_dir: str = "runs/recipe"
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: dict[str, Any] = field(default_factory=dict)
    eval_adapter: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    sparsity: SparsityConfig | None = None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain dicts, lists and scalars (YAML- and ``weights_only``-safe)."""
        return _plain(dataclasses.asdict(self))

    def replace(self, overrides: Sequence[str]) -> Recipe:
        """A copy with ``key=value`` overrides applied (see :func:`apply_overrides`)."""
        return recipe_from_dict(apply_overrides(self.to_dict(), overrides))


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so the dict round-trips through YAML and ``weights_only`` loading."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(where: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert YAML forms (lists -> tuples, ints -> floats)."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        real = [o for o in options if o is not type(None)]
        if len(real) == 1:  # Optional[X]: X's own error (e.g. a section's unknown keys) is the helpful one
            return _coerce(where, value, real[0])
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(where, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: got {value!r}, expected one of {[_type_name(o) for o in options]}")
    if origin is Literal:
        if value not in get_args(tp):
            hint = did_you_mean(value, [str(a) for a in get_args(tp)])
            raise ConfigError(f"{where}: got {value!r}, {hint}expected one of {list(get_args(tp))}")
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: got {value!r}, expected a list of {len(args)} values")
        return tuple(_coerce(f"{where}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: got {value!r}, expected a list")
        (item,) = get_args(tp)
        return [_coerce(f"{where}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: got {value!r}, expected a mapping")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: got {value!r}, expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: got {value!r}, expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: got {value!r}, expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: got {value!r}, expected a string")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{where}: unsupported annotation {tp!r}")  # a schema bug, not a user error


def _build(cls: type, data: Any, where: str) -> Any:
    """Build the frozen dataclass ``cls`` from a mapping, rejecting unknown keys."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: got {data!r}, expected a mapping of {cls.__name__} fields")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = set(data) - set(valid)
    if unknown:
        raise unknown_keys_error(f"recipe section '{where}'", unknown, valid)
    kwargs = {key: _coerce(f"{where}.{key}", value, hints[key]) for key, value in data.items()}
    return cls(**kwargs)


def recipe_from_dict(data: Mapping[str, Any]) -> Recipe:
    """Validate a recipe mapping and build the :class:`Recipe`.

    Raises:
        ConfigError: an unknown key (the message lists the valid ones) or a value of the wrong type.
    """
    recipe = _build(Recipe, data, "recipe")
    _check_values(recipe)
    return recipe


def _check_values(recipe: Recipe) -> None:
    """Range checks that types alone do not express."""
    checks = [
        ("data.batch_size", recipe.data.batch_size, recipe.data.batch_size >= 1, ">= 1"),
        ("data.eval_batch_size", recipe.data.eval_batch_size, recipe.data.eval_batch_size >= 1, ">= 1"),
        ("train.epochs", recipe.train.epochs, recipe.train.epochs >= 1, ">= 1"),
        ("train.grad_accum_steps", recipe.train.grad_accum_steps, recipe.train.grad_accum_steps >= 1, ">= 1"),
        ("train.ema_decay", recipe.train.ema_decay, 0.0 <= recipe.train.ema_decay < 1.0, "in [0, 1)"),
        ("optim.lr", recipe.optim.lr, recipe.optim.lr > 0, "> 0"),
        ("train.label_smoothing", recipe.train.label_smoothing, 0 <= recipe.train.label_smoothing < 1, "in [0, 1)"),
        ("data.num_workers", recipe.data.num_workers, recipe.data.num_workers >= 0, ">= 0"),
        ("train.threads", recipe.train.threads, recipe.train.threads >= 0, ">= 0 (0: PyTorch's default)"),
        ("output_dir", recipe.output_dir, bool(recipe.output_dir.strip()), "a directory path (not empty)"),
    ]
    for name, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{name}: got {value!r}, expected {expected}")
    if recipe.task == "forecast" and (recipe.train.mixup > 0 or recipe.train.cutmix > 0):
        raise ConfigError("train.mixup/cutmix: mixup and cutmix apply to classification only; set them to 0")
    _check_evaluation(recipe)
    from unilk.adapters.augment import augment_config

    augment_config(recipe.modality, recipe.augment)  # unknown keys and bad values fail here, not mid-build


def _check_evaluation(recipe: Recipe) -> None:
    """The protocols fit the modality and task."""
    ev = recipe.evaluation
    if ev.votes < 1:
        raise ConfigError(f"evaluation.votes: got {ev.votes}, expected >= 1 (1: no voting)")
    if ev.votes > 1 and recipe.modality != "points":
        raise ConfigError(f"evaluation.votes: the voting test is for points, got modality {recipe.modality!r}")
    if ev.multiview and recipe.modality != "video":
        raise ConfigError(f"evaluation.multiview: clips × crops are for video, got modality {recipe.modality!r}")
    if (ev.multiview or ev.votes > 1) and recipe.task != "classification":
        raise ConfigError(f"evaluation: multi-view averaging is for classification, got task {recipe.task!r}")
    if len(set(ev.folds)) != len(ev.folds):
        raise ConfigError(f"evaluation.folds: got {ev.folds}, expected distinct fold numbers")


def _parse_value(text: str) -> Any:
    """A CLI value, read as YAML so ``1e-3``, ``true``, ``null`` and ``[1, 2]`` get their types."""
    value = yaml.safe_load(text) if text else ""
    # YAML 1.1 reads "1e-3" as a string; a float is what anyone writing it means.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides to a recipe mapping (returns a new dict).

    Args:
        data: the recipe as a mapping (``Recipe.to_dict()`` or parsed YAML).
        overrides: strings like ``optim.lr=1e-4``, ``model.kwargs.drop_path_rate=0.1``, ``train.max_steps=null``.

    Raises:
        ConfigError: an override without ``=`` or one that descends into a non-mapping.
    """
    result = _plain(dict(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=1e-4")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: '{'.'.join(parts[: depth + 1])}' is not a section")
            node = child
        node[parts[-1]] = _parse_value(text.strip())
    return result


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path, or a shipped recipe name like ``audio/speech_commands``.

    Raises:
        ConfigError: neither a file nor a shipped recipe (the message lists the shipped ones).
    """
    from unilk.recipes import list_recipes, recipe_root

    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = recipe_root() / f"{Path(str(name_or_path)).with_suffix('').as_posix()}.yaml"
    if shipped.is_file():
        return shipped
    hint = did_you_mean(name_or_path, list_recipes())
    raise ConfigError(f"recipe {str(name_or_path)!r}: no such file or shipped recipe; {hint}shipped: {list_recipes()}")


def is_shipped(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` names a recipe shipped with unilk (by name, or by its path in the package)."""
    from unilk.recipes import recipe_root

    try:
        return resolve_recipe_path(name_or_path).resolve().is_relative_to(recipe_root().resolve())
    except ConfigError:
        return False


def load_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe YAML (``yaml.safe_load``), apply overrides and validate it.

    Args:
        name_or_path: a YAML path or a shipped recipe name (``points/modelnet40``).
        overrides: ``key=value`` strings (see :func:`apply_overrides`).

    Raises:
        ConfigError: the file is missing, is not a mapping, or fails validation.
    """
    path = resolve_recipe_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:  # syntax errors, and tags such as !!python/object that safe_load refuses
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"recipe {str(path)!r}{line}: not valid YAML ({' '.join(str(problem).split())})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"recipe {str(path)!r}: cannot be read ({err})") from err
    if not isinstance(data, Mapping):
        raise ConfigError(f"recipe {str(path)!r}: expected a YAML mapping at top level, got {type(data).__name__}")
    return recipe_from_dict(apply_overrides(data, overrides))
