"""The exceptions unilk raises.

Every error says what was wrong, the value received, the value expected and, where there is one, the fix.

Hierarchy::

    UnilkError
     ├── InputError       a bad sample or file (batch jobs record it and go on)
     ├── ConfigError      a bad model, adapter or recipe configuration
     ├── CheckpointError  a checkpoint that cannot be read or does not fit the model
     └── WorkerDiedError  a data-loading worker process died (a decoder crash, the out-of-memory killer)
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "UnilkError",
    "InputError",
    "ConfigError",
    "CheckpointError",
    "WorkerDiedError",
    "did_you_mean",
    "unknown_keys_error",
]


class UnilkError(Exception):
    """Base class of every error raised by unilk."""


class InputError(UnilkError, ValueError):
    """A sample or file that cannot be turned into a model input."""


class ConfigError(UnilkError, ValueError):
    """A configuration value or key that is not valid."""


class CheckpointError(UnilkError, RuntimeError):
    """A checkpoint that cannot be loaded, or that does not match the model."""


class WorkerDiedError(UnilkError, RuntimeError):
    """A data-loading worker process died; the message names the input it was reading, when it was reading one.

    Attributes:
        reading: the dataset indices the dead worker was reading (empty when none).
        how: the cause as the operating system reported it (``"Segmentation fault"``, ``"Killed"``, ``"exit code 1"``).
    """

    def __init__(self, message: str, reading: Iterable[int] = (), how: str = "") -> None:
        super().__init__(message)
        self.reading = list(reading)
        self.how = how


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the closest of ``choices`` to ``value`` (typos, case), or ``""``."""
    import difflib

    options = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), options, n=3, cutoff=0.6)
    close = close or [c for c in options if c.lower() == str(value).lower()]
    if not close:
        return ""
    return f"did you mean {' or '.join(repr(c) for c in close)}? "


def unknown_keys_error(where: str, unknown: set[str] | list[str], valid: set[str] | list[str]) -> ConfigError:
    """Build the ConfigError for unknown configuration keys, listing the valid ones.

    Args:
        where: what was being configured, e.g. ``"AudioConfig"`` or ``"recipe section 'optim'"``.
        unknown: the keys that were not recognised.
        valid: the keys that are accepted.

    Returns:
        A ConfigError ready to raise.
    """
    hints = "".join(did_you_mean(key, valid) for key in sorted(unknown))
    return ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; {hints}valid keys are {sorted(valid)}")
