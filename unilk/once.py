"""Warnings and log records once per cause per process, so a loop over inputs, models or calls is not flooded.

Python's own warning registry shows a warning once per code location; the same cause reached from two call sites
(``unilk.encode`` and ``model(x)``), or one log line per input, would still repeat. Here the cause is the key: the
first time it comes up it is told at its level, later times at debug level (log records) or not at all (warnings).
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import warnings
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["SMALL_MAP_WARNING", "expected", "forget", "log_once", "warn_once"]

#: the trunks' warning that the last-stage map is smaller than a kernel's reach (models/unireplknet.py)
SMALL_MAP_WARNING = r".*smaller than the reach of the largest kernel"

_seen: set[Hashable] = set()
_lock = threading.Lock()
#: patterns of the warnings expected where the code now runs (see :func:`expected`)
_expected: contextvars.ContextVar[tuple[re.Pattern[str], ...]] = contextvars.ContextVar("unilk_expected", default=())


def _first(cause: Hashable) -> bool:
    with _lock:
        if cause in _seen:
            return False
        _seen.add(cause)
        return True


def warn_once(message: str, category: type[Warning] = UserWarning, stacklevel: int = 1) -> None:
    """``warnings.warn(message, category)`` the first time this message comes up in the process.

    Args:
        message: the warning text (its cause: the same text later is not shown again).
        category: the warning class.
        stacklevel: as for :func:`warnings.warn`, counted from the caller of this function.
    """
    if any(pattern.match(message) for pattern in _expected.get()):
        return  # not told, and not counted as told: outside the block it is news again
    if _first(("warning", category, message)):
        warnings.warn(message, category, stacklevel=stacklevel + 1)


def log_once(logger: logging.Logger, cause: Hashable, message: str, *args: Any, level: int = logging.WARNING) -> None:
    """Log ``message % args`` at ``level`` the first time ``cause`` comes up in the process, later at debug level.

    Args:
        logger: the module's logger.
        cause: what makes two records the same story (e.g. ``"silent clip"``), whatever input they name.
        message: ``%``-format string.
        *args: its arguments.
        level: the level of the first record.
    """
    if _first(("log", logger.name, cause)):
        logger.log(level, message, *args)
    else:
        logger.debug(message, *args)


@contextmanager
def expected(*messages: str) -> Iterator[None]:
    """Within the block, warnings whose text matches one of ``messages`` (regexes) are not shown.

    For a warning the user cannot act on where it arises: a model run on the maps it was trained on, a shipped
    recipe's deliberate settings.
    """
    token = _expected.set((*_expected.get(), *(re.compile(message, re.IGNORECASE) for message in messages)))
    try:
        with warnings.catch_warnings():
            for message in messages:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        _expected.reset(token)


def forget() -> None:
    """Forget every cause seen so far (for tests: each starts as a fresh process would)."""
    with _lock:
        _seen.clear()
