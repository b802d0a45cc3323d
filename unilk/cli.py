"""The ``unilk`` command line.

The CLI only parses arguments, builds configs and calls library functions; the work lives in the library. Each
subcommand is a click command in the module that owns its feature and is imported only when it runs, so
``unilk --help`` stays fast. To add one, write the command and add a line to ``_COMMANDS``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings

import click

from unilk.errors import UnilkError, WorkerDiedError
from unilk.version import __version__

# name -> "module:attribute" of a click.Command; imported lazily.
_COMMANDS: dict[str, str] = {
    "audio-stats": "unilk.adapters.audio_stats:audio_stats",
    "bench": "unilk.diagnostics.bench:bench",
    "calibrate": "unilk.calibrate:calibrate_command",
    "convert": "unilk.diagnostics.commands:convert",
    "demo": "unilk.demo:demo",
    "encode": "unilk.extract_cli:encode_command",
    "eval": "unilk.train.commands:eval_command",
    "erf": "unilk.diagnostics.commands:erf",
    "export": "unilk.export:export_command",
    "extract": "unilk.extract_cli:extract_command",
    "info": "unilk.diagnostics.commands:info",
    "plot": "unilk.diagnostics.commands:plot",
    "predict": "unilk.predict:predict_command",
    "probe": "unilk.probe_cli:probe_command",
    "synth": "unilk.datasets.cli:synth",
    "train": "unilk.train.commands:train_command",
}


class CommandError(click.ClickException):
    """A unilk error caught inside a command: one ``Error:`` line, exit code 2 (1 for a :class:`WorkerDiedError`).

    Args:
        message: the line to print (the error's message, in the command line's words).
        cause: the error caught.
    """

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.exit_code = 1 if isinstance(cause, WorkerDiedError) else 2  # as main() exits for an uncaught one


class _LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COMMANDS:
            module_name, attr = _COMMANDS[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="unilk")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """unilk: one large-kernel ConvNet trunk for audio, point clouds, video, time series and images."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler()
    handler.setFormatter(_CliFormatter(with_names=verbose > 0))
    logging.basicConfig(level=level, handlers=[handler])
    # off a terminal, long commands report progress as a line now and then (unilk.progress), shown by default
    logging.getLogger("unilk.progress").setLevel(min(level, logging.INFO))
    warnings.showwarning = _show_warning
    logging.captureWarnings(False)


class _CliFormatter(logging.Formatter):
    """``warning: message`` (the logger's name only with ``-v``), one line per record."""

    def __init__(self, with_names: bool) -> None:
        super().__init__()
        self.with_names = with_names

    def format(self, record: logging.LogRecord) -> str:
        where = f" {record.name}" if self.with_names else ""
        text = f"{record.levelname.lower()}{where}: {record.getMessage()}"
        return f"{text}\n{self.formatException(record.exc_info)}" if record.exc_info else text


def _show_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    """A Python warning on the command line: one ``warning:`` line, without the file path and source line."""
    click.echo(f"warning: {message}", err=True)


def main() -> None:
    """Entry point of the ``unilk`` console script.

    A unilk error ends with its message on one line and exit code 2; an operating-system error (disk full, permission
    denied, a path that is a file, a data-loading worker that died) with its message and exit code 1. ``-v`` adds
    the traceback.
    """
    try:
        cli(prog_name="unilk", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except WorkerDiedError as exc:  # the operating system ended a worker: like an OSError
        _fail(exc, 1)
    except UnilkError as exc:
        _fail(exc, 2)
    except OSError as exc:
        _fail(exc, 1)


def _fail(exc: BaseException, code: int) -> None:
    """Print ``Error: <message>`` on one line (and the traceback under ``-v``), then exit with ``code``."""
    if logging.getLogger().isEnabledFor(logging.INFO):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    message = " ".join(str(exc).split()) or type(exc).__name__
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)
