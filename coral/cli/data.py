"""``coral data stats`` and ``coral data download``."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Literal

from coral.cli.common import add_command, json_safe
from coral.config import section
from coral.data.dataset import DataConfig
from coral.data.download import DownloadConfig
from coral.data.registry import AMAZON2018_CATEGORIES, MOVIELENS


@dataclass(frozen=True)
class StatsCommand:
    """``coral data stats``: counts of a dataset after preprocessing."""

    data: DataConfig = section(DataConfig, flat=True)
    """The dataset, how its files are read and its preprocessing."""
    json: bool = False
    """Print one JSON object (non-finite numbers as null) instead of a table."""


@dataclass(frozen=True)
class DownloadCommand:
    """``coral data download NAME``: a dataset's official files into the cache."""

    name: str = field(default="", metadata={"positional": True, "required": True})
    """Dataset: an Amazon 2018 category (any case, e.g. gift_cards) or ml-100k / ml-1m."""
    variant: Literal["full", "5core"] = "full"
    """Amazon reviews: full (as the paper) or 5core; metadata comes with both."""
    download: DownloadConfig = section(DownloadConfig, flat=True)
    """Where to, from where, and how patiently."""


def stats(config: StatsCommand) -> int:
    from coral.data import load_dataset

    stats = load_dataset(config.data).stats()
    if config.json:
        print(json.dumps(json_safe(stats), sort_keys=True, allow_nan=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{stats['name']}[/]: {stats['users']:,} users, {stats['items']:,} items "
        f"({stats['head_items']:,} head, {stats['tail_items']:,} tail), {stats['interactions']:,} interactions, "
        f"positive rate {stats['positive_rate']:.3f}"
    )
    table = Table("split", "interactions", "positive rate")
    for name, split in stats["splits"].items():
        table.add_row(name, f"{split['interactions']:,}", f"{split['positive_rate']:.3f}")
    console.print(table)
    return 0


def download(config: DownloadCommand) -> int:
    """Print the downloaded paths, one per line."""
    from coral.data.download import download_dataset

    for path in download_dataset(config.name, config.variant, config.download):
        print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data", help="inspect and download datasets", description="Inspect and download datasets."
    )
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    add_command(
        data_sub, "stats", StatsCommand, stats, help="users, items, interactions, head/tail and per-split counts"
    )
    parser = add_command(
        data_sub, "download", DownloadCommand, download, help="download a dataset's official files into the cache",
        description=(
            "Download a dataset's official files, resuming partial downloads and verifying what "
            "arrived. Amazon 2018 files go to DEST/amazon2018/, MovieLens to DEST/ml-100k/ and "
            "DEST/ml-1m/ (extracted)."
        ),
    )
    parser.epilog = (
        "names: the Amazon 2018 categories " + ", ".join(AMAZON2018_CATEGORIES)
        + " (any case, e.g. gift_cards); " + ", ".join(MOVIELENS)
        + ". A mirror serves each file by its bare file name at its root, e.g. "
        "URL/Gift_Cards_5.json.gz, URL/meta_Gift_Cards.json.gz, URL/ml-100k.zip."
    )
