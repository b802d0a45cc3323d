"""Every ```python and ```bash block of README.md and docs/**/*.md runs.

The blocks of one page run in order in one scratch directory (python blocks in one shared namespace, in this process;
bash blocks with ``bash -e -o pipefail``, the venv's ``unilk`` first on PATH), so a page reads as one session.
A block opts out only with the marker ``<!-- docs-test: skip (reason) -->`` on the line just before its fence;
the reason is required. Use it only for commands that need a real dataset, a GPU or extra packages.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").rglob("*.md")])

_FENCE = re.compile(r"^```(\w*)\s*$")
_SKIP = re.compile(r"^<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->\s*$")
_RUN = ("python", "bash")
# set for the bash blocks: a block that runs the test suite (``make test``) must not run these tests again
_NESTED = "UNILK_DOCS_TEST_NESTED"


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    language: str
    code: str
    line: int  # 1-based line of the opening fence
    skip_reason: str | None


def extract_blocks(text: str) -> list[Block]:
    """The fenced blocks of a markdown text, with the skip marker (if any) of the line before each fence."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = _FENCE.match(lines[i].strip())
        if opening is None:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"code block opened at line {start + 1} is never closed")
        marker = _SKIP.match(lines[start - 1].strip()) if start > 0 else None
        blocks.append(Block(opening.group(1), "\n".join(body) + "\n", start + 1, marker and marker["reason"].strip()))
        i += 1
    return blocks


def test_extract_blocks_reads_languages_markers_and_lines() -> None:
    text = (
        "# t\n```python\nx = 1\n```\n\n<!-- docs-test: skip (needs a GPU) -->\n```bash\nnvidia-smi\n```\n"
        "```text\nnot run\n```\n"
    )
    blocks = extract_blocks(text)
    assert [(b.language, b.line, b.skip_reason) for b in blocks] == [
        ("python", 2, None),
        ("bash", 7, "needs a GPU"),
        ("text", 10, None),
    ]
    assert blocks[0].code == "x = 1\n"
    with pytest.raises(ValueError, match="never closed"):
        extract_blocks("```bash\nls\n")


def test_every_page_has_its_code_blocks_found() -> None:
    # guards the extractor against silently finding nothing (e.g. a changed fence style)
    counted = {page.relative_to(REPO_ROOT).as_posix(): len(extract_blocks(page.read_text())) for page in PAGES}
    assert counted.get("docs/getting-started.md", 0) > 0, counted


def _run_bash(code: str, cwd: Path, where: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", _NESTED: "1"}
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        pytest.fail(
            f"{where} exited with {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )


def _runnable(page: Path) -> list[Block]:
    return [b for b in extract_blocks(page.read_text()) if b.language in _RUN and b.skip_reason is None]


# Pages with no runnable block (prose only, or every block opted out) have nothing to run.
RUNNABLE_PAGES = [page for page in PAGES if _runnable(page)]


@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=[p.relative_to(REPO_ROOT).as_posix() for p in RUNNABLE_PAGES])
def test_page_code_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.environ.get(_NESTED):
        pytest.skip("inside a docs code block that runs the test suite: the outer run checks the docs")
    runnable = _runnable(page)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in runnable:
        where = f"{page.relative_to(REPO_ROOT)}:{block.line} ({block.language})"
        if block.language == "python":
            try:
                exec(compile(block.code, where, "exec"), namespace)  # the docs' own examples, run as written
            except Exception as err:
                pytest.fail(f"{where} raised {type(err).__name__}: {err}")
        else:
            _run_bash(block.code, tmp_path, where)
