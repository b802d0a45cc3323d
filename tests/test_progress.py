"""Progress: a bar on a terminal only; elsewhere a line now and then, which the command line shows."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from unilk.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_off_a_terminal_and_a_bar_on_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    with caplog.at_level(logging.INFO, logger="unilk.progress"), Progress(3, desc="work", every_s=0) as bar:
        for _ in range(3):
            bar.update(1)
            bar.set_postfix(failed=0)
    assert piped.getvalue() == ""  # no bar drawn into a file
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("work: 1/3 (")
    assert lines[-1].startswith("work: 3/3 (")
    assert lines[-1].endswith("it/s, failed=0)")
    caplog.clear()
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(Progress(2, desc="drawn", unit="item").iterate("ab")) == ["a", "b"]
    assert "drawn" in terminal.getvalue()  # tqdm drew its bar
    assert not caplog.records
    assert list(Progress(2, desc="off", enabled=False).iterate("ab")) == ["a", "b"]


def test_a_command_writing_to_a_file_logs_progress_lines_not_a_bar(tmp_path: Path) -> None:
    for i in range(3):
        sf.write(tmp_path / f"clip{i}.wav", np.sin(np.arange(8000) * (i + 1) / 20).astype(np.float32), 16000)
    cmd = [sys.executable, "-m", "unilk", "audio-stats", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1  # one final line: the run took less than every_s
    assert run.stderr.startswith("info: fbank stats: 3/3 (")
    assert "clips: 3/3" in run.stdout
    quiet = subprocess.run([*cmd, "--no-progress"], capture_output=True, text=True, timeout=300)
    assert quiet.stderr == ""
