"""graphrec's own error types: every check of user input raises one of these, and the command line
turns them into one line and a non-zero exit (``--debug`` shows the traceback).

Each subclass also derives from the built-in type that callers would expect (``ValueError`` for bad
values, ``FileNotFoundError`` for missing files), so ``except ValueError`` keeps working.
"""
from __future__ import annotations


class GraphrecError(Exception):
    """Base class: the message is one line that names the file, row, id or key at fault."""


class DataError(GraphrecError, ValueError):
    """An input file or in-memory dataset that cannot be read as what it claims to be."""


class ConfigError(GraphrecError, ValueError):
    """A configuration key or value that is unknown, of the wrong type or out of range."""


class RunDirError(GraphrecError):
    """A run directory that cannot be created, resumed or read safely."""


class UnsafeFileError(GraphrecError):
    """A checkpoint, cached library or path that graphrec refuses to load or write."""


class UnsafeNameError(UnsafeFileError, ValueError):
    """A name that would become a path (model, dataset export, run name, id) but could escape its
    directory or is not a plain file name: refused before anything is created."""


class MissingFileError(GraphrecError, FileNotFoundError):
    """A file or directory the input names does not exist."""


class UnknownKeyError(ConfigError, KeyError):
    """An unknown configuration key: a `ConfigError` that is also a ``KeyError`` (what unknown keys
    raised before graphrec had its own error types)."""

    __str__ = BaseException.__str__  # KeyError would print the message quoted


class UnknownIdError(DataError, KeyError):
    """An original id that an `IdMap` does not hold: a `DataError` that is also a ``KeyError`` (what
    a failed lookup raised before graphrec had its own error types)."""

    __str__ = BaseException.__str__


class MissingExtraError(GraphrecError, ImportError):
    """An optional extra (``pip install graphrec[encode]``, ...) that the command needs is not installed."""


def require_one_of(what: str, value: object, options) -> None:
    """Raise a `ConfigError` naming ``what`` unless ``value`` is one of ``options``."""
    if value not in options:
        raise ConfigError(f"{what} must be one of {', '.join(map(str, options))}, got {value!r}")
