"""The shared base of every adapter config: a frozen dataclass that round-trips through dict and YAML.

An adapter config is stored next to the weights, so a checkpoint always knows how its inputs were made. Unknown keys
are rejected with the list of valid ones, so a typo in a recipe fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import yaml

from unilk.errors import ConfigError, unknown_keys_error

__all__ = ["AdapterConfig", "check_choice", "check_positive"]

_C = TypeVar("_C", bound="AdapterConfig")


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    """Base of the per-modality configs. Subclasses are frozen dataclasses and validate in ``__post_init__``.

    Sequences are stored as tuples (so configs are hashable and compare equal after a YAML round trip, where they come
    back as lists).
    """

    #: the modality name written into ``to_dict()`` under ``"modality"``; set by each subclass.
    modality = "base"

    @classmethod
    def field_names(cls) -> list[str]:
        """Return the names of the config's fields, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls: type[_C], data: Mapping[str, Any] | None) -> _C:
        """Build a config from a mapping, rejecting unknown keys.

        Args:
            data: field values; missing fields keep their defaults. A ``"modality"`` key, as written by
                :meth:`to_dict`, is accepted when it names this config's modality.

        Returns:
            The config.

        Raises:
            ConfigError: for an unknown key (the message lists the valid ones), a different modality, or a bad value.
        """
        data = dict(data or {})
        modality = data.pop("modality", cls.modality)
        if modality != cls.modality:
            raise ConfigError(
                f"{cls.__name__}: got a config for modality {modality!r}, expected {cls.modality!r}; "
                f"build it with build_adapter({modality!r}, ...) instead"
            )
        valid = cls.field_names()
        unknown = set(data) - set(valid)
        if unknown:
            raise unknown_keys_error(cls.__name__, unknown, valid)
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        hints = typing.get_type_hints(cls)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for name, value in values.items():
            expected = _mismatch(hints[name], value)
            if expected:
                example = list(defaults[name]) if isinstance(defaults[name], tuple) else defaults[name]
                raise ConfigError(f"{cls.__name__}.{name}: got {value!r}, expected {expected} (default: {example!r})")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain Python values (tuples become lists), with a ``"modality"`` key."""
        out: dict[str, Any] = {"modality": self.modality}
        for name in self.field_names():
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_yaml(cls: type[_C], text: str) -> _C:
        """Build a config from YAML text (read with ``yaml.safe_load``)."""
        data = yaml.safe_load(text)
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__}: YAML must hold a mapping of keys to values, got {type(data).__name__}")
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        """Return the config as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self: _C, **changes: Any) -> _C:
        """Return a copy with some fields changed (validated again)."""
        return self.from_dict({**self.to_dict(), **changes})


def _mismatch(hint: Any, value: Any) -> str:
    """What ``hint`` (a field's type) expects when ``value`` does not fit it, else ``""``.

    Covers the field types configs use: bool, int, float, str, ``X | None`` and ``tuple[X, ...]``; others pass.
    """
    if hint is bool:
        return "" if isinstance(value, bool) else "true or false"
    if hint is int:
        return "" if isinstance(value, numbers.Integral) and not isinstance(value, bool) else "an integer"
    if hint is float:
        return "" if isinstance(value, numbers.Real) and not isinstance(value, bool) else "a number"
    if hint is str:
        return "" if isinstance(value, str) else "a string"
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None and type(None) in args:
            return ""
        inner = [_mismatch(arg, value) for arg in args if arg is not type(None)]
        return "" if "" in inner else " or ".join([*inner, "null"] if type(None) in args else inner)
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _mismatch(args[0], None)  # what one element must be
        if not isinstance(value, tuple) or any(_mismatch(args[0], v) for v in value):
            return f"a list, each element {item}"
    return ""


def check_choice(owner: str, name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{owner}.{name}: got {value!r}, expected one of {choices}")


def check_positive(owner: str, name: str, value: float | int | None, *, allow_none: bool = False) -> None:
    """Raise ConfigError unless ``value`` is a number > 0 (or None when ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{owner}.{name}: got {value!r}, expected a number > 0")
