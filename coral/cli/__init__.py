"""The ``coral`` console command. Each group of sub-commands lives in a module of this package with a
``register(subparsers)`` function; every sub-command's flags are generated from its config dataclass
(:mod:`coral.config`)."""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

# The thread settings (coral.threads) must be in the environment before torch is imported.
from coral.threads import set_thread_defaults

set_thread_defaults()

#: Modules that add sub-commands. Heavy imports (torch, transformers) belong inside the handlers.
COMMAND_MODULES = [
    "coral.cli.data", "coral.cli.score", "coral.cli.baselines", "coral.cli.train", "coral.cli.align", "coral.cli.run",
    "coral.cli.serve",
]


#: errno values of file-system errors that the user can fix (a read-only or full disk, permissions,
#: a file where a directory is expected): one line and exit 2, like bad input.
USER_FILE_ERRORS = frozenset(
    {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EEXIST, errno.ENOTDIR, errno.EISDIR}
)


def cache_hint(filename: object) -> str:
    """For a path inside the coral cache: how to point the cache elsewhere."""
    from coral.io import cache_root

    if filename and str(filename).startswith(str(cache_root())):
        return f" (the coral cache: set CORAL_CACHE_DIR to a writable directory; now {cache_root()})"
    return ""


def build_parser() -> argparse.ArgumentParser:
    """The ``coral`` parser with every sub-command."""
    from coral import __version__
    from coral.config import ArgumentParser

    parser = ArgumentParser(
        prog="coral", description="Collaborative retrieval-augmented LLMs for long-tail recommendation."
    )
    parser.add_argument("--version", action="version", version=f"coral {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _print_config(args: argparse.Namespace) -> int:
    """``--print-config``: the YAML of the settings that ``--config`` and the flags give (a command
    whose own base replaces them, such as ``train --resume``, is shown without that base)."""
    from coral.config import dump_yaml, from_args

    print(dump_yaml(from_args(args.config_class, args, check_required=False)), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a sub-command; a :class:`~coral.errors.CoralError` becomes one line and exit 2."""
    import warnings

    from coral.config import PRINT_CONFIG_DEST
    from coral.errors import CoralError

    # Warnings about the user's data are one line each, like errors.
    warnings.formatwarning = lambda message, category, *_args, **_kw: f"warning: {message}\n"
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        result = _print_config(args) if getattr(args, PRINT_CONFIG_DEST, False) else args.func(args)
    except CoralError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in USER_FILE_ERRORS:
            raise
        # Outputs and the cache are checked up front where they can be; a file system that turns
        # read-only or full mid-run still ends in one line, not a traceback.
        print(f"error: {err.filename or 'writing'}: {err.strerror or err}{cache_hint(err.filename)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
