"""Shared test fixtures: where the official reference fixtures live, and loaded fixture files."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# CI clones the repository next to shared/, so the fixtures are at <repo>/../shared/fixtures
FIXTURES_DIR = REPO_ROOT.parent / "shared" / "fixtures"


def _untracked_files() -> set[str] | None:
    """Untracked, non-ignored files of the checkout, or None outside a git checkout."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--others", "--exclude-standard", "-z"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {name for name in listed.decode(errors="replace").split("\0") if name}


@pytest.fixture(autouse=True)
def _fresh_once_registry() -> None:
    """unilk tells each warning once per process; every test starts as a fresh process would."""
    from unilk.once import forget

    forget()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_UNTRACKED_AT_START] = _untracked_files()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A test that writes into the checkout (instead of ``tmp_path``) fails the run: nothing lands there by accident."""
    if hasattr(session.config, "workerinput"):  # xdist workers: the controller checks once
        return
    before = session.config.stash.get(_UNTRACKED_AT_START, None)
    after = _untracked_files()
    if before is None or after is None:
        return
    created = sorted(after - before)
    if created:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"tests wrote into the checkout (use tmp_path): {', '.join(created)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_UNTRACKED_AT_START = pytest.StashKey[set[str] | None]()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The directory of the official reference fixtures."""
    return FIXTURES_DIR


def load_fixture(name: str) -> dict[str, Any]:
    """Load one official fixture file safely (``weights_only=True``)."""
    import torch

    path = FIXTURES_DIR / name
    if not path.is_file():  # conformance must not pass silently: a missing fixture is an error, not a skip
        raise FileNotFoundError(f"official fixture {path} not found; clone the repository next to shared/")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def unireplknet_a_fixture() -> dict[str, Any]:
    """``shared/fixtures/unireplknet_a_official.pt`` (spec unireplknet.md §9)."""
    return load_fixture("unireplknet_a_official.pt")


def _randomize_module(module: Any, seed: int = 0) -> Any:
    """Overwrite every parameter and BN buffer with seeded non-trivial values (the fixtures' recipe, spec §9).

    Norm weights U(0.5, 1.5), biases N(0, 0.2²), running_mean N(0, 0.3²), running_var U(0.5, 2), conv/linear weights
    N(0, 1/fan_in), layer scale U(0.3, 1), GRN gamma N(0, 0.5²): so that BN fusion and every folded term matter.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]

            def uniform(low: float, high: float, shape: Any = tensor.shape) -> Any:
                return torch.rand(shape, generator=generator, dtype=torch.float64) * (high - low) + low

            def normal(std: float, shape: Any = tensor.shape) -> Any:
                return torch.randn(shape, generator=generator, dtype=torch.float64) * std

            if leaf == "running_var":
                value = uniform(0.5, 2.0)
            elif leaf == "running_mean":
                value = normal(0.3)
            elif leaf == "gamma" and tensor.dim() == 1:
                value = uniform(0.3, 1.0)
            elif leaf in ("gamma", "beta"):
                value = normal(0.5 if leaf == "gamma" else 0.2)
            elif tensor.dim() == 1 and leaf == "weight":
                value = uniform(0.5, 1.5)
            elif leaf == "bias":
                value = normal(0.2)
            else:
                fan_in = tensor[0].numel()
                value = normal(fan_in**-0.5)
            tensor.copy_(value.to(tensor.dtype))
    return module


@pytest.fixture(scope="session")
def randomize() -> Any:
    """``randomize(module, seed=0)``: non-trivial seeded weights and BN statistics, in place; returns the module."""
    return _randomize_module
