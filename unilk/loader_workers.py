"""DataLoader workers that die (a decoder that crashes, the out-of-memory killer): one error naming the input.

When a worker process dies, PyTorch raises a RuntimeError in the main process wherever it happens to be
(``DataLoader worker (pid 123) is killed by signal: Segmentation fault.``), and the worker itself prints a line of its
own. A :class:`WorkerWatch` keeps, in memory shared with its workers, which input each worker is reading; inside
:meth:`WorkerWatch.naming_deaths` that RuntimeError becomes a :class:`~unilk.errors.WorkerDiedError` of one line that
names the input (when the worker was reading one), the cause and the fix.

Example::

    watch = WorkerWatch(num_workers, describe=lambda i: paths[i], fix="rerun", workers="num_workers")
    loader = DataLoader(watch.track(dataset), num_workers=num_workers, worker_init_fn=watch.worker_init)
    with watch.naming_deaths():
        for batch in loader:
            ...
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch.utils.data import Dataset, get_worker_info

from unilk.errors import UnilkError, WorkerDiedError

__all__ = ["WorkerWatch"]

# PyTorch's wording (torch/csrc/DataLoader.cpp and torch/utils/data/dataloader.py); stable since PyTorch 1.x
_DEATH = re.compile(
    r"DataLoader worker \(pids?(?:\(s\))? (?P<pids>[\d, ]+)\) "
    r"(?:is killed by signal: (?P<signal>[^.]+)\.|exited unexpectedly(?: with exit code (?P<code>-?\d+))?)"
)

_CRASH_SIGNALS = ("Segmentation fault", "Illegal instruction", "Floating point exception", "Aborted")
_NOT_READING = -1


class WorkerWatch:
    """Which input each DataLoader worker is reading, so that a worker's death can be told in one line.

    Args:
        num_workers: the loader's worker processes.
        describe: ``index -> text`` naming the input at that dataset index (e.g. its path), run in the main process.
        fix: what to do once the cause is fixed, e.g. "rerun: extraction resumes where it stopped".
        workers: the setting that sets ``num_workers``, as the user knows it (e.g. ``data.num_workers``).
    """

    def __init__(self, num_workers: int, describe: Callable[[int], str], fix: str, workers: str) -> None:
        # per worker: its pid and the index it is reading (-1: none); written by the workers, read here
        self._slots = multiprocessing.RawArray("q", 2 * max(num_workers, 1))
        for worker in range(max(num_workers, 1)):
            self._slots[2 * worker + 1] = _NOT_READING
        self.describe = describe
        self.fix = fix
        self.workers = workers
        self.worker_init = _WorkerInit(self._slots)

    def track(self, dataset: Dataset) -> Dataset:
        """``dataset``, noting in the shared slots which index each worker is reading."""
        return _Tracked(dataset, self._slots)

    @contextmanager
    def naming_deaths(self) -> Iterator[None]:
        """Turn PyTorch's worker-death RuntimeError raised inside the block into :class:`WorkerDiedError`."""
        try:
            yield
        except RuntimeError as err:
            died = None if isinstance(err, UnilkError) else self.explain(err)
            if died is None:
                raise
            raise died from err

    def explain(self, err: BaseException) -> WorkerDiedError | None:
        """The one-line error for a worker death PyTorch reported in ``err``; None when ``err`` is something else."""
        # PyTorch often re-raises its signal handler's report ("is killed by signal: ...") as a vaguer "exited
        # unexpectedly": read the whole chain and keep the most telling report
        chain: list[BaseException] = []
        while err is not None and err not in chain:
            chain.append(err)
            err = err.__cause__ or err.__context__
        reports = [found for found in map(_DEATH.search, map(str, chain)) if found is not None]
        if not reports:
            return None
        found = max(reports, key=lambda report: bool(report["signal"] or report["code"]))
        pids = [int(pid) for pid in found["pids"].replace(" ", "").split(",") if pid]
        reading = [
            self._slots[2 * w + 1]
            for w in range(len(self._slots) // 2)
            if self._slots[2 * w] in pids and self._slots[2 * w + 1] != _NOT_READING
        ]
        how = found["signal"] or (f"exit code {found['code']}" if found["code"] else "exited")
        who = f"a data-loading worker (pid {', '.join(map(str, pids))}) died ({how})"
        fewer = f"lower {self.workers} to run fewer worker processes"
        if not reading:
            return WorkerDiedError(
                f"{who} while reading no input, most often the work of the out-of-memory killer or of a full shared "
                f"memory (/dev/shm). Fix: {fewer}, then {self.fix}",
                how=how,
            )
        inputs = ", ".join(self.describe(index) for index in reading)
        if found["signal"] in _CRASH_SIGNALS:
            why, fix = ": its decoder crashed on that file", "check that file"
        elif found["signal"] == "Killed":
            why, fix = ", most often the work of the out-of-memory killer", f"check that file's size, or {fewer}"
        elif found["signal"] == "Bus error":
            why, fix = ": shared memory (/dev/shm) may be too small", f"{fewer}, or check that file"
        else:
            why, fix = "", "check that file"
        return WorkerDiedError(f"{who} while reading {inputs}{why}. Fix: {fix}, then {self.fix}", reading, how)


class _WorkerInit:
    """``worker_init_fn``: note the worker's pid; let a fatal signal kill it quietly (the main process says what
    happened, once, instead of PyTorch's extra line from the worker)."""

    def __init__(self, slots: Any) -> None:
        self.slots = slots

    def __call__(self, worker_id: int) -> None:
        self.slots[2 * worker_id] = os.getpid()
        if not faulthandler.is_enabled():  # a user who asked for fault tracebacks keeps them
            for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL"):
                signal.signal(getattr(signal, name), signal.SIG_DFL)


class _Tracked(Dataset):
    """A dataset whose reads are noted in the shared slots (only inside workers)."""

    def __init__(self, dataset: Dataset, slots: Any) -> None:
        self.dataset = dataset
        self.slots = slots

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        worker = get_worker_info()
        if worker is None:
            return self.dataset[index]
        self.slots[2 * worker.id + 1] = index
        try:
            return self.dataset[index]
        finally:
            self.slots[2 * worker.id + 1] = _NOT_READING
