"""What every sub-command shares: flags generated from its config dataclass, and data loading."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any, Callable

from coral.config import add_arguments, from_args
from coral.errors import CoralError


def add_command(
    subparsers: argparse._SubParsersAction, name: str, config_class: type, handler: Callable[[Any], int], help: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A sub-command whose flags are generated from ``config_class`` and whose handler gets the config.

    :param subparsers: the parent's sub-command group.
    :param name: the sub-command's name.
    :param config_class: the command's root config dataclass; every setting becomes a flag.
    :param handler: runs the command with the config that the flags (and ``--config FILE``) describe.
    :param help: one line for the parent's ``--help``.
    :param description: the command's own ``--help`` text (default: ``help``).
    """
    parser = subparsers.add_parser(name, help=help, description=description or help)
    add_arguments(parser, config_class)
    parser.set_defaults(func=lambda args: handler(from_args(config_class, args)), config_class=config_class)
    return parser


def load_data(data: Any, *splits: str):
    """The dataset of a data section, refused when one of ``splits`` (those the command learns or scores on) has a
    single class."""
    from coral.data import load_dataset

    dataset = load_dataset(data)
    dataset.require_both_classes(*splits)
    return dataset


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, so that ``json.dumps`` writes valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _nearest_existing(path: Path) -> Path:
    """``path`` or the nearest of its parents that exists (what creating ``path`` would write into)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def require_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Check, before anything is computed or written, that ``path`` can be (or is) a writable directory.

    :param path: the output directory (created later, by whoever writes into it).
    :param flag: how the user named it, for the message.
    :raises CoralError: when it is an existing file, or it (or the folder it would be made in) is
        not writable: a read-only file system, no permission.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CoralError(f"{flag} {path}: exists and is not a directory; name a directory")
    _require_writable(path, flag, path)
    return path


def require_output_file(path: str | Path, flag: str) -> Path:
    """Check, before anything is computed, that the file ``path`` can be written (its folder writable, itself not a
    directory).

    :param path: the output file.
    :param flag: how the user named it, for the message.
    :raises CoralError: when it is a directory or cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise CoralError(f"{flag} {path}: is a directory; name a file")
    _require_writable(path.parent, flag, path)
    return path


def _require_writable(directory: Path, flag: str, shown: Path) -> None:
    base = _nearest_existing(directory)
    if not base.is_dir():
        raise CoralError(f"{flag} {shown}: {base} is a file, so nothing can be made under it")
    if not os.access(base, os.W_OK | os.X_OK):
        raise CoralError(
            f"{flag} {shown}: {base} is not writable "
            f"({'a read-only file system' if _read_only(base) else 'permission denied'})"
        )


def _read_only(path: Path) -> bool:
    """Whether ``path`` lies on a file system mounted read-only."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
