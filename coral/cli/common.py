"""What every sub-command shares: flags generated from its config dataclass, and data loading."""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable

from coral.config import add_arguments, from_args


def add_command(subparsers: argparse._SubParsersAction, name: str, config_class: type, handler: Callable[[Any], int], help: str, description: str | None = None) -> argparse.ArgumentParser:
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
    """The dataset of a data section, refused when one of ``splits`` (those the command learns or scores on) has a single class."""
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
