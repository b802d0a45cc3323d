"""One check of a ``device=`` / ``--device`` value for every entry point: a clear error, never torch's traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from unilk.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE", "META_DEVICE", "DeviceParam", "resolve_device"]

_KINDS = ("cpu", "cuda", "mps")


def resolve_device(device: str | torch.device, *, also: tuple[str, ...] = ()) -> torch.device:
    """``"auto"`` or a torch device string -> a device this machine has.

    Args:
        device: ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        also: further device types accepted (e.g. ``("meta",)`` where nothing is computed).

    Raises:
        ConfigError: an unknown device, or a CUDA or MPS device this machine lacks.
    """
    import torch

    expected = f"expected 'auto', 'cpu', 'cuda' or 'cuda:N'{''.join(f' or {kind!r}' for kind in also)}"
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device: got {device!r}, not a device; {expected}.") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: got {device!r} but no CUDA GPU is available here; expected 'auto' or 'cpu'.")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ConfigError(f"device: got {device!r}; this machine has {torch.cuda.device_count()} CUDA device(s).")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device: got {device!r} but no Apple MPS device is available here; expected 'auto' or 'cpu'")
    if resolved.type not in (*_KINDS, *also):
        raise ConfigError(f"device: got {device!r}; {expected}.")
    return resolved


class DeviceParam(click.ParamType):
    """A ``--device`` option checked when the command line is parsed (the value stays the string given).

    A bad value is a :class:`~unilk.errors.ConfigError` naming ``--device``: one ``Error:`` line on the command line.
    """

    name = "device"

    def __init__(self, also: tuple[str, ...] = ()) -> None:
        self.also = also

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            resolve_device(value, also=self.also)
        except ConfigError as err:
            raise ConfigError(f"--{err!s}") from None
        return value


#: the ``--device`` type of the commands that compute
DEVICE = DeviceParam()
#: ... and of those that may build a model without memory (``unilk info``)
META_DEVICE = DeviceParam(also=("meta",))
