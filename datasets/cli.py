"""``unilk synth``: write a synthetic dataset in its real layout (for demos, recipes and tests)."""

from __future__ import annotations

import click

__all__ = ["synth"]

#: CLI name -> generator function name in :mod:`unilk.datasets.synthetic`.
_KINDS = {
    "speech-commands": "make_speech_commands",
    "esc50": "make_esc50",
    "audioset": "make_audioset",
    "kinetics": "make_kinetics",
    "modelnet": "make_modelnet",
    "modelnet-h5": "make_modelnet_h5",
    "series-classification": "make_series_classification",
    "series-archive": "make_series_archive",
    "forecasting": "make_forecasting",
    "corrformer": "make_corrformer",
    "image-folder": "make_image_folder",
}

#: generators whose size is set per class rather than per split.
_PER_CLASS = {
    "speech-commands",
    "esc50",
    "kinetics",
    "modelnet",
    "series-classification",
    "series-archive",
    "image-folder",
}


@click.command("synth")
@click.argument("kind", type=click.Choice(sorted(_KINDS)))
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True, help="Random seed (the same seed writes the same files).")
@click.option(
    "--n-per-class",
    type=click.IntRange(min=1),
    default=None,
    help="Samples per class (class datasets; default: generator's).",
)
def synth(kind: str, root: str, seed: int, n_per_class: int | None) -> None:
    """Write the synthetic KIND dataset under ROOT, in the layout its loader reads."""
    from unilk.datasets import synthetic

    kwargs = {"seed": seed}
    if n_per_class is not None:
        if kind not in _PER_CLASS:
            raise click.BadParameter(f"{kind} is not sized per class; choose one of {sorted(_PER_CLASS)}")
        kwargs["n_per_class"] = n_per_class
    out = synthetic.generate_into(root, _KINDS[kind], kwargs)
    files = sum(1 for p in out.rglob("*") if p.is_file() and p.name != synthetic.MARKER)
    click.echo(f"wrote {files} files of the synthetic {kind} dataset to {out}")
