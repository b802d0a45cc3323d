"""The exceptions unilk raises.

Every error says what was wrong, the value received, the value expected and, where there is one, the fix.

Hierarchy::

    UnilkError
     ├── InputError       a bad sample or file (batch jobs record it and go on)
     ├── ConfigError      a bad model, adapter or recipe configuration
     └── CheckpointError  a checkpoint that cannot be read or does not fit the model
"""

from __future__ import annotations

__all__ = ["UnilkError", "InputError", "ConfigError", "CheckpointError", "unknown_keys_error"]


class UnilkError(Exception):
    """Base class of every error raised by unilk."""


class InputError(UnilkError, ValueError):
    """A sample or file that cannot be turned into a model input."""


class ConfigError(UnilkError, ValueError):
    """A configuration value or key that is not valid."""


class CheckpointError(UnilkError, RuntimeError):
    """A checkpoint that cannot be loaded, or that does not match the model."""


def unknown_keys_error(where: str, unknown: set[str] | list[str], valid: set[str] | list[str]) -> ConfigError:
    """Build the ConfigError for unknown configuration keys, listing the valid ones.

    Args:
        where: what was being configured, e.g. ``"AudioConfig"`` or ``"recipe section 'optim'"``.
        unknown: the keys that were not recognised.
        valid: the keys that are accepted.

    Returns:
        A ConfigError ready to raise.
    """
    return ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys are {sorted(valid)}")
