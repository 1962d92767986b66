"""The `graphrec` command. Each subcommand lives in `graphrec.commands.<name>` and exposes
``register(subparsers)``; it sets ``func`` on its parser.

Errors: a `GraphrecError`, or a built-in error that bad input causes (a missing or unreadable file,
a bad value or key, undecodable text, invalid YAML), ends the command with ONE line
``graphrec: error: <message>`` on stderr and exit code 2 (argparse's code for usage errors);
Ctrl-C ends it with one line and 130; anything else is a bug: one line naming the exception, a hint
to rerun with ``--debug``, exit code 1. ``--debug`` (anywhere before ``--``, or
``GRAPHREC_DEBUG=1``) lets every error through with its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Model hubs must never be contacted: graphrec only reads local files and packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

COMMANDS = ["datasets", "encode", "build_graphs", "train", "evaluate", "recommend", "bench", "checkpoint", "compare",
            "export", "explain"]
#: exit codes: bad input (argparse uses 2 for usage errors too), internal error, Ctrl-C (128 + SIGINT)
EXIT_INPUT, EXIT_BUG, EXIT_INTERRUPTED = 2, 1, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphrec", description="Graph-based multimodal recommendation.")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (may also follow the subcommand)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"graphrec.commands.{name}")
        except ModuleNotFoundError as e:  # a subcommand not built in this install
            if e.name == f"graphrec.commands.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without its ``--debug`` flags (before or after the subcommand; not after ``--``)."""
    end = argv.index("--") if "--" in argv else len(argv)
    rest = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    on = len(rest) != len(argv) or os.environ.get("GRAPHREC_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    return rest, on


def _input_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean bad input (or a missing/unreadable file), not a bug."""
    import yaml

    from graphrec.errors import GraphrecError
    return (GraphrecError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
            FileExistsError, ValueError, KeyError, UnicodeError, yaml.YAMLError, FloatingPointError)


def _one_line(text: str, limit: int = 1000) -> str:
    text = "; ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def error_message(e: BaseException) -> str:
    """The one line shown for an input error ``e``."""
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        key = e.args[0]  # str(KeyError) would quote the whole sentence
        return _one_line(key if " " in key.strip() else f"unknown key {key!r}")
    if isinstance(e, UnicodeDecodeError):
        return _one_line(f"input is not valid {e.encoding} text: byte 0x{e.object[e.start]:02x} at offset "
                         f"{e.start} ({e.reason}); set the file's encoding option")
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        both = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else f"{e.filename}"
        return _one_line(f"{both}: {e.strerror}")
    msg = _one_line(str(e))
    return msg or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    argv, debug = _split_debug(sys.argv[1:] if argv is None else list(argv))
    if debug:
        os.environ["GRAPHREC_DEBUG"] = "1"  # worker processes (bench) show tracebacks too
    parser = build_parser()
    if not argv:
        argv = ["train"]  # `graphrec` alone = the main job on the default dataset
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_INPUT
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("graphrec: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `graphrec ... | head`: the reader left; nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BUG
    except Exception as e:
        if debug:
            raise
        if isinstance(e, _input_errors()):
            print(f"graphrec: error: {error_message(e)}", file=sys.stderr)
            return EXIT_INPUT
        print(f"graphrec: internal error: {type(e).__name__}: {_one_line(str(e), 500)} "
              f"(rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_BUG
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
