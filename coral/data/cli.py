"""``coral data stats`` and ``coral data download``."""

from __future__ import annotations

import argparse
import json

from coral.data.loaders import FORMATS


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that reads a dataset shares: name/path, format and preprocessing."""
    group = parser.add_argument_group("dataset")
    group.add_argument("--dataset", default="gift_cards", help="built-in name (gift_cards), Amazon 2018 category, ml-100k, ml-1m, or a path (default: gift_cards)")
    group.add_argument("--format", choices=FORMATS, default=None, help="force the source format instead of detecting it from file names")
    group.add_argument("--k-core", type=int, default=5, help="iterative k-core threshold (default 5)")
    group.add_argument("--label-rule", choices=("gt", "ge"), default="gt", help="positive = rating > threshold (gt, default) or >= (ge, the paper's literal reading)")
    group.add_argument("--positive-threshold", type=float, default=3.0, help="rating threshold of a positive label (default 3)")
    group.add_argument("--head-fraction", type=float, default=0.2, help="share of items, most popular first, that are head items (default 0.2)")
    group.add_argument("--split-seed", type=int, default=0, help="seed of the tail train/valid/test split (default 0)")
    group.add_argument("--sep", default=",", help="CSV layout: field separator (use '\\t' for TSV)")
    group.add_argument("--user-col", default="user", help="CSV layout: user column")
    group.add_argument("--item-col", default="item", help="CSV layout: item column")
    group.add_argument("--rating-col", default="rating", help="CSV layout: rating column")
    group.add_argument("--timestamp-col", default="timestamp", help="CSV layout: timestamp column")
    group.add_argument("--title-col", default="title", help="CSV layout: items.csv text column")


def dataset_from_args(args: argparse.Namespace):
    """Load the dataset that :func:`add_dataset_arguments` describes."""
    from coral.data import CsvLayout, DataConfig, load_dataset

    config = DataConfig(
        k_core=args.k_core,
        positive_threshold=args.positive_threshold,
        label_rule=args.label_rule,
        head_fraction=args.head_fraction,
        seed=args.split_seed,
    )
    sep = "\t" if args.sep in ("\\t", "tab") else args.sep
    layout = CsvLayout(sep, args.user_col, args.item_col, args.rating_col, args.timestamp_col, args.title_col)
    return load_dataset(args.dataset, config, format=args.format, layout=layout)


def _stats(args: argparse.Namespace) -> int:
    stats = dataset_from_args(args).stats()
    if args.json:
        print(json.dumps(stats, sort_keys=True))
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


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="inspect and download datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    stats = data_sub.add_parser("stats", help="users, items, interactions, head/tail and per-split counts")
    add_dataset_arguments(stats)
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(func=_stats)
    try:
        from coral.data.download import add_download_parser
    except ImportError:  # download.py is being written in parallel
        return
    add_download_parser(data_sub)
