"""Errors a user can act on.

Every error that reaches the user because of bad input is a :class:`DeepworksError`: its message is
one line that names the file, key or value at fault and what would fix it. The CLI prints that line
and exits with :attr:`DeepworksError.exit_code` (2); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DeepworksError(Exception):
    """Base class of every user-facing error: one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split("\n")))


class ConfigError(DeepworksError):
    """A config file, a ``--set`` override or a keyword argument is invalid."""


class DataError(DeepworksError):
    """A dataset or data file cannot be used as given."""


class CheckpointError(DeepworksError):
    """A checkpoint or run directory is missing, corrupt or incompatible."""


class MissingExtraError(DeepworksError):
    """An optional dependency is not installed."""


def close_match(word: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``word``, or None when nothing is close."""
    matches = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_choice(what: str, word: str, choices: Iterable[str], where: str = "") -> str:
    """Message for a name that is not among ``choices``: suggestion first, then all choices."""
    choices = sorted(choices)
    prefix = f"{where}: " if where else ""
    hint = close_match(word, choices)
    did_you_mean = f"; did you mean '{hint}'?" if hint else ""
    return f"{prefix}{word!r} is not {what}{did_you_mean} (choices: {', '.join(choices)})"


def require(module: str, extra: str, command: str = "deepworks"):
    """Import ``module`` or raise a one-line :class:`MissingExtraError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{command} needs {module}: pip install -e .[{extra}]") from exc
