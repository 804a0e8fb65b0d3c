"""The ``deepworks`` command line: a thin layer over the Python API.

Every command module (``cli/<command>.py``) registers itself on :data:`app`, and is imported only
when its command runs or its help is asked for: the list of commands and their one-line help
are read from the modules' source (:func:`commands`), so ``deepworks --help``, ``--version``
and ``list`` start without torch. Errors a user can fix print one line and exit with code 2;
``--debug`` (anywhere on the command line) shows the traceback instead.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import sys
import warnings
from functools import cache
from pathlib import Path

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from deepworks.errors import DeepworksError


@cache
def commands() -> dict[str, tuple[str, str]]:
    """Command name -> (module, help), read from ``cli/*.py`` without importing them: each
    ``@app.command()`` function (its docstring is its help) and each ``app.add_typer(x, name=...)``
    group (the help of ``x = typer.Typer(help=...)``)."""
    found = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        helps = {}  # variable -> help of the typer.Typer(...) assigned to it
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and _is_call(node.value, "Typer"):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        helps[target.id] = _keyword(node.value, "help") or ""
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    if _is_call(decorator, "command", on="app") and not _keyword(
                        decorator, "hidden"
                    ):
                        given = decorator.args[0] if decorator.args else None
                        name = _keyword(decorator, "name") or (
                            ast.literal_eval(given) if given is not None else node.name
                        )
                        text = _keyword(decorator, "help") or ast.get_docstring(node) or ""
                        found[typer.main.get_command_name(name)] = (path.stem, text)
            elif isinstance(node, ast.Call) and _is_call(node, "add_typer", on="app"):
                group = node.args[0].id if node.args and isinstance(node.args[0], ast.Name) else ""
                text = _keyword(node, "help") or helps.get(group, "")
                found[_keyword(node, "name") or group] = (path.stem, text)
    return found


def _is_call(node: ast.AST, attribute: str, on: str | None = None) -> bool:
    """``node`` is a call of ``<something>.attribute(...)`` (of ``on.attribute`` if given)."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    owner = node.func.value
    return node.func.attr == attribute and (on is None or getattr(owner, "id", None) == on)


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name:
            try:
                return ast.literal_eval(keyword.value)
            except ValueError:
                return None
    return None


class LazyCommands(TyperGroup):
    """The ``deepworks`` group: a command's module is imported when the command is looked up
    to run, and ``--help`` lists every command from :func:`commands` without importing any."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(commands())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in commands():
            importlib.import_module(f"{__name__}.{commands()[cmd_name][0]}")
            self.commands.update(typer.main.get_command(app).commands)
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        try:
            return click.Group.resolve_command(self, ctx, args)
        except click.UsageError as exc:  # a typo: the close names among all commands
            matches = difflib.get_close_matches(args[0], commands()) if args else []
            if matches:
                names = ", ".join(repr(m) for m in matches)
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {names}?"
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = sorted(commands().items())
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):  # as click words it, from the help alone
            formatter.write_dl(
                [
                    (n, click.Command(n, help=text).get_short_help_str(limit))
                    for n, (_, text) in rows
                ]
            )


app = typer.Typer(
    name="deepworks",
    cls=LazyCommands,
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


def version() -> str:
    """The installed package's version."""
    from importlib import metadata

    try:
        return metadata.version("deepworks")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        from deepworks import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        out.print(f"deepworks {version()}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        is_eager=True,
        expose_value=False,
        callback=_print_version,
    ),
) -> None:
    pass


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
