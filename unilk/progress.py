"""Progress of long work: a tqdm bar on a terminal, a log line now and then otherwise (a file, a CI log, a pipe).

A redrawn bar written to a file is one unreadable line of carriage returns; there, :class:`Progress` logs
``desc: n/total (rate unit/s, k=v ...)`` on the ``unilk.progress`` logger at info level, at most every
``every_s`` seconds and once at the end. The command line shows these lines; ``--no-progress`` turns both off.

Example::

    with Progress(total=len(items), desc="extract", unit="item", enabled=progress) as bar:
        for item in items:
            ...
            bar.update(1)

    for clip in Progress(len(clips), desc="fbank stats", enabled=progress).iterate(clips):
        ...
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["Progress"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class Progress:
    """A progress report that suits where stderr goes.

    Args:
        total: the amount of work (None: unknown).
        desc: what is being done (the bar's label, the lines' prefix).
        unit: what is counted.
        enabled: False reports nothing.
        every_s: shortest interval between two log lines when stderr is not a terminal.
    """

    def __init__(
        self, total: int | None = None, *, desc: str, unit: str = "it", enabled: bool = True, every_s: float = 30.0
    ) -> None:
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.count = 0
        self.postfix: dict[str, Any] = {}
        self._start = self._last = time.monotonic()
        self._bar = None
        self._lines = enabled and not sys.stderr.isatty()
        if enabled and not self._lines:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._lines and time.monotonic() - self._last >= self.every_s:
            self._log()

    def iterate(self, iterable: Iterable[_T]) -> Iterator[_T]:
        """Yield from ``iterable``, counting each item, and close at the end."""
        with self:
            for item in iterable:
                yield item
                self.update(1)

    def set_postfix(self, **values: Any) -> None:
        """Show ``values`` beside the count (e.g. ``done=3, failed=1``)."""
        self.postfix = values
        if self._bar is not None:
            self._bar.set_postfix(refresh=False, **values)

    def close(self) -> None:
        """End the bar, or log the final line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._lines and self.count:
            self._log()
            self._lines = False

    def _log(self) -> None:
        self._last = time.monotonic()
        elapsed = max(self._last - self._start, 1e-9)
        done = f"{self.count}/{self.total}" if self.total is not None else str(self.count)
        extra = "".join(f", {key}={value}" for key, value in self.postfix.items())
        logger.info("%s: %s (%.1f %s/s%s)", self.desc, done, self.count / elapsed, self.unit, extra)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
