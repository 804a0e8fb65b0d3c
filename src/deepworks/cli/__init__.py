"""The ``deepworks`` command line: a thin layer over the Python API.

Every command module registers itself on :data:`app`. Errors a user can fix print one line and exit
with code 2; ``--debug`` (anywhere on the command line) shows the traceback instead.
"""

from __future__ import annotations

import sys
import warnings

import typer
from rich.console import Console

from deepworks.errors import DeepworksError

app = typer.Typer(
    name="deepworks",
    help="deepworks: train, evaluate and inspect deep learning models from YAML configs. "
    "An error a user can fix prints one line and exits with code 2; add --debug anywhere on the "
    "command line to see its traceback instead. `deepworks describe NAME` shows a component's "
    "options.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

from deepworks.cli import (  # noqa: E402, F401
    attack,
    audit,
    checkpoint,
    crossval,
    describe,
    embed,
    evaluate,
    explain,
    listing,
    predict,
    sample,
    train,
)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings (e.g. "12 texts truncated to max_len") as one ``warning:`` line."""
    err.print(f"warning: {message}", markup=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``deepworks`` script."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"] or ["--help"]
    warnings.simplefilter("default")  # each warning once per place, also under a test runner
    warnings.showwarning = _one_line_warning
    try:
        app(args=args, prog_name="deepworks", standalone_mode=False)
    except DeepworksError as exc:
        if debug:
            raise
        err.print(f"error: {exc}", markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # the CLI framework's own signals, matched by shape, not by class
        code = getattr(exc, "exit_code", None)
        if type(exc).__name__ == "Exit":
            sys.exit(code or 0)
        if type(exc).__name__ == "Abort":
            err.print("interrupted")
            sys.exit(130)
        if debug or code is None or not hasattr(exc, "format_message"):
            raise
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "deepworks"
        err.print(f"error: {exc.format_message()} (see: {command} --help)", markup=False)
        sys.exit(code)
