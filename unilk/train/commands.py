"""``unilk train RECIPE [key=value ...]`` and ``unilk eval RUN``: parse, build, call the engine, print results."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

__all__ = ["eval_command", "train_command"]


@click.command("train", context_settings={"ignore_unknown_options": True})
@click.argument("recipe")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
@click.option("--resume", is_flag=True, help="Continue from <output_dir>/last.pt.")
@click.option("--validate-only", is_flag=True, help="Check the recipe and print it; build and train nothing.")
def train_command(recipe: str, overrides: tuple[str, ...], resume: bool, validate_only: bool) -> None:
    """Train with RECIPE (a YAML path or a shipped name like audio/speech_commands), with key=value overrides.

    Example: unilk train audio/quick_speech_commands optim.lr=1e-3 train.epochs=2 output_dir=runs/sc
    Under torchrun (torchrun --nproc_per_node=2 -m unilk train ...) it trains with DDP. A recipe with
    evaluation.folds trains once per fold and prints the mean and std over folds.
    """
    import yaml

    from unilk.train.build import build_parts
    from unilk.train.config import load_recipe
    from unilk.train.distributed import shutdown_process_group
    from unilk.train.engine import Trainer

    cfg = load_recipe(recipe, list(overrides))
    if validate_only:
        click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return
    finished = False
    try:
        if cfg.evaluation.folds:  # cross-validation: one run per fold, then mean ± std (evaluation.folds)
            from unilk.train.folds import run_folds

            summary = run_folds(cfg, resume=resume)
        else:
            summary = Trainer(cfg, build_parts(cfg)).fit(resume=resume)
        finished = True
    finally:
        shutdown_process_group(wait_for_peers=finished)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(json.dumps(summary, indent=2))


@click.command("eval")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--checkpoint", default="best.pt", show_default=True, help="File inside RUN (or a path) to evaluate.")
@click.option("--split", default=None, help="Split to evaluate (default: the recipe's data.eval_split).")
@click.option("--ema/--no-ema", default=None, help="Use the EMA weights (default: the recipe's train.ema_eval).")
def eval_command(run: Path, checkpoint: str, split: str | None, ema: bool | None) -> None:
    """Evaluate a training run directory RUN (or a checkpoint file) and print its metrics as JSON."""
    from unilk.train.build import build_parts
    from unilk.train.checkpoint import load_checkpoint
    from unilk.train.config import recipe_from_dict
    from unilk.train.engine import Trainer

    path = run if run.is_file() else run / checkpoint
    ckpt = load_checkpoint(path)
    overrides = ["train.device=auto"] + ([f"data.eval_split={split}"] if split else [])
    cfg = recipe_from_dict(ckpt["recipe"]).replace(overrides)
    parts = build_parts(cfg, with_train=False)
    use_ema = cfg.train.ema and cfg.train.ema_eval if ema is None else ema
    if use_ema and "ema" not in ckpt:
        raise click.UsageError(f"{path} holds no EMA weights; pass --no-ema")
    parts.model.load_state_dict(ckpt["ema"] if use_ema else ckpt["model"])
    trainer = Trainer(cfg, parts)
    parts.model.to(trainer.info.device)
    metrics = trainer.evaluate(parts.model)
    click.echo(json.dumps({"checkpoint": str(path), "split": cfg.data.eval_split, "metrics": metrics}, indent=2))
