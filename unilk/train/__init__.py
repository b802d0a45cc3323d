"""Training: recipes (``config``), the engine, optimizer and schedule, checkpoints, metrics, DDP helpers, sparsity.

Nothing is imported here so that ``import unilk`` stays light; import the submodules you need, e.g.
``from unilk.train.engine import Trainer`` or ``from unilk.train.config import load_recipe``.
"""
