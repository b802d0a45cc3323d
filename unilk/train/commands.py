"""``unilk train RECIPE [key=value ...]`` and ``unilk eval RUN``: parse, build, call the engine, print results."""

from __future__ import annotations

import json
import logging
import os
from contextlib import nullcontext
from pathlib import Path

import click

from unilk.once import SMALL_MAP_WARNING, expected

__all__ = ["eval_command", "train_command"]

#: override prefixes that change what maps the trunk sees
_MAP_SECTIONS = ("model.", "adapter.", "eval_adapter.")


@click.command("train", context_settings={"ignore_unknown_options": True})
@click.argument("recipe")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
@click.option("--resume", is_flag=True, help="Continue from <output_dir>/last.pt.")
@click.option("--overwrite", is_flag=True, help="Replace the files of an earlier run in output_dir.")
@click.option(
    "--validate-only",
    is_flag=True,
    help="Check the recipe (names, ranges, paths, device) and print it; build, write and train nothing.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar or progress lines (same as log.progress=false).")
def train_command(
    recipe: str, overrides: tuple[str, ...], resume: bool, overwrite: bool, validate_only: bool, no_progress: bool
) -> None:
    """Train with RECIPE (a YAML path or a shipped name like audio/speech_commands), with key=value overrides.

    \b
    Example:
      unilk train audio/quick_speech_commands optim.lr=1e-3 train.epochs=2 output_dir=runs/sc

    Under torchrun (torchrun --nproc_per_node=2 -m unilk train ...) it trains with DDP. A recipe with
    evaluation.folds trains once per fold and prints the mean and std over folds.
    """
    import yaml

    from unilk.train.build import build_parts, validate_recipe
    from unilk.train.config import is_shipped, load_recipe
    from unilk.train.distributed import shutdown_process_group
    from unilk.train.engine import Trainer

    cfg = load_recipe(recipe, [*overrides, *(["log.progress=false"] if no_progress else [])])
    if not no_progress:  # progress lines (when stderr is not a terminal) are info records: show them
        logging.getLogger("unilk.train.engine").setLevel(min(logging.INFO, logging.getLogger().level))
    validate_recipe(cfg, resume=resume, overwrite=overwrite)  # before anything is built or written
    if validate_only:
        click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return
    finished = False
    try:
        # a shipped recipe's model and maps are its author's deliberate choice (its tests check them), not the user's
        as_shipped = is_shipped(recipe) and not any(key.split("=")[0].startswith(_MAP_SECTIONS) for key in overrides)
        with expected(SMALL_MAP_WARNING) if as_shipped else nullcontext():
            if cfg.evaluation.folds:  # cross-validation: one run per fold, then mean ± std (evaluation.folds)
                from unilk.train.folds import run_folds

                summary = run_folds(cfg, resume=resume, overwrite=overwrite)
            else:
                summary = Trainer(cfg, build_parts(cfg)).fit(resume=resume, overwrite=overwrite)
        finished = True
    finally:
        shutdown_process_group(wait_for_peers=finished)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(json.dumps(summary, indent=2))


@click.command("eval")
@click.argument("run")
@click.option("--checkpoint", default="best.pt", show_default=True, help="File inside a RUN folder to evaluate.")
@click.option("--split", default=None, help="Split to evaluate (default: the recipe's data.eval_split).")
@click.option("--ema/--no-ema", default=None, help="Use the EMA weights (default: the recipe's train.ema_eval).")
def eval_command(run: str, checkpoint: str, split: str | None, ema: bool | None) -> None:
    """Evaluate RUN and print its metrics as JSON.

    RUN is a training run folder (its --checkpoint file), a `unilk train` checkpoint, or anything `unilk export` or
    `unilk convert` made from one: every model file that carries the recipe it was trained with.
    """
    from unilk.loading import CONFIG_FILE, build, read_model_file
    from unilk.train.build import build_parts
    from unilk.train.config import recipe_from_dict
    from unilk.train.engine import Trainer

    path = Path(run)
    source = path / checkpoint if path.is_dir() and not (path / CONFIG_FILE).is_file() else run
    found = read_model_file(source, ema=ema)
    if found.kind != "modal" or not found.config.get("recipe"):
        raise click.UsageError(
            f"{found.describe()} carries no training recipe, so there is no dataset to evaluate it on; unilk eval "
            "takes a `unilk train` run or checkpoint, or its export"
        )
    overrides = ["train.device=auto"] + ([f"data.eval_split={split}"] if split else [])
    cfg = recipe_from_dict(found.config["recipe"]).replace(overrides)
    parts = build_parts(cfg, with_train=False)
    parts.model = build(found)
    trainer = Trainer(cfg, parts)
    parts.model.to(trainer.info.device)
    with expected(SMALL_MAP_WARNING):  # the maps it was trained on: nothing to act on
        metrics = trainer.evaluate(parts.model)
    click.echo(json.dumps({"checkpoint": str(source), "split": cfg.data.eval_split, "metrics": metrics}, indent=2))
